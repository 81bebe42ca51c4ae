"""YOLO txt detection sets: `<split>/images/<stem>.jpg` + `<split>/labels/<stem>.txt` ("cls cx cy w h", normalised)
and a classes file with one source class name per line."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.data.boxes import check_box
from models.data.classmap import ClassMap
from models.data.member_paths import member_path
from models.data.problems import ProblemLog
from models.data.records import DetectionRecord, image_size
from models.data.voc import IMAGE_SUFFIXES
from pipeline.errors import PipelineError
from pipeline.text_files import read_utf8


def read_class_names(path: Path) -> list[str]:
    if not Path(path).is_file():
        raise PipelineError("classes file not found", path=path, expected="one class name per line")
    names = [line.strip() for line in read_utf8(path, expected="one class name per line").splitlines()
             if line.strip()]
    if not names:
        raise PipelineError("classes file is empty", path=path, expected="one class name per line")
    return names


def read_yolo_label(label_path: Path, source_names: list[str], classes: ClassMap, width: int, height: int,
                    log: ProblemLog) -> tuple[np.ndarray, np.ndarray] | None:
    """Boxes in pixels and mapped labels of one label file; None (reported) when unusable."""
    boxes, labels = [], []
    try:
        text = read_utf8(label_path, expected="'class cx cy w h' lines")
    except PipelineError as exc:
        log.add("bad annotation", exc)
        return None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        where = f"line {number}"
        try:
            cls = int(fields[0])
            cx, cy, w, h = (float(v) for v in fields[1:5])
            if len(fields) != 5:
                raise ValueError
        except (ValueError, IndexError):
            log.report("bad annotation", f"cannot parse {line!r}", label_path, field_name=where,
                       expected="'class cx cy w h' with a whole class number and 4 numbers in [0, 1]")
            return None
        label = classes.index(source_names[cls]) if 0 <= cls < len(source_names) else None
        if label is None:
            log.report("unknown class", f"class {cls} is not in the class map", label_path, field_name=where,
                       expected=f"0..{len(source_names) - 1} naming one of {classes.describe()}")
            return None
        box = ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
        checked = check_box(box, width, height, log, label_path)
        if checked is None:
            return None
        boxes.append(checked)
        labels.append(label)
    return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64)


def read_yolo(split_dir: Path, classes_file: Path, classes: ClassMap, log: ProblemLog) -> list[DetectionRecord]:
    split_dir = Path(split_dir)
    images_dir, labels_dir = split_dir / "images", split_dir / "labels"
    for folder in (images_dir, labels_dir):
        if not folder.is_dir():
            raise PipelineError("folder not found", path=folder, expected="a YOLO split with images/ and labels/")
    source_names = read_class_names(classes_file)
    records = []
    for image_path in sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        try:
            width, height = image_size(image_path)
        except PipelineError as exc:
            log.add("unreadable image", exc)
            continue
        label_path = member_path(labels_dir, f"{image_path.stem}.txt", where=image_path, field="label")
        if label_path.exists():
            parsed = read_yolo_label(label_path, source_names, classes, width, height, log)
            if parsed is None:
                continue
            boxes, labels = parsed
        else:
            boxes, labels = np.zeros((0, 4), np.float32), np.zeros((0,), np.int64)
        records.append(DetectionRecord(image_path, boxes, labels, width, height, label_path))
    return records
