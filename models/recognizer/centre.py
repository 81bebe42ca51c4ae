"""The embedding centre of a recognizer (issue #13): the mean of the L2-normalised float embeddings of the deployed
model over training-identity crops, computed by the export stage into build/<config>/embedding_centre.json when
recognizer.centre_images > 0. Every runtime (evaluation, the firmware twin, the C firmware) turns a raw embedding
into a normalised one the same way: L2-normalise, subtract the centre, L2-normalise again."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.atomic import write_json
from pipeline.config import Config
from pipeline.errors import PipelineError
from pipeline.json_files import read_json_object

CENTRE_NAME = "embedding_centre.json"


def centre_images(cfg: Config) -> int:
    """How many training-identity crops the centre averages (recognizer.centre_images of a recognizer config; 0: no
    centre)."""
    return cfg.recognizer.centre_images if cfg.model.task == "recognizer" else 0


def _unit_rows(embeddings: np.ndarray) -> np.ndarray:
    return embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)


def normalised(embeddings: np.ndarray, centre: np.ndarray | None = None) -> np.ndarray:
    """(N, D) raw embeddings as unit rows (all-zero rows stay zero); with a centre: L2-normalise, subtract it,
    L2-normalise again (the one normalisation of every Python runtime; deploy/attendance/matching.py is the
    firmware's float32 twin)."""
    unit = _unit_rows(embeddings)
    if centre is None:
        return unit
    if np.shape(centre) != unit.shape[1:]:
        raise PipelineError(f"a centre of shape {np.shape(centre)} for {unit.shape[1]}-value embeddings",
                            field="embedding_centre.values", expected=f"{unit.shape[1]} values")
    return _unit_rows(unit - centre)


def mean_direction(embeddings: np.ndarray) -> np.ndarray:
    """The centre of (N, D) raw embeddings: the float32 mean of their L2-normalised rows (taken in float64)."""
    return normalised(np.asarray(embeddings, np.float64)).mean(axis=0).astype(np.float32)


def write_centre(path: Path, centre: np.ndarray, images: int, model: Path) -> dict[str, Any]:
    """embedding_centre.json: the float32 values (each written as the float64 equal to it, so it reads back
    exactly), how many crops they average and the model they belong to."""
    record = {"values": [float(v) for v in np.asarray(centre, np.float32)], "images": images, "model": str(model),
              "normalisation": "L2-normalise, subtract these values, L2-normalise"}
    write_json(path, record)
    return record


def check_centre(values: Any, size: int, *, path: Path | None, field: str) -> np.ndarray:
    """`values` as a float32 centre of `size` finite numbers; PipelineError naming the field otherwise."""
    ok = isinstance(values, (list, tuple)) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)
    if ok:
        with np.errstate(over="ignore"):  # beyond the float32 range: refused below, not warned about
            ok = bool(np.all(np.isfinite(np.asarray(values, np.float64).astype(np.float32))))
    if not ok or len(values) != size:
        shown = f"{len(values)} values" if isinstance(values, (list, tuple)) else repr(values)
        raise PipelineError(f"got {shown}" + ("" if ok else " (not all finite numbers)"), path=path, field=field,
                            expected=f"{size} finite numbers (the embedding size)")
    return np.asarray(values, np.float32)


def read_centre(path: Path, size: int) -> np.ndarray:
    """The centre in embedding_centre.json, checked against the embedding size."""
    record = read_json_object(path, what="embedding centre",
                              missing_hint="run `invoke export` (recognizer.centre_images > 0 computes it)")
    return check_centre(record.get("values"), size, path=path, field="values")


def embedding_centre(cfg: Config) -> np.ndarray | None:
    """The config's centre (None when recognizer.centre_images is 0), from the export stage's file."""
    if not centre_images(cfg):
        return None
    return read_centre(cfg.build_dir / CENTRE_NAME, cfg.recognizer.embedding_size)


def check_centre_model(cfg: Config, model: Path) -> None:
    """Refuse to centre `model`'s embeddings by a centre `invoke export` computed for another model file."""
    if not centre_images(cfg):
        return
    path = cfg.build_dir / CENTRE_NAME
    recorded = read_json_object(path, what="embedding centre", missing_hint="run `invoke export`").get("model")
    if not isinstance(recorded, str) or Path(recorded).resolve() != Path(model).resolve():
        raise PipelineError(f"the embedding centre is of {recorded!r}, not of {model}", path=path, field="model",
                            expected="`invoke export --model FILE` for that model first, or --set "
                                     "recognizer.centre_images=0 to evaluate it without a centre")


def compute_centre(embed: Callable[[np.ndarray], np.ndarray], images: list[np.ndarray],
                   batch: int = 64) -> np.ndarray:
    """The centre of a model's embed function (float crops -> raw embeddings) over `images`."""
    raw = np.concatenate([embed(np.stack(images[i:i + batch])) for i in range(0, len(images), batch)])
    return mean_direction(raw)


def model_centre(cfg: Config, model) -> tuple[np.ndarray, int]:
    """(the centre of a Keras embedder over recognizer.centre_images seeded training-identity policy crops, how many
    crops it averages): the export's centre stage."""
    from models.recognizer.evaluate import keras_embed
    from models.recognizer.settings import RecognizerSettings

    images = RecognizerSettings.from_config(cfg).sample_images("train", centre_images(cfg), cfg.train.seed)
    return compute_centre(keras_embed(model), images), len(images)
