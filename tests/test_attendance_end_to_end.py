"""The classroom attendance path on a tiny config, as users run it: `invoke build flash --board sim` on an
attendance config trains a small face detector (on the classroom photos, every student merged into `face`) and a
small recognizer (on CelebA-299 crops of people who are not the enrolled ones), compiles both, builds them with the
attendance app into real RT-Thread for QEMU, enrolls two students on the host, flashes firmware + kmodels + database
through the ISP into the simulated K210, boots it and names a session's photos; every frame's names must equal the
Python twin's decisions on the same bytes."""

from __future__ import annotations

import csv
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from tests.conftest import rtthread_root, shared_path
from tests.test_end_to_end import invoke, needs_tools

pytest.importorskip("tensorflow")
STUDENTS, TRAIN_PHOTOS, VAL_PHOTOS = 2, 3, 2
RECOGNIZER_IDS, RECOGNIZER_IMAGES = 12, 4


def classroom_subset(root: Path) -> list[str]:
    """The first STUDENTS people of the classroom set, TRAIN_PHOTOS / VAL_PHOTOS of each, as a VOC copy."""
    source = shared_path("classroom")
    names: list[str] = []
    for split, count in (("train", TRAIN_PHOTOS), ("val", VAL_PHOTOS)):
        taken: dict[str, int] = {}
        (root / split / "images").mkdir(parents=True)
        (root / split / "annotations").mkdir(parents=True)
        for xml in sorted((source / split / "annotations").glob("*.xml")):
            tree = ET.parse(xml).getroot()
            name = tree.find("object/name").text
            if (name not in names and len(names) >= STUDENTS) or taken.get(name, 0) >= count:
                continue
            names += [name] if name not in names else []
            taken[name] = taken.get(name, 0) + 1
            shutil.copy(xml, root / split / "annotations")
            shutil.copy(source / split / "images" / tree.find("filename").text, root / split / "images")
    return names


def identity_subset(root: Path) -> Path:
    """RECOGNIZER_IDS CelebA-299 identities (none of them a classroom student) x RECOGNIZER_IMAGES crops."""
    source = shared_path("celeba299")
    header, *rows = (source / "boxes.csv").read_text().splitlines()
    students = {line.strip()[2:] for line in shared_path("classroom", "classes.txt").read_text().split()}
    by_person: dict[str, list[str]] = {}
    for row in rows:
        by_person.setdefault(row.split(",")[1], []).append(row)
    people = [p for p in sorted(by_person) if len(by_person[p]) >= RECOGNIZER_IMAGES and p not in students]
    kept = []
    for person in people[:RECOGNIZER_IDS]:
        (root / person).mkdir(parents=True)
        for row in by_person[person][:RECOGNIZER_IMAGES]:
            shutil.copy(source / person / row.split(",")[0], root / person)
            kept.append(row)
    (root / "boxes.csv").write_text("\n".join([header, *kept]) + "\n")
    return root


def write_configs(root: Path, names: list[str]) -> Path:
    classroom = shared_path("classroom")
    detector = {
        "dataset": {"format": "voc", "train": str(classroom / "train"), "val": str(classroom / "val"),
                    "classes": ["face"], "class_map": {line.strip(): "face" for line in
                                                       (classroom / "classes.txt").read_text().split()}},
        "model": {"family": "tiny", "width": 0.125, "input_size": [224, 224], "num_anchors": 3},
        "train": {"epochs": 20, "batch_size": 16, "patience": 20, "quiet": True},
        "quantize": {"calib_images": 32}, "export": {"held_images": 2}}
    recognizer = {
        "dataset": {"format": "folders", "train": str(identity_subset(root / "faces"))},
        "model": {"task": "recognizer", "family": "mobilefacenet", "width": 0.125, "min_channels": 8,
                  "input_size": [112, 112]},
        "recognizer": {"loss": "cosface", "margin": 0.35, "scale": 30.0, "val_identities": 3,
                       "stranger_identities": 3},
        "train": {"epochs": 1, "batch_size": 8, "warmup_epochs": 0, "quiet": True},
        "quantize": {"calib_images": 16}, "export": {"held_images": 2}}
    attendance = {
        "dataset": {"format": "voc", "train": str(root / "classroom" / "train"),
                    "val": str(root / "classroom" / "val"), "classes": names},
        "model": {"task": "attendance"},
        "attendance": {"detector": "tiny_detector.yaml", "recognizer": "tiny_recognizer.yaml", "strangers": 2,
                       "capacity": 16, "max_faces": 2, "threshold": 0.5, "test_hooks": True},
        "deploy": {"score_threshold": 0.3}}
    for name, values in (("tiny_detector", detector), ("tiny_recognizer", recognizer), ("attendance", attendance)):
        (root / f"{name}.yaml").write_text(yaml.safe_dump(values))
    return root / "attendance.yaml"


@pytest.fixture(scope="module")
def classroom_run(tmp_path_factory):
    rtthread_root()
    root = tmp_path_factory.mktemp("attendance_e2e")
    names = classroom_subset(root / "classroom")
    config = write_configs(root, names)
    done = invoke(["build", "flash", "--board", "sim", "--config", str(config)], root / "build", timeout=1800)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return root, config, names, done


@needs_tools
def test_the_simulated_board_names_the_session_as_the_python_twin_decides(classroom_run):
    root, _, names, done = classroom_run
    out = root / "build" / "attendance" / "attendance"
    session = json.loads((out / "session.json").read_text())
    report = session["report"]
    assert report["board"] == "sim"
    assert report["frames"] == STUDENTS * VAL_PHOTOS + 2 and report["enrolled_photos"] == STUDENTS * VAL_PHOTOS
    assert report["agree_with_python"] == report["frames"]  # every frame: the same faces, crops and names
    assert report["faces"] > 0, "the tiny detector found no face in the session"
    assert "the firmware agrees with the Python twin on" in done.stdout
    with open(out / "attendance.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert all(row["name"] in names for row in rows)
    assert (out / "contact_sheet.png").stat().st_size > 1000


@needs_tools
def test_the_flashed_database_holds_the_enrolled_students(classroom_run):
    root, config, names, _ = classroom_run
    build = root / "build" / "attendance"
    listed = invoke(["enroll", "--list", "--config", str(config), "--flash-image", str(build / "sim_flash.img")],
                    root / "build")
    assert listed.returncode == 0, listed.stderr
    enrolled = json.loads((build / "manifest.json").read_text())["stages"]["enroll"]["metrics"]
    assert enrolled["people"] >= 1
    for name in names[:enrolled["people"]]:
        assert f"  {name}: " in listed.stdout
    assert "slot 0: valid (sequence 1)" in listed.stdout
