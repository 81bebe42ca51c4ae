"""What the firmware templates need to know about a compiled model: tensors (from the kmodel itself) and either the
YOLOv2 detector parameters (the compile report's "detector" section) or the recognizer's embedding and crop policy
(its "embedder" section, which holds the model_meta.json of `invoke train`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.k210.format.kmodel_io import load_kmodel
from deploy.k210.sim.simulator import model_input_shape
from models.augment import LETTERBOX_FILL
from models.recognizer.centre import check_centre
from models.recognizer.crop import CropPolicy
from pipeline.errors import PipelineError

ELEMENT_BYTES = {"uint8": 1, "float32": 4}
FMT_MACROS = {"uint8": "RT_AI_FMT_UINT8", "float32": "RT_AI_FMT_FLOAT32"}


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output: CHW shape, element type and, for uint8 outputs, its dequantization."""

    shape: tuple[int, int, int]
    dtype: str
    scale: float | None = None
    zero_point: int | None = None

    @property
    def count(self) -> int:
        return self.shape[0] * self.shape[1] * self.shape[2]

    @property
    def bytes(self) -> int:
        return self.count * ELEMENT_BYTES[self.dtype]

    @property
    def fmt(self) -> str:
        return FMT_MACROS[self.dtype]


@dataclass(frozen=True)
class DetectorSpec:
    """YOLOv2 region-layer parameters; anchors are (w, h) in grid cells."""

    classes: tuple[str, ...]
    anchors: tuple[tuple[float, float], ...]
    input_w: int
    input_h: int
    grid_w: int
    grid_h: int
    score_threshold: float
    nms_iou: float
    max_candidates: int
    letterbox_fill: int = LETTERBOX_FILL


@dataclass(frozen=True)
class EmbedderSpec:
    """A face recognizer: its square input side, embedding length, the crop policy it was trained on and its
    embedding centre (float32, subtracted between two L2 norms; None: plain L2 norm) and its flip policy (the crop
    and its mirror image embedded and added: models/recognizer/centre.py)."""

    input_size: int
    embedding_size: int
    crop_margin_permille: int
    centre: tuple[float, ...] | None = None
    flip_average: bool = False


@dataclass(frozen=True)
class ModelSpec:
    """Everything rendering needs about one compiled model: a detector or an embedder (exactly one is set)."""

    kmodel: Path
    kmodel_size: int
    work_buffer_bytes: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    detector: DetectorSpec | None = None
    embedder: EmbedderSpec | None = None

    @property
    def kind(self) -> str:
        return "detector" if self.detector is not None else "embedder"


