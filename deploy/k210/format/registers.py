"""The KPU layer argument (12 x u64 register words), batch-norm words and the 16-segment activation table.

Field positions are the tables of hardware.k210 (spec §2.2, §3.2, §3.3). Each structure decodes to named integer
fields and encodes back; a value that does not fit its field raises PipelineError naming the field.
"""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass, field

import numpy as np

from deploy.k210.format.binary import ByteReader, extract_bits, insert_bits
from hardware.k210 import (
    ACTIVATION_FIELDS,
    ACTIVATION_SEGMENTS,
    BN_FIELDS,
    KERNEL_TYPE_3X3,
    LAYER_ARGUMENT_WORDS,
    LAYER_FIELDS,
    Field,
)

ACTIVATION_SHIFT, ACTIVATION_Y_MUL, ACTIVATION_X_START = ACTIVATION_FIELDS
BN_MUL, BN_ADD, BN_SHIFT = BN_FIELDS


def _put(value: int, f: Field, what: str) -> int:
    return insert_bits(value, f.lsb, f.width, f.signed, what)


def _get(word: int, f: Field) -> int:
    return extract_bits(word, f.lsb, f.width, f.signed)


X_START_MIN = -(1 << (ACTIVATION_X_START.width - 1))
X_START_MAX = (1 << (ACTIVATION_X_START.width - 1)) - 1


@dataclass
class KpuLayerArgs:
    """kpu_layer_argument_t decoded to its named fields (spec §2); defaults are the compiler constants of §2.1."""

    int_en: int = 0
    ram_flag: int = 0
    full_add: int = 0
    depth_wise_layer: int = 0
    image_src_addr: int = 0
    image_dst_addr: int = 0
    i_ch_num: int = 0
    o_ch_num: int = 0
    o_ch_num_coef: int = 0
    i_row_wid: int = 0
    i_col_high: int = 0
    o_row_wid: int = 0
    o_col_high: int = 0
    kernel_type: int = 0
    pad_type: int = 0
    pool_type: int = 0
    first_stride: int = 0
    bypass_conv: int = 0
    load_para: int = 1
    dma_burst_size: int = 15
    pad_value: int = 0
    bwsx_base_addr: int = 0
    load_coor: int = 1
    load_time: int = 0
    para_size: int = 0
    para_start_addr: int = 0
    coef_column_offset: int = 0
    coef_row_offset: int = 0
    channel_switch_addr: int = 0
    row_switch_addr: int = 0
    coef_size: int = 0
    coef_group: int = 1
    load_act: int = 1
    active_addr: int = 0
    wb_channel_switch_addr: int = 0
    wb_row_switch_addr: int = 0
    wb_group: int = 1
    shr_w: int = 0
    shr_x: int = 0
    arg_w: int = 0
    arg_x: int = 0
    arg_add: int = 0
    send_data_out: int = 0
    channel_byte_num: int = 0
    dma_total_byte: int = 0

    @property
    def in_channels(self) -> int:
        return self.i_ch_num + 1

    @property
    def out_channels(self) -> int:
        return self.o_ch_num + 1

    @property
    def in_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the input map."""
        return self.i_ch_num + 1, self.i_col_high + 1, self.i_row_wid + 1

    @property
    def out_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the output map after pooling."""
        return self.o_ch_num + 1, self.o_col_high + 1, self.o_row_wid + 1

    @property
    def kernel_size(self) -> int:
        return 3 if self.kernel_type == KERNEL_TYPE_3X3 else 1

    def weight_count(self) -> int:
        """Number of weights: OC*IC*k*k, or C*k*k for depthwise."""
        k2 = self.kernel_size ** 2
        return self.out_channels * k2 * (1 if self.depth_wise_layer else self.in_channels)

    def to_bytes(self) -> bytes:
        words = [0] * LAYER_ARGUMENT_WORDS
        for f in LAYER_FIELDS:
            words[f.word] |= _put(getattr(self, f.name), f, f"kpu_layer_argument.{f.name}")
        return struct.pack(f"<{LAYER_ARGUMENT_WORDS}Q", *words)

    @classmethod
    def read(cls, reader: ByteReader) -> KpuLayerArgs:
        words = reader.unpack(f"<{LAYER_ARGUMENT_WORDS}Q", "kpu_layer_argument")
        return cls(**{f.name: _get(words[f.word], f) for f in LAYER_FIELDS})


