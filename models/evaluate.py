"""Evaluate a detector on a split: decode + NMS every image as the firmware would, then VOC/COCO AP and recall by
size. The same images go through Keras, float TFLite and uint8 TFLite, and all results land in one JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.data import load_records
from models.data.records import DetectionRecord
from models.metrics import ImageResult, evaluate_results, plot_pr_curves, pr_curve
from models.pipeline import prepared_sample
from models.yolo_decode import chw_to_hwc, decode_yolov2, nms
from models.yolo_head import grid_size, load_detector
from pipeline.atomic import write_json
from pipeline.config import Config
from pipeline.errors import PipelineError
from pipeline.progress import progress

# A batch of float images (B, H, W, 3) in [0, 1] -> raw head outputs (B, gh, gw, A*(5+C)).
Predictor = Callable[[np.ndarray], np.ndarray]
EVAL_SCORE_THRESHOLD = 0.005  # AP needs the whole precision-recall curve, so keep nearly every detection
MAX_CANDIDATES = 300  # highest-scoring decoded boxes kept for NMS per image (as COCO's maxDets caps detections)
EVAL_NAME, PR_NAME = "eval.json", "eval_pr.png"


@dataclass(frozen=True)
class EvalSet:
    """Letterboxed images (N, H, W, 3) float32 in [0, 1] and their ground truth in pixels of the model input."""

    images: np.ndarray
    gt_boxes: list[np.ndarray]
    gt_labels: list[np.ndarray]


def load_eval_set(records: list[DetectionRecord], input_size: tuple[int, int], max_boxes: int = 200) -> EvalSet:
    """Read and letterbox every record once (no augmentation)."""
    images, boxes, labels = [], [], []
    scale = np.array([*input_size, *input_size], np.float32)
    for record in progress(records, desc="load eval images", unit="img"):
        image, norm, label = prepared_sample(record, input_size, max_boxes, None)
        keep = label >= 0
        images.append(image)
        boxes.append(norm[keep] * scale)
        labels.append(label[keep].astype(np.int64))
    return EvalSet(np.stack(images), boxes, labels)


def detect(raw_hwc: np.ndarray, anchors: np.ndarray, num_classes: int, input_size: tuple[int, int],
           score_threshold: float, nms_iou: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode + NMS one output; boxes (N, 4) in pixels of the model input, scores (N,), labels (N,)."""
    candidates = sorted(decode_yolov2(raw_hwc, anchors, num_classes, score_threshold), key=lambda d: -d.score)
    dets = nms(candidates[:MAX_CANDIDATES], nms_iou)
    scale = np.array([*input_size, *input_size], np.float32)
    boxes = np.array([d.box for d in dets], np.float32).reshape(-1, 4) * scale
    return boxes, np.array([d.score for d in dets], np.float32), np.array([d.class_id for d in dets], np.int64)


def collect_results(predict: Predictor, data: EvalSet, anchors: np.ndarray, num_classes: int,
                    input_size: tuple[int, int], nms_iou: float, batch_size: int = 16,
                    desc: str | None = None) -> list[ImageResult]:
    """Run `predict` over the set in batches and decode each image's detections (with a progress bar when `desc`
    names the run: the per-epoch validation during training goes without)."""
    results = []
    starts = range(0, len(data.images), batch_size)
    for start in progress(starts, desc=desc, unit="batch") if desc else starts:
        outputs = predict(data.images[start:start + batch_size])
        for offset, raw in enumerate(outputs):
            i = start + offset
            boxes, scores, labels = detect(raw, anchors, num_classes, input_size, EVAL_SCORE_THRESHOLD, nms_iou)
            results.append(ImageResult(boxes, scores, labels, data.gt_boxes[i], data.gt_labels[i]))
    return results


def keras_predictor(model) -> Predictor:
    """A Keras model as a batch predictor (inference mode)."""
    return lambda images: np.asarray(model(images, training=False))


def tflite_predictor(runner) -> Predictor:
    """A LiteRT runner (batch 1) as a batch predictor; outputs dequantized to float."""
    return lambda images: np.stack([runner.run(image).reshape(runner.outputs[0]["shape"][1:]) for image in images])


