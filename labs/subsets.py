"""Small copies of the real data sets for the fast path of lab 8: a few students of the classroom set and a few
CelebA-299 identities who are not students (the recognizer must never train on the people it will enroll)."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from pipeline.config import SHARED_DATA
from pipeline.errors import PipelineError

STUDENTS, TRAIN_PHOTOS, VAL_PHOTOS = 2, 3, 2
RECOGNIZER_IDS, RECOGNIZER_IMAGES = 12, 4


def shared(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        raise PipelineError("the real data set is missing", path=path,
                            expected="../shared/data beside the repository (see its README)")
    return path


def classroom_subset(root: Path) -> list[str]:
    """The first STUDENTS people of the classroom set, TRAIN_PHOTOS / VAL_PHOTOS photos of each, as a VOC copy."""
    source = shared("classroom")
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
    source = shared("celeba299")
    header, *rows = (source / "boxes.csv").read_text().splitlines()
    students = {line.strip()[2:] for line in shared("classroom", "classes.txt").read_text().split()}
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


def write_subsets(root: Path) -> dict[str, Any]:
    """Both subsets under `root` (written anew each time, so they never mix with an older copy)."""
    if root.exists():
        shutil.rmtree(root)
    students = classroom_subset(root / "classroom")
    return {"classroom": root / "classroom", "students": students, "identities": identity_subset(root / "faces")}
