"""Read and write kmodel V3 files (spec §7.1-7.4, §8.2), keeping nncase's body order and alignments.

`read_kmodel` rejects any malformed or truncated file with a PipelineError naming the byte offset and field;
`write_kmodel(read_kmodel(b))` reproduces an nncase v0.1 file byte for byte, plus the final body padding that
nncase leaves unwritten.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from deploy.k210.format.binary import ByteReader, ByteWriter
from deploy.k210.format.kmodel import (
    BODY_CLASSES,
    ENTRY_BYTES,
    HEADER_BYTES,
    K210_CONV_HEAD_FIELDS,
    K210_CONV_HEAD_FMT,
    KMODEL_VERSION,
    LAYER_HEADER_FMT,
    OUTPUT_FMT,
    Body,
    ChannelwiseDequantizeBody,
    ConcatBody,
    FullyConnectedBody,
    K210ConvBody,
    KModel,
    Layer,
    LayerType,
    OutputDesc,
    RequantizeBody,
)
from deploy.k210.format.registers import ActivationTable, BatchNormTable, KpuLayerArgs
from hardware.k210 import (
    ACTIVATION_TABLE_BYTES,
    BN_WORD_BYTES,
    KMODEL_ACTIVATION_ALIGN,
    KMODEL_BN_ALIGN,
    KMODEL_BODY_ALIGN,
    KMODEL_REGISTER_ALIGN,
    KMODEL_WEIGHTS_ALIGN,
    LAYER_ARGUMENT_BYTES,
)
from pipeline.errors import PipelineError

# body offsets are absolute file offsets, so a model in memory must start at least as aligned as its blobs
MODEL_ALIGNMENT = max(KMODEL_BODY_ALIGN, KMODEL_REGISTER_ALIGN, KMODEL_WEIGHTS_ALIGN, KMODEL_BN_ALIGN,
                      KMODEL_ACTIVATION_ALIGN)
# nncase never writes the last body's padding, so the recorded body sizes may run past the end of the file.
MAX_BODY_OVERRUN = KMODEL_BODY_ALIGN - 1


def load_kmodel(source: bytes | str | Path) -> KModel:
    """A kmodel from bytes or a file path."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return read_kmodel(bytes(source))
    path = Path(source)
    if not path.is_file():
        raise PipelineError("kmodel file not found", path=path, expected="an existing .kmodel file")
    return read_kmodel(path.read_bytes(), path=path)


def read_kmodel(data: bytes, *, path: str | Path | None = None) -> KModel:
    """Parse a kmodel V3 file."""
    reader = ByteReader(data, path=path)
    if data[:4] == b"KMDL":
        version = struct.unpack_from("<I", data, 4)[0] if len(data) >= 8 else "?"
        raise reader.fail(f"this is a kmodel V{version} ('KMDL' identifier), not V3", "header.version",
                          expected="a kmodel V3 file (nncase v0.1 / Maix-EMC)", offset=0)
    version, flags, arch, layer_count, max_start, main_mem, output_count = reader.unpack("<7I", "header")
    if version != KMODEL_VERSION:
        raise reader.fail(f"version is {version}", "header.version", expected="3", offset=0)
    if arch != 0:
        raise reader.fail(f"arch is {arch}", "header.arch", expected="0 (the SDK rejects anything else)", offset=8)
    reader.need(ENTRY_BYTES * (output_count + layer_count), "header.output_count/layers_length")
    outputs = [OutputDesc(*reader.unpack(OUTPUT_FMT, f"outputs[{i}]")) for i in range(output_count)]
    headers = [reader.unpack(LAYER_HEADER_FMT, f"layer_headers[{i}]") for i in range(layer_count)]
    layers = []
    start = reader.offset
    for index, (type_value, body_size) in enumerate(headers):
        name = f"layers[{index}]"
        try:
            layer_type = LayerType(type_value)
        except ValueError:
            header_at = HEADER_BYTES + ENTRY_BYTES * (output_count + index)
            raise reader.fail(f"unknown layer type {type_value}", f"{name}.type",
                              expected="a kpu_model_layer_type_t value", offset=header_at) from None
        if layer_type not in BODY_CLASSES:
            raise reader.fail(f"layer type {layer_type.name} has no V3 body layout", f"{name}.type",
                              expected="a layer type the V3 runtime defines")
        end = start + body_size
        if end > len(data) + MAX_BODY_OVERRUN:
            raise reader.fail(f"body_size {body_size} runs past the end of the {len(data)}-byte file",
                              f"{name}.body_size", expected="a complete file", offset=start)
        body_reader = ByteReader(data[:min(end, len(data))], path=path, offset=start)
        body = _read_body(body_reader, layer_type, bool(flags & 1), name, start)
        layers.append(Layer(layer_type, body, body_size=body_size, file_offset=start))
        start = end
    return KModel(flags=flags, max_start_address=max_start, main_mem_usage=main_mem, outputs=outputs,
                  layers=layers, arch=arch)


