"""Where the face is in the images of our recognition data sets, as boxes (x1, y1, x2, y2) in pixels, x2/y2 exclusive.

CelebA-299 crops carry their detected box in boxes.csv; LFW and AT&T images are centred by construction, so one
fixed box per data set, measured with dlib's HOG frontal face detector, stands for all (the evaluation then needs
no detector).
"""

from __future__ import annotations

import csv
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.text_files import read_utf8

Box = tuple[float, float, float, float]

# Measured with dlib's HOG frontal face detector (upsample 1), keeping the detection nearest the image centre, and
# dlib's box converted to x2/y2 exclusive.
# LFW, all 3,811 images of folds 1-5 (250x250): a face in 3,776 (99.1%; 141 with more than one). The detector's
# discrete scales make the boxes cluster: 2,940 (78%) are exactly (67, 80, 176, 188), so median = q25 = q75 =
# (67, 80, 176, 188), IQR 0 on every side (10th-90th percentile: x1 67-67, y1 67-80, x2 176-188, y2 188-197).
# What the fixed box costs: the dlib teacher's View 2 accuracy on folds 1-5 (Euclidean distance, threshold chosen
# on the other 4 folds) is 98.10% +- 0.34 with this box for every image, 98.60% +- 0.25 with each image's own HOG
# box (this box where none was found).
LFW_FACE_BOX = (67, 80, 176, 188)

# AT&T, all 400 images (92x112): a face in 388 (97%; 12 missed, none with more than one). Median (5, 30, 80, 106),
# q25 (5, 22, 80, 106), q75 (13, 30, 89, 107): IQR 8 px on x1, y1 and x2, 1 px on y2; the box pokes out of the
# image on the left in some images (x1 down to -24).
ATT_FACE_BOX = (5, 30, 80, 106)

CELEBA_CROP_SIZE = 128  # side of the CelebA-299 crops (README: the square crop resized to 128x128)
CELEBA_COLUMNS = ("filename", "identity_id", "x1", "y1", "x2", "y2", "crop_x1", "crop_y1", "crop_size")


def _integer(row: dict[str, str], column: str, where: str) -> int:
    try:
        return int(row[column])
    except (TypeError, ValueError):
        raise PipelineError(f"value {row[column]!r} is not an integer", path=where, field=column,
                            expected="a whole number of pixels") from None


def celeba_boxes(root: Path) -> dict[str, Box]:
    """{"<identity>/<file>" -> face box in the 128x128 crop} from `root`/boxes.csv of CelebA-299: the detected box
    moved and scaled like the crop, (x - crop_x1) * 128 / crop_size."""
    path = Path(root) / "boxes.csv"
    lines = read_utf8(path, expected="the CelebA-299 boxes.csv").splitlines()
    reader = csv.DictReader(lines)
    missing = [column for column in CELEBA_COLUMNS if column not in (reader.fieldnames or [])]
    if missing:
        raise PipelineError(f"header lacks column(s) {', '.join(missing)}", path=f"{path}:1",
                            expected=f"a header with {', '.join(CELEBA_COLUMNS)}")
    boxes: dict[str, Box] = {}
    for number, row in enumerate(reader, start=2):
        where = f"{path}:{number}"
        if None in row or None in row.values():
            raise PipelineError(f"{len(lines[number - 1].split(','))} fields", path=where,
                                expected=f"{len(reader.fieldnames)} comma-separated fields as in the header")
        x1, y1, x2, y2, crop_x1, crop_y1, size = (_integer(row, column, where) for column in CELEBA_COLUMNS[2:])
        if size <= 0:
            raise PipelineError(f"crop_size {size}", path=where, field="crop_size", expected="a positive size")
        if not (x1 < x2 and y1 < y2):
            raise PipelineError(f"empty box ({x1}, {y1}, {x2}, {y2})", path=where, field="x2",
                                expected="x1 < x2 and y1 < y2")
        name = f"{row['identity_id'].strip()}/{row['filename'].strip()}"
        if not row["identity_id"].strip() or not row["filename"].strip():
            raise PipelineError("empty identity_id or filename", path=where, field="filename",
                                expected="the original CelebA file name and its identity id")
        if name in boxes:
            raise PipelineError(f"{name} listed twice", path=where, field="filename", expected="one row per crop")
        scale = CELEBA_CROP_SIZE / size
        boxes[name] = ((x1 - crop_x1) * scale, (y1 - crop_y1) * scale, (x2 - crop_x1) * scale, (y2 - crop_y1) * scale)
    return boxes
