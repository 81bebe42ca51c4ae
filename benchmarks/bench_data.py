"""Input-pipeline throughput: images/s of the tf.data pipeline with augmentation, against plain letterboxing
(the baseline, measured in the same run) on the real face-mask set, or the synthetic set where it is absent."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from models.data import load_records
from models.pipeline import detection_dataset
from pipeline.config import REPO_ROOT, SHARED_DATA, load_config

BATCHES = 12
BATCH_SIZE = 16


def _images_per_second(records, augment: bool) -> float:
    dataset = detection_dataset(records, (320, 256), BATCH_SIZE, augment=augment, seed=1)
    iterator = iter(dataset.repeat())
    next(iterator)  # warm-up: thread pool and first reads
    started = time.perf_counter()
    for _ in range(BATCHES):
        next(iterator)
    return BATCHES * BATCH_SIZE / (time.perf_counter() - started)


def run(out_dir: Path) -> dict[str, Any]:
    real = (SHARED_DATA / "facemask").is_dir()
    cfg = load_config(REPO_ROOT / "configs" / ("facemask.yaml" if real else "demo.yaml"))
    records = load_records(cfg, "train")
    plain = _images_per_second(records, augment=False)
    augmented = _images_per_second(records, augment=True)
    return {"dataset": cfg.name, "batch_size": BATCH_SIZE, "batches": BATCHES,
            "plain_images_per_s": round(plain, 1), "augmented_images_per_s": round(augmented, 1),
            "augmented_over_plain": round(augmented / plain, 3)}
