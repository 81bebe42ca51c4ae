"""TFLite export (float32 and full-integer uint8 I/O) and a LiteRT runner for both."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.atomic import write_bytes
from pipeline.errors import PipelineError
from pipeline.progress import progress


def export_float(model, path: Path) -> int:
    """Write a float32 TFLite model; returns its size in bytes."""
    data = convert_float(model)
    write_bytes(path, data)
    return len(data)


def convert_float(model) -> bytes:
    """The float32 TFLite flatbuffer of `model`."""
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def export_uint8(model, path: Path, calibration: list[np.ndarray]) -> int:
    """Write a full-integer TFLite model (int8 inside, uint8 input/output, batch 1) calibrated on `calibration`
    (float32 HxWx3 images in [0, 1]); returns its size in bytes."""
    data = convert_uint8(model, calibration)
    write_bytes(path, data)
    return len(data)


def convert_uint8(model, calibration: list[np.ndarray]) -> bytes:
    """The full-integer TFLite flatbuffer of `model`, ranges by the converter's min/max calibration."""
    import tensorflow as tf

    if not calibration:
        raise PipelineError("no calibration images", field="quantize.calib_images", expected="at least 1")

    def representative() -> Iterable[list[np.ndarray]]:
        for image in progress(calibration, desc="calibrate", unit="img"):
            yield [image[None].astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
    return converter.convert()


class LiteRTRunner:
    """Runs a .tflite file with LiteRT on float images in [0, 1]; quantizes input and dequantizes output itself."""

    def __init__(self, path: Path) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        try:
            self.interpreter = Interpreter(model_path=str(self.path))
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise PipelineError(f"LiteRT cannot load the model ({exc})", path=path,
                                expected="a valid .tflite flatbuffer") from exc
        self.input = self.interpreter.get_input_details()[0]
        self.outputs = self.interpreter.get_output_details()

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self.input["shape"])

    @property
    def is_quantized(self) -> bool:
        return self.input["dtype"] == np.uint8

    def quantize_input(self, image: np.ndarray) -> np.ndarray:
        """A float image in [0, 1] as the model's uint8 input (for a quantized model)."""
        scale, zero = self.input["quantization"]
        return np.clip(np.round(image / scale + zero), 0, 255).astype(np.uint8)

    def run_raw(self, tensor: np.ndarray) -> list[np.ndarray]:
        """Run one input of exactly the input dtype/shape (batch 1); outputs as stored (uint8 or float32)."""
        self.interpreter.set_tensor(self.input["index"], tensor.reshape(self.input_shape).astype(self.input["dtype"]))
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(d["index"]).copy() for d in self.outputs]

    def run(self, image: np.ndarray) -> np.ndarray:
        """First output, dequantized to float32, for one float image HxWx3 in [0, 1]."""
        tensor = self.quantize_input(image) if self.is_quantized else image.astype(np.float32)
        raw = self.run_raw(tensor)[0]
        return dequantize(raw, self.outputs[0])


def dequantize(raw: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    if raw.dtype == np.float32:
        return raw
    scale, zero = detail["quantization"]
    return ((raw.astype(np.float32) - zero) * scale).astype(np.float32)


def output_step(runner: LiteRTRunner) -> float:
    """The real value of one output LSB of a quantized model (0 for float)."""
    return float(runner.outputs[0]["quantization"][0]) if runner.is_quantized else 0.0
