"""The KPU layer argument (12 x u64 register words), batch-norm words and the 16-segment activation table.

Field positions follow the packing table of the spec (§2.2, §3.2, §3.3). Each structure decodes to named integer
fields and encodes back; a value that does not fit its field raises PipelineError naming the field.
"""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass, field

import numpy as np

from deploy.k210.binary import ByteReader, extract_bits, insert_bits

LAYER_ARGUMENT_BYTES = 96
ACTIVATION_TABLE_BYTES = 144
ACTIVATION_SEGMENTS = 16
X_START_MIN = -(1 << 35)
X_START_MAX = (1 << 35) - 1

# (field, word, lsb, width, signed) for kpu_layer_argument_t.
LAYER_FIELDS: tuple[tuple[str, int, int, int, bool], ...] = (
    ("int_en", 0, 0, 1, False), ("ram_flag", 0, 1, 1, False), ("full_add", 0, 2, 1, False),
    ("depth_wise_layer", 0, 3, 1, False),
    ("image_src_addr", 1, 0, 15, False), ("image_dst_addr", 1, 32, 15, False),
    ("i_ch_num", 2, 0, 10, False), ("o_ch_num", 2, 32, 10, False), ("o_ch_num_coef", 2, 48, 10, False),
    ("i_row_wid", 3, 0, 10, False), ("i_col_high", 3, 10, 9, False), ("o_row_wid", 3, 32, 10, False),
    ("o_col_high", 3, 42, 9, False),
    ("kernel_type", 4, 0, 3, False), ("pad_type", 4, 3, 1, False), ("pool_type", 4, 4, 4, False),
    ("first_stride", 4, 8, 1, False), ("bypass_conv", 4, 9, 1, False), ("load_para", 4, 10, 1, False),
    ("dma_burst_size", 4, 16, 8, False), ("pad_value", 4, 24, 8, False), ("bwsx_base_addr", 4, 32, 32, False),
    ("load_coor", 5, 0, 1, False), ("load_time", 5, 1, 6, False), ("para_size", 5, 15, 17, False),
    ("para_start_addr", 5, 32, 32, False),
    ("coef_column_offset", 6, 0, 4, False), ("coef_row_offset", 6, 4, 12, False),
    ("channel_switch_addr", 7, 0, 15, False), ("row_switch_addr", 7, 16, 4, False), ("coef_size", 7, 20, 8, False),
    ("coef_group", 7, 28, 3, False), ("load_act", 7, 31, 1, False), ("active_addr", 7, 32, 32, False),
    ("wb_channel_switch_addr", 8, 0, 15, False), ("wb_row_switch_addr", 8, 16, 4, False),
    ("wb_group", 8, 20, 3, False),
    ("shr_w", 9, 0, 4, False), ("shr_x", 9, 4, 4, False), ("arg_w", 9, 8, 24, True), ("arg_x", 9, 32, 24, True),
    ("arg_add", 10, 0, 40, True),
    ("send_data_out", 11, 0, 1, False), ("channel_byte_num", 11, 16, 16, False),
    ("dma_total_byte", 11, 32, 32, False),
)


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
        return 3 if self.kernel_type == 1 else 1

    def weight_count(self) -> int:
        """Number of weights: OC*IC*k*k, or C*k*k for depthwise."""
        k2 = self.kernel_size ** 2
        return self.out_channels * k2 * (1 if self.depth_wise_layer else self.in_channels)

    def to_bytes(self) -> bytes:
        words = [0] * 12
        for name, word, lsb, width, signed in LAYER_FIELDS:
            words[word] |= insert_bits(getattr(self, name), lsb, width, signed, f"kpu_layer_argument.{name}")
        return struct.pack("<12Q", *words)

    @classmethod
    def read(cls, reader: ByteReader) -> KpuLayerArgs:
        words = reader.unpack("<12Q", "kpu_layer_argument")
        return cls(**{name: extract_bits(words[word], lsb, width, signed)
                      for name, word, lsb, width, signed in LAYER_FIELDS})


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
        words = [insert_bits(int(m), 0, 24, True, f"bn[{i}].norm_mul")
                 | insert_bits(int(a), 24, 32, True, f"bn[{i}].norm_add")
                 | insert_bits(int(s), 56, 4, False, f"bn[{i}].norm_shift")
                 for i, (m, a, s) in enumerate(zip(self.mul, self.add, self.shift, strict=True))]
        return struct.pack(f"<{len(words)}Q", *words)

    @classmethod
    def read(cls, reader: ByteReader, channels: int) -> BatchNormTable:
        words = reader.array("<u8", channels, "batch_norm").astype(np.uint64)
        mul = (words & np.uint64(0xFFFFFF)).astype(np.int64)
        add = ((words >> np.uint64(24)) & np.uint64(0xFFFFFFFF)).astype(np.int64)
        shift = ((words >> np.uint64(56)) & np.uint64(0xF)).astype(np.int64)
        mul = np.where(mul >= 1 << 23, mul - (1 << 24), mul)
        add = np.where(add >= 1 << 31, add - (1 << 32), add)
        return cls(mul=mul, add=add, shift=shift)


@dataclass
class ActivationTable:
    """kpu_activate_table_t: 16 segments of (x_start 36-bit signed, y_mul 16-bit, shift_number 8-bit, bias u8)."""

    x_start: list[int] = field(default_factory=lambda: [X_START_MIN] + [X_START_MAX] * 15)
    y_mul: list[int] = field(default_factory=lambda: [0] * ACTIVATION_SEGMENTS)
    shift: list[int] = field(default_factory=lambda: [0] * ACTIVATION_SEGMENTS)
    bias: list[int] = field(default_factory=lambda: [0] * ACTIVATION_SEGMENTS)

    def to_bytes(self) -> bytes:
        words = [insert_bits(self.shift[i], 0, 8, False, f"activation[{i}].shift_number")
                 | insert_bits(self.y_mul[i], 8, 16, True, f"activation[{i}].y_mul")
                 | insert_bits(self.x_start[i], 24, 36, True, f"activation[{i}].x_start")
                 for i in range(ACTIVATION_SEGMENTS)]
        biases = bytes(insert_bits(b, 0, 8, False, f"activation.result_bias[{i}]") for i, b in enumerate(self.bias))
        return struct.pack("<16Q", *words) + biases

    @classmethod
    def read(cls, reader: ByteReader) -> ActivationTable:
        words = reader.unpack("<16Q", "activation_table.activate_para")
        bias = list(reader.raw(16, "activation_table.result_bias"))
        return cls(x_start=[extract_bits(w, 24, 36, True) for w in words],
                   y_mul=[extract_bits(w, 8, 16, True) for w in words],
                   shift=[extract_bits(w, 0, 8, False) for w in words], bias=bias)
