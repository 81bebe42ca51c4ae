"""The embedding centre of a recognizer (issue #13) and the one normalisation of its embeddings.

Every runtime (evaluation, the firmware twin deploy/attendance/matching.py, the C firmware firmware/app/embedding.c
and embed_app.c) turns a face crop into a normalised embedding by the same operations in the same order:

1. raw embedding: the model's output for the crop; with recognizer.flip_average (issue #12) the model also embeds
   the crop's mirror image (models/recognizer/crop.py `mirrored`; two KPU runs per face) and the raw embedding is
   the sum of the two L2-normalised outputs, plain crop's first (`flip_sum`);
2. L2-normalise it; with a centre: subtract the centre and L2-normalise again (`normalised`).

The centre is the mean of step 2 without a centre (the L2-normalised raw embeddings, flip-averaged when the config
flips) over training-identity crops, computed by the export stage into build/<config>/embedding_centre.json when
recognizer.centre_images > 0; it records the flip policy it was made with, and a config with the other policy
refuses it."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from models.recognizer.crop import mirrored
from pipeline.atomic import write_json
from pipeline.config import Config
from pipeline.errors import PipelineError
from pipeline.json_files import read_json_object

CENTRE_NAME = "embedding_centre.json"


def centre_images(cfg: Config) -> int:
    """How many training-identity crops the centre averages (recognizer.centre_images of a recognizer config; 0: no
    centre)."""
    return cfg.recognizer.centre_images if cfg.model.task == "recognizer" else 0


def flip_average(cfg: Config) -> bool:
    """Whether the config's runtimes add the embedding of each crop's mirror image (recognizer.flip_average of a
    recognizer config)."""
    return cfg.model.task == "recognizer" and cfg.recognizer.flip_average


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


def flip_sum(plain: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    """(N, D) raw flip-averaged embeddings: the L2-normalised embeddings of the crops plus those of their mirror
    images (then normalised like any raw embedding)."""
    return _unit_rows(plain) + _unit_rows(mirror)


def policy_embed(embed: Callable[[np.ndarray], np.ndarray], flip: bool) -> Callable[[np.ndarray], np.ndarray]:
    """A runtime's embed function (crops (N, S, S, 3) -> raw embeddings) under the flip policy: itself, or the
    flip_sum of its embeddings of the crops and of their mirror images."""
    if not flip:
        return embed
    return lambda images: flip_sum(embed(images), embed(mirrored(images)))


def mean_direction(embeddings: np.ndarray) -> np.ndarray:
    """The centre of (N, D) raw embeddings: the float32 mean of their L2-normalised rows (taken in float64)."""
    return normalised(np.asarray(embeddings, np.float64)).mean(axis=0).astype(np.float32)


def write_centre(path: Path, centre: np.ndarray, images: int, model: Path, flip: bool = False) -> dict[str, Any]:
    """embedding_centre.json: the float32 values (each written as the float64 equal to it, so it reads back
    exactly), how many crops they average, the model they belong to and the flip policy they were made with."""
    record = {"values": [float(v) for v in np.asarray(centre, np.float32)], "images": images, "model": str(model),
              "flip_average": flip, "normalisation": "L2-normalise, subtract these values, L2-normalise"}
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


def _centre_record(path: Path) -> dict[str, Any]:
    return read_json_object(path, what="embedding centre",
                            missing_hint="run `invoke export` (recognizer.centre_images > 0 computes it)")


def read_centre(path: Path, size: int) -> np.ndarray:
    """The centre in embedding_centre.json, checked against the embedding size."""
    return check_centre(_centre_record(path).get("values"), size, path=path, field="values")


def embedding_centre(cfg: Config, folder: Path | None = None) -> np.ndarray | None:
    """The config's centre (None when recognizer.centre_images is 0), from the export stage's file in its build
    folder (or `folder`); refused when it was made with the other flip policy (a centre written before the policy
    existed is unflipped)."""
    if not centre_images(cfg):
        return None
    path = (folder or cfg.build_dir) / CENTRE_NAME
    record = _centre_record(path)
    made, wanted = record.get("flip_average", False), flip_average(cfg)
    if made is not wanted:
        raise PipelineError(f"the embedding centre was computed with flip_average {made!r}, the config has "
                            f"{wanted!r}", path=path, field="flip_average",
                            expected="`invoke export` with this config first (it recomputes the centre)")
    return check_centre(record.get("values"), cfg.recognizer.embedding_size, path=path, field="values")


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


def compute_centre(embed: Callable[[np.ndarray], np.ndarray], images: list[np.ndarray], flip: bool,
                   batch: int = 64) -> np.ndarray:
    """The centre of a model's embed function (float crops -> raw embeddings) under the flip policy over `images`."""
    embed = policy_embed(embed, flip)
    raw = np.concatenate([embed(np.stack(images[i:i + batch])) for i in range(0, len(images), batch)])
    return mean_direction(raw)
