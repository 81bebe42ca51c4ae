"""Detector builders: output shapes, only KPU-lowerable layers, the passthrough, input-size rules, metadata."""

from __future__ import annotations

import keras
import pytest

from models.backbones import FAMILIES
from models.yolo_head import build_detector, check_input_size, grid_size, head_metadata, load_detector
from pipeline.errors import PipelineError

ALLOWED = (keras.layers.InputLayer, keras.layers.Conv2D, keras.layers.DepthwiseConv2D,
           keras.layers.BatchNormalization, keras.layers.LeakyReLU, keras.layers.ReLU, keras.layers.MaxPooling2D,
           keras.layers.ZeroPadding2D, keras.layers.Concatenate)


def _cfg(family: str, size=(224, 224), width=0.0625, **extra) -> dict:
    return {"family": family, "width": width, "input_size": list(size), "num_anchors": 5, "anchors": None, **extra}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_is_built_from_kpu_blocks_only(family):
    model = build_detector(_cfg(family, size=(320, 224)), num_classes=2)
    assert model.input_shape == (None, 224, 320, 3)
    assert model.output_shape == (None, 7, 10, 5 * (5 + 2))
    layers = {layer.name: layer for layer in model.layers}
    for layer in model.layers:
        if type(layer).__name__ == "SpaceToDepth":
            assert family == "skip_darknet19" and layer.block_size == 2
            continue
        assert isinstance(layer, ALLOWED), f"{layer.name} is {type(layer).__name__}"
        if isinstance(layer, keras.layers.Conv2D):  # DepthwiseConv2D included
            assert layer.kernel_size in ((1, 1), (3, 3))
            if layer.strides == (2, 2):
                pad = layers[f"{layer.name}_pad"]
                assert layer.padding == "valid" and pad.padding == ((1, 1), (1, 1))
            else:
                assert layer.padding == "same"
            assert (layer.name == "yolo_output") == layer.use_bias
        if isinstance(layer, keras.layers.MaxPooling2D):
            assert layer.pool_size == (2, 2) and layer.strides == (2, 2)
    assert model.get_layer("yolo_output").activation.__name__ == "linear"


def test_only_the_skip_variant_concatenates_the_reorganised_stride16_map():
    skip = build_detector(_cfg("skip_darknet19"), 1)
    plain = build_detector(_cfg("darknet19"), 1)
    reorg = skip.get_layer("passthrough_reorg")
    assert reorg.input.shape[1:3] == (14, 14) and reorg.output.shape[1:3] == (7, 7)
    assert reorg.output.shape[3] == 4 * reorg.input.shape[3]
    assert "passthrough_concat" not in [layer.name for layer in plain.layers]


def test_passthrough_filters_choose_the_reduction_before_the_reorg():
    scaled = build_detector(_cfg("skip_darknet19", width=0.125), 1)
    assert scaled.get_layer("passthrough_conv").filters == 8  # YOLOv2's 64 at width 0.125
    fixed = build_detector(_cfg("skip_darknet19", passthrough_filters=32), 1)
    assert fixed.get_layer("passthrough_reorg").output.shape[3] == 128
    direct = build_detector(_cfg("skip_darknet19", passthrough_filters=0), 1)
    assert "passthrough_conv" not in [layer.name for layer in direct.layers]
    assert direct.get_layer("passthrough_reorg").input.shape[3] == 32  # DarkNet19's 512 at width 0.0625


def test_width_scales_every_layer():
    narrow = build_detector(_cfg("tiny", width=0.125), 1)
    wide = build_detector(_cfg("tiny", width=0.25), 1)
    assert narrow.get_layer("tiny_conv1").filters == 4 and wide.get_layer("tiny_conv7").filters == 256
    assert 3.5 < wide.count_params() / narrow.count_params() < 4.5


@pytest.mark.parametrize("size", [(320, 256), (320, 224), (224, 224)])
def test_supported_input_sizes(size):
    assert check_input_size(size) == size


