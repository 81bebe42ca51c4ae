"""kmodel V3 in memory: the layer-type enum, one dataclass per layer body (spec §7.4), and the whole model.

Every body's fixed part is a little-endian struct whose fields are the dataclass fields in order (`FMT`);
bodies with a variable tail (tables, weights, input lists) carry it as a NumPy array or list after those fields.
Addresses named `*_addr` are byte offsets into the runtime's main buffer, `kpu_*_line` are KPU RAM line indices.
"""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, ClassVar

import numpy as np

from deploy.k210.format.registers import ActivationTable, BatchNormTable, KpuLayerArgs
from hardware.k210 import KMODEL_CONV_HEAD_BYTES, KMODEL_ENTRY_BYTES, KMODEL_HEADER_BYTES

KMODEL_VERSION = 3
HEADER_BYTES = KMODEL_HEADER_BYTES  # version, flags, arch, layers_length, max_start_address, main_mem_usage,
# output_count (u32)
OUTPUT_FMT = "<2I"  # kpu_model_output_t: address, size
LAYER_HEADER_FMT = "<2I"  # kpu_model_layer_header_t: type, body_size
ENTRY_BYTES = KMODEL_ENTRY_BYTES  # the size of either
K210_CONV_HEAD_FMT = "<6I"  # flags, main_mem_out_address, then the absolute offsets of the four blobs
assert struct.calcsize(K210_CONV_HEAD_FMT) == KMODEL_CONV_HEAD_BYTES
assert struct.calcsize(OUTPUT_FMT) == struct.calcsize(LAYER_HEADER_FMT) == ENTRY_BYTES
K210_CONV_HEAD_FIELDS = ("flags", "main_mem_out_addr", "layer_offset", "weights_offset", "bn_offset", "act_offset")
FLAG_MAIN_MEM_OUT = 1
FLAG_EIGHT_BIT_WEIGHTS = 1


class LayerType(IntEnum):
    """kpu_model_layer_type_t."""

    INVALID = 0
    ADD = 1
    QUANTIZED_ADD = 2
    GLOBAL_MAX_POOL2D = 3
    QUANTIZED_GLOBAL_MAX_POOL2D = 4
    GLOBAL_AVERAGE_POOL2D = 5
    QUANTIZED_GLOBAL_AVERAGE_POOL2D = 6
    MAX_POOL2D = 7
    QUANTIZED_MAX_POOL2D = 8
    AVERAGE_POOL2D = 9
    QUANTIZED_AVERAGE_POOL2D = 10
    QUANTIZE = 11
    DEQUANTIZE = 12
    REQUANTIZE = 13
    L2_NORMALIZATION = 14
    SOFTMAX = 15
    CONCAT = 16
    QUANTIZED_CONCAT = 17
    FULLY_CONNECTED = 18
    QUANTIZED_FULLY_CONNECTED = 19
    TENSORFLOW_FLATTEN = 20
    QUANTIZED_TENSORFLOW_FLATTEN = 21
    RESIZE_NEAREST_NEIGHBOR = 22
    QUANTIZED_RESIZE_NEAREST_NEIGHBOR = 23
    CHANNELWISE_DEQUANTIZE = 24
    LOGISTIC = 25
    K210_CONV = 10240
    K210_ADD_PADDING = 10241
    K210_REMOVE_PADDING = 10242
    K210_UPLOAD = 10243


class Activation(IntEnum):
    """kpu_model_activation_t used by float CPU layers."""

    LINEAR = 0
    RELU = 1
    RELU6 = 2


class Body:
    """Base of all layer bodies: equality that also compares NumPy array fields element-wise."""

    FMT: ClassVar[str] = ""

    def __eq__(self, other: object) -> bool:
        if type(self) is not type(other):
            return False
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if not f.compare:
                continue
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if isinstance(mine, np.ndarray) or isinstance(theirs, np.ndarray):
                if not (np.shape(mine) == np.shape(theirs) and np.array_equal(mine, theirs)):
                    return False
            elif mine != theirs:
                return False
        return True

    def fixed_values(self) -> tuple[Any, ...]:
        count = len(struct.unpack(self.FMT, bytes(struct.calcsize(self.FMT))))
        return tuple(getattr(self, f.name) for f in dataclasses.fields(self)[:count])  # type: ignore[arg-type]


