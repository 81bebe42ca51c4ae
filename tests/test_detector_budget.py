"""Budget: KPU map sizes from the spec's layout table, hand-counted MACs/bytes, and the over-budget refusal."""

from __future__ import annotations

import keras
import pytest

from hardware.k210 import ACTIVATION_TABLE_BYTES as ACT_TABLE_BYTES
from hardware.k210 import KPU_RAM_BYTES
from hardware.k210 import map_bytes as kpu_map_bytes
from models.backbones.blocks import SpaceToDepth
from models.budget import (
    DENSE_PADDING_BYTES,
    DEQUANTIZE_BYTES,
    WIDTH_STEP,
    check_budget,
    kpu_layer_bytes,
    measure,
    widest_fitting,
)
from pipeline.errors import PipelineError

# A KPU layer's fixed cost: layer entry 8, conv head 24, 12 register words, the activation table, and at most
# 7 + 127 + 127 + 255 + 7 bytes of alignment padding; the file: header 28, an output entry 8 and its DEQUANTIZE.
LAYER_FIXED = 8 + 24 + 96 + ACT_TABLE_BYTES + 523
FILE_FIXED = 28 + 8 + 8 + 24


def test_kpu_map_bytes_follow_the_row_layout_table():
    assert kpu_map_bytes(4, 8, 16) == 8 * 64  # W <= 16: 4 channels share a line
    assert kpu_map_bytes(5, 8, 16) == 2 * 8 * 64
    assert kpu_map_bytes(3, 10, 20) == 2 * 10 * 64  # 16 < W <= 32: 2 channels per line
    assert kpu_map_bytes(3, 256, 320) == 3 * 256 * 5 * 64  # W > 32: ceil(320 / 64) = 5 lines per row


def test_measure_counts_a_hand_model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ZeroPadding2D(((1, 1), (1, 1)))(x)
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="valid", use_bias=False)(x)
    budget = measure(keras.Model(inputs, x))
    assert budget.macs == 8 * 8 * 9 * 3 * 8 + 4 * 4 * 9 * 8
    assert budget.uint8_bytes == FILE_FIXED + (216 + 8 * 8 + LAYER_FIXED) + (72 + 8 * 8 + LAYER_FIXED)
    # first conv: in 3x8x8 (1 block of 3 channels) + out 8x8x8 (2 blocks of 4): (8 + 16) lines of 64 bytes
    assert budget.kpu_ram_bytes == (8 + 16) * 64
    assert budget.max_channels == 8 and budget.params == 216 + 4 * 8 + 72


def test_measure_counts_the_layers_the_compiler_adds():
    """A LeakyReLU is its own depthwise 1x1 layer, a pooled map with another consumer a one-hot copy layer, a
    space-to-depth a one-hot 3x3 layer of 4C x C, a Dense a 1x1 layer between two padding layers."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.LeakyReLU(negative_slope=0.1)(x)
    pooled = keras.layers.MaxPooling2D(2, 2)(x)
    reorg = SpaceToDepth(2)(x)
    x = keras.layers.Concatenate()([pooled, reorg])
    x = keras.layers.Dense(16)(keras.layers.Flatten()(x))
    conv = 108 + 8 * 4 + LAYER_FIXED
    leaky = 4 + 8 * 4 + LAYER_FIXED
    shared_pool = 16 + 8 * 4 + LAYER_FIXED
    space_to_depth = 9 * 16 * 4 + 8 * 16 + LAYER_FIXED
    dense = 4 * 4 * 20 * 16 + 8 * 16 + LAYER_FIXED + DENSE_PADDING_BYTES
    assert kpu_layer_bytes(0, 0) == LAYER_FIXED and DEQUANTIZE_BYTES == 8 + 24
    assert measure(keras.Model(inputs, x)).uint8_bytes == FILE_FIXED + conv + leaky + shared_pool + space_to_depth \
        + dense


def _tiny(width: float) -> dict:
    return {"family": "tiny", "width": width, "input_size": [128, 128], "num_anchors": 5, "anchors": None}


def test_over_budget_model_is_refused_naming_a_width_that_fits():
    with pytest.raises(PipelineError) as err:
        check_budget(_tiny(0.5), 1, budget_mib=0.25)
    assert "model.width <= " in str(err.value) and "budget 0.25 MiB" in str(err.value)
    fitting = float(str(err.value).split("model.width <= ")[1].split(" ")[0])
    assert check_budget(_tiny(fitting), 1, 0.25).uint8_mib <= 0.25
    with pytest.raises(PipelineError):
        check_budget(_tiny(fitting + WIDTH_STEP), 1, 0.25)


def test_a_fused_max_pool_shrinks_the_stored_map():
    def first_conv(pooled: bool) -> keras.Model:
        inputs = keras.Input((256, 320, 3))
        x = keras.layers.Conv2D(32, 3, padding="same", use_bias=False)(inputs)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.LeakyReLU(negative_slope=0.1)(x)
        return keras.Model(inputs, keras.layers.MaxPooling2D(2, 2)(x) if pooled else x)

    image = kpu_map_bytes(3, 256, 320)
    assert measure(first_conv(False)).kpu_ram_bytes == image + kpu_map_bytes(32, 256, 320) > KPU_RAM_BYTES
    assert measure(first_conv(True)).kpu_ram_bytes == image + kpu_map_bytes(32, 128, 160) < KPU_RAM_BYTES


def test_full_width_darknet19_is_about_46_mib_and_is_refused():
    cfg = {"family": "darknet19", "width": 1.0, "input_size": [320, 256], "num_anchors": 5, "anchors": None}
    with pytest.raises(PipelineError, match=r"46\.11 MiB at uint8.*1\.50 MiB of KPU RAM.*width <= 0\.339844 fits"):
        check_budget(cfg, 1, budget_mib=5.5)


def test_widest_fitting_is_none_when_nothing_fits():
    assert widest_fitting(_tiny(0.25), 1, budget_mib=0.0001) is None
    assert KPU_RAM_BYTES == 2 * 1024 * 1024
