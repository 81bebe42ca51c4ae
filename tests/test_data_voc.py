"""Pascal VOC reader on the real face-mask and classroom sets, and on malformed inputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.data.classmap import ClassMap
from models.data.problems import ProblemLog
from models.data.voc import read_voc
from models.data.yolo_txt import read_class_names
from pipeline.errors import PipelineError
from tests.conftest import shared_path

MASK_MERGE = ClassMap(["face"], {"with_mask": "face", "without_mask": "face", "mask_weared_incorrect": "face"})


def test_facemask_train_merges_three_classes_into_face():
    log = ProblemLog()
    records = read_voc(shared_path("facemask", "train"), MASK_MERGE, log)
    assert len(records) == 597
    assert sum(len(r.boxes) for r in records) == 2984  # the README's count
    assert all((r.labels == 0).all() for r in records)
    assert log.total == 0
    assert log.repairs["box clipped to image edge"] == 9  # boxes one pixel past the right/bottom edge
    for r in records:
        assert (r.boxes[:, 2] > r.boxes[:, 0]).all() and (r.boxes[:, 3] > r.boxes[:, 1]).all()
        assert (r.boxes[:, 2] <= r.width).all() and (r.boxes[:, 3] <= r.height).all()


def test_facemask_three_classes_kept_apart():
    classes = ClassMap(["with_mask", "without_mask", "mask_weared_incorrect"])
    records = read_voc(shared_path("facemask", "val"), classes, ProblemLog())
    counts = np.bincount(np.concatenate([r.labels for r in records]), minlength=3)
    assert counts.tolist() == [301, 94, 21]


def test_classroom_identities_one_box_each():
    names = read_class_names(shared_path("classroom", "classes.txt"))
    records = read_voc(shared_path("classroom", "val"), ClassMap(names), ProblemLog(strict=True))
    assert len(records) == 60
    assert all(len(r.boxes) == 1 for r in records)
    assert np.bincount([int(r.labels[0]) for r in records]).tolist() == [6] * 10
    image, boxes, labels = records[0].load()
    assert image.dtype == np.uint8 and image.shape == (records[0].height, records[0].width, 3)
    assert boxes.dtype == np.float32 and boxes.shape == (1, 4) and labels.shape == (1,)


def _voc_copy(tmp_path: Path, count: int = 4) -> Path:
    src = shared_path("facemask", "val")
    dst = tmp_path / "split"
    (dst / "images").mkdir(parents=True)
    (dst / "annotations").mkdir()
    for xml in sorted((src / "annotations").glob("*.xml"))[:count]:
        shutil.copy(xml, dst / "annotations" / xml.name)
        shutil.copy(src / "images" / f"{xml.stem}.jpg", dst / "images" / f"{xml.stem}.jpg")
    return dst


def _first(split: Path, suffix: str) -> Path:
    return sorted((split / ("annotations" if suffix == ".xml" else "images")).glob(f"*{suffix}"))[0]


def _edit_xml(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize("damage, kind, words", [
    ("truncate_image", "unreadable image", "truncated"),
    ("drop_xmax", "bad annotation", "xmax"),
    ("box_outside", "box outside image", "outside"),
    ("x2_le_x1", "bad box", "x2<=x1"),
    ("unknown_class", "unknown class", "not in the class map"),
    ("bad_xml", "bad annotation", "well-formed"),
])
def test_malformed_voc_is_skipped_and_counted_or_fails_in_strict_mode(tmp_path, damage, kind, words):
    split = _voc_copy(tmp_path)
    xml = _first(split, ".xml")
    if damage == "truncate_image":
        image = split / "images" / f"{xml.stem}.jpg"
        image.write_bytes(image.read_bytes()[: image.stat().st_size // 3])
    elif damage == "drop_xmax":
        text = xml.read_text()
        start = text.index("<xmax>")
        xml.write_text(text[:start] + text[text.index("</xmax>") + 7:])
    elif damage == "box_outside":
        _edit_xml(xml, "<xmax>", "<xmax>9")
    elif damage == "x2_le_x1":
        text = xml.read_text()
        xmin = text[text.index("<xmin>") + 6: text.index("</xmin>")]
        _edit_xml(xml, text[text.index("<xmax>"): text.index("</xmax>")], f"<xmax>{xmin}")
    elif damage == "unknown_class":
        _edit_xml(xml, "<name>", "<name>cat_")
    elif damage == "bad_xml":
        xml.write_text(xml.read_text()[:50])
    log = ProblemLog()
    records = read_voc(split, MASK_MERGE, log)
    assert len(records) == 3
    assert log.counts[kind] == 1
    assert xml.stem in log.examples[kind] and words in log.examples[kind]
    with pytest.raises(PipelineError) as info:
        read_voc(split, MASK_MERGE, ProblemLog(strict=True))
    assert xml.stem in str(info.value) and words in str(info.value)


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(PipelineError, match="subfolder named one of annotations"):
        (tmp_path / "images").mkdir()
        read_voc(tmp_path, MASK_MERGE, ProblemLog())


def test_png_images_and_jpegimages_layout(tmp_path):
    split = tmp_path / "voc"
    (split / "JPEGImages").mkdir(parents=True)
    (split / "Annotations").mkdir()
    Image.new("RGB", (64, 48), (10, 20, 30)).save(split / "JPEGImages" / "a.png")
    (split / "Annotations" / "a.xml").write_text(
        "<annotation><filename>a.png</filename><size><width>64</width><height>48</height></size>"
        "<object><name>face</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>30</xmax><ymax>40</ymax></bndbox>"
        "</object></annotation>")
    (record,) = read_voc(split, ClassMap(["face"]), ProblemLog(strict=True))
    assert record.boxes.tolist() == [[1, 2, 30, 40]] and (record.width, record.height) == (64, 48)
