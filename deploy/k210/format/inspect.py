"""Human-readable dump of a kmodel V3: header, outputs, and every layer with its fields (`invoke compile --inspect`)."""

from __future__ import annotations

import dataclasses

import numpy as np

from deploy.k210.format import kmodel as km
from hardware.k210 import ACTIVATION_SEGMENTS, LAYER_FIELDS, PoolType


def _value(value: object) -> str:
    if isinstance(value, np.ndarray):
        head = np.array2string(value.reshape(-1)[:4], precision=6, separator=", ")
        return f"<{value.dtype} {tuple(value.shape)} {head[:-1]}{', ...' if value.size > 4 else ''}]>"
    if isinstance(value, list) and len(value) > 4:
        return f"{value[:4]} ... ({len(value)} items)"
    return str(value)


def _pool_label(value: int) -> str:
    return PoolType(value).label if value in PoolType._value2member_map_ else "invalid"


def _conv_lines(body: km.K210ConvBody, eight_bit: bool) -> list[str]:
    a = body.args
    kind = "depthwise" if a.depth_wise_layer else "conv"
    c, h, w = a.in_shape
    oc, oh, ow = a.out_shape
    lines = [
        f"    {kind} {a.kernel_size}x{a.kernel_size}  in {c}x{h}x{w} (CxHxW) -> out {oc}x{oh}x{ow}  "
        f"pool {a.pool_type} ({_pool_label(a.pool_type)})",
        f"    KPU lines in @{a.image_src_addr}  out @{a.image_dst_addr}  main-memory output: "
        f"{'yes @' + str(body.main_mem_out_addr) if body.flags & km.FLAG_MAIN_MEM_OUT else 'no'}",
        f"    offsets: registers {body.layer_offset}  weights {body.weights_offset} ({body.weights.size} x "
        f"{8 if eight_bit else 16}-bit)  bn {body.bn_offset}  activation {body.act_offset}",
    ]
    words: dict[int, list[str]] = {}
    for name, word, *_ in LAYER_FIELDS:
        words.setdefault(word, []).append(f"{name}={getattr(a, name)}")
    lines += [f"    word {word:2d}: " + " ".join(fields) for word, fields in words.items()]
    lines.append(f"    bn[0..{len(body.bn) - 1}]: mul {_value(body.bn.mul)} shift {_value(body.bn.shift)} "
                 f"add {_value(body.bn.add)}")
    t = body.activation
    lines += [f"    act[{i:2d}] x_start={t.x_start[i]} y_mul={t.y_mul[i]} shift={t.shift[i]} bias={t.bias[i]}"
              for i in range(ACTIVATION_SEGMENTS)]
    return lines


def describe_kmodel(model: km.KModel, *, title: str = "kmodel") -> str:
    """Every header field, output and layer field of a V3 model, one layer block after another."""
    lines = [
        f"{title}: kmodel V3, arch {model.arch}, {'8' if model.eight_bit_weights else '16'}-bit weights "
        f"(flags {model.flags}), {len(model.layers)} layers, {len(model.outputs)} outputs",
        f"  max_start_address {model.max_start_address} (KPU line)  main_mem_usage {model.main_mem_usage} bytes",
    ]
    lines += [f"  output[{i}]: main offset {o.address}, {o.size} bytes" for i, o in enumerate(model.outputs)]
    counts: dict[str, int] = {}
    for index, layer in enumerate(model.layers):
        counts[layer.type.name] = counts.get(layer.type.name, 0) + 1
        lines.append(f"  [{index:3d}] {layer.type.name} (type {int(layer.type)}) @ file offset {layer.file_offset}, "
                     f"body {layer.body_size} bytes")
        if isinstance(layer.body, km.K210ConvBody):
            lines += _conv_lines(layer.body, model.eight_bit_weights)
            continue
        fields = [f"{f.name}={_value(getattr(layer.body, f.name))}" for f in dataclasses.fields(layer.body)]
        lines.append("    " + " ".join(fields))
    lines.append("  layer types: " + ", ".join(f"{n} x{c}" for n, c in counts.items()))
    return "\n".join(lines)
