"""Hostile data sets: one path policy for the files an annotation names, counted skips instead of an aborted split,
clear errors for files that cannot be text; a fuzz of VOC fields, YOLO label bytes and WIDER lines."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from models.data.classmap import ClassMap
from models.data.problems import ProblemLog
from models.data.sets import ensure_synthetic
from models.data.synthetic import voc_xml
from models.data.voc import read_voc
from models.data.wider import read_wider
from models.data.yolo_txt import read_class_names, read_yolo
from pipeline.config import load_config
from pipeline.errors import PipelineError
from tests.conftest import assert_refused, run_in_process, run_subprocess, snapshot

FACE = ClassMap(["face"])
BOX = np.array([[8, 8, 40, 36]], np.float32)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height and that holds no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + \
        chunk(b"IEND", b"")


def make_voc(root: Path, count: int = 3) -> Path:
    """A small valid VOC split: `count` 64x48 images with one face box each."""
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    for index in range(count):
        Image.fromarray(np.full((48, 64, 3), 40 * index, np.uint8)).save(root / "images" / f"ok{index}.png")
        (root / "annotations" / f"ok{index}.xml").write_text(voc_xml(f"ok{index}.png", 64, 48, BOX))
    return root


def add_hostile_voc_items(split: Path) -> dict[str, int]:
    """Add one item of every kind that must be skipped and counted; returns the expected counts."""
    outside = split.parent / "outside.png"
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(outside)
    ann, images = split / "annotations", split / "images"
    (ann / "abs.xml").write_text(voc_xml(str(outside.resolve()), 64, 48, BOX))
    (ann / "climb.xml").write_text(voc_xml("../../outside.png", 64, 48, BOX))
    for name, size in (("nan", "nan"), ("huge", "1e999")):
        Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(images / f"{name}.png")
        (ann / f"{name}.xml").write_text(voc_xml(f"{name}.png", 64, 48, BOX).replace("<width>64<", f"<width>{size}<"))
    (ann / "folder.xml").mkdir()
    (images / "bomb.png").write_bytes(png_header_only(20000, 20000))
    (ann / "bomb.xml").write_text(voc_xml("bomb.png", 20000, 20000, BOX))
    return {"path outside data set": 2, "bad annotation": 3, "unreadable image": 1}


def test_voc_hostile_items_are_counted_not_fatal(tmp_path):
    split = make_voc(tmp_path / "set" / "train")
    expected = add_hostile_voc_items(split)
    log = ProblemLog()
    records = read_voc(split, FACE, log)
    assert sorted(r.image_path.name for r in records) == ["ok0.png", "ok1.png", "ok2.png"]
    assert dict(log.counts) == expected
    assert "leaves the data set folder" in log.examples["path outside data set"]
    assert "20000" in log.examples["unreadable image"] or "too large" in log.examples["unreadable image"]
    with pytest.raises(PipelineError, match=r"abs\.xml: field 'filename'"):
        read_voc(split, FACE, ProblemLog(strict=True))


def test_voc_paths_outside_root_only_when_configured(tmp_path):
    split = make_voc(tmp_path / "set" / "train", count=1)
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(tmp_path / "set" / "shared.png")
    (split / "annotations" / "shared.xml").write_text(voc_xml("../../shared.png", 64, 48, BOX))
    assert len(read_voc(split, FACE, ProblemLog())) == 1
    allowed = read_voc(split, FACE, ProblemLog(strict=True), allow_outside=True)
    assert sorted(r.image_path.name for r in allowed) == ["ok0.png", "shared.png"]


def _voc_config(tmp_path: Path, extra: str = "") -> Path:
    make_voc(tmp_path / "set" / "train")
    make_voc(tmp_path / "set" / "val", count=2)
    add_hostile_voc_items(tmp_path / "set" / "train")
    config = tmp_path / "hostile.yaml"
    config.write_text(f"dataset:\n  format: voc\n  train: set/train\n  val: set/val\n{extra}")
    return config


def test_invoke_data_counts_hostile_items_and_strict_stops_with_one_line(tmp_path, monkeypatch):
    config = _voc_config(tmp_path)
    build = tmp_path / "build"
    counted = run_in_process(["data", "--config", str(config)], build, monkeypatch)
    assert counted.code == 0 and "train: 3 images, 3 boxes, 6 skipped" in counted.stdout, counted.stderr
    before = snapshot(build)
    strict = run_in_process(["data", "--config", str(config), "--strict"], build, monkeypatch)
    assert_refused(strict, "field 'filename'", "leaves the data set folder")
    assert snapshot(build) == before


def test_yolo_non_utf8_and_folder_labels_are_counted(tmp_path):
    split = tmp_path / "yolo" / "train"
    (split / "images").mkdir(parents=True)
    (split / "labels").mkdir()
    for name in ("good", "latin", "folder"):
        Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(split / "images" / f"{name}.png")
    (split / "labels" / "good.txt").write_text("0 0.5 0.5 0.25 0.25\n")
    (split / "labels" / "latin.txt").write_bytes(b"0 0.5 0.5 0.25 0.25 # \xe9\n")
    (split / "labels" / "folder.txt").mkdir()
    classes = tmp_path / "yolo" / "classes.txt"
    classes.write_text("face\n")
    log = ProblemLog()
    records = read_yolo(split, classes, FACE, log)
    assert [r.image_path.name for r in records] == ["good.png"] and log.counts["bad annotation"] == 2
    assert "not UTF-8" in log.examples["bad annotation"] or "folder" in log.examples["bad annotation"]
    classes.write_bytes(b"f\xe1ce\n")
    with pytest.raises(PipelineError, match=r"classes\.txt: not UTF-8 text"):
        read_class_names(classes)


def _wider(tmp_path: Path, text: bytes) -> tuple[Path, Path]:
    root = tmp_path / "wider_images"
    (root / "0--Parade").mkdir(parents=True)
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(root / "0--Parade" / "a.png")
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(tmp_path / "outside.png")
    gt = tmp_path / "wider_face_train_bbx_gt.txt"
    gt.write_bytes(text)
    return gt, root


def test_wider_negative_count_non_utf8_and_climbing_paths(tmp_path):
    gt, root = _wider(tmp_path, b"0--Parade/a.png\n-2\n")
    for strict in (False, True):
        with pytest.raises(PipelineError, match=r"bbx_gt\.txt: field 'line 2'.*whole number >= 0"):
            read_wider(gt, root, FACE, ProblemLog(strict=strict))
    gt.write_bytes(b"0--Parade/a.png\n1\n1 1 10 10 0 0 0 0 0 0\n# caf\xe9\n")
    with pytest.raises(PipelineError, match="not UTF-8 text"):
        read_wider(gt, root, FACE, ProblemLog())
    gt.write_bytes(b"0--Parade/a.png\n1\n1 1 10 10 0 0 0 0 0 0\n../outside.png\n1\n1 1 10 10 0 0 0 0 0 0\n")
    log = ProblemLog()
    assert [r.image_path.name for r in read_wider(gt, root, FACE, log)] == ["a.png"]
    assert log.counts["path outside data set"] == 1
    with pytest.raises(PipelineError, match="leaves the data set folder"):
        read_wider(gt, root, FACE, ProblemLog(strict=True))


def test_invoke_data_on_a_negative_wider_count_is_one_line(tmp_path):
    gt, root = _wider(tmp_path, b"0--Parade/a.png\n-2\n")
    config = tmp_path / "w.yaml"
    config.write_text(f"dataset:\n  format: wider\n  train: {gt}\n  val: {gt}\n  images_root: {root}\n")
    assert_refused(run_subprocess(["data", "--config", str(config), "--strict"], tmp_path / "build"),
                   "bbx_gt.txt", "line 2")
    assert snapshot(tmp_path / "build") == {}


def test_a_smaller_synthetic_count_does_not_keep_the_old_images(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_BUILD_ROOT", str(tmp_path / "build"))
    config = tmp_path / "syn.yaml"
    config.write_text("dataset:\n  synthetic: {train_count: 5, val_count: 2, size: [96, 96]}\n")
    out = ensure_synthetic(load_config(config), "train")
    assert len(list((out / "images").iterdir())) == 5
    out = ensure_synthetic(load_config(config, {"dataset.synthetic.train_count": 2}), "train")
    assert len(list((out / "images").iterdir())) == 2 and len(list((out / "annotations").iterdir())) == 2


NUMBERS = st.one_of(st.sampled_from(["nan", "inf", "-inf", "1e999", "-1", "0", "", " ", "abc", "64", "48", "10"]),
                    st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers(-10**20, 10**20).map(str))
NAMES = st.one_of(st.sampled_from(["ok0.png", "../ok0.png", "/etc/hostname", "C:\\x.png", "", "..", "images",
                                   "ok0.png/..", "./ok0.png"]), st.text(max_size=10))


VOC_TEMPLATE = """<annotation><filename>{filename}</filename>
<size><width>{width}</width><height>{height}</height><depth>3</depth></size>
<object><name>face</name><bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox>
</object></annotation>
"""


def _fuzz_voc(tmp_path_factory, filename, fields):
    split = make_voc(tmp_path_factory.mktemp("voc") / "train", count=1)
    values = dict(zip(("width", "height", "xmin", "ymin", "xmax", "ymax"), map(escape, fields), strict=True))
    xml = VOC_TEMPLATE.format(filename=escape(filename), **values)
    (split / "annotations" / "fuzz.xml").write_text(xml)
    log = ProblemLog()
    records = read_voc(split, FACE, log)  # never anything but records and counted skips
    assert 1 <= len(records) <= 2 and len(records) + log.total == 2
    for record in records:
        assert record.image_path.resolve().is_relative_to((split / "images").resolve())
        assert np.isfinite(record.boxes).all()
        assert (record.boxes[:, 2] <= record.width).all() and (record.boxes[:, 3] <= record.height).all()
    try:
        read_voc(split, FACE, ProblemLog(strict=True))
    except PipelineError as exc:
        assert "fuzz.xml" in str(exc) or "ok0" in str(exc) or "image" in str(exc)


FUZZ = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@settings(max_examples=40, **FUZZ)
@given(NAMES, st.tuples(*[NUMBERS] * 6))
def test_fuzz_voc_fields(tmp_path_factory, filename, fields):
    _fuzz_voc(tmp_path_factory, filename, fields)


@pytest.mark.slow
@settings(max_examples=1500, **FUZZ)
@given(NAMES, st.tuples(*[NUMBERS] * 6))
def test_fuzz_voc_fields_long(tmp_path_factory, filename, fields):
    _fuzz_voc(tmp_path_factory, filename, fields)


def _fuzz_text_files(tmp_path_factory, label: bytes, wider: bytes):
    base = tmp_path_factory.mktemp("txt")
    split = base / "train"
    (split / "images").mkdir(parents=True)
    (split / "labels").mkdir()
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(split / "images" / "a.png")
    (split / "labels" / "a.txt").write_bytes(label)
    (base / "classes.txt").write_text("face\n")
    log = ProblemLog()
    records = read_yolo(split, base / "classes.txt", FACE, log)
    assert len(records) + log.total == 1
    gt = base / "gt.txt"
    gt.write_bytes(wider)
    try:
        read_wider(gt, split / "images", FACE, ProblemLog())
    except PipelineError as exc:
        assert "gt.txt" in str(exc)


TEXT_BYTES = st.one_of(st.binary(max_size=60), st.text(max_size=60).map(str.encode),
                       st.lists(st.sampled_from(["0", "1", "-2", "0.5", "nan", "1e999", "a.png", "../a.png", "\n",
                                                 " ", "\xff"]), max_size=14).map(lambda p: " ".join(p).encode()))


@settings(max_examples=40, **FUZZ)
@given(TEXT_BYTES, TEXT_BYTES)
def test_fuzz_yolo_labels_and_wider_files(tmp_path_factory, label, wider):
    _fuzz_text_files(tmp_path_factory, label, wider)


@pytest.mark.slow
@settings(max_examples=1500, **FUZZ)
@given(TEXT_BYTES, TEXT_BYTES)
def test_fuzz_yolo_labels_and_wider_files_long(tmp_path_factory, label, wider):
    _fuzz_text_files(tmp_path_factory, label, wider)
