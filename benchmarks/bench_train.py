"""Training throughput of the configured detector (configs/facemask.yaml; the synthetic demo set when the real data
is absent) and where the time goes: the input pipeline alone, the model step alone on one cached batch, and both
together as Keras fit runs them. Ratios are against the model-only step measured in the same run."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import tensorflow as tf

from models.anchors import dataset_anchors
from models.data import load_records
from models.train import compile_detector, train_dataset
from pipeline.config import REPO_ROOT, SHARED_DATA, load_config

STEPS = 12
WARMUP_STEPS = 3


def _config():
    name = "facemask" if (SHARED_DATA / "facemask").is_dir() else "demo"
    return load_config(REPO_ROOT / "configs" / f"{name}.yaml")


def _timed(iterator, steps: int, step_fn) -> float:
    for _ in range(WARMUP_STEPS):
        step_fn(next(iterator))
    start = time.perf_counter()
    for _ in range(steps):
        step_fn(next(iterator))
    return time.perf_counter() - start


def run(out_dir: Path) -> dict[str, Any]:
    """Images/s of the pipeline, of the model step and of both; the share of a fit step spent waiting for input."""
    cfg = _config()
    batch, input_size = cfg.train.batch_size, cfg.model.input_size
    records = load_records(cfg, "train")
    anchors = dataset_anchors(cfg)
    dataset = train_dataset(records, input_size, cfg.train).repeat()
    model = compile_detector(cfg, anchors, math.ceil(len(records) / batch))

    pipeline_s = _timed(iter(dataset), STEPS, lambda item: item)
    cached = next(iter(dataset))
    model_s = _timed(iter(tf.data.Dataset.from_tensors(cached).repeat()), STEPS,
                     lambda item: model.train_on_batch(*item))
    both_s = _timed(iter(dataset), STEPS, lambda item: model.train_on_batch(*item))
    images = STEPS * batch
    return {
        "config": cfg.name, "family": cfg.model.family, "width": cfg.model.width,
        "input_size": list(input_size), "batch_size": batch, "steps": STEPS, "cpu_count": os.cpu_count(),
        "pipeline_images_per_s": round(images / pipeline_s, 2),
        "model_step_images_per_s": round(images / model_s, 2),
        "train_images_per_s": round(images / both_s, 2),
        "pipeline_vs_model_speed": round(model_s / pipeline_s, 3),
        "train_vs_model_only": round(model_s / both_s, 3),
        "input_wait_share": round(max(0.0, both_s - model_s) / both_s, 3),
    }
