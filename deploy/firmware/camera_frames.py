"""Camera stand-ins for the host and QEMU targets (images as binary PPM frames), and the Python twin of the
firmware's letterbox preprocessing (firmware/app/letterbox.c, byte for byte: tests/test_letterbox_c.py), so the
simulator and `invoke eval` give the kmodel exactly the input the firmware makes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from models.letterbox import letterbox_fit, letterbox_image
from pipeline.atomic import atomic_path
from pipeline.errors import PipelineError

IMAGE_SUFFIXES = (".bmp", ".jpg", ".jpeg", ".png", ".ppm")


def list_images(folder: Path) -> list[Path]:
    """Image files directly in `folder`, sorted; PipelineError when there are none."""
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
    if not images:
        raise PipelineError("no images found", path=folder, expected=f"files ending in {', '.join(IMAGE_SUFFIXES)}")
    return images


def write_ppm_frames(images: list[Path], out_dir: Path) -> list[Path]:
    """frame_NNN.ppm (RGB, the image's own size) for each image: what the camera would deliver."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frames = []
    for index, path in enumerate(images):
        target = out_dir / f"frame_{index:03d}.ppm"
        try:
            with Image.open(path) as image, atomic_path(target) as tmp:
                image.convert("RGB").save(tmp, format="PPM")
        except (OSError, UnidentifiedImageError) as exc:
            raise PipelineError(f"cannot read image: {exc}", path=path, expected="a BMP/JPEG/PNG/PPM image") from None
        frames.append(target)
    return frames


def read_frame(path: Path) -> np.ndarray:
    """A frame file as the camera would deliver it: H x W x 3 uint8 RGB."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def letterbox_input(frame: np.ndarray, input_size: tuple[int, int], fill: int) -> np.ndarray:
    """The CHW uint8 input the firmware makes from an H x W x 3 frame (letterbox_frame): the project's one
    letterbox, models/letterbox.py."""
    canvas, _ = letterbox_image(frame, input_size, fill)
    return np.ascontiguousarray(canvas.transpose(2, 0, 1))


def model_input(ppm: Path, input_size: tuple[int, int], fill: int) -> np.ndarray:
    """letterbox_input of a frame file."""
    return letterbox_input(read_frame(ppm), input_size, fill)


def boxes_to_frame(boxes: np.ndarray, frame_size: tuple[int, int], input_size: tuple[int, int]) -> np.ndarray:
    """(N, 4) boxes from fractions of the model input to frame pixels (the firmware's letterbox_to_frame)."""
    fit = letterbox_fit(frame_size, input_size)
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    scale = np.array([input_size[0], input_size[1]] * 2, np.float32)
    pad = np.array([fit.pad_x, fit.pad_y] * 2, np.float32)
    ratio = np.array([frame_size[0] / fit.width, frame_size[1] / fit.height] * 2, np.float32)
    return (boxes * scale - pad) * ratio