def kmodel_predictor(path: Path, output_hwc: tuple[int, int, int], engine: str = "fast") -> Predictor:
    """The compiled kmodel as a batch predictor, on the C runtime (engine "fast") or the NumPy reference simulator
    ("reference"; the same bytes): each letterboxed image goes in as its uint8 RGB codes (CHW, the kmodel's input),
    the dequantized flat CHW output comes back as (H, W, C)."""
    from deploy.k210.sim.fast import simulator_for

    simulator = simulator_for(path, fast=engine == "fast")

    def predict(images: np.ndarray) -> np.ndarray:
        codes = np.ascontiguousarray(np.rint(images * 255.0).astype(np.uint8).transpose(0, 3, 1, 2))
        height, width, channels = output_hwc
        return np.stack([chw_to_hwc(outputs[0], channels, height, width) for outputs in simulator.dequantized(codes)])

    return predict


def model_anchors(meta_path: Path) -> tuple[np.ndarray, list[str]]:
    """Anchors and class names from a model_meta.json written by `invoke train`."""
    if not meta_path.is_file():
        raise PipelineError("model metadata not found", path=meta_path, expected="run `invoke train` first")
    meta = json.loads(meta_path.read_text())
    return np.asarray(meta["anchors"], np.float32), list(meta["classes"])


def evaluate_stage(cfg: Config, split: str = "val",
                   runtimes: tuple[str, ...] = ("keras", "float", "uint8", "kmodel"),
                   model_path: Path | None = None) -> dict[str, Any]:
    """AP of each available runtime (Keras, float and uint8 TFLite in LiteRT, the kmodel in the KPU simulator of
    eval.kmodel_engine) on the same images -> build/<config>/eval.json and a PR-curve PNG."""
    from deploy.tflite import LiteRTRunner

    build = cfg.build_dir
    anchors, classes = model_anchors(build / "model_meta.json")
    input_size = tuple(cfg.values["model"]["input_size"])
    score_threshold = float(cfg.values["deploy"]["score_threshold"])
    nms_iou = float(cfg.values["deploy"]["nms_iou"])
    files = {"keras": model_path or build / "model.keras", "float": build / "model_float.tflite",
             "uint8": build / "model_uint8.tflite", "kmodel": build / "model.kmodel"}
    grid_w, grid_h = grid_size(cfg.values["model"])
    output_hwc = (grid_h, grid_w, len(anchors) * (5 + len(classes)))
    data = load_eval_set(load_records(cfg, split), input_size)
    report: dict[str, Any] = {"split": split, "images": len(data.images), "classes": classes, "runtimes": {}}
    curves = {}
    for name in runtimes:
        path = files[name]
        if not path.is_file():
            report["runtimes"][name] = {"missing": str(path), "hint": "run `invoke train` / `invoke export` first"}
            continue
        predict = (keras_predictor(load_detector(path)) if name == "keras"
                   else kmodel_predictor(path, output_hwc, cfg.values["eval"]["kmodel_engine"]) if name == "kmodel"
                   else tflite_predictor(LiteRTRunner(path)))
        results = collect_results(predict, data, anchors, len(classes), input_size, nms_iou, desc=name)
        report["runtimes"][name] = {"model": str(path), **evaluate_results(results, classes, score_threshold)}
        curves[name] = pr_curve(results, 0, 0.5)
    if not curves:
        raise PipelineError("no model to evaluate", path=build, expected="model.keras or the exported .tflite files")
    plot_pr_curves(curves, build / PR_NAME, f"{cfg.name} {split}: precision-recall, class '{classes[0]}', IoU 0.5")
    write_json(build / EVAL_NAME, report)
    return report


def format_eval(report: dict[str, Any]) -> str:
    """One line per runtime: AP@0.5, AP@[.5:.95] and recall at the deploy threshold."""
    lines = [f"{report['split']}: {report['images']} images"]
    for name, result in report["runtimes"].items():
        if "missing" in result:
            lines.append(f"  {name:6s} not found: {result['missing']}")
            continue
        lines.append(f"  {name:6s} AP@0.5 {result['ap50']:.3f}  AP@[.5:.95] {result['ap50_95']:.3f}  "
                     f"recall@{result['score_threshold']:g} {result['recall_by_size']['all']['recall']:.3f}")
    return "\n".join(lines)