def _positive_int(value: Any, where: str, path: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise PipelineError(f"got {value!r}", path=path, field=where, expected="a positive integer")
    return value


def _pair(value: Any, where: str, path: Path) -> tuple[int, int]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise PipelineError(f"got {value!r}", path=path, field=where, expected="[width, height]")
    return _positive_int(value[0], f"{where}[0]", path), _positive_int(value[1], f"{where}[1]", path)


def _fraction(value: Any, where: str, path: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
        raise PipelineError(f"got {value!r}", path=path, field=where, expected="a number between 0 and 1")
    return float(value)


def _anchors(value: Any, path: Path) -> tuple[tuple[float, float], ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise PipelineError(f"got {value!r}", path=path, field="detector.anchors", expected="a list of [w, h] pairs")
    anchors = []
    for i, pair in enumerate(value):
        ok = isinstance(pair, (list, tuple)) and len(pair) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in pair)
        if not ok:
            raise PipelineError(f"got {pair!r}", path=path, field=f"detector.anchors[{i}]",
                                expected="[w, h] with positive finite numbers (grid cells)")
        anchors.append((float(pair[0]), float(pair[1])))
    return tuple(anchors)


def detector_spec(report: dict[str, Any], report_path: Path, *, score_threshold: float, nms_iou: float,
                  max_candidates: int) -> DetectorSpec:
    """Check and read the report's "detector" section; thresholds in the report win over the given defaults."""
    det = report.get("detector")
    if not isinstance(det, dict):
        raise PipelineError("no 'detector' section", path=report_path, field="detector",
                            expected="classes, anchors, input_size, grid, num_anchors")
    classes = det.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) and c for c in classes):
        raise PipelineError(f"got {classes!r}", path=report_path, field="detector.classes",
                            expected="a non-empty list of class names")
    anchors = _anchors(det.get("anchors"), report_path)
    if "num_anchors" in det and det["num_anchors"] != len(anchors):
        raise PipelineError(f"num_anchors {det['num_anchors']!r} but {len(anchors)} anchors", path=report_path,
                            field="detector.num_anchors", expected=str(len(anchors)))
    input_w, input_h = _pair(det.get("input_size"), "detector.input_size", report_path)
    grid_w, grid_h = _pair(det.get("grid"), "detector.grid", report_path)
    return DetectorSpec(
        classes=tuple(classes), anchors=anchors, input_w=input_w, input_h=input_h, grid_w=grid_w, grid_h=grid_h,
        score_threshold=_fraction(det.get("score_threshold", score_threshold), "detector.score_threshold",
                                  report_path),
        nms_iou=_fraction(det.get("nms_iou", nms_iou), "detector.nms_iou", report_path),
        max_candidates=_positive_int(max_candidates, "firmware.max_candidates", report_path))


def _output_quantization(report: dict[str, Any], report_path: Path) -> tuple[float, int]:
    outputs = report.get("outputs")
    quant = outputs[0].get("quantization") if isinstance(outputs, list) and outputs and isinstance(
        outputs[0], dict) else None
    if not isinstance(quant, dict) or not isinstance(quant.get("scale"), (int, float)) or not isinstance(
            quant.get("zero_point"), int):
        raise PipelineError("the report gives no dequantization of the kmodel output", path=report_path,
                            field="outputs[0].quantization", expected="{scale: float, zero_point: int}")
    return float(quant["scale"]), int(quant["zero_point"])


def embedder_spec(report: dict[str, Any], report_path: Path) -> EmbedderSpec:
    """Check and read the report's "embedder" section and the recognizer metadata it carries."""
    section = report.get("embedder")
    meta = section.get("meta") if isinstance(section, dict) else None
    if not isinstance(meta, dict) or meta.get("task") != "recognizer":
        raise PipelineError("no recognizer metadata in the 'embedder' section", path=report_path,
                            field="embedder.meta", expected="the model_meta.json of `invoke train` (task "
                            "recognizer) beside the TFLite when it is compiled")
    side = _pair(meta.get("input_size"), "embedder.meta.input_size", report_path)
    if side[0] != side[1]:
        raise PipelineError(f"input {side[0]}x{side[1]}", path=report_path, field="embedder.meta.input_size",
                            expected="a square input (the face crop is square)")
    margin = meta.get("crop_margin_permille")
    if isinstance(margin, bool) or not isinstance(margin, int):
        raise PipelineError(f"got {margin!r}", path=report_path, field="embedder.meta.crop_margin_permille",
                            expected="an integer margin in permille of the box side")
    policy = CropPolicy(side[0], margin)  # the crop policy's own bounds
    size = _positive_int(section.get("embedding_size"), "embedder.embedding_size", report_path)
    if meta.get("embedding_size", size) != size:
        raise PipelineError(f"meta says {meta.get('embedding_size')!r}, the compiled output has {size}",
                            path=report_path, field="embedder.meta.embedding_size", expected=str(size))
    centre = section.get("centre")
    if centre is not None:
        centre = tuple(float(v) for v in check_centre(centre, size, path=report_path, field="embedder.centre"))
    flip = section.get("flip_average", False)  # reports compiled before the flip policy have none: one run
    if not isinstance(flip, bool):
        raise PipelineError(f"got {flip!r}", path=report_path, field="embedder.flip_average",
                            expected="true or false (recognizer.flip_average)")
    return EmbedderSpec(input_size=policy.size, embedding_size=size, crop_margin_permille=policy.margin_permille,
                        centre=centre, flip_average=flip)


