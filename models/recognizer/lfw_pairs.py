"""The LFW View 2 pairs file: header `<folds><TAB><n>`, then per fold n matched and n mismatched pair lines.

Matched lines are `name<TAB>n1<TAB>n2`, mismatched lines `name1<TAB>n1<TAB>name2<TAB>n2`; image number n of a
person is `<images_root>/<name>/<name>_<n:04d>.jpg`. Every pair must name an existing image: the protocol needs all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import PipelineError
from pipeline.text_files import read_utf8

MATCHED_FIELDS = "name<TAB>n1<TAB>n2"
MISMATCHED_FIELDS = "name1<TAB>n1<TAB>name2<TAB>n2"


@dataclass(frozen=True, eq=False)
class LfwPairs:
    """Unique image paths (first-use order) and per pair: image indices a and b, same person, fold (0-based)."""

    images: tuple[Path, ...]
    a: np.ndarray
    b: np.ndarray
    same: np.ndarray
    fold: np.ndarray


def _header(line: str, path: Path) -> tuple[int, int]:
    fields = line.split("\t")
    if len(fields) != 2 or not all(f.isdigit() and int(f) > 0 for f in fields):
        raise PipelineError(f"header {line!r}", path=path, field="line 1",
                            expected="'<folds><TAB><pairs of each kind per fold>' such as '5<TAB>300'")
    return int(fields[0]), int(fields[1])


def _image(name: str, number: str, images_root: Path, path: Path, line_no: int) -> Path:
    """The image a (name, number) field pair names, checked for form and existence."""
    where = {"path": path, "field": f"line {line_no}"}
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise PipelineError(f"person name {name!r}", **where, expected="a folder name under the images folder")
    if not number.isdigit() or int(number) < 1:
        raise PipelineError(f"image number {number!r}", **where, expected="a positive integer")
    image = images_root / name / f"{name}_{int(number):04d}.jpg"
    if not image.is_file():
        raise PipelineError(f"names missing image {image}", **where, expected="every pair's images to exist")
    return image


def read_lfw_pairs(pairs_file: Path, images_root: Path) -> LfwPairs:
    """Read an LFW pairs file whose images are under `images_root` (the folder of the per-person folders)."""
    pairs_file, images_root = Path(pairs_file), Path(images_root)
    lines = read_utf8(pairs_file, expected="an LFW pairs file").splitlines()
    if not lines:
        raise PipelineError("empty file", path=pairs_file, field="line 1", expected="the header '5<TAB>300'")
    folds, per_kind = _header(lines[0], pairs_file)
    per_fold = 2 * per_kind
    index: dict[Path, int] = {}
    a, b, same, fold = [], [], [], []
    for line_no, line in enumerate(lines[1:], start=2):
        position = line_no - 2
        k, matched = position // per_fold, position % per_fold < per_kind
        fields = line.split("\t")
        if len(fields) not in (3, 4):
            raise PipelineError(f"{len(fields)} tab-separated fields", path=pairs_file, field=f"line {line_no}",
                                expected=f"3 ({MATCHED_FIELDS}) or 4 ({MISMATCHED_FIELDS})")
        if k >= folds or (len(fields) == 3) != matched:
            raise PipelineError(f"fold {k + 1} does not hold {per_kind} matched then {per_kind} mismatched pairs",
                                path=pairs_file, field=f"line {line_no}",
                                expected=f"{folds} folds of {per_kind} lines '{MATCHED_FIELDS}' then {per_kind} "
                                         f"lines '{MISMATCHED_FIELDS}' ({folds * per_fold} pair lines)")
        names = (fields[0], fields[0]) if matched else (fields[0], fields[2])
        numbers = (fields[1], fields[2]) if matched else (fields[1], fields[3])
        for name, number, target in zip(names, numbers, (a, b), strict=True):
            image = _image(name, number, images_root, pairs_file, line_no)
            target.append(index.setdefault(image, len(index)))
        same.append(matched)
        fold.append(k)
    if len(lines) - 1 != folds * per_fold:
        raise PipelineError(f"fold {len(lines[1:]) // per_fold + 1} ends after {(len(lines) - 1) % per_fold} pair "
                            "lines", path=pairs_file, field=f"line {len(lines)}",
                            expected=f"{folds} folds of {per_fold} pair lines")
    arrays = [np.array(values, dtype=dtype) for values, dtype in ((a, np.int64), (b, np.int64), (same, bool),
                                                                  (fold, np.int64))]
    for array in arrays:
        array.flags.writeable = False
    return LfwPairs(tuple(index), *arrays)
