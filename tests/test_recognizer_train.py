"""The recognizer's train stage on a tiny identity set (real CelebA-299 faces), and the evaluation's LFW subset and
report formatting."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.data.records import read_image
from models.recognizer.crop import crop_face
from models.recognizer.face_boxes import LFW_FACE_BOX
from models.recognizer.settings import RecognizerSettings
from pipeline.config import load_config
from tests.conftest import IMAGES, tiny_recognizer_config

pytest.importorskip("tensorflow")

@pytest.mark.slow
def test_one_epoch_writes_the_model_log_and_curves_and_a_second_call_is_skipped(tmp_path, faces, monkeypatch):
    from models.recognizer.embedder import load_embedder
    from models.recognizer.train import train_recognizer_stage
    from models.train_callbacks import read_log

    monkeypatch.setenv("PIPELINE_BUILD_ROOT", str(tmp_path / "build"))
    cfg = load_config(tiny_recognizer_config(tmp_path, faces))
    stage = train_recognizer_stage(cfg)
    build = cfg.build_dir
    assert not stage.skipped
    for name in ("model.keras", "model_meta.json", "train_log.csv", "train_curves.png", "train_metrics.json"):
        assert (build / name).is_file(), name
    rows = read_log(build / "train_log.csv")
    assert len(rows) == 1 and 0.5 <= rows[0]["val_accuracy"] <= 1.0
    assert rows[0]["loss"] > 0 and rows[0]["distill_loss"] == 0.0  # no teacher: no distillation term
    metrics = stage.metrics
    assert (metrics["train_identities"], metrics["val_identities"], metrics["stranger_identities"]) == (6, 3, 3)
    assert metrics["train_images"] == 6 * IMAGES and metrics["epochs_run"] == 1
    assert metrics["best_val_accuracy"] == pytest.approx(rows[0]["val_accuracy"], abs=1e-4)
    assert metrics["budget"]["uint8_mib"] <= 1.0
    meta = json.loads((build / "model_meta.json").read_text())
    assert meta["task"] == "recognizer" and meta["trained_identities"] == 6 and meta["input_size"] == [128, 128]
    with Image.open(build / "train_curves.png") as png:
        assert png.width > 100 and png.height > 100

    model = load_embedder(build / "model.keras")
    assert tuple(model.output.shape) == (None, 128)
    assert np.all(np.isfinite(np.asarray(model(np.full((1, 128, 128, 3), 0.5, np.float32)))))

    before = (build / "model.keras").stat().st_mtime_ns
    again = train_recognizer_stage(load_config(tiny_recognizer_config(tmp_path, faces)))
    assert again.skipped and (build / "model.keras").stat().st_mtime_ns == before
    centred = train_recognizer_stage(load_config(tiny_recognizer_config(tmp_path, faces, centre_images=20)))
    assert centred.skipped  # the embedding centre is computed after training: turning it on keeps the model


@pytest.mark.slow
def test_distilling_from_dlib_gives_a_distill_loss(tmp_path, faces, monkeypatch):
    pytest.importorskip("dlib", reason="the teacher needs dlib (pip install dlib-bin)")
    pytest.importorskip("face_recognition_models", reason="the teacher needs pip install face_recognition_models")
    from models.recognizer.train import train_recognizer_stage
    from models.train_callbacks import read_log

    monkeypatch.setenv("PIPELINE_BUILD_ROOT", str(tmp_path / "build"))
    cfg = load_config(tiny_recognizer_config(tmp_path, faces, "distilled", distill="dlib"))
    stage = train_recognizer_stage(cfg)
    assert stage.metrics["teacher_targets"] == 6 * IMAGES
    assert read_log(cfg.build_dir / "train_log.csv")[0]["distill_loss"] > 0
    assert any((tmp_path / "build" / "teacher").glob("teacher-*.npz"))  # cached beside the config's build folder


@pytest.mark.slow
def test_pure_distillation_with_unlabelled_faces(tmp_path, faces, monkeypatch):
    """class_weight 0: the loss is the distillation term alone; unlabelled VOC faces add teacher-only crops."""
    pytest.importorskip("dlib", reason="the teacher needs dlib (pip install dlib-bin)")
    pytest.importorskip("face_recognition_models", reason="the teacher needs pip install face_recognition_models")
    from models.recognizer.train import train_recognizer_stage
    from models.train_callbacks import read_log

    voc = tmp_path / "voc"
    (voc / "annotations").mkdir(parents=True)
    (voc / "images").mkdir()
    sources = sorted(faces.glob("*/*.jpg"))[:3]
    for index, source in enumerate(sources):
        shutil.copy(source, voc / "images" / f"u{index}.jpg")
        side = 106 if index else 40
        (voc / "annotations" / f"u{index}.xml").write_text(
            f"<annotation><filename>u{index}.jpg</filename><object><name>face</name><bndbox><xmin>22</xmin>"
            f"<ymin>22</ymin><xmax>{side}</xmax><ymax>{side}</ymax></bndbox></object></annotation>")
    monkeypatch.setenv("PIPELINE_BUILD_ROOT", str(tmp_path / "build"))
    cfg = load_config(tiny_recognizer_config(tmp_path, faces, "pure", distill="dlib", class_weight=0.0,
                                             unlabelled=[str(voc)], unlabelled_min_side=48))
    metrics = train_recognizer_stage(cfg).metrics
    assert (metrics["train_images"], metrics["unlabelled_images"]) == (6 * IMAGES, 2)  # u0's 18 px face skipped
    assert metrics["teacher_targets"] == 6 * IMAGES + 2
    assert metrics["problems"]["skipped"]["face too small"] == 1
    row = read_log(cfg.build_dir / "train_log.csv")[0]
    assert row["class_loss"] > 0 and row["loss"] == pytest.approx(4.0 * row["distill_loss"], rel=1e-4)


# --- evaluation -------------------------------------------------------------------------------------------------

FOLDS, PER_KIND = 2, 3


@pytest.fixture
def tiny_lfw(tmp_path) -> Path:
    """An LFW-shaped folder: 2 folds of 3 matched + 3 mismatched pairs over 250x250 noise images."""
    people = {f"P{i}": 2 for i in range(6)}
    rng = np.random.default_rng(0)
    for person, count in people.items():
        (tmp_path / "lfw" / "images" / person).mkdir(parents=True)
        for n in range(1, count + 1):
            Image.fromarray(rng.integers(0, 256, (250, 250), dtype=np.uint8), "L").save(
                tmp_path / "lfw" / "images" / person / f"{person}_{n:04d}.jpg")
    lines = [f"{FOLDS}\t{PER_KIND}"]
    for fold in range(FOLDS):
        lines += [f"P{fold * 3 + k}\t1\t2" for k in range(PER_KIND)]
        lines += [f"P{k}\t1\tP{(k + 1 + fold) % 6}\t2" for k in range(PER_KIND)]
    (tmp_path / "lfw" / "pairs_dev.txt").write_text("\n".join(lines) + "\n")
    return tmp_path / "lfw"


def settings_for(tmp_path: Path) -> RecognizerSettings:
    return RecognizerSettings.from_config(load_config(tiny_recognizer_config(tmp_path, tmp_path / "unused")))


@pytest.mark.parametrize("per_fold", [0, 2, 4, 5, 100])
def test_lfw_set_takes_the_first_pairs_of_each_fold(tmp_path, tiny_lfw, per_fold):
    from models.recognizer.evaluate import lfw_set

    data = lfw_set(settings_for(tmp_path), tiny_lfw, per_fold)
    pairs = data.pairs
    expected_same = PER_KIND if per_fold == 0 else min(PER_KIND, per_fold // 2)
    expected_different = PER_KIND if per_fold == 0 else min(PER_KIND, per_fold - per_fold // 2)
    for fold in range(FOLDS):
        for same, expected in ((True, expected_same), (False, expected_different)):
            index = np.flatnonzero((pairs.fold == fold) & (pairs.same == same))
            assert list(data.used[index]) == [True] * expected + [False] * (len(index) - expected)
    for i in np.unique(np.concatenate([pairs.a[data.used], pairs.b[data.used]])):
        image = read_image(pairs.images[i])
        np.testing.assert_array_equal(data.crops[i], crop_face(image, LFW_FACE_BOX, settings_for(tmp_path).policy))


def test_format_recognizer_eval_lists_every_runtime_and_the_teacher():
    from models.recognizer.evaluate import format_recognizer_eval

    def lfw(accuracy: float, std: float, auc: float, tars: tuple[float, float]) -> dict:
        return {"accuracy_mean": accuracy, "accuracy_std": std, "roc_auc": auc,
                "tar_at_far": [{"far": 1e-3, "tar": tars[0]}, {"far": 1e-2, "tar": tars[1]}]}

    report = {"lfw": {"pairs": 400},
              "runtimes": {"keras": {"lfw": lfw(0.91234, 0.0123, 0.96541, (0.25, 0.5)),
                                     "classroom": {"enroll_1": {"top1_accuracy": 0.8, "tpir": 0.625},
                                                   "enroll_5": {"top1_accuracy": 0.95, "tpir": 0.875}}},
                           "kmodel": {"missing": "/b/model.kmodel", "hint": "run `invoke compile`"}},
              "teacher": {"lfw": lfw(0.981, 0.0034, 0.997, (0.8, 0.9))}}
    text = format_recognizer_eval(report)
    lines = text.splitlines()
    assert "400 pairs" in lines[0]
    keras_line = next(line for line in lines if line.strip().startswith("keras"))
    assert "accuracy 0.9123 +- 0.0123" in keras_line and "AUC 0.9654" in keras_line
    assert "TAR@FAR 0.001 0.250" in keras_line and "TAR@FAR 0.01 0.500" in keras_line
    assert any("enroll_1: top-1 0.800, TPIR@FPIR 1% 0.625" in line for line in lines)
    assert any("enroll_5: top-1 0.950, TPIR@FPIR 1% 0.875" in line for line in lines)
    assert any(line.strip().startswith("kmodel") and "missing (/b/model.kmodel)" in line for line in lines)
    teacher_line = next(line for line in lines if line.strip().startswith("teacher"))
    assert "accuracy 0.9810 +- 0.0034" in teacher_line and "TAR@FAR 0.01 0.900" in teacher_line
    assert text.index("keras") < text.index("kmodel") < text.index("teacher")
