"""YOLO txt, WIDER FACE and identity-folder readers, built from the real classroom / AT&T / CelebA files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from models.data.classmap import ClassMap
from models.data.folders import read_identity_folders
from models.data.problems import ProblemLog
from models.data.voc import read_voc
from models.data.wider import read_wider
from models.data.yolo_txt import read_class_names, read_yolo
from pipeline.errors import PipelineError
from tests.conftest import shared_path


@pytest.fixture(scope="module")
def classroom_val():
    names = read_class_names(shared_path("classroom", "classes.txt"))
    return names, read_voc(shared_path("classroom", "val"), ClassMap(names), ProblemLog(strict=True))[:12]


def _write_yolo(tmp_path: Path, names: list[str], records) -> Path:
    split = tmp_path / "yolo"
    (split / "images").mkdir(parents=True)
    (split / "labels").mkdir()
    for r in records:
        shutil.copy(r.image_path, split / "images" / r.image_path.name)
        lines = []
        for (x1, y1, x2, y2), label in zip(r.boxes, r.labels, strict=True):
            cx, cy = (x1 + x2) / 2 / r.width, (y1 + y2) / 2 / r.height
            lines.append(f"{label} {cx:.6f} {cy:.6f} {(x2 - x1) / r.width:.6f} {(y2 - y1) / r.height:.6f}")
        (split / "labels" / f"{r.image_path.stem}.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "classes.txt").write_text("\n".join(names) + "\n")
    return split


def test_yolo_txt_matches_the_voc_boxes(tmp_path, classroom_val):
    names, records = classroom_val
    split = _write_yolo(tmp_path, names, records)
    got = read_yolo(split, tmp_path / "classes.txt", ClassMap(names), ProblemLog(strict=True))
    by_name = {r.image_path.name: r for r in got}
    for r in records:
        other = by_name[r.image_path.name]
        np.testing.assert_allclose(other.boxes, r.boxes, atol=0.01)
        assert other.labels.tolist() == r.labels.tolist()


def test_yolo_txt_merge_and_malformed_lines(tmp_path, classroom_val):
    names, records = classroom_val
    split = _write_yolo(tmp_path, names, records)
    merged = read_yolo(split, tmp_path / "classes.txt", ClassMap(["face"], {n: "face" for n in names}), ProblemLog())
    assert all((r.labels == 0).all() for r in merged)
    bad = split / "labels" / f"{records[0].image_path.stem}.txt"
    bad.write_text("3 0.5 0.5 0.2\n")
    log = ProblemLog()
    assert len(read_yolo(split, tmp_path / "classes.txt", ClassMap(names), log)) == len(records) - 1
    assert log.counts["bad annotation"] == 1 and "line 1" in log.examples["bad annotation"]
    bad.write_text("42 0.5 0.5 0.2 0.2\n")
    with pytest.raises(PipelineError, match="class 42 is not in the class map"):
        read_yolo(split, tmp_path / "classes.txt", ClassMap(names), ProblemLog(strict=True))


def test_wider_face_format(tmp_path, classroom_val):
    _, records = classroom_val
    images = tmp_path / "images" / "0--Parade"
    images.mkdir(parents=True)
    lines = []
    for r in records[:5]:
        shutil.copy(r.image_path, images / r.image_path.name)
        lines += [f"0--Parade/{r.image_path.name}", str(len(r.boxes))]
        lines += [f"{x1:g} {y1:g} {x2 - x1:g} {y2 - y1:g} 0 0 0 0 0 0" for x1, y1, x2, y2 in r.boxes]
    shutil.copy(records[5].image_path, images / "empty.jpg")
    lines += ["0--Parade/empty.jpg", "0", "0 0 0 0 0 0 0 0 0 0"]
    gt = tmp_path / "wider_face_val_bbx_gt.txt"
    gt.write_text("\n".join(lines) + "\n")
    got = read_wider(gt, tmp_path / "images", ClassMap(["face"]), ProblemLog(strict=True))
    assert len(got) == 6 and len(got[-1].boxes) == 0
    for r, other in zip(records[:5], got[:5], strict=False):
        np.testing.assert_allclose(other.boxes, r.boxes)
    gt.write_text("\n".join(lines[:3]) + "\n0--Parade/x.jpg\nnot-a-number\n")
    with pytest.raises(PipelineError, match="line 5"):
        read_wider(gt, tmp_path / "images", ClassMap(["face"]), ProblemLog())


def test_identity_folders_att_and_celeba():
    att = read_identity_folders(shared_path("att"), ProblemLog(strict=True))
    assert len(att) == 400 and len({r.identity for r in att}) == 40
    image, identity = att[0].load()
    assert image.shape == (112, 92, 3) and identity.startswith("s")
    celeb = read_identity_folders(shared_path("celeba299"), ProblemLog(strict=True))
    assert len(celeb) == 6258 and len({r.identity for r in celeb}) == 299


def test_identity_folder_skips_unreadable(tmp_path):
    person = tmp_path / "alice"
    person.mkdir()
    shutil.copy(shared_path("att", "s1", "1.png"), person / "1.png")
    (person / "2.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    log = ProblemLog()
    assert len(read_identity_folders(tmp_path, log)) == 1
    assert log.counts["unreadable image"] == 1 and "2.png" in log.examples["unreadable image"]


def test_class_map_refuses_targets_outside_classes():
    with pytest.raises(ValueError, match="not in classes"):
        ClassMap(["face"], {"with_mask": "mask"})
    assert ClassMap(["face"], {"with_mask": "face"}).index("with_mask") == 0
    assert ClassMap(["face"]).index("dog") is None
