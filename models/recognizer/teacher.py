"""The distillation teacher: dlib's ResNet face encoder (128-D), with a content-keyed cache of its embeddings.

Used at training and evaluation time only; nothing of it ships. The face is located by a box (x1, y1, x2, y2 in
pixels, x2/y2 exclusive), dlib's 5-point shape predictor finds the landmarks inside it, and the encoder embeds the
aligned 150x150 chip it cuts from them. On the 2 shared cores here it embeds about 7 faces/s one by one and 10
faces/s in batches (the whole 3,811 LFW images of folds 1-5 in 6 minutes), so compute once and cache.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, overload

import numpy as np
from PIL import Image

from models.data.problems import ProblemLog
from models.recognizer.crop import rounded_box
from pipeline.atomic import atomic_path
from pipeline.errors import PipelineError
from pipeline.progress import bar

EMBEDDING_SIZE = 128
Box = tuple[float, float, float, float]


def _dlib_modules():
    """(dlib, face_recognition_models), or a PipelineError naming the pip package to install."""
    try:
        import dlib
    except ImportError:
        raise PipelineError("the teacher needs dlib, which is not installed", field="teacher",
                            expected="`pip install dlib-bin`") from None
    try:
        import face_recognition_models
    except ImportError:
        raise PipelineError("the teacher needs dlib's model files, which are not installed", field="teacher",
                            expected="`pip install face_recognition_models`") from None
    return dlib, face_recognition_models


def as_rgb(image: np.ndarray) -> np.ndarray:
    """An H x W x 3 C-contiguous uint8 copy-or-view of an H x W, H x W x 1 or H x W x 3 uint8 image."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3)):
        raise PipelineError(f"image of dtype {image.dtype} and shape {image.shape}", field="teacher",
                            expected="an H x W (grayscale) or H x W x 3 (RGB) uint8 image")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image)


def model_files() -> tuple[Path, Path]:
    """(5-point shape predictor, ResNet encoder) files of the installed `face_recognition_models`."""
    _, models = _dlib_modules()
    files = (Path(models.pose_predictor_five_point_model_location()), Path(models.face_recognition_model_location()))
    for path in files:
        if not path.is_file():
            raise PipelineError("dlib model file missing", path=path,
                                expected="`pip install --force-reinstall face_recognition_models`")
    return files


def teacher_identity(num_jitters: int = 0) -> str:
    """What an embedding depends on besides the image and the box (model files, jitters): part of every cache key."""
    shape_file, encoder_file = model_files()
    return f"{encoder_file.name}+{shape_file.name}+jitters={num_jitters}"


class DlibTeacher:
    """dlib's 5-point shape predictor + ResNet face encoder from the `face_recognition_models` package."""

    def __init__(self, num_jitters: int = 0) -> None:
        dlib, _ = _dlib_modules()
        self._dlib = dlib
        shape_file, encoder_file = model_files()
        self._shapes = dlib.shape_predictor(str(shape_file))
        self._encoder = dlib.face_recognition_model_v1(str(encoder_file))
        self.num_jitters = num_jitters
        self.identity = teacher_identity(num_jitters)

    def _landmarks(self, rgb: np.ndarray, box: Box):
        x1, y1, x2, y2 = rounded_box(box)
        return self._shapes(rgb, self._dlib.rectangle(x1, y1, x2 - 1, y2 - 1))  # dlib's right/bottom are inclusive

    def embed(self, image: np.ndarray, box: Box) -> np.ndarray:
        """The (128,) float32 descriptor of the face in `box` of an RGB or grayscale uint8 image."""
        rgb = as_rgb(image)
        descriptor = self._encoder.compute_face_descriptor(rgb, self._landmarks(rgb, box), self.num_jitters)
        return np.asarray(descriptor, dtype=np.float32)

    def embed_batch(self, images: Sequence[np.ndarray], boxes: Sequence[Box]) -> np.ndarray:
        """(N, 128) float32 descriptors of one face per image, run through the encoder as one batch."""
        if len(images) != len(boxes):
            raise PipelineError(f"{len(images)} images but {len(boxes)} boxes", field="teacher",
                                expected="one box per image")
        if not images:
            return np.zeros((0, EMBEDDING_SIZE), np.float32)
        rgbs = [as_rgb(image) for image in images]
        shapes = [self._dlib.full_object_detections([self._landmarks(rgb, box)]) for rgb, box in zip(rgbs, boxes,
                                                                                                      strict=True)]
        descriptors = self._encoder.compute_face_descriptor(rgbs, shapes, self.num_jitters)
        return np.array([np.asarray(per_image[0]) for per_image in descriptors], dtype=np.float32)


