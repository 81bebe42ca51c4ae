"""Evaluate a detector on a split: decode + NMS every image as the firmware would, then VOC/COCO AP and recall by
size, for each runtime it is given (a model file and how to make a predictor from it), all in one JSON. The runtimes
themselves (Keras here; TFLite and the kmodel come from deploy/, which passes them in) and the preprocessing that
feeds each are named in every row."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.augment import Letterbox, letterbox
from models.data import load_records
from models.data.records import DetectionRecord
from models.metrics import ImageResult, evaluate_results, plot_pr_curves, pr_curve
from models.yolo_decode import decode_yolov2, nms
from models.yolo_head import grid_size, load_detector
from pipeline.atomic import write_json
from pipeline.config import Config
from pipeline.errors import PipelineError
from pipeline.progress import progress

# A batch of float images (B, H, W, 3) in [0, 1] -> raw head outputs (B, gh, gw, A*(5+C)).
Predictor = Callable[[np.ndarray], np.ndarray]
# Source images (H, W, 3) uint8 RGB, each its own size -> per image its raw head output (gh, gw, A*(5+C)) and where
# the runtime's own preprocessing placed it in the model input (the firmware letterboxes its own way).
SourcePredictor = Callable[[list[np.ndarray]], list[tuple[np.ndarray, Letterbox]]]
TRAINING_LETTERBOX = "training letterbox (models/letterbox.py)"
EVAL_SCORE_THRESHOLD = 0.005  # AP needs the whole precision-recall curve, so keep nearly every detection
MAX_CANDIDATES = 300  # highest-scoring decoded boxes kept for NMS per image (as COCO's maxDets caps detections)
EVAL_NAME, PR_NAME = "eval.json", "eval_pr.png"


@dataclass(frozen=True)
class EvalSet:
    """Images letterboxed as in training (N, H, W, 3) float32 in [0, 1] and their ground truth in pixels of that
    model input; with `sources` (the decoded images) and `placements` (where each lies in `images`) for runtimes
    that preprocess the source themselves."""

    images: np.ndarray
    gt_boxes: list[np.ndarray]
    gt_labels: list[np.ndarray]
    sources: list[np.ndarray] | None = None
    placements: list[Letterbox] | None = None


@dataclass(frozen=True)
class Runtime:
    """One row of eval.json: the model file and how to make its predictor; `make` gives a Predictor for the
    training letterbox, or a SourcePredictor when `preprocessing` names the runtime's own."""

    path: Path
    make: Callable[[Path], Predictor | SourcePredictor]
    preprocessing: str = TRAINING_LETTERBOX


def load_eval_set(records: list[DetectionRecord], input_size: tuple[int, int], keep_sources: bool = False) -> EvalSet:
    """Read and letterbox every record once (no augmentation); the decoded images too with `keep_sources`."""
    images, boxes, labels, sources, placements = [], [], [], [], []
    for record in progress(records, desc="load eval images", unit="img"):
        image, gt, label = record.load()
        canvas, placed_boxes, placed = letterbox(image, gt, input_size)
        images.append(canvas.astype(np.float32) / 255.0)
        boxes.append(placed_boxes)
        labels.append(np.asarray(label, np.int64))
        if keep_sources:
            sources.append(image)
            placements.append(placed)
    return EvalSet(np.stack(images), boxes, labels, sources if keep_sources else None,
                   placements if keep_sources else None)


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


def collect_source_results(predict: SourcePredictor, data: EvalSet, anchors: np.ndarray, num_classes: int,
                           input_size: tuple[int, int], nms_iou: float, batch_size: int = 16,
                           desc: str | None = None) -> list[ImageResult]:
    """As collect_results for a runtime that preprocesses the source images itself: its detections are moved from
    where it placed each image to where the training letterbox did, so the ground truth is the same for every row."""
    if data.sources is None or data.placements is None:
        raise ValueError("the EvalSet has no sources: load it with keep_sources=True")
    results = []
    starts = range(0, len(data.sources), batch_size)
    for start in progress(starts, desc=desc, unit="batch") if desc else starts:
        for offset, (raw, placed) in enumerate(predict(data.sources[start:start + batch_size])):
            i = start + offset
            boxes, scores, labels = detect(raw, anchors, num_classes, input_size, EVAL_SCORE_THRESHOLD, nms_iou)
            boxes = data.placements[i].to_input(placed.to_image(boxes))
            results.append(ImageResult(boxes, scores, labels, data.gt_boxes[i], data.gt_labels[i]))
    return results