@dataclass(eq=False)
class InOutBody(Body):
    """Bodies that start with flags, a main-buffer input and a main-buffer output address."""

    flags: int
    in_addr: int
    out_addr: int


@dataclass(eq=False)
class AddBody(Body):
    FMT: ClassVar[str] = "<5I"
    flags: int
    in_a_addr: int
    in_b_addr: int
    out_addr: int
    count: int


@dataclass(eq=False)
class QuantizedAddBody(Body):
    FMT: ClassVar[str] = "<5I9i"
    flags: int
    in_a_addr: int
    in_b_addr: int
    out_addr: int
    count: int
    in_a_offset: int
    in_a_mul: int
    in_a_shift: int
    in_b_offset: int
    in_b_mul: int
    in_b_shift: int
    out_offset: int
    out_mul: int
    out_shift: int


@dataclass(eq=False)
class GlobalPoolBody(InOutBody):
    """GLOBAL_(AVERAGE|MAX)_POOL2D and their quantized forms: one value per channel over kernel_size = H*W."""

    FMT: ClassVar[str] = "<5I"
    kernel_size: int
    channels: int


@dataclass(eq=False)
class Pool2dBody(InOutBody):
    """QUANTIZED_MAX_POOL2D / QUANTIZED_AVERAGE_POOL2D (60 bytes)."""

    FMT: ClassVar[str] = "<15I"
    in_width: int
    in_height: int
    in_channels: int
    out_width: int
    out_height: int
    out_channels: int
    kernel_width: int
    kernel_height: int
    stride_width: int
    stride_height: int
    padding_width: int
    padding_height: int


@dataclass(eq=False)
class FloatPool2dBody(Pool2dBody):
    """MAX_POOL2D / AVERAGE_POOL2D (64 bytes): the quantized pool fields plus a stored activation."""

    FMT: ClassVar[str] = "<16I"
    act: int = Activation.LINEAR


@dataclass(eq=False)
class QuantizeBody(InOutBody):
    """QUANTIZE and DEQUANTIZE: r = q * scale + bias."""

    FMT: ClassVar[str] = "<4I2f"
    count: int
    scale: float
    bias: float


@dataclass(eq=False)
class RequantizeBody(InOutBody):
    FMT: ClassVar[str] = "<4I"
    count: int
    table: np.ndarray = field(default_factory=lambda: np.arange(256, dtype=np.uint8))


@dataclass(eq=False)
class ChannelsBody(InOutBody):
    """L2_NORMALIZATION, SOFTMAX and LOGISTIC over `channels` float values."""

    FMT: ClassVar[str] = "<4I"
    channels: int


@dataclass(eq=False)
class ConcatBody(Body):
    """CONCAT / QUANTIZED_CONCAT: memcpy of (start, size) main-buffer ranges back to back into out_addr."""

    FMT: ClassVar[str] = "<3I"
    flags: int
    out_addr: int
    input_count: int
    inputs: list[tuple[int, int]] = field(default_factory=list)


@dataclass(eq=False)
class FullyConnectedBody(InOutBody):
    FMT: ClassVar[str] = "<6I"
    in_channels: int
    out_channels: int
    act: int
    weights: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # [out][in] float32
    bias: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))


@dataclass(eq=False)
class FlattenBody(InOutBody):
    """(QUANTIZED_)TENSORFLOW_FLATTEN: CHW -> HWC."""

    FMT: ClassVar[str] = "<6I"
    width: int
    height: int
    channels: int


@dataclass(eq=False)
class ResizeNearestBody(InOutBody):
    FMT: ClassVar[str] = "<9I"
    in_width: int
    in_height: int
    channels: int
    out_width: int
    out_height: int
    align_corners: int


@dataclass(eq=False)
class ChannelwiseDequantizeBody(InOutBody):
    FMT: ClassVar[str] = "<5I"
    channels: int
    channel_size: int
    scale: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    bias: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))


@dataclass(eq=False)
class AddPaddingBody(Body):
    """K210_ADD_PADDING: u8 per channel from main memory to pixel (0, 0) of a 4x4 KPU map."""

    FMT: ClassVar[str] = "<4I"
    flags: int
    in_addr: int
    kpu_out_line: int
    channels: int


