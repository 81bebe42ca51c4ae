"""kmodel V3 reader/writer: the real nncase file, round trips of every body type, and clean errors."""

from __future__ import annotations

import numpy as np
import pytest

from deploy.k210.format import kmodel as km
from deploy.k210.format.inspect import describe_kmodel
from deploy.k210.format.kmodel_io import load_kmodel, read_kmodel, write_kmodel
from deploy.k210.format.registers import KpuLayerArgs
from pipeline.errors import PipelineError
from tests.conftest import shared_path
from tests.kpu_models import conv_body, every_body_model


@pytest.fixture(scope="module")
def yolo_bytes() -> bytes:
    return shared_path("kmodels", "voc20_yolov2_v3.kmodel").read_bytes()


def test_nncase_file_header_and_layers(yolo_bytes):
    model = read_kmodel(yolo_bytes)
    assert model.eight_bit_weights and model.main_mem_usage == 43752
    assert [(o.address, o.size) for o in model.outputs] == [(8752, 35000)]
    types = [layer.type for layer in model.layers]
    assert types == [km.LayerType.K210_CONV] * 16 + [km.LayerType.CHANNELWISE_DEQUANTIZE]
    assert sum(layer.body_size for layer in model.layers) == len(yolo_bytes) + 4 - model.layers[0].file_offset


def test_nncase_first_layer_matches_spec_worked_example(yolo_bytes):
    body = read_kmodel(yolo_bytes).layers[0].body
    a = body.args
    assert (body.layer_offset, body.weights_offset, body.bn_offset, body.act_offset) == (0xC8, 0x180, 0x380, 0x400)
    assert a.in_shape == (3, 240, 320) and a.out_shape == (16, 120, 160)
    assert (a.kernel_type, a.pool_type, a.image_src_addr, a.image_dst_addr) == (1, 1, 29168, 0)
    assert (a.channel_switch_addr, a.row_switch_addr, a.coef_group) == (1200, 5, 1)
    assert (a.wb_channel_switch_addr, a.wb_row_switch_addr, a.wb_group) == (360, 3, 1)
    assert (a.para_size, a.load_time, a.o_ch_num_coef) == (432, 0, 15)
    assert (a.arg_x, a.shr_x, a.arg_w, a.shr_w, a.arg_add) == (-4390912, 15, 0, 0, 0)
    assert (a.channel_byte_num, a.dma_total_byte) == (19199, 307199)
    assert (body.bn.mul[0], body.bn.add[0], body.bn.shift[0]) == (15992, 27311, 15)
    t = body.activation
    assert (t.x_start[0], t.x_start[1], t.y_mul[1], t.shift[1]) == (-(1 << 35), -119808, 102, 20)
    assert (t.x_start[15], t.y_mul[15], t.shift[15], t.bias[15]) == (13312, 1024, 20, 13)


def test_nncase_depthwise_layer_offsets_from_spec(yolo_bytes):
    a = read_kmodel(yolo_bytes).layers[1].body.args
    assert a.depth_wise_layer == 1
    assert (a.arg_x, a.shr_x, a.arg_w, a.shr_w, a.arg_add) == (-4259840, 15, -425984, 15, 15210)


def test_writer_reproduces_nncase_file(yolo_bytes):
    model = read_kmodel(yolo_bytes)
    written = write_kmodel(model)
    assert written[:len(yolo_bytes)] == yolo_bytes
    assert written[len(yolo_bytes):] == bytes(4)  # nncase leaves the last body's padding unwritten
    assert read_kmodel(written) == model


def test_every_body_type_round_trips():
    model = every_body_model()
    data = write_kmodel(model)
    again = read_kmodel(data)
    assert again == model
    assert write_kmodel(again) == data
    conv = again.layers[0].body
    assert conv.weights_offset % 128 == 0 and conv.bn_offset % 128 == 0 and conv.act_offset % 256 == 0
    assert all(layer.file_offset % 8 in (0, 4) for layer in again.layers)


def test_sixteen_bit_weights_round_trip():
    model = every_body_model()
    model.flags = 0
    for layer in model.layers:  # the header's width is every K210_CONV's
        if isinstance(layer.body, km.K210ConvBody):
            layer.body.weights = layer.body.weights.astype(np.uint16) * 257
    assert read_kmodel(write_kmodel(model)) == model


def test_register_field_out_of_range_is_named():
    body = conv_body(False)
    body.args.arg_x = 1 << 23
    with pytest.raises(PipelineError, match="arg_x"):
        body.args.to_bytes()


def test_register_words_round_trip_random_fields():
    from deploy.k210.format.binary import ByteReader
    from hardware.k210 import LAYER_FIELDS

    rng = np.random.default_rng(7)
    for _ in range(50):
        values = {}
        for name, _word, _lsb, width, signed in LAYER_FIELDS:
            low, high = (-(1 << (width - 1)), 1 << (width - 1)) if signed else (0, 1 << width)
            values[name] = int(rng.integers(low, high))
        args = KpuLayerArgs(**values)
        assert KpuLayerArgs.read(ByteReader(args.to_bytes())) == args


@pytest.mark.parametrize("cut", [0, 3, 27, 40, 200, 1000, 1352000])
def test_truncated_file_names_offset_and_field(yolo_bytes, cut):
    with pytest.raises(PipelineError, match=r"offset \d+") as info:
        read_kmodel(yolo_bytes[:cut], path="yolo.kmodel")
    assert "field" in str(info.value) and "yolo.kmodel" in str(info.value)


def test_wrong_version_and_kmodel_v4_are_rejected():
    data = bytearray(write_kmodel(every_body_model()))
    data[0] = 4
    with pytest.raises(PipelineError, match="header.version"):
        read_kmodel(bytes(data))
    with pytest.raises(PipelineError, match="V4"):
        read_kmodel(b"KMDL" + bytes([4, 0, 0, 0]) + bytes(40))


def test_missing_file_is_a_pipeline_error(tmp_path):
    with pytest.raises(PipelineError, match="not found"):
        load_kmodel(tmp_path / "none.kmodel")


def test_inspect_prints_every_conv_layer(yolo_bytes):
    text = describe_kmodel(read_kmodel(yolo_bytes))
    assert text.count("K210_CONV (type 10240)") == 16
    assert "CHANNELWISE_DEQUANTIZE" in text and "in 3x240x320 (CxHxW) -> out 16x120x160" in text
    assert "K210_CONV x16" in text


def test_inspect_prints_every_body_type():
    text = describe_kmodel(read_kmodel(write_kmodel(every_body_model())))
    for layer_type in {layer.type for layer in every_body_model().layers}:
        assert layer_type.name in text
