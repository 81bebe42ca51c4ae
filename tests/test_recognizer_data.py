"""Recognizer data on bad input: identity folders, their crops, the identity split, and the config rules."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.data.problems import ProblemLog
from models.data.records import read_image
from models.recognizer.crop import CropPolicy, centred_box, crop_face
from models.recognizer.face_boxes import celeba_boxes
from models.recognizer.faces import (
    FaceItem,
    crop_faces,
    read_identity_faces,
    read_unlabelled_faces,
    split_identities,
)
from models.recognizer.settings import RecognizerSettings
from pipeline.config import load_config
from pipeline.errors import PipelineError
from tests.conftest import assert_refused, run_subprocess, shared_path, snapshot

POLICY = CropPolicy(32, 250)


def write_face(path: Path, seed: int, mode: str = "RGB", size: tuple[int, int] = (40, 48)) -> Path:
    """A random-noise image of `size` (width, height) in PIL `mode`, saved by suffix."""
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
    return path


def identity_root(root: Path, counts: dict[str, int]) -> Path:
    """`root`/<person>/<n>.png with counts[person] images each."""
    for index, (person, count) in enumerate(counts.items()):
        for n in range(count):
            write_face(root / person / f"{n}.png", seed=100 * index + n)
    return root


# --- identity folders -------------------------------------------------------------------------------------------


def test_an_identity_with_one_image_is_skipped_and_counted(tmp_path):
    root = identity_root(tmp_path / "faces", {"ann": 3, "bob": 1, "cy": 2})
    log = ProblemLog()
    items = read_identity_faces([root], log)
    assert sorted({item.identity for item in items}) == ["ann", "cy"]
    assert len(items) == 5
    assert log.counts == {"identity with too few images": 1}
    assert "bob" in log.examples["identity with too few images"]
    assert all(item.box is None for item in items)  # no boxes.csv: centred boxes
    with pytest.raises(PipelineError, match="bob"):
        read_identity_faces([root], ProblemLog(strict=True))


def test_files_that_are_not_images_do_not_count_as_images(tmp_path):
    root = identity_root(tmp_path / "faces", {"ann": 2, "bob": 1})
    (root / "bob" / "notes.txt").write_text("not a face")
    log = ProblemLog()
    assert {item.identity for item in read_identity_faces([root], log)} == {"ann"}
    assert log.counts["identity with too few images"] == 1


def test_an_unreadable_image_is_a_counted_skip_in_crop_faces(tmp_path):
    root = identity_root(tmp_path / "faces", {"ann": 2, "bob": 2})
    (root / "ann" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    log = ProblemLog()
    items = read_identity_faces([root], log)
    assert len(items) == 4 and log.total == 0  # reading the folders does not decode images
    crops, kept = crop_faces(items, POLICY, log)
    assert crops.shape == (3, 32, 32, 3) and crops.dtype == np.uint8
    assert [item.path.name for item in kept if item.identity == "ann"] == ["0.png"]
    assert log.counts == {"unreadable image": 1}
    assert "1.png" in log.examples["unreadable image"]
    with pytest.raises(PipelineError, match="1.png"):
        crop_faces(items, POLICY, ProblemLog(strict=True))


def test_nothing_readable_gives_an_empty_batch_of_the_policy_shape(tmp_path):
    bad = tmp_path / "x.jpg"
    bad.write_bytes(b"nope")
    crops, kept = crop_faces([FaceItem(bad, "x")], POLICY, ProblemLog())
    assert crops.shape == (0, 32, 32, 3) and kept == []


def test_a_grayscale_image_is_accepted_and_its_crop_has_three_equal_channels(tmp_path):
    gray_path = write_face(tmp_path / "faces" / "ann" / "0.png", seed=1, mode="L")
    write_face(tmp_path / "faces" / "ann" / "1.png", seed=2)
    log = ProblemLog()
    crops, kept = crop_faces(read_identity_faces([tmp_path / "faces"], log), POLICY, log)
    assert log.total == 0 and len(kept) == 2 and crops.shape == (2, 32, 32, 3)
    gray = np.asarray(Image.open(gray_path))
    assert gray.ndim == 2
    expected = crop_face(gray, centred_box(gray.shape[1], gray.shape[0], POLICY), POLICY)
    for channel in range(3):
        np.testing.assert_array_equal(crops[0][:, :, channel], expected)


def test_the_same_identity_under_two_roots_is_an_error_naming_both(tmp_path):
    first = identity_root(tmp_path / "celeba", {"ann": 2, "bob": 2})
    second = identity_root(tmp_path / "att", {"cy": 2, "bob": 2})
    with pytest.raises(PipelineError, match="'bob'") as caught:
        read_identity_faces([first, second], ProblemLog())
    assert str(first) in str(caught.value) and str(second / "bob") in str(caught.value)


def test_a_missing_root_is_an_error_naming_it(tmp_path):
    root = identity_root(tmp_path / "faces", {"ann": 2})
    with pytest.raises(PipelineError, match="identity folder not found") as caught:
        read_identity_faces([root, tmp_path / "nowhere"], ProblemLog())
    assert caught.value.path == str(tmp_path / "nowhere")


def test_celeba_boxes_reach_the_items_and_cut_the_real_faces(tmp_path):
    source = shared_path("celeba299")
    boxes = celeba_boxes(source)
    people = sorted({key.split("/")[0] for key in boxes})[:2]
    header, *rows = (source / "boxes.csv").read_text().splitlines()
    root = tmp_path / "celeba"
    kept_rows = [row for row in rows if row.split(",")[1] in people]
    for row in kept_rows:
        name, person = row.split(",")[:2]
        (root / person).mkdir(parents=True, exist_ok=True)
        shutil.copy(source / person / name, root / person / name)
    (root / "boxes.csv").write_text("\n".join([header, *kept_rows]) + "\n")
    log = ProblemLog()
    items = read_identity_faces([root], log)
    assert len(items) == len(kept_rows) and log.total == 0
    for item in items:
        assert item.box == boxes[f"{item.identity}/{item.path.name}"]
    crops, kept = crop_faces(items[:3], CropPolicy(64, 250), log)
    image = read_image(items[0].path)
    np.testing.assert_array_equal(crops[0], crop_face(image, items[0].box, CropPolicy(64, 250)))
    assert crops[0].std() > 10  # a real photo, not a flat patch


# --- identity split ---------------------------------------------------------------------------------------------


def split_items(identities: int = 20, images: int = 3) -> list[FaceItem]:
    return [FaceItem(Path(f"p{i:02d}/{n}.png"), f"p{i:02d}") for i in range(identities) for n in range(images)]


def names(items: list[FaceItem]) -> set[str]:
    return {item.identity for item in items}


def test_split_is_disjoint_and_deals_the_counts_asked():
    items = split_items()
    split = split_identities(items, val_count=4, stranger_count=5, seed=3)
    assert len(names(split.val)) == 4 and len(names(split.strangers)) == 5 and len(names(split.train)) == 11
    assert not names(split.train) & names(split.val)
    assert not names(split.train) & names(split.strangers)
    assert not names(split.val) & names(split.strangers)
    assert sorted(split.train + split.val + split.strangers, key=str) == sorted(items, key=str)  # every item once
    assert split.classes == sorted(names(split.train))


def test_excluded_identities_are_nowhere():
    items = split_items()
    excluded = ["p00", "p07", "p19"]
    split = split_identities(items, 4, 5, seed=3, excluded=excluded)
    dealt = names(split.train) | names(split.val) | names(split.strangers)
    assert not dealt & set(excluded)
    assert len(dealt) == 17 and len(names(split.train)) == 8


def test_split_is_seeded():
    items = split_items()
    first, again = split_identities(items, 4, 5, seed=11), split_identities(items, 4, 5, seed=11)
    assert first == again
    others = [split_identities(items, 4, 5, seed=seed) for seed in (12, 13, 14)]
    assert any(names(other.val) != names(first.val) for other in others)


def test_too_few_identities_names_val_identities():
    items = split_items(identities=6)
    with pytest.raises(PipelineError) as caught:
        split_identities(items, 3, 3, seed=1)
    assert caught.value.field == "recognizer.val_identities"
    assert "6 identities" in str(caught.value)
    with pytest.raises(PipelineError, match="recognizer.val_identities"):  # exclusions count against the total
        split_identities(split_items(identities=8), 3, 3, seed=1, excluded=["p00", "p01"])
    assert len(names(split_identities(items, 3, 2, seed=1).train)) == 1


# --- unlabelled faces (distillation only) ------------------------------------------------------------------------

def voc_split(root: Path, faces: list[tuple[str, tuple[int, int, int, int]]]) -> Path:
    """`root`/images/a.png (80x60) and `root`/annotations/a.xml with one object per (class name, box)."""
    write_face(root / "images" / "a.png", seed=5, size=(80, 60))
    objects = "".join(f"<object><name>{name}</name><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax>"
                      f"<ymax>{y2}</ymax></bndbox></object>" for name, (x1, y1, x2, y2) in faces)
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "a.xml").write_text(f"<annotation><filename>a.png</filename><size><width>80</width>"
                                                f"<height>60</height><depth>3</depth></size>{objects}</annotation>")
    return root


def test_unlabelled_faces_keep_every_class_name_and_skip_small_faces_counted(tmp_path):
    root = voc_split(tmp_path / "voc", [("with_mask", (2, 2, 40, 50)), ("anything", (45, 5, 75, 30)),
                                        ("without_mask", (50, 40, 60, 52))])
    log = ProblemLog()
    items = read_unlabelled_faces([root], 20, log)
    assert [(item.identity, item.box) for item in items] == [(None, (2.0, 2.0, 40.0, 50.0)),
                                                             (None, (45.0, 5.0, 75.0, 30.0))]
    assert log.counts["face too small"] == 1  # 12 px < 20
    assert read_unlabelled_faces([root], 40, ProblemLog()) == items[:1]
    crops, kept = crop_faces(items, POLICY, ProblemLog())
    assert crops.shape == (2, 32, 32, 3) and kept == items


def test_unlabelled_faces_from_a_missing_folder_are_an_error_naming_it(tmp_path):
    with pytest.raises(PipelineError) as caught:
        read_unlabelled_faces([tmp_path / "nowhere"], 20, ProblemLog())
    assert "nowhere" in str(caught.value)


# --- config rules -----------------------------------------------------------------------------------------------

GOOD = {"dataset": {"format": "folders", "train": "faces"},
        "model": {"task": "recognizer", "family": "mobilefacenet", "width": 0.125, "min_channels": 8,
                  "input_size": [128, 128]},
        "recognizer": {"loss": "cosface", "margin": 0.35, "scale": 30.0}}


def write_config(tmp_path: Path, section: str, key: str, value) -> Path:
    import yaml

    values = {name: dict(body) for name, body in GOOD.items()}
    values[section][key] = value
    path = tmp_path / "rec.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def settings_of(path: Path) -> RecognizerSettings:
    return RecognizerSettings.from_config(load_config(path))


def test_the_good_config_reads_into_settings(tmp_path):
    settings = settings_of(write_config(tmp_path, "recognizer", "crop_margin", 0.3))
    assert settings.policy == CropPolicy(128, 300)
    assert settings.roots == (tmp_path / "faces",)
    assert (settings.loss, settings.distill) == ("cosface", "none")


def test_unlabelled_faces_and_class_weight_0_need_a_teacher(tmp_path):
    with pytest.raises(PipelineError, match="without a teacher") as caught:
        settings_of(write_config(tmp_path, "recognizer", "unlabelled", ["voc/train"]))
    assert caught.value.field == "recognizer.unlabelled"
    with pytest.raises(PipelineError, match="leaves no loss") as caught:
        settings_of(write_config(tmp_path, "recognizer", "class_weight", 0.0))
    assert caught.value.field == "recognizer.class_weight"
    path = write_config(tmp_path, "recognizer", "unlabelled", ["voc/train"])
    settings = RecognizerSettings.from_config(load_config(path, {"recognizer.distill": "dlib",
                                                                 "recognizer.class_weight": 0.0}))
    assert settings.unlabelled == (tmp_path / "voc" / "train",) and settings.class_weight == 0.0
    assert settings.input_paths() == [tmp_path / "faces", tmp_path / "voc" / "train"]


@pytest.mark.parametrize(("section", "key", "value", "field"), [
    ("recognizer", "losss", "cosface", "recognizer.losss"),
    ("recognizer", "class_weight", -1.0, "recognizer.class_weight"),
    ("recognizer", "unlabelled_min_side", 2, "recognizer.unlabelled_min_side"),
    ("recognizer", "loss", "sphereface", "recognizer.loss"),
    ("recognizer", "distill", "dlb", "recognizer.distill"),
    ("dataset", "format", "voc", "dataset.format"),
    ("recognizer", "crop_margin", 2.5, "recognizer.crop_margin"),
    ("recognizer", "crop_margin", -0.1, "recognizer.crop_margin"),
])
def test_bad_recognizer_settings_are_refused_naming_the_field(tmp_path, section, key, value, field):
    with pytest.raises(PipelineError) as caught:
        settings_of(write_config(tmp_path, section, key, value))
    assert caught.value.field == field
    assert str(tmp_path / "rec.yaml") in str(caught.value)


def test_the_crop_policy_itself_refuses_a_margin_out_of_range():
    with pytest.raises(PipelineError, match="recognizer.crop_margin"):
        CropPolicy(128, 2001)
    with pytest.raises(PipelineError, match="recognizer.crop_margin"):
        CropPolicy(128, -1)


@pytest.mark.parametrize(("key", "value", "words"), [
    ("loss", "sphereface", ["recognizer.loss", "sphereface", "cosface"]),
    ("distil", "dlib", ["recognizer.distil", "unknown key"]),
])
def test_invoke_train_on_a_bad_recognizer_config_is_one_line(tmp_path, key, value, words):
    config = write_config(tmp_path, "recognizer", key, value)
    identity_root(tmp_path / "faces", {f"p{i}": 2 for i in range(8)})
    assert_refused(run_subprocess(["train", "--config", str(config)], tmp_path / "build"), "rec.yaml", *words)
    assert snapshot(tmp_path / "build") == {}
