"""The firmware's embedding arithmetic and face matching in Python, operation for operation
(firmware/app/embedding.c, firmware/attendance/face_match.c), so a decision made here is the board's decision:
dequantize and L2-normalise in float32 with a float64 sum taken in order; with the flip policy, the mirror image's
output the same way, added value by value in float32 and L2-normalised; subtract the recognizer's embedding centre
in float32 and L2-normalise again when it has one (the order of models/recognizer/centre.py), round to integers in
units of 1e-4, then the cosine of two integer vectors from exact integer sums."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from deploy.firmware.console import EMBEDDING_UNITS

UNKNOWN = "unknown"
PERMYRIAD = 10000


def dequantize(codes: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """(float)((int)code - zero_point) * scale, in float32 (embedding_dequantize)."""
    return (np.asarray(codes).astype(np.int32) - int(zero_point)).astype(np.float32) * np.float32(scale)


def normalised(values: np.ndarray) -> np.ndarray:
    """values / norm in float32, the norm the float32 square root of a float64 sum taken in order
    (embedding_normalise); all-zero values are returned as they are."""
    values = np.asarray(values, np.float32)
    total = 0.0
    for square in values.astype(np.float64) ** 2:  # each square is exact in float64; the order matters
        total += float(square)
    norm = np.float32(math.sqrt(total))
    if norm <= 0:
        return values.copy()
    return (values.astype(np.float64) / np.float64(norm)).astype(np.float32)


def to_units(values: np.ndarray) -> np.ndarray:
    """lround(value * EMBEDDING_UNITS) as int16: half away from zero, without forming x + 0.5 (embedding_unit)."""
    scaled = np.asarray(values, np.float32).astype(np.float64) * EMBEDDING_UNITS
    whole = np.trunc(scaled)
    away = np.abs(scaled - whole) >= 0.5
    return (whole + np.where(away, np.sign(scaled), 0.0)).astype(np.int16)


def centred(values: np.ndarray, centre: Sequence[float] | np.ndarray | None) -> np.ndarray:
    """Unit values minus the centre in float32, normalised again (embedding_centre); unchanged without a centre."""
    if centre is None:
        return values
    return normalised(np.asarray(values, np.float32) - np.asarray(centre, np.float32))


def unit_output(raw: np.ndarray, scale: float | None, zero_point: int | None) -> np.ndarray:
    """One raw recognizer output (uint8 codes with their quantization, or float32 values) dequantized and
    L2-normalised (embed_app_unit_output)."""
    raw = np.asarray(raw).reshape(-1)
    return normalised(dequantize(raw, scale, zero_point) if raw.dtype == np.uint8 else raw.astype(np.float32))


def flip_added(values: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    """Two unit embeddings (the crop's, its mirror image's) added in float32 and L2-normalised (embedding_add)."""
    return normalised(np.asarray(values, np.float32) + np.asarray(mirror, np.float32))


def embedding_units(raw: np.ndarray, scale: float | None, zero_point: int | None,
                    centre: Sequence[float] | np.ndarray | None = None,
                    mirror_raw: np.ndarray | None = None) -> np.ndarray:
    """The recognizer's raw output (with `mirror_raw`, its output for the mirrored crop: the flip policy) as the
    firmware's normalised (and, with the recognizer's centre, centred) embedding in 1e-4 units."""
    values = unit_output(raw, scale, zero_point)
    if mirror_raw is not None:
        values = flip_added(values, unit_output(mirror_raw, scale, zero_point))
    return to_units(centred(values, centre))


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """dot / (sqrt(|a|^2) * sqrt(|b|^2)) from exact integer sums (face_match_similarity); 0 when either is zero."""
    a64, b64 = np.asarray(a, np.int64), np.asarray(b, np.int64)
    aa, bb = int(a64 @ a64), int(b64 @ b64)
    if aa == 0 or bb == 0:
        return 0.0
    return float(int(a64 @ b64)) / (math.sqrt(float(aa)) * math.sqrt(float(bb)))


@dataclass(frozen=True)
class Decision:
    """Who a face is: an enrolled name or UNKNOWN, and the best similarity (0 with nobody enrolled)."""

    name: str
    similarity: float
    best: str | None  # the most similar enrolled person, named or not


def decide(units: np.ndarray, names: Sequence[str], templates: Sequence[np.ndarray],
           threshold_permyriad: int) -> Decision:
    """The most similar template (the first on ties), named when similarity * 10000 >= the threshold
    (face_match_best and face_recognize)."""
    best, best_similarity = -1, 0.0
    for index, template in enumerate(templates):
        s = similarity(units, template)
        if best < 0 or s > best_similarity:
            best, best_similarity = index, s
    if best < 0:
        return Decision(UNKNOWN, 0.0, None)
    named = best_similarity * PERMYRIAD >= float(threshold_permyriad)
    return Decision(names[best] if named else UNKNOWN, best_similarity, names[best])
