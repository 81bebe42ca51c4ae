"""A procedural face set: cartoon faces of varied size, skin tone and pose on cluttered backgrounds, with exact
boxes (the bounding box of each face's drawn pixels). Written as a Pascal VOC split, so it is read like real data."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from pipeline.atomic import atomic_path, write_text
from pipeline.progress import progress

SKIN_TONES = [(255, 224, 196), (241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36), (92, 51, 23)]
HAIR_COLOURS = [(20, 15, 10), (60, 40, 20), (120, 80, 40), (200, 170, 90), (140, 140, 140)]


@dataclass(frozen=True)
class SyntheticSpec:
    count: int
    width: int = 320
    height: int = 256
    seed: int = 0
    min_face: int = 28
    max_face: int = 110
    max_faces: int = 4


def _jitter(rng: np.random.Generator, colour: tuple[int, int, int], amount: int) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in colour)


def _face_patch(rng: np.random.Generator, size: int) -> Image.Image:
    """One face on a transparent patch: head, hair, eyes, brows, nose, mouth; yawed and rolled at random."""
    w, h = int(size * rng.uniform(0.72, 0.86)), size
    pad = size // 2
    patch = Image.new("RGBA", (w + 2 * pad, h + 2 * pad), (0, 0, 0, 0))
    draw = ImageDraw.Draw(patch)
    skin = _jitter(rng, SKIN_TONES[rng.integers(len(SKIN_TONES))], 12)
    x0, y0 = pad, pad
    if rng.random() < 0.8:  # hair behind the head, a little wider and higher
        hair = _jitter(rng, HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))], 10)
        draw.ellipse([x0 - w * 0.06, y0 - h * 0.08, x0 + w * 1.06, y0 + h * 0.6], fill=hair + (255,))
    draw.ellipse([x0, y0, x0 + w, y0 + h], fill=skin + (255,))
    yaw = rng.uniform(-0.18, 0.18) * w
    cx = x0 + w / 2 + yaw
    eye_y, eye_dx, eye_r = y0 + h * 0.42, w * 0.2, max(1.5, w * 0.07)
    for side in (-1, 1):
        ex = cx + side * eye_dx
        draw.ellipse([ex - eye_r * 1.5, eye_y - eye_r, ex + eye_r * 1.5, eye_y + eye_r], fill=(250, 250, 250, 255))
        draw.ellipse([ex - eye_r * 0.7 + yaw * 0.1, eye_y - eye_r * 0.7, ex + eye_r * 0.7 + yaw * 0.1,
                      eye_y + eye_r * 0.7], fill=(30, 20, 10, 255))
        brow_y = eye_y - eye_r * 2.2
        draw.line([ex - eye_r * 1.6, brow_y + rng.uniform(-1, 1), ex + eye_r * 1.6, brow_y],
                  fill=(40, 30, 20, 255), width=max(1, int(w * 0.03)))
    nose = tuple(int(c * 0.8) for c in skin) + (255,)
    draw.line([cx, y0 + h * 0.48, cx + yaw * 0.15, y0 + h * 0.62], fill=nose, width=max(1, int(w * 0.04)))
    mouth_w, mouth_y = w * rng.uniform(0.2, 0.32), y0 + h * 0.74
    draw.arc([cx - mouth_w, mouth_y - h * 0.06, cx + mouth_w, mouth_y + h * 0.06], 10, 170,
             fill=(150, 40, 40, 255), width=max(1, int(w * 0.035)))
    return patch.rotate(float(rng.uniform(-25, 25)), resample=Image.BICUBIC, expand=True)


def _background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A gradient with clutter: rectangles, ellipses and lines of random colours, then mild blur and noise."""
    top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    ramp = np.linspace(0, 1, height)[:, None, None]
    base = (top * (1 - ramp) + bottom * ramp).repeat(width, axis=1).astype(np.uint8)
    img = Image.fromarray(base, "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(4, 14))):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        x1, y1 = rng.integers(0, width), rng.integers(0, height)
        x2, y2 = x1 + rng.integers(5, width // 2), y1 + rng.integers(5, height // 2)
        shape = rng.integers(3)
        if shape == 0:
            draw.rectangle([x1, y1, x2, y2], fill=colour)
        elif shape == 1:
            draw.ellipse([x1, y1, x2, y2], outline=colour, width=int(rng.integers(1, 5)))
        else:
            draw.line([x1, y1, x2, y2], fill=colour, width=int(rng.integers(1, 6)))
    return img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 1.2))))


def _overlaps(box: np.ndarray, boxes: list[np.ndarray]) -> bool:
    for other in boxes:
        iw = min(box[2], other[2]) - max(box[0], other[0])
        ih = min(box[3], other[3]) - max(box[1], other[1])
        if iw > 0 and ih > 0:
            return True
    return False


def render_scene(rng: np.random.Generator, spec: SyntheticSpec) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8 HxWx3, boxes float32 Nx4 with exclusive x2/y2) for one random scene."""
    img = _background(rng, spec.width, spec.height)
    boxes: list[np.ndarray] = []
    for _ in range(int(rng.integers(1, spec.max_faces + 1))):
        for _attempt in range(10):
            size = int(np.exp(rng.uniform(np.log(spec.min_face), np.log(spec.max_face))))
            patch = _face_patch(rng, size)
            alpha = np.asarray(patch.getchannel("A")) > 127
            ys, xs = np.nonzero(alpha)
            pw, ph = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
            if pw >= spec.width or ph >= spec.height:
                continue
            left = int(rng.integers(0, spec.width - pw + 1)) - xs.min()
            top = int(rng.integers(0, spec.height - ph + 1)) - ys.min()
            box = np.array([left + xs.min(), top + ys.min(), left + xs.max() + 1, top + ys.max() + 1], np.float32)
            if not _overlaps(box, boxes):
                hard = patch.copy()
                hard.putalpha(Image.fromarray((alpha * 255).astype(np.uint8)))
                img.paste(hard, (int(left), int(top)), hard)
                boxes.append(box)
                break
    pixels = np.asarray(img, np.int16) + rng.normal(0, rng.uniform(0, 6), (spec.height, spec.width, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8), np.asarray(boxes, np.float32).reshape(-1, 4)


def voc_xml(filename: str, width: int, height: int, boxes: np.ndarray, name: str = "face") -> str:
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = filename
    size = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    for box in boxes:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = name
        ET.SubElement(obj, "difficult").text = "0"
        bnd = ET.SubElement(obj, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True):
            ET.SubElement(bnd, tag).text = str(int(value))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def write_synthetic_voc(out_dir: Path, spec: SyntheticSpec) -> int:
    """Render `spec.count` scenes into `out_dir/images` (PNG, lossless so boxes stay exact) + `out_dir/annotations`,
    replacing whatever an earlier spec left there (a smaller count must not keep the old images)."""
    rng = np.random.default_rng(spec.seed)
    shutil.rmtree(out_dir, ignore_errors=True)
    images, annotations = Path(out_dir) / "images", Path(out_dir) / "annotations"
    images.mkdir(parents=True, exist_ok=True)
    annotations.mkdir(parents=True, exist_ok=True)
    for index in progress(range(spec.count), desc=f"synthetic {Path(out_dir).name}", unit="img"):
        image, boxes = render_scene(rng, spec)
        stem = f"synth_{index:05d}"
        with atomic_path(images / f"{stem}.png") as tmp:
            Image.fromarray(image).save(tmp, format="PNG")
        write_text(annotations / f"{stem}.xml", voc_xml(f"{stem}.png", spec.width, spec.height, boxes))
    return spec.count
