"""Rewrite the quantization of tensors of a converted TFLite flatbuffer in place: the scale and zero point of
activations and the int32 values and scales of biases. Every value keeps its size, so the bytes are overwritten
where the converter put them and the rest of the file stays as it was."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import tflite

from pipeline.errors import PipelineError

QUANT_SCALE_SLOT, QUANT_ZERO_SLOT, BUFFER_DATA_SLOT = 8, 10, 4  # vtable offsets in the TFLite schema


@dataclass
class Rewrite:
    """What to change: tensor index -> per-tensor (scale, zero point); bias tensor -> (int32 values, scales)."""

    activations: dict[int, tuple[float, int]] = field(default_factory=dict)
    biases: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def _vector(table, slot: int, what: str) -> tuple[int, int]:
    """(byte offset, length) of a vector field of a flatbuffer table."""
    offset = table._tab.Offset(slot)
    if not offset:
        raise PipelineError(f"{what} is missing", field=what, expected="a TFLite model from tf.lite.TFLiteConverter")
    return table._tab.Vector(offset), table._tab.VectorLen(offset)


def _put(out: bytearray, claimed: dict[int, tuple[int, str]], start: int, values: np.ndarray, what: str) -> None:
    """Write `values` at `start`; bytes the converter shares between tensors (deduplicated constants) may be
    written twice only with the same value."""
    raw = values.tobytes()
    for position, byte in enumerate(raw, start):
        previous, owner = claimed.setdefault(position, (byte, what))
        if previous != byte:
            raise PipelineError(f"{what} shares its bytes with {owner}, which needs other values", field=what,
                                expected="separate constants per tensor (the converter deduplicated equal ones)")
    out[start:start + len(raw)] = raw


def rewrite(data: bytes, change: Rewrite) -> bytes:
    """A copy of `data` with the quantization in `change` written over the converter's."""
    out = bytearray(data)
    model = tflite.Model.GetRootAsModel(out, 0)
    graph = model.Subgraphs(0)
    claimed: dict[int, tuple[int, str]] = {}
    for index, (scale, zero) in sorted(change.activations.items()):
        _quant_vectors(out, claimed, graph.Tensors(index), index, np.array([scale], "<f4"), np.array([zero], "<i8"))
    for index, (values, scales) in sorted(change.biases.items()):
        tensor = graph.Tensors(index)
        what = f"subgraphs[0].tensors[{index}] (bias '{tensor.Name().decode()}')"
        start, length = _vector(model.Buffers(tensor.Buffer()), BUFFER_DATA_SLOT, f"{what}.buffer")
        if length != values.size * 4:
            raise PipelineError(f"{what} holds {length} bytes, not {values.size} int32", field=what)
        _put(out, claimed, start, values.astype("<i4"), f"{what}.data")
        _quant_vectors(out, claimed, tensor, index, scales.astype("<f4"), np.zeros(scales.size, "<i8"))
    return bytes(out)


def _quant_vectors(out: bytearray, claimed: dict[int, tuple[int, str]], tensor, index: int, scales: np.ndarray,
                   zeros: np.ndarray) -> None:
    what = f"subgraphs[0].tensors[{index}].quantization"
    q = tensor.Quantization()
    if q is None:
        raise PipelineError("tensor is not quantized", field=what, expected="an int8 model")
    for slot, values, name in ((QUANT_SCALE_SLOT, scales, "scale"), (QUANT_ZERO_SLOT, zeros, "zero_point")):
        start, length = _vector(q, slot, f"{what}.{name}")
        if length != values.size:
            raise PipelineError(f"{length} {name} values, not {values.size}", field=f"{what}.{name}")
        _put(out, claimed, start, values, f"{what}.{name}")
