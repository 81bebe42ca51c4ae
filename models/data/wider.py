"""WIDER FACE annotation files (`wider_face_*_bbx_gt.txt`): per image a path line, a count line, then
`x y w h blur expression illumination invalid occlusion pose` per face (count 0 is followed by one line of zeros)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.data.boxes import check_box
from models.data.classmap import ClassMap
from models.data.member_paths import member_path
from models.data.problems import ProblemLog
from models.data.records import DetectionRecord, image_size
from pipeline.errors import PipelineError
from pipeline.text_files import read_utf8

INVALID_FLAG = 7  # column index of the "invalid" attribute


def _parse_blocks(gt_file: Path) -> list[tuple[str, list[list[float]], int]]:
    """(image relative path, face rows, line number) per image; malformed structure raises PipelineError."""
    lines = [line.strip() for line in read_utf8(gt_file, expected="a WIDER FACE annotation file").splitlines()]
    blocks, i = [], 0
    while i < len(lines):
        if not lines[i]:
            i += 1
            continue
        name, start = lines[i], i + 1
        try:
            count = int(lines[i + 1])
        except (IndexError, ValueError):
            count = -1
        if count < 0:
            raise PipelineError(f"expected a face count after {name!r}", path=gt_file,
                                field=f"line {i + 2}", expected="a whole number >= 0")
        rows_needed = max(count, 1)
        rows = []
        for j in range(rows_needed):
            index = i + 2 + j
            try:
                rows.append([float(v) for v in lines[index].split()])
            except (IndexError, ValueError) as exc:
                raise PipelineError("face line missing or not numbers", path=gt_file, field=f"line {index + 1}",
                                    expected="'x y w h blur expression illumination invalid occlusion pose'") from exc
        blocks.append((name, rows[:count], start))
        i += 2 + rows_needed
    return blocks


def read_wider(gt_file: Path, images_root: Path, classes: ClassMap, log: ProblemLog, allow_outside: bool = False
               ) -> list[DetectionRecord]:
    gt_file, images_root = Path(gt_file), Path(images_root)
    if not gt_file.is_file():
        raise PipelineError("WIDER FACE annotation file not found", path=gt_file,
                            expected="wider_face_<split>_bbx_gt.txt")
    label = classes.index("face")
    if label is None:
        raise PipelineError("WIDER FACE has one class 'face', which the class map does not contain",
                            path=gt_file, field="dataset.classes", expected="'face' in classes")
    records = []
    for name, rows, line_number in _parse_blocks(gt_file):
        try:
            image_path = member_path(images_root, name, where=gt_file, field=f"line {line_number}",
                                     allow_outside=allow_outside)
        except PipelineError as exc:
            log.add("path outside data set", exc)
            continue
        try:
            width, height = image_size(image_path)
        except PipelineError as exc:
            log.add("unreadable image", exc)
            continue
        boxes = []
        for row in rows:
            if len(row) < 4:
                log.report("bad annotation", f"face line {row} has fewer than 4 numbers", gt_file,
                           field_name=f"line {line_number}")
                break
            if len(row) > INVALID_FLAG and row[INVALID_FLAG] == 1:
                log.repaired("face marked invalid dropped")
                continue
            x, y, w, h = row[:4]
            checked = check_box((x, y, x + w, y + h), width, height, log, gt_file)
            if checked is None:
                break
            boxes.append(checked)
        else:
            records.append(DetectionRecord(image_path, np.asarray(boxes, np.float32).reshape(-1, 4),
                                           np.full(len(boxes), label, np.int64), width, height, gt_file))
    return records