def _image_input(model, kmodel: Path) -> tuple[int, int, int]:
    shape, dtype = model_input_shape(model)
    if len(shape) != 3 or dtype.name != "uint8" or shape[0] != 3:
        raise PipelineError(f"model input is {dtype.name} {shape}", path=kmodel, field="layers[0]",
                            expected="a uint8 3 x H x W image input (K210_CONV first layer)")
    if len(model.outputs) != 1:
        raise PipelineError(f"{len(model.outputs)} outputs", path=kmodel, field="header.output_count",
                            expected="1 (the YOLOv2 grid or the embedding)")
    return tuple(shape)


def _output_tensor(model, kmodel: Path, report: dict[str, Any], report_path: Path, shape: tuple[int, int, int],
                   what: str, *, keep_quantization: bool) -> TensorSpec:
    """The one output as float32 or uint8 (with its dequantization; kept for float32 too when asked)."""
    count = shape[0] * shape[1] * shape[2]
    size = model.outputs[0].size
    if size == 4 * count:
        if keep_quantization:
            return TensorSpec(shape, "float32", *_output_quantization(report, report_path))
        return TensorSpec(shape, "float32")
    if size == count:
        return TensorSpec(shape, "uint8", *_output_quantization(report, report_path))
    raise PipelineError(f"output 0 is {size} bytes", path=kmodel, field="outputs[0].size",
                        expected=f"{4 * count} (float32) or {count} (uint8) for {what}")


def model_spec(kmodel: Path, report: dict[str, Any], report_path: Path, *, score_threshold: float, nms_iou: float,
               max_candidates: int) -> ModelSpec:
    """Read the kmodel's tensors and check them against the report: an embedder when its kind says so (the
    thresholds are then unused), else a detector's geometry."""
    model = load_kmodel(kmodel)
    shape = _image_input(model, kmodel)
    common = {"kmodel": kmodel, "kmodel_size": kmodel.stat().st_size, "work_buffer_bytes": model.main_mem_usage,
              "inputs": (TensorSpec(shape, "uint8"),)}
    if report.get("kind") == "embedder":
        embedder = embedder_spec(report, report_path)
        if shape[1:] != (embedder.input_size, embedder.input_size):
            raise PipelineError(f"kmodel input is {shape[2]}x{shape[1]}, the metadata says {embedder.input_size}",
                                path=report_path, field="embedder.meta.input_size", expected=f"[{shape[2]}, "
                                f"{shape[1]}]")
        output = _output_tensor(model, kmodel, report, report_path, (embedder.embedding_size, 1, 1),
                                f"a {embedder.embedding_size}-value embedding", keep_quantization=True)
        return ModelSpec(**common, outputs=(output,), embedder=embedder)
    detector = detector_spec(report, report_path, score_threshold=score_threshold, nms_iou=nms_iou,
                             max_candidates=max_candidates)
    if (shape[2], shape[1]) != (detector.input_w, detector.input_h):
        raise PipelineError(f"kmodel input is {shape[2]}x{shape[1]}, report says "
                            f"{detector.input_w}x{detector.input_h}", path=report_path, field="detector.input_size",
                            expected=f"[{shape[2]}, {shape[1]}]")
    grid = (len(detector.anchors) * (5 + len(detector.classes)), detector.grid_h, detector.grid_w)
    output = _output_tensor(model, kmodel, report, report_path, grid,
                            f"a {grid[2]}x{grid[1]} grid of {len(detector.anchors)} anchors x "
                            f"(5 + {len(detector.classes)} classes)", keep_quantization=False)
    return ModelSpec(**common, outputs=(output,), detector=detector)
