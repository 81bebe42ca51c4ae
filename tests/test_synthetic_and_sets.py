"""The synthetic face generator and opening a data set through a config."""

from __future__ import annotations

import numpy as np
import pytest

from models.data import ProblemLog, load_records
from models.data.synthetic import SyntheticSpec, render_scene
from pipeline.config import load_config
from pipeline.errors import PipelineError


def test_scenes_are_seeded_and_boxes_are_tight():
    spec = SyntheticSpec(count=1, width=320, height=256)
    a = render_scene(np.random.default_rng(7), spec)
    b = render_scene(np.random.default_rng(7), spec)
    np.testing.assert_array_equal(a[0], b[0])
    sizes = []
    for seed in range(30):
        image, boxes = render_scene(np.random.default_rng(seed), spec)
        assert image.shape == (256, 320, 3) and 1 <= len(boxes) <= spec.max_faces
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 320).all() and (boxes[:, 3] <= 256).all()
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                iw = min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0])
                ih = min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1])
                assert iw <= 0 or ih <= 0
        sizes.extend(np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))
    assert min(sizes) < 45 and max(sizes) > 80  # varied sizes


def test_synthetic_config_generates_once_and_reads_as_voc(tmp_path, monkeypatch):
    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text("dataset:\n  format: synthetic\n  synthetic:\n    train_count: 6\n    val_count: 3\n")
    cfg = load_config(cfg_path)
    monkeypatch.setattr(type(cfg), "build_dir", property(lambda self: tmp_path / "build"))
    train = load_records(cfg, "train", ProblemLog(strict=True))
    assert len(train) == 6 and all(len(r.boxes) for r in train)
    stamp = train[0].image_path.stat().st_mtime_ns
    assert len(load_records(cfg, "val")) == 3
    assert load_records(cfg, "train")[0].image_path.stat().st_mtime_ns == stamp  # not regenerated


def test_empty_dataset_is_an_error(tmp_path):
    split = tmp_path / "train"
    (split / "images").mkdir(parents=True)
    (split / "annotations").mkdir()
    cfg_path = tmp_path / "empty.yaml"
    cfg_path.write_text("dataset:\n  format: voc\n  train: train\n")
    with pytest.raises(PipelineError, match="no usable images in the train split"):
        load_records(load_config(cfg_path), "train")


def test_unknown_format_and_missing_split(tmp_path):
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text("dataset:\n  format: coco\n  train: x\n")
    with pytest.raises(PipelineError, match="unknown format 'coco'"):
        load_records(load_config(cfg_path), "train")
    cfg_path.write_text("dataset:\n  format: voc\n")
    with pytest.raises(PipelineError, match="field 'dataset.val'"):
        load_records(load_config(cfg_path), "val")
