"""Calibration statistics: per-tensor min/max and histograms of the float TFLite model's activations on the
calibration images (LiteRT with every intermediate tensor kept)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from deploy.quantize.ranges import BINS, Histogram
from pipeline.errors import PipelineError
from pipeline.progress import progress


def check_images(images: Sequence[np.ndarray], shape: tuple[int, ...], names: Sequence[str] | None = None) -> None:
    """Every calibration image is a float HxWx3 array of the model's input size, else an error naming it."""
    for i, image in enumerate(images):
        if tuple(image.shape) != tuple(shape):
            name = names[i] if names else f"calibration image {i}"
            raise PipelineError(f"{name} is {tuple(image.shape)}", field="quantize calibration images",
                                expected=f"{tuple(shape)} (height, width, channels of the model input)")


class FloatActivations:
    """Runs the float TFLite model and reads the values of chosen tensors after each image."""

    def __init__(self, float_bytes: bytes, tensors: Sequence[int]) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_content=float_bytes, experimental_preserve_all_tensors=True)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.tensors = list(tensors)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self.input["shape"][1:])

    def run(self, image: np.ndarray) -> dict[int, np.ndarray]:
        self.interpreter.set_tensor(self.input["index"], image[None].astype(np.float32))
        self.interpreter.invoke()
        return {t: self.interpreter.get_tensor(t) for t in self.tensors}


def histograms(float_bytes: bytes, tensors: Sequence[int], images: Sequence[np.ndarray]) -> dict[int, Histogram]:
    """Histogram of every tensor in `tensors` (float model indices) over all calibration images: one pass for the
    min/max (widened to hold zero), one to count into BINS bins over it."""
    runner = FloatActivations(float_bytes, tensors)
    check_images(images, runner.input_shape)
    if not images:
        raise PipelineError("no calibration images", field="quantize.calib_images", expected="at least 1")
    low = {t: 0.0 for t in tensors}
    high = {t: 0.0 for t in tensors}
    for image in progress(images, desc="calibration min/max", unit="img"):
        for t, values in runner.run(image).items():
            low[t] = min(low[t], float(values.min()))
            high[t] = max(high[t], float(values.max()))
    counts = {t: np.zeros(BINS, np.float64) for t in tensors}
    for image in progress(images, desc="calibration histograms", unit="img"):
        for t, values in runner.run(image).items():
            span = high[t] - low[t]
            if span > 0:
                counts[t] += np.bincount(np.clip(((values.ravel() - low[t]) / span * BINS).astype(np.int64), 0,
                                                 BINS - 1), minlength=BINS)
    return {t: Histogram(low[t], high[t], counts[t]) for t in tensors}
