"""What the dataset readers produce: detection records (image path + boxes + labels) and identity records."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from pipeline.errors import PipelineError


@dataclass(frozen=True)
class DetectionRecord:
    """One image of a detection set. Boxes are float32 Nx4 [x1, y1, x2, y2] in pixels, labels int64 N."""

    image_path: Path
    boxes: np.ndarray
    labels: np.ndarray
    width: int
    height: int
    annotation_path: Path | None = None

    def load(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The ARCHITECTURE contract: (image uint8 HxWx3 RGB, boxes float Nx4, labels int N)."""
        return read_image(self.image_path), self.boxes.copy(), self.labels.copy()


@dataclass(frozen=True)
class IdentityRecord:
    """One face image of an identity set."""

    image_path: Path
    identity: str

    def load(self) -> tuple[np.ndarray, str]:
        return read_image(self.image_path), self.identity


def read_image(path: Path) -> np.ndarray:
    """Decode an image file fully to uint8 HxWx3 RGB; unreadable or truncated files raise PipelineError."""
    try:
        with Image.open(path) as img:
            img.load()
            rgb = img.convert("RGB")
    except FileNotFoundError as exc:
        raise PipelineError("image file not found", path=path) from exc
    except Image.DecompressionBombError as exc:
        raise PipelineError(f"image too large to decode ({exc})", path=path,
                            expected=f"at most {Image.MAX_IMAGE_PIXELS:,} pixels") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise PipelineError(f"unreadable or truncated image ({exc})", path=path,
                            expected="a complete JPEG/PNG/BMP file") from exc
    return np.asarray(rgb, dtype=np.uint8)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) after a full decode, so truncated files are caught when a set is read."""
    image = read_image(path)
    return image.shape[1], image.shape[0]