def _file_digest(path: Path) -> str:
    """SHA-256 of the file's bytes; OSError when it cannot be read."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def cache_key(file_digest: str, box: Box, teacher_identity: str) -> str:
    """The cache key of one embedding: what it depends on (image bytes, box in whole pixels, teacher)."""
    return hashlib.sha256(f"{file_digest}|{rounded_box(box)}|{teacher_identity}".encode()).hexdigest()


def _read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


class EmbeddingCache:
    """One .npz in `cache_dir` per teacher: `keys` (N,) and `embeddings` (N, 128), rewritten atomically."""

    def __init__(self, cache_dir: Path, teacher_identity: str) -> None:
        self.path = Path(cache_dir) / f"teacher-{hashlib.sha256(teacher_identity.encode()).hexdigest()[:16]}.npz"
        self.entries: dict[str, np.ndarray] = {}
        if self.path.is_file():
            try:
                with np.load(self.path) as stored:
                    self.entries = dict(zip(stored["keys"].tolist(), stored["embeddings"], strict=True))
            except (OSError, ValueError, KeyError) as exc:
                raise PipelineError(f"unreadable embedding cache ({exc})", path=self.path,
                                    expected="a cache written by teacher_embeddings; delete it to recompute") from None

    def save(self) -> None:
        keys = np.array(list(self.entries), dtype="<U64")
        embeddings = np.array(list(self.entries.values()), np.float32).reshape(-1, EMBEDDING_SIZE)
        with atomic_path(self.path) as tmp:
            np.savez(tmp, keys=keys, embeddings=embeddings)


@overload
def teacher_embeddings(items: Sequence[tuple[Path, Box]], cache_dir: Path, progress: bool = ..., *,
                       skip_unreadable: Literal[False] = ..., teacher: DlibTeacher | None = ...,
                       batch_size: int = ...) -> np.ndarray: ...
@overload
def teacher_embeddings(items: Sequence[tuple[Path, Box]], cache_dir: Path, progress: bool = ..., *,
                       skip_unreadable: Literal[True], teacher: DlibTeacher | None = ...,
                       batch_size: int = ...) -> tuple[np.ndarray, np.ndarray]: ...
def teacher_embeddings(items: Sequence[tuple[Path, Box]], cache_dir: Path, progress: bool = True, *,
                       skip_unreadable: bool = False, teacher: DlibTeacher | None = None,
                       batch_size: int = 64) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """(N, 128) teacher embeddings of (image path, face box) items, computed once and then read from the cache in
    `cache_dir`. An unreadable image raises a PipelineError naming it; with skip_unreadable it is skipped and
    counted, and the result is (embeddings of the kept items, boolean mask of kept items)."""
    problems = ProblemLog(strict=not skip_unreadable)
    identity = teacher.identity if teacher is not None else teacher_identity()
    digests: dict[Path, str | None] = {}
    keys: list[str | None] = []
    for path, box in items:
        path = Path(path)
        if path not in digests:
            try:
                digests[path] = _file_digest(path)
            except OSError as exc:
                digests[path] = None
                problems.report("unreadable image", f"cannot read: {exc.strerror or exc}", path,
                                expected="an image file")
        keys.append(None if digests[path] is None else cache_key(digests[path], box, identity))
    cache = EmbeddingCache(cache_dir, identity)
    missing = {key: (Path(path), box) for key, (path, box) in zip(keys, items, strict=True)
               if key is not None and key not in cache.entries}
    if missing:
        _compute(teacher or DlibTeacher(), missing, cache, problems, progress=progress, batch_size=batch_size)
    kept = np.array([key is not None and key in cache.entries for key in keys], dtype=bool)
    embeddings = np.array([cache.entries[key] for key, keep in zip(keys, kept, strict=True) if keep],
                          np.float32).reshape(-1, EMBEDDING_SIZE)
    if not skip_unreadable:
        return embeddings
    problems.warn()
    return embeddings, kept


def _compute(teacher: DlibTeacher, missing: dict[str, tuple[Path, Box]], cache: EmbeddingCache,
             problems: ProblemLog, *, progress: bool, batch_size: int) -> None:
    """Embed the missing (key -> path, box) items in batches, saving the cache after each batch so that a killed
    run keeps its work."""
    work = list(missing.items())
    with bar(desc="teacher embeddings", total=len(work), unit="face", disable=not progress) as meter:
        for start in range(0, len(work), batch_size):
            images, boxes, keys = [], [], []
            for key, (path, box) in work[start:start + batch_size]:
                try:
                    images.append(_read_rgb(path))
                except (OSError, ValueError) as exc:  # PIL raises UnidentifiedImageError (an OSError) for non-images
                    problems.report("unreadable image", f"cannot decode: {exc}", path, expected="an image file")
                    continue
                boxes.append(box)
                keys.append(key)
            cache.entries.update(zip(keys, teacher.embed_batch(images, boxes), strict=True))
            cache.save()
            meter.update(len(work[start:start + batch_size]))