@dataclass(eq=False)
class RemovePaddingBody(InOutBody):
    """K210_REMOVE_PADDING: out[c] = in[16 * c]."""

    FMT: ClassVar[str] = "<4I"
    channels: int


@dataclass(eq=False)
class UploadBody(Body):
    """K210_UPLOAD: compact CHW u8 from main memory into KPU RAM layout."""

    FMT: ClassVar[str] = "<6I"
    flags: int
    in_addr: int
    kpu_out_line: int
    width: int
    height: int
    channels: int


@dataclass(eq=False)
class K210ConvBody(Body):
    """K210_CONV: head (flags, main-memory output) + register block + weights + batch norm + activation table.

    The four absolute file offsets are recorded when read and recomputed by the writer; they take no part in
    equality because they follow from the layout.
    """

    FMT: ClassVar[str] = "<2I"
    flags: int
    main_mem_out_addr: int
    args: KpuLayerArgs
    weights: np.ndarray  # flat uint8 (8-bit mode) or uint16, [OC][IC][k][k] or [C][k][k] when depthwise
    bn: BatchNormTable
    activation: ActivationTable
    layer_offset: int = field(default=0, compare=False)
    weights_offset: int = field(default=0, compare=False)
    bn_offset: int = field(default=0, compare=False)
    act_offset: int = field(default=0, compare=False)


BODY_CLASSES: dict[LayerType, type[Body]] = {
    LayerType.ADD: AddBody,
    LayerType.QUANTIZED_ADD: QuantizedAddBody,
    LayerType.GLOBAL_MAX_POOL2D: GlobalPoolBody,
    LayerType.QUANTIZED_GLOBAL_MAX_POOL2D: GlobalPoolBody,
    LayerType.GLOBAL_AVERAGE_POOL2D: GlobalPoolBody,
    LayerType.QUANTIZED_GLOBAL_AVERAGE_POOL2D: GlobalPoolBody,
    LayerType.MAX_POOL2D: FloatPool2dBody,
    LayerType.QUANTIZED_MAX_POOL2D: Pool2dBody,
    LayerType.AVERAGE_POOL2D: FloatPool2dBody,
    LayerType.QUANTIZED_AVERAGE_POOL2D: Pool2dBody,
    LayerType.QUANTIZE: QuantizeBody,
    LayerType.DEQUANTIZE: QuantizeBody,
    LayerType.REQUANTIZE: RequantizeBody,
    LayerType.L2_NORMALIZATION: ChannelsBody,
    LayerType.SOFTMAX: ChannelsBody,
    LayerType.CONCAT: ConcatBody,
    LayerType.QUANTIZED_CONCAT: ConcatBody,
    LayerType.FULLY_CONNECTED: FullyConnectedBody,
    LayerType.TENSORFLOW_FLATTEN: FlattenBody,
    LayerType.QUANTIZED_TENSORFLOW_FLATTEN: FlattenBody,
    LayerType.RESIZE_NEAREST_NEIGHBOR: ResizeNearestBody,
    LayerType.QUANTIZED_RESIZE_NEAREST_NEIGHBOR: ResizeNearestBody,
    LayerType.CHANNELWISE_DEQUANTIZE: ChannelwiseDequantizeBody,
    LayerType.LOGISTIC: ChannelsBody,
    LayerType.K210_CONV: K210ConvBody,
    LayerType.K210_ADD_PADDING: AddPaddingBody,
    LayerType.K210_REMOVE_PADDING: RemovePaddingBody,
    LayerType.K210_UPLOAD: UploadBody,
}


@dataclass
class OutputDesc:
    """kpu_model_output_t: byte offset and size of one model output in the main buffer."""

    address: int
    size: int


@dataclass
class Layer:
    type: LayerType
    body: Body
    body_size: int = field(default=0, compare=False)  # as recorded in the file, padding included
    file_offset: int = field(default=0, compare=False)


@dataclass
class KModel:
    """A kmodel V3: header fields, outputs and layers in execution order."""

    flags: int
    max_start_address: int
    main_mem_usage: int
    outputs: list[OutputDesc]
    layers: list[Layer]
    arch: int = 0

    @property
    def eight_bit_weights(self) -> bool:
        return bool(self.flags & FLAG_EIGHT_BIT_WEIGHTS)