def _get_array(words: np.ndarray, f: Field) -> np.ndarray:
    """Field `f` of every u64 in `words`, sign-extended when signed, as int64."""
    value = ((words >> np.uint64(f.lsb)) & np.uint64((1 << f.width) - 1)).astype(np.int64)
    return np.where(value >= 1 << (f.width - 1), value - (1 << f.width), value) if f.signed else value


@dataclass
class BatchNormTable:
    """Per output channel (norm_mul 24-bit signed, norm_add 32-bit signed, norm_shift 0..15), one u64 each."""

    mul: np.ndarray
    add: np.ndarray
    shift: np.ndarray

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BatchNormTable) and all(
            np.array_equal(getattr(self, f.name), getattr(other, f.name)) for f in dataclasses.fields(self))

    def __len__(self) -> int:
        return len(self.mul)

    def to_bytes(self) -> bytes:
        words = [_put(int(m), BN_MUL, f"bn[{i}].norm_mul") | _put(int(a), BN_ADD, f"bn[{i}].norm_add")
                 | _put(int(s), BN_SHIFT, f"bn[{i}].norm_shift")
                 for i, (m, a, s) in enumerate(zip(self.mul, self.add, self.shift, strict=True))]
        return struct.pack(f"<{len(words)}Q", *words)

    @classmethod
    def read(cls, reader: ByteReader, channels: int) -> BatchNormTable:
        words = reader.array("<u8", channels, "batch_norm").astype(np.uint64)
        mul, add, shift = (_get_array(words, f) for f in BN_FIELDS)
        return cls(mul=mul, add=add, shift=shift)


@dataclass
class ActivationTable:
    """kpu_activate_table_t: 16 segments of (x_start 36-bit signed, y_mul 16-bit, shift_number 8-bit, bias u8)."""

    x_start: list[int] = field(default_factory=lambda: [X_START_MIN] + [X_START_MAX] * 15)
    y_mul: list[int] = field(default_factory=lambda: [0] * ACTIVATION_SEGMENTS)
    shift: list[int] = field(default_factory=lambda: [0] * ACTIVATION_SEGMENTS)
    bias: list[int] = field(default_factory=lambda: [0] * ACTIVATION_SEGMENTS)

    def to_bytes(self) -> bytes:
        words = [_put(self.shift[i], ACTIVATION_SHIFT, f"activation[{i}].shift_number")
                 | _put(self.y_mul[i], ACTIVATION_Y_MUL, f"activation[{i}].y_mul")
                 | _put(self.x_start[i], ACTIVATION_X_START, f"activation[{i}].x_start")
                 for i in range(ACTIVATION_SEGMENTS)]
        biases = bytes(insert_bits(b, 0, 8, False, f"activation.result_bias[{i}]") for i, b in enumerate(self.bias))
        return struct.pack(f"<{ACTIVATION_SEGMENTS}Q", *words) + biases

    @classmethod
    def read(cls, reader: ByteReader) -> ActivationTable:
        words = reader.unpack(f"<{ACTIVATION_SEGMENTS}Q", "activation_table.activate_para")
        bias = list(reader.raw(ACTIVATION_SEGMENTS, "activation_table.result_bias"))
        return cls(x_start=[_get(w, ACTIVATION_X_START) for w in words],
                   y_mul=[_get(w, ACTIVATION_Y_MUL) for w in words],
                   shift=[_get(w, ACTIVATION_SHIFT) for w in words], bias=bias)