def test_320x240_is_refused_with_the_reason():
    with pytest.raises(PipelineError) as err:
        check_input_size([320, 240])
    message = str(err.value)
    assert "240 is not a multiple of 32" in message and "15" in message and "320x256" in message


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_output_stride_16_drops_the_last_downsampling_and_keeps_the_layers(family):
    coarse = build_detector(_cfg(family, size=(320, 256)), 1)
    fine = build_detector(_cfg(family, size=(320, 256), output_stride=16), 1)
    assert fine.output_shape == (None, 16, 20, 30)
    assert len(fine.layers) == len(coarse.layers) - 1  # one max pool fewer (MobileNet: one stride-2 pad fewer)
    assert abs(fine.count_params() - coarse.count_params()) <= 0.01 * coarse.count_params()
    if family == "skip_darknet19":
        reorg = fine.get_layer("passthrough_reorg")
        assert reorg.input.shape[1:3] == (32, 40) and reorg.output.shape[1:3] == (16, 20)


def test_output_stride_16_accepts_320x240_and_refuses_other_strides():
    assert check_input_size([320, 240], 16) == (320, 240)
    with pytest.raises(PipelineError, match="is not a multiple of 16"):
        check_input_size([320, 232], 16)
    with pytest.raises(PipelineError, match="model.output_stride"):
        build_detector(_cfg("tiny", output_stride=8), 1)


def test_min_channels_widens_only_the_thin_layers():
    plain = build_detector(_cfg("skip_darknet19", width=0.125), 1)
    floored = build_detector(_cfg("skip_darknet19", width=0.125, min_channels=16), 1)
    assert plain.get_layer("darknet_conv1").filters == 4 and floored.get_layer("darknet_conv1").filters == 16
    assert plain.get_layer("darknet_conv2").filters == 8 and floored.get_layer("darknet_conv2").filters == 16
    assert floored.get_layer("darknet_conv18").filters == plain.get_layer("darknet_conv18").filters == 128
    with pytest.raises(PipelineError, match="model.min_channels"):
        build_detector(_cfg("tiny", min_channels=2), 1)


def test_bad_family_width_and_activation_are_refused():
    with pytest.raises(PipelineError, match="DarkNet53"):
        build_detector(_cfg("darknet53"), 1)
    with pytest.raises(PipelineError, match="model.width"):
        build_detector(_cfg("tiny", width=1.5), 1)
    with pytest.raises(PipelineError, match="model.activation"):
        build_detector(_cfg("tiny", activation="swish"), 1)
    with pytest.raises(PipelineError, match="4x4"):
        check_input_size([96, 96])


def test_relu6_variant_uses_relu6():
    model = build_detector(_cfg("mobilenet_v1", activation="relu6"), 1)
    relus = [layer for layer in model.layers if isinstance(layer, keras.layers.ReLU)]
    assert relus and all(float(layer.max_value) == 6.0 for layer in relus)


def test_head_metadata_describes_the_output():
    meta = head_metadata(_cfg("tiny", size=(320, 256)), ["face"], [[1, 2], [3, 4]])
    assert meta["classes"] == ["face"] and meta["anchors"] == [[1.0, 2.0], [3.0, 4.0]]
    assert meta["input_size"] == [320, 256] and meta["grid"] == [10, 8] and meta["num_anchors"] == 2
    assert grid_size(_cfg("tiny")) == (7, 7)
    assert head_metadata(_cfg("tiny", size=(320, 256), output_stride=16), ["face"], [[1, 2]])["grid"] == [20, 16]


def test_saved_model_round_trips_with_the_passthrough(tmp_path):
    import numpy as np

    model = build_detector(_cfg("skip_darknet19"), 1)
    path = tmp_path / "m.keras"
    model.save(path)
    again = load_detector(path)
    x = np.random.default_rng(0).random((1, 224, 224, 3), dtype=np.float32)
    np.testing.assert_allclose(again(x), model(x), atol=1e-5)


def test_loading_a_missing_model_names_the_file(tmp_path):
    with pytest.raises(PipelineError, match="nothing.keras"):
        load_detector(tmp_path / "nothing.keras")
