"""YOLOv2 anchors: k-means of box shapes with 1 - IoU as the distance (boxes and centroids share one centre)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from models.data.records import DetectionRecord
from pipeline.atomic import write_json
from pipeline.config import Config
from pipeline.errors import PipelineError
from pipeline.plotting import new_figure, save_figure
from pipeline.stage import run_stage

MAX_ITERATIONS = 300


def shape_iou(wh: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """(N, K) IoU of N (w, h) shapes with K (w, h) shapes, all centred at the same point."""
    inter = np.minimum(wh[:, None, 0], centroids[None, :, 0]) * np.minimum(wh[:, None, 1], centroids[None, :, 1])
    union = wh[:, None, 0] * wh[:, None, 1] + centroids[None, :, 0] * centroids[None, :, 1] - inter
    return inter / np.maximum(union, 1e-12)


def letterboxed_sizes(records: list[DetectionRecord], input_size: tuple[int, int]) -> np.ndarray:
    """(N, 2) box (width, height) in pixels of the model input, after each image is letterboxed to `input_size`."""
    width, height = input_size
    sizes = [(r.boxes[:, 2:4] - r.boxes[:, 0:2]) * min(width / r.width, height / r.height)
             for r in records if len(r.boxes)]
    return np.concatenate(sizes).astype(np.float64) if sizes else np.zeros((0, 2))


def _plus_plus_init(wh: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    centroids = [wh[rng.integers(len(wh))]]
    for _ in range(1, k):
        distance = 1.0 - shape_iou(wh, np.array(centroids)).max(axis=1)
        total = distance.sum()
        pick = rng.choice(len(wh), p=distance / total) if total > 0 else rng.integers(len(wh))
        centroids.append(wh[pick])
    return np.array(centroids, dtype=np.float64)


def compute_anchors(boxes_wh: np.ndarray, k: int, grid: tuple[int, int], input_size: tuple[int, int],
                    seed: int) -> np.ndarray:
    """k anchors (k, 2) in grid cells, sorted by area, from box sizes (N, 2) in pixels of the model input."""
    wh = np.asarray(boxes_wh, dtype=np.float64).reshape(-1, 2)
    wh = wh[(wh[:, 0] > 0) & (wh[:, 1] > 0)]
    if len(np.unique(wh, axis=0)) < k:
        raise PipelineError(f"{len(wh)} boxes with {len(np.unique(wh, axis=0))} distinct sizes", field="boxes",
                            expected=f"at least {k} distinct box sizes to make {k} anchors")
    cells = wh * np.array(grid, dtype=np.float64) / np.array(input_size, dtype=np.float64)
    rng = np.random.default_rng(seed)
    centroids = _plus_plus_init(cells, k, rng)
    assignment = np.full(len(cells), -1)
    for _ in range(MAX_ITERATIONS):
        new_assignment = shape_iou(cells, centroids).argmax(axis=1)
        if np.array_equal(new_assignment, assignment):
            break
        assignment = new_assignment
        for cluster in range(k):
            members = cells[assignment == cluster]
            # an emptied cluster restarts at the box worst covered by the others
            centroids[cluster] = members.mean(axis=0) if len(members) else cells[
                shape_iou(cells, centroids).max(axis=1).argmin()]
    return centroids[np.argsort(centroids.prod(axis=1))]


def mean_best_iou(boxes_wh_cells: np.ndarray, anchors: np.ndarray) -> float:
    """Average over boxes of the IoU with their best anchor (both in grid cells): how well the anchors cover them."""
    return float(shape_iou(np.asarray(boxes_wh_cells, np.float64), np.asarray(anchors, np.float64)).max(axis=1).mean())


def plot_anchors(boxes_wh: np.ndarray, anchors: np.ndarray, grid: tuple[int, int], input_size: tuple[int, int],
                 png_path: Path) -> None:
    """Scatter of box sizes (grid cells) coloured by their anchor, anchors as crosses, written atomically."""
    cells = np.asarray(boxes_wh, np.float64) * np.array(grid) / np.array(input_size)
    anchors = np.asarray(anchors, np.float64)
    owner = shape_iou(cells, anchors).argmax(axis=1)
    fig, ax = new_figure()
    ax.scatter(cells[:, 0], cells[:, 1], c=owner, cmap="tab10", s=6, alpha=0.5, vmin=0, vmax=9)
    ax.scatter(anchors[:, 0], anchors[:, 1], c=np.arange(len(anchors)), cmap="tab10", marker="X", s=160,
               edgecolors="black", vmin=0, vmax=9)
    ax.set_xlabel(f"box width (grid cells of {input_size[0] // grid[0]} px)")
    ax.set_ylabel(f"box height (grid cells of {input_size[1] // grid[1]} px)")
    ax.set_title(f"{len(anchors)} IoU k-means anchors, mean best IoU {mean_best_iou(cells, anchors):.3f}")
    save_figure(fig, png_path)


ANCHORS_NAME, ANCHORS_PNG = "anchors.json", "anchors.png"


def dataset_anchors(cfg: Config, force: bool = False) -> np.ndarray:
    """The model's anchors: model.anchors when the config gives them, else IoU k-means on the train boxes (a stage
    writing build/<config>/anchors.json and anchors.png, skipped while the data and parameters are unchanged)."""
    from models.data import load_records
    from models.yolo_head import grid_size

    if cfg.model.anchors:
        return np.asarray(cfg.model.anchors, np.float32).reshape(-1, 2)
    input_size, grid = cfg.model.input_size, grid_size(cfg.values["model"])
    seed, k = cfg.train.seed, cfg.model.num_anchors
    out_json, out_png = cfg.build_dir / ANCHORS_NAME, cfg.build_dir / ANCHORS_PNG

    def work() -> dict[str, float]:
        wh = letterboxed_sizes(load_records(cfg, "train"), input_size)
        anchors = compute_anchors(wh, k, grid, input_size, seed)
        cells = wh * np.array(grid) / np.array(input_size)
        plot_anchors(wh, anchors, grid, input_size, out_png)
        coverage = mean_best_iou(cells, anchors)
        write_json(out_json, {"anchors": anchors.round(6).tolist(), "grid": list(grid), "input_size": list(input_size),
                              "boxes": int(len(wh)), "mean_best_iou": round(coverage, 4)})
        return {"boxes": int(len(wh)), "mean_best_iou": round(coverage, 4)}

    data_inputs = [p for p in (cfg.resolve_path(cfg.dataset.train),) if p is not None]
    run_stage(cfg.build_dir, "anchors", inputs=data_inputs, params={"k": k, "grid": grid, "seed": seed,
              "dataset": cfg.values["dataset"], "input_size": input_size}, outputs=[out_json, out_png], work=work,
              force=force)
    return np.asarray(json.loads(out_json.read_text())["anchors"], np.float32)
