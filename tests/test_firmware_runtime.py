"""The C kmodel V3 runtime (soft KPU, fast and reference kernel, + CPU layers) against the golden outputs and the
NumPy simulator, byte for byte."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from deploy.firmware.boards import KPU_KERNELS
from deploy.firmware.kmodel_runner import build_kmodel_runner, run_kmodel
from deploy.k210.format import kmodel as km
from deploy.k210.format.kmodel_io import write_kmodel
from deploy.k210.format.registers import ActivationTable, BatchNormTable, KpuLayerArgs
from deploy.k210.sim.simulator import simulate
from hardware.k210 import map_lines, row_layout
from pipeline.errors import PipelineError
from tests.conftest import shared_path

GOLDEN = {"reference": "voc20_dog_expected_output.npy", "v0.1": "voc20_dog_expected_output_v01_rounding.npy"}


@pytest.fixture(scope="module", params=sorted(KPU_KERNELS))
def runners(request, tmp_path_factory) -> dict[str, object]:
    """The runner per rounding, built with each soft-KPU kernel in turn: every test runs on the fast kernel and on
    the reference one (firmware/runtime/kpu_ref.c)."""
    out = tmp_path_factory.mktemp(f"runner_{request.param}")
    return {rounding: build_kmodel_runner(out / rounding, rounding=rounding, kernel=request.param)
            for rounding in GOLDEN}


@pytest.fixture(scope="module")
def dog_chw() -> np.ndarray:
    return np.asarray(Image.open(shared_path("kmodels", "dog.bmp")).convert("RGB")).transpose(2, 0, 1).copy()


@pytest.mark.parametrize("rounding", sorted(GOLDEN))
def test_voc20_output_is_byte_identical_to_golden_and_simulator(runners, dog_chw, rounding):
    kmodel = shared_path("kmodels", "voc20_yolov2_v3.kmodel")
    result = run_kmodel(runners[rounding], kmodel, dog_chw)
    golden = np.load(shared_path("kmodels", GOLDEN[rounding]))
    assert len(result.outputs) == 1 and result.outputs[0] == golden.tobytes()
    assert result.outputs[0] == simulate(kmodel, dog_chw, rounding=rounding).outputs[0].tobytes()


def test_rounding_switch_changes_the_output(runners, dog_chw):
    kmodel = shared_path("kmodels", "voc20_yolov2_v3.kmodel")
    ref, alt = (np.frombuffer(run_kmodel(runners[r], kmodel, dog_chw).outputs[0], np.float32) for r in GOLDEN)
    assert np.count_nonzero(ref != alt) > 0  # the ±1 LSB differences propagate through 16 layers ...
    assert np.corrcoef(ref, alt)[0, 1] > 0.99  # ... but stay small


# --- synthetic models: every pool type, KPU layouts with 1, 2 and 4 channels per line, 8- and 16-bit weights, ---
# --- depthwise, main-memory outputs and every CPU layer the runtime executes                                   ---

def _conv(rng, in_shape, out_c, *, kernel_type, pool, src, dst, depthwise=False, main_out=None, sixteen=False,
          monotone=False):
    c, h, w = in_shape
    stride = {0: 1, 8: 1, 9: 1, 1: 2, 2: 2, 5: 2, 6: 2, 3: 4, 4: 4, 7: 4}[pool]
    oh, ow = h // stride, w // stride
    g_in, rl_in, _ = row_layout(w)
    g_out, rl_out, _ = row_layout(ow)
    shr_x = int(rng.integers(0, 4))
    args = KpuLayerArgs(
        depth_wise_layer=int(depthwise), image_src_addr=src, image_dst_addr=dst, i_ch_num=c - 1, o_ch_num=out_c - 1,
        o_ch_num_coef=out_c - 1, i_row_wid=w - 1, i_col_high=h - 1, o_row_wid=ow - 1, o_col_high=oh - 1,
        kernel_type=kernel_type, pool_type=pool, pad_value=int(rng.integers(0, 256)),
        channel_switch_addr=rl_in * h, row_switch_addr=rl_in, coef_group=g_in,
        wb_channel_switch_addr=rl_out * oh, wb_row_switch_addr=rl_out, wb_group=g_out,
        shr_x=shr_x, arg_x=int(rng.integers(-200, 0)) << shr_x, shr_w=2, arg_w=-int(rng.integers(0, 999)),
        arg_add=int(rng.integers(-5000, 5000)), channel_byte_num=oh * ow - 1, dma_total_byte=out_c * oh * ow - 1)
    args.para_size = args.weight_count() * (2 if sixteen else 1)
    top = 65536 if sixteen else 256
    weights = rng.integers(0, top, args.weight_count()).astype(np.uint16 if sixteen else np.uint8)
    bn = BatchNormTable(mul=rng.integers(1, 1 << (4 if sixteen else 10), out_c),
                        add=rng.integers(-(1 << 16), 1 << 16, out_c), shift=np.full(out_c, 15))
    starts = [int(v) for v in np.linspace(-(1 << 17), 1 << 17, 15)]  # 15 rising segments, random slopes
    table = ActivationTable(x_start=[-(1 << 35)] + starts, y_mul=[int(v) for v in rng.integers(16, 256, 16)],
                            shift=[int(v) for v in rng.integers(13, 16, 16)], bias=list(range(0, 256, 16)))
    if monotone:  # one rising ramp, so the runtime may max-pool before activating
        table = ActivationTable(x_start=[-(1 << 35)] + starts, y_mul=[0] + [1] * 15, shift=[0] + [11] * 15,
                                bias=[0] + [int(v) for v in np.linspace(0, 240, 15)])
    body = km.K210ConvBody(flags=int(main_out is not None), main_mem_out_addr=main_out or 0, args=args,
                           weights=weights, bn=bn, activation=table)
    return km.Layer(km.LayerType.K210_CONV, body), (out_c, oh, ow)


# (output channels, kernel_type, pool_type, depthwise, monotone activation) per layer
PLAN_ALL_POOLS = [(8, 1, 1, False, False), (8, 1, 0, True, False), (6, 0, 9, False, False), (5, 1, 8, False, False),
                  (4, 0, 5, False, False), (4, 1, 6, False, False), (6, 1, 2, False, False), (6, 0, 0, False, False)]
PLAN_POOL_FIRST = [(8, 1, 7, False, False), (8, 0, 3, False, True), (6, 1, 9, False, True), (6, 1, 1, False, True)]
PLANS = {"all_pools": ((3, 24, 72), PLAN_ALL_POOLS), "pool_before_activation": ((3, 128, 128), PLAN_POOL_FIRST)}


def _kpu_chain(rng, sixteen: bool, plan_name: str) -> tuple[list[km.Layer], tuple[int, int, int]]:
    """Conv layers ping-ponging between the top and bottom of KPU RAM, ending with a main-memory output at 0."""
    shape, plan = PLANS[plan_name]
    layers = []
    top = 32768 - map_lines(*shape)
    for index, (out_c, kernel_type, pool, depthwise, monotone) in enumerate(plan):
        src, dst = (top, 0) if index % 2 == 0 else (0, top)
        last = index == len(plan) - 1
        layer, shape = _conv(rng, shape, out_c, kernel_type=kernel_type, pool=pool, src=src, dst=dst,
                             depthwise=depthwise, main_out=0 if last else None, sixteen=sixteen, monotone=monotone)
        layers.append(layer)
    return layers, shape


def _cpu_tail(shape) -> tuple[list[km.Layer], list[km.OutputDesc]]:
    """CPU layers on the KPU output (u8 at main offset 0, C x H x W), exact in float32 and integer arithmetic."""
    c, h, w = shape
    n, t, f32 = c * h * w, km.LayerType, np.float32
    layers = [
        km.Layer(t.QUANTIZED_ADD, km.QuantizedAddBody(0, 0, 0, 512, n, -3, 1 << 20, 20, 4, 3 << 18, 18, 7, 5, 2)),
        km.Layer(t.REQUANTIZE, km.RequantizeBody(0, 512, 1024, n, np.arange(255, -1, -1, dtype=np.uint8))),
        km.Layer(t.QUANTIZED_MAX_POOL2D, km.Pool2dBody(0, 1024, 1536, w, h, c, w // 2, h // 2, c, 3, 3, 2, 2, 1, 1)),
        km.Layer(t.QUANTIZED_AVERAGE_POOL2D, km.Pool2dBody(0, 1024, 1600, w, h, c, w // 2, h // 2, c, 3, 3, 2, 2, 1,
                                                            1)),
        km.Layer(t.QUANTIZED_GLOBAL_AVERAGE_POOL2D, km.GlobalPoolBody(0, 1024, 1700, h * w, c)),
        km.Layer(t.QUANTIZED_GLOBAL_MAX_POOL2D, km.GlobalPoolBody(0, 1024, 1716, h * w, c)),
        km.Layer(t.QUANTIZED_TENSORFLOW_FLATTEN, km.FlattenBody(0, 1024, 1800, w, h, c)),
        km.Layer(t.QUANTIZED_RESIZE_NEAREST_NEIGHBOR, km.ResizeNearestBody(0, 1024, 2048, w, h, c, 2 * w - 3,
                                                                           h + 1, 0)),
        km.Layer(t.QUANTIZED_CONCAT, km.ConcatBody(0, 3072, 2, [(1700, 6), (1716, 6)])),
        km.Layer(t.DEQUANTIZE, km.QuantizeBody(0, 1024, 4096, n, 0.25, -3.5)),
        km.Layer(t.CHANNELWISE_DEQUANTIZE, km.ChannelwiseDequantizeBody(0, 512, 6144, c, h * w,
                                                                        np.linspace(0.1, 2, c).astype(f32),
                                                                        np.linspace(-1, 1, c).astype(f32))),
        km.Layer(t.ADD, km.AddBody(0, 4096, 6144, 8192, n)),
        km.Layer(t.AVERAGE_POOL2D, km.FloatPool2dBody(0, 8192, 10240, w, h, c, w // 2, h // 2, c, 3, 3, 2, 2, 1,
                                                      1, act=2)),
        km.Layer(t.MAX_POOL2D, km.FloatPool2dBody(0, 8192, 11264, w, h, c, w // 2, h // 2, c, 3, 3, 2, 2, 1, 1,
                                                  act=2)),
        km.Layer(t.GLOBAL_AVERAGE_POOL2D, km.GlobalPoolBody(0, 8192, 12288, h * w, c)),
        km.Layer(t.GLOBAL_MAX_POOL2D, km.GlobalPoolBody(0, 8192, 12352, h * w, c)),
        km.Layer(t.FULLY_CONNECTED, km.FullyConnectedBody(0, 12288, 12416, c, 5, 1,
                                                          np.linspace(-1, 1, 5 * c).astype(f32).reshape(5, c),
                                                          np.array([0.5, -0.5, 0.25, 0, 1], f32))),
        km.Layer(t.TENSORFLOW_FLATTEN, km.FlattenBody(0, 8192, 12544, w, h, c)),
        km.Layer(t.RESIZE_NEAREST_NEIGHBOR, km.ResizeNearestBody(0, 8192, 14592, w, h, c, w + 5, 2 * h, 0)),
        km.Layer(t.QUANTIZE, km.QuantizeBody(0, 8192, 20480, n, 0.125, -8.0)),
        km.Layer(t.K210_ADD_PADDING, km.AddPaddingBody(0, 20480, 100, 6)),
        km.Layer(t.K210_REMOVE_PADDING, km.RemovePaddingBody(0, 20480, 22000, 6)),
        km.Layer(t.K210_UPLOAD, km.UploadBody(0, 20480, 200, w, h, c)),
    ]
    outputs = [km.OutputDesc(512, 2 * n), km.OutputDesc(1536, 2 * n), km.OutputDesc(4096, 20480 - 4096 + n),
               km.OutputDesc(22000, 6)]
    return layers, outputs


@pytest.mark.parametrize(("plan", "sixteen", "rounding"), [
    ("all_pools", False, "reference"), ("all_pools", True, "reference"), ("all_pools", False, "v0.1"),
    ("pool_before_activation", False, "reference"), ("pool_before_activation", True, "v0.1")])
def test_synthetic_model_matches_simulator_byte_for_byte(runners, tmp_path, plan, sixteen, rounding):
    rng = np.random.default_rng(20261122 + sixteen)
    kpu_layers, shape = _kpu_chain(rng, sixteen, plan)
    tail, outputs = _cpu_tail(shape)
    model = km.KModel(flags=0 if sixteen else 1, max_start_address=0, main_mem_usage=24576, outputs=outputs,
                      layers=kpu_layers + tail)
    path = tmp_path / "synthetic.kmodel"
    path.write_bytes(write_kmodel(model))
    model_input = rng.integers(0, 256, PLANS[plan][0], dtype=np.uint8)
    expected = simulate(path, model_input, rounding=rounding)
    result = run_kmodel(runners[rounding], path, model_input)
    assert len(result.outputs) == len(outputs)
    for index, (got, want) in enumerate(zip(result.outputs, expected.outputs, strict=True)):
        assert got == want.tobytes(), f"output {index} differs"
    kpu_values = [len(np.unique(trace.output)) for trace in expected.layers[:len(kpu_layers)]]
    assert kpu_values[0] > 50 and min(kpu_values) >= 4  # the KPU chain did not collapse to constants


@pytest.mark.parametrize(("cut", "message"), [(20, "header at offset 0x0: data lies past the end"),
                                            (5000, "layer 4 at offset 0x48: data lies past the end")])
def test_truncated_kmodel_is_refused_with_layer_and_offset(runners, tmp_path, cut, message):
    data = shared_path("kmodels", "voc20_yolov2_v3.kmodel").read_bytes()
    path = tmp_path / "cut.kmodel"
    path.write_bytes(data[:cut])
    with pytest.raises(PipelineError, match=message):
        run_kmodel(runners["reference"], path, np.zeros((3, 240, 320), np.uint8))


def test_wrong_version_and_input_size_are_refused(runners, tmp_path):
    data = bytearray(shared_path("kmodels", "voc20_yolov2_v3.kmodel").read_bytes())
    good = tmp_path / "good.kmodel"
    good.write_bytes(bytes(data))
    with pytest.raises(PipelineError, match="230400"):
        run_kmodel(runners["reference"], good, np.zeros((3, 10, 10), np.uint8))
    data[0] = 4
    bad = tmp_path / "v4.kmodel"
    bad.write_bytes(bytes(data))
    with pytest.raises(PipelineError, match="version field is not 3"):
        run_kmodel(runners["reference"], bad, np.zeros((3, 240, 320), np.uint8))


def test_an_unknown_kpu_kernel_is_refused_with_its_config_key(tmp_path):
    with pytest.raises(PipelineError, match="firmware.kpu_kernel") as caught:
        build_kmodel_runner(tmp_path / "runner", kernel="turbo")
    assert "fast or reference" in str(caught.value) and not (tmp_path / "runner").exists()