def _read_body(reader: ByteReader, layer_type: LayerType, eight_bit: bool, name: str, start: int) -> Body:
    cls = BODY_CLASSES[layer_type]
    if cls is K210ConvBody:
        return _read_conv(reader, eight_bit, name, start)
    fixed = reader.unpack(cls.FMT, f"{name}.{cls.__name__}")
    body = cls(*fixed)
    if isinstance(body, RequantizeBody):
        body.table = reader.array("u1", 256, f"{name}.table")
    elif isinstance(body, ConcatBody):
        reader.need(8 * body.input_count, f"{name}.inputs")
        body.inputs = [reader.unpack("<2I", f"{name}.inputs[{i}]") for i in range(body.input_count)]
    elif isinstance(body, FullyConnectedBody):
        reader.need(4 * (body.in_channels * body.out_channels + body.out_channels), f"{name}.weights")
        body.weights = reader.array("<f4", body.in_channels * body.out_channels, f"{name}.weights").reshape(
            body.out_channels, body.in_channels)
        body.bias = reader.array("<f4", body.out_channels, f"{name}.bias")
    elif isinstance(body, ChannelwiseDequantizeBody):
        params = reader.array("<f4", 2 * body.channels, f"{name}.params").reshape(-1, 2)
        body.scale, body.bias = params[:, 0].copy(), params[:, 1].copy()
    return body


def _read_conv(reader: ByteReader, eight_bit: bool, name: str, start: int) -> K210ConvBody:
    head = reader.unpack(K210_CONV_HEAD_FMT, f"{name}.k210_conv_head")
    flags, main_out, layer_off, weights_off, bn_off, act_off = head
    body_end = len(reader.data)

    def jump(offset: int, size: int, field: str) -> None:
        if not start <= offset <= body_end - size:
            raise reader.fail(f"{field} {offset} (+{size} bytes) lies outside the layer body [{start}, {body_end})",
                              f"{name}.{field}", expected="an absolute file offset inside this layer's body",
                              offset=start)
        reader.offset = offset

    jump(layer_off, LAYER_ARGUMENT_BYTES, "layer_offset")
    args = KpuLayerArgs.read(reader)
    count = args.weight_count()
    dtype = "u1" if eight_bit else "<u2"
    jump(weights_off, count * np.dtype(dtype).itemsize, "weights_offset")
    weights = reader.array(dtype, count, f"{name}.weights")
    jump(bn_off, BN_WORD_BYTES * args.out_channels, "bn_offset")
    bn = BatchNormTable.read(reader, args.out_channels)
    jump(act_off, ACTIVATION_TABLE_BYTES, "act_offset")
    activation = ActivationTable.read(reader)
    return K210ConvBody(flags=flags, main_mem_out_addr=main_out, args=args, weights=weights, bn=bn,
                        activation=activation, layer_offset=layer_off, weights_offset=weights_off,
                        bn_offset=bn_off, act_offset=act_off)