def keras_predictor(model) -> Predictor:
    """A Keras model as a batch predictor (inference mode)."""
    return lambda images: np.asarray(model(images, training=False))


def keras_runtime(path: Path) -> Runtime:
    """The Keras model in `path` as an eval.json row."""
    return Runtime(path, lambda p: keras_predictor(load_detector(p)))


def model_anchors(meta_path: Path) -> tuple[np.ndarray, list[str]]:
    """Anchors and class names from a model_meta.json written by `invoke train`."""
    if not meta_path.is_file():
        raise PipelineError("model metadata not found", path=meta_path, expected="run `invoke train` first")
    meta = json.loads(meta_path.read_text())
    return np.asarray(meta["anchors"], np.float32), list(meta["classes"])


def evaluate_runtimes(cfg: Config, runtimes: dict[str, Runtime], split: str = "val") -> dict[str, Any]:
    """AP of each runtime whose model file exists on the same images -> build/<config>/eval.json and a PR-curve
    PNG; a missing file is a row that says so."""
    build = cfg.build_dir
    anchors, classes = model_anchors(build / "model_meta.json")
    input_size, score_threshold, nms_iou = cfg.model.input_size, cfg.deploy.score_threshold, cfg.deploy.nms_iou
    data = load_eval_set(load_records(cfg, split), input_size,
                         keep_sources=any(r.preprocessing != TRAINING_LETTERBOX for r in runtimes.values()))
    report: dict[str, Any] = {"split": split, "images": len(data.images), "classes": classes, "runtimes": {}}
    curves = {}
    for name, runtime in runtimes.items():
        if not runtime.path.is_file():
            report["runtimes"][name] = {"missing": str(runtime.path),
                                        "hint": "run `invoke train` / `invoke export` / `invoke compile` first"}
            continue
        collect = collect_results if runtime.preprocessing == TRAINING_LETTERBOX else collect_source_results
        results = collect(runtime.make(runtime.path), data, anchors, len(classes), input_size, nms_iou, desc=name)
        report["runtimes"][name] = {"model": str(runtime.path), "preprocessing": runtime.preprocessing,
                                    **evaluate_results(results, classes, score_threshold)}
        curves[name] = pr_curve(results, 0, 0.5)
    if not curves:
        raise PipelineError("no model to evaluate", path=build, expected="model.keras or the exported .tflite files")
    plot_pr_curves(curves, build / PR_NAME, f"{cfg.name} {split}: precision-recall, class '{classes[0]}', IoU 0.5")
    write_json(build / EVAL_NAME, report)
    return report


def output_hwc(cfg: Config, meta_path: Path) -> tuple[int, int, int]:
    """The head output's (grid height, grid width, anchors x (5 + classes))."""
    anchors, classes = model_anchors(meta_path)
    grid_w, grid_h = grid_size(cfg.values["model"])
    return grid_h, grid_w, len(anchors) * (5 + len(classes))


def format_eval(report: dict[str, Any]) -> str:
    """One line per runtime: AP@0.5, AP@[.5:.95] and recall at the deploy threshold."""
    lines = [f"{report['split']}: {report['images']} images"]
    width = max(map(len, report["runtimes"]), default=0)
    for name, result in report["runtimes"].items():
        if "missing" in result:
            lines.append(f"  {name:{width}s} not found: {result['missing']}")
            continue
        lines.append(f"  {name:{width}s} AP@0.5 {result['ap50']:.3f}  AP@[.5:.95] {result['ap50_95']:.3f}  "
                     f"recall@{result['score_threshold']:g} {result['recall_by_size']['all']['recall']:.3f}  "
                     f"({result['preprocessing']})")
    return "\n".join(lines)
