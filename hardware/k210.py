"""The Kendryte K210 facts the toolchain depends on, each defined once (spec kmodel-v3-and-kpu.md §1-§3).

`models/` (the size budget) and `deploy/` (compiler, simulator, firmware build, flasher) import them; the C runtime
gets the register fields, pool types and sizes as a generated header (deploy/firmware/k210_headers.py).
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

MIB = 1024 * 1024

# Memories.
SRAM_BYTES = 6 * MIB  # general SRAM 0x80000000..0x805FFFFF: firmware, heap, a flash-stored kmodel; the ROM boots here
KPU_RAM_BYTES = 2 * MIB  # the KPU's AI SRAM, 0x80600000..0x807FFFFF
FLASH_BYTES = 16 * MIB  # the SPI NOR flash of the common boards (Maix Bit/Dock/Go, KD233)
# Its geometry (the W25Q128 family on those boards): the smallest erase (SECTOR ERASE 0x20) and the largest PAGE
# PROGRAM (0x02), which must not cross a page boundary.
FLASH_SECTOR_BYTES = 4096
FLASH_PAGE_BYTES = 256

# KPU RAM geometry (§1.3): 64-byte lines; maps at most 16 or 32 pixels wide share a line between 4 or 2 channels.
KPU_LINE_BYTES = 64
KPU_RAM_LINES = KPU_RAM_BYTES // KPU_LINE_BYTES

# KPU layer limits (§1.4).
KPU_MAX_CHANNELS = 1024
KPU_MAX_WIDTH = 512
KPU_MAX_HEIGHT = 256
KPU_MIN_SIZE = 4
KPU_KERNELS = (1, 3)
KPU_ACC_BITS = 36  # accumulator and batch-norm output are 36-bit signed
# One weight load moves at most this many bytes of 8-bit weights (twice as many of 16-bit ones, nncase's 60 KiB); a
# layer has at most KPU_MAX_WEIGHT_LOADS of them.
KPU_WEIGHT_LOAD_BYTES = 30 * 1024
KPU_MAX_WEIGHT_LOADS = 64
KPU_WEIGHT_BITS = (8, 16)  # the kmodel header's global weight width (flags bit 0, copied into eight_bit_mode)


def weight_load_bytes(weight_bits: int) -> int:
    """The most weight bytes one KPU weight load moves: 30 KiB of 8-bit weights, 60 KiB of 16-bit ones (§1.4)."""
    return KPU_WEIGHT_LOAD_BYTES * weight_bits // 8


class PoolType(IntEnum):
    """The KPU write-back pool / decimation modes (kpu_layer_argument_t.pool_type, §5.5)."""

    BYPASS = 0
    MAX_2_S2 = 1
    MEAN_2_S2 = 2
    MAX_4_S4 = 3
    MEAN_4_S4 = 4
    LEFT_TOP_2_S2 = 5
    RIGHT_TOP_2_S2 = 6
    LEFT_TOP_4_S4 = 7
    MEAN_2_S1 = 8
    MAX_2_S1 = 9

    @property
    def stride(self) -> int:
        return int(self.name.rsplit("_S", 1)[1]) if self.name != "BYPASS" else 1

    @property
    def label(self) -> str:
        """The spec's name, e.g. max_2_s2."""
        return self.name.lower()

    @property
    def is_max(self) -> bool:
        return self.name.startswith("MAX")

    @property
    def is_pick(self) -> bool:
        """Decimation modes that keep one pixel of each window."""
        return "_TOP_" in self.name


class Field(NamedTuple):
    """A bit field: its name, the u64 word it lives in, least significant bit, width and signedness."""

    name: str
    word: int
    lsb: int
    width: int
    signed: bool


def _fields(*rows: tuple) -> tuple[Field, ...]:
    return tuple(Field(*row) for row in rows)


# kpu_layer_argument_t: 12 little-endian u64 words (§2.2).
LAYER_ARGUMENT_WORDS = 12
LAYER_ARGUMENT_BYTES = 8 * LAYER_ARGUMENT_WORDS
LAYER_FIELDS = _fields(
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
KERNEL_TYPE_1X1 = 0
KERNEL_TYPE_3X3 = 1

# Batch norm (§3.2): one u64 per output channel.
BN_WORD_BYTES = 8
BN_FIELDS = _fields(("norm_mul", 0, 0, 24, True), ("norm_add", 0, 24, 32, True), ("norm_shift", 0, 56, 4, False))

# kpu_activate_table_t (§3.3): 16 u64 segment words, then 16 result-bias bytes.
ACTIVATION_SEGMENTS = 16
ACTIVATION_FIELDS = _fields(("shift_number", 0, 0, 8, False), ("y_mul", 0, 8, 16, True),
                            ("x_start", 0, 24, 36, True))
ACTIVATION_TABLE_BYTES = 8 * ACTIVATION_SEGMENTS + ACTIVATION_SEGMENTS

# kmodel V3 layout (spec §7): the file header, one (type, body size) entry per layer and per output, the fixed head of
# a K210_CONV body (flags, output address, four blob offsets), and the alignments nncase v0.1 keeps: bodies 8-aligned,
# a conv's register words 8-, weights and BN words 128- and its activation table 256-aligned (absolute file offsets).
KMODEL_HEADER_BYTES = 28
KMODEL_ENTRY_BYTES = 8
KMODEL_CONV_HEAD_BYTES = 24
KMODEL_BODY_ALIGN = 8
KMODEL_REGISTER_ALIGN = 8
KMODEL_WEIGHTS_ALIGN = 128
KMODEL_BN_ALIGN = 128
KMODEL_ACTIVATION_ALIGN = 256


# (widest map, channels sharing one line): narrow maps put several channels' rows side by side in a 64-byte line
KPU_LINE_SHARING = ((16, 4), (32, 2))


def row_layout(width: int) -> tuple[int, int, int]:
    """(channels per line, lines per row, byte pitch between grouped channels) for a map `width` pixels wide."""
    for widest, groups in KPU_LINE_SHARING:
        if width <= widest:
            return groups, 1, KPU_LINE_BYTES // groups
    return 1, -(-width // KPU_LINE_BYTES), KPU_LINE_BYTES


def map_lines(channels: int, height: int, width: int) -> int:
    """KPU RAM lines taken by a C x H x W uint8 map."""
    groups, row_len, _ = row_layout(width)
    return row_len * height * -(-channels // min(channels, groups))


def map_bytes(channels: int, height: int, width: int) -> int:
    """KPU RAM bytes taken by a C x H x W uint8 map."""
    return map_lines(channels, height, width) * KPU_LINE_BYTES
