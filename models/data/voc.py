"""Pascal VOC XML detection sets: `<split>/annotations/*.xml` + `<split>/images/` (or Annotations/ + JPEGImages/)."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from models.data.boxes import check_box
from models.data.classmap import ClassMap
from models.data.member_paths import member_path
from models.data.problems import ProblemLog
from models.data.records import DetectionRecord, image_size
from pipeline.errors import PipelineError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def _subfolder(root: Path, *names: str) -> Path:
    for name in names:
        if (root / name).is_dir():
            return root / name
    raise PipelineError("folder not found", path=root, expected=f"a subfolder named one of {', '.join(names)}")


def _find_image(images: Path, filename: str | None, stem: str, xml_path: Path, allow_outside: bool) -> Path | None:
    """The image an annotation names (inside `images` by the data set path policy), else one named like the XML."""
    if filename:
        named = member_path(images, filename, where=xml_path, field="filename", allow_outside=allow_outside)
        if named.is_file():
            return named
    for suffix in IMAGE_SUFFIXES:
        for candidate in (images / f"{stem}{suffix}", images / f"{stem}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def _number(node: ET.Element, tag: str, xml_path: Path) -> float:
    child = node.find(tag)
    if child is None or child.text is None:
        raise PipelineError("missing field", path=xml_path, field=tag, expected="a number")
    try:
        value = float(child.text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise PipelineError(f"not a finite number: {child.text.strip()!r}", path=xml_path, field=tag,
                            expected="a number")
    return value


def read_voc_annotation(xml_path: Path, images: Path, classes: ClassMap, log: ProblemLog,
                        allow_outside: bool = False) -> DetectionRecord | None:
    """Parse one VOC XML file and check it against its image; None (reported) when unusable."""
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as exc:
        log.report("bad annotation", f"not well-formed XML ({exc})", xml_path)
        return None
    except OSError as exc:
        log.report("bad annotation", f"cannot read ({exc.strerror})", xml_path, expected="a VOC XML file")
        return None
    try:
        image_path = _find_image(images, root.findtext("filename"), xml_path.stem, xml_path, allow_outside)
    except PipelineError as exc:
        log.add("path outside data set", exc)
        return None
    if image_path is None:
        log.report("missing image", f"no image for this annotation in {images}", xml_path, field_name="filename")
        return None
    try:
        width, height = image_size(image_path)
    except PipelineError as exc:
        log.report("unreadable image", str(exc), image_path)
        return None
    size = root.find("size")
    try:
        if size is not None:
            declared = (int(_number(size, "width", xml_path)), int(_number(size, "height", xml_path)))
            if declared != (width, height):
                log.report("size mismatch", f"<size> says {declared[0]}x{declared[1]}, image is {width}x{height}",
                           xml_path, field_name="size", expected=f"{width}x{height}")
                return None
        boxes, labels = [], []
        for index, obj in enumerate(root.iter("object")):
            name = (obj.findtext("name") or "").strip()
            if not name:
                raise PipelineError("object without a name", path=xml_path, field=f"object[{index}].name")
            label = classes.index(name)
            if label is None:
                log.report("unknown class", f"class {name!r} is not in the class map", xml_path,
                           field_name=f"object[{index}].name", expected=classes.describe())
                return None
            bnd = obj.find("bndbox")
            if bnd is None:
                raise PipelineError("object without a box", path=xml_path, field=f"object[{index}].bndbox")
            box = tuple(_number(bnd, tag, xml_path) for tag in ("xmin", "ymin", "xmax", "ymax"))
            checked = check_box(box, width, height, log, xml_path)
            if checked is None:
                return None
            boxes.append(checked)
            labels.append(label)
    except PipelineError as exc:
        log.add("bad annotation", exc)
        return None
    return DetectionRecord(
        image_path=image_path,
        boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
        labels=np.asarray(labels, np.int64),
        width=width,
        height=height,
        annotation_path=xml_path,
    )


def read_voc(split_dir: Path, classes: ClassMap, log: ProblemLog, allow_outside: bool = False
             ) -> list[DetectionRecord]:
    """Read every annotation of one VOC split folder."""
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise PipelineError("data folder not found", path=split_dir, expected="a VOC split folder")
    annotations = _subfolder(split_dir, "annotations", "Annotations")
    images = _subfolder(split_dir, "images", "JPEGImages")
    records = []
    for xml_path in sorted(annotations.glob("*.xml")):
        record = read_voc_annotation(xml_path, images, classes, log, allow_outside)
        if record is not None:
            records.append(record)
    return records