def write_kmodel(model: KModel) -> bytes:
    """Serialise a kmodel V3 (nncase v0.1 layout: bodies 8-aligned, weights/BN 128-aligned, table 256-aligned)."""
    out = ByteWriter()
    out.pack("<7I", KMODEL_VERSION, model.flags, model.arch, len(model.layers), model.max_start_address,
             model.main_mem_usage, len(model.outputs))
    for desc in model.outputs:
        out.pack(OUTPUT_FMT, desc.address, desc.size)
    headers_at = out.offset
    out.raw(bytes(ENTRY_BYTES * len(model.layers)))
    for index, layer in enumerate(model.layers):
        start = out.offset
        try:
            _write_body(out, layer.body, model.eight_bit_weights)
        except struct.error as exc:
            raise PipelineError(f"a value does not fit its field: {exc}", field=f"layers[{index}]",
                                expected="values within the V3 field widths") from None
        out.align(KMODEL_BODY_ALIGN)
        struct.pack_into(LAYER_HEADER_FMT, out.buffer, headers_at + ENTRY_BYTES * index, int(layer.type),
                         out.offset - start)
    return bytes(out.buffer)


def _write_body(out: ByteWriter, body: Body, eight_bit: bool) -> None:
    if isinstance(body, K210ConvBody):
        _write_conv(out, body, eight_bit)
        return
    if isinstance(body, ConcatBody):
        body.input_count = len(body.inputs)
    out.pack(body.FMT, *body.fixed_values())
    if isinstance(body, RequantizeBody):
        out.raw(np.asarray(body.table, dtype=np.uint8).tobytes())
    elif isinstance(body, ConcatBody):
        for start, size in body.inputs:
            out.pack("<2I", start, size)
    elif isinstance(body, FullyConnectedBody):
        out.raw(np.asarray(body.weights, "<f4").tobytes() + np.asarray(body.bias, "<f4").tobytes())
    elif isinstance(body, ChannelwiseDequantizeBody):
        out.raw(np.stack([body.scale, body.bias], axis=1).astype("<f4").tobytes())


def _align(value: int, alignment: int) -> int:
    return value + (-value % alignment)


def _write_conv(out: ByteWriter, body: K210ConvBody, eight_bit: bool) -> None:
    stored = np.asarray(body.weights)
    if stored.dtype.itemsize != (1 if eight_bit else 2):
        raise PipelineError(f"{8 * stored.dtype.itemsize}-bit weights in a kmodel whose header says "
                            f"{8 if eight_bit else 16}-bit", field="flags",
                            expected="one weight width for every K210_CONV layer: kmodel V3 has one global flag, "
                                     "which kpu.c copies into eight_bit_mode once per model")
    weights = stored.astype("u1" if eight_bit else "<u2").tobytes()
    body.layer_offset = _align(out.offset + struct.calcsize(K210_CONV_HEAD_FMT), KMODEL_REGISTER_ALIGN)
    body.weights_offset = _align(body.layer_offset + LAYER_ARGUMENT_BYTES, KMODEL_WEIGHTS_ALIGN)
    body.bn_offset = _align(body.weights_offset + len(weights), KMODEL_BN_ALIGN)
    body.act_offset = _align(body.bn_offset + BN_WORD_BYTES * len(body.bn), KMODEL_ACTIVATION_ALIGN)
    out.pack(K210_CONV_HEAD_FMT, *(getattr(body, name) for name in K210_CONV_HEAD_FIELDS))
    for offset, blob in ((body.layer_offset, body.args.to_bytes()), (body.weights_offset, weights),
                         (body.bn_offset, body.bn.to_bytes()), (body.act_offset, body.activation.to_bytes())):
        out.raw(bytes(offset - out.offset))
        out.raw(blob)
