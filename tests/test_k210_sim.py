"""KPU simulator: conformance with the real nncase model, arithmetic against a literal loop version, CPU layers."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from deploy.k210.format import kmodel as km
from deploy.k210.format.kmodel_io import write_kmodel
from deploy.k210.format.registers import ActivationTable, BatchNormTable, KpuLayerArgs
from deploy.k210.sim.cpu_ops import MainMemory, carry_shift, run_cpu_layer
from deploy.k210.sim.kpu_arith import activate, pool, round_shift, run_kpu_layer
from deploy.k210.sim.kpu_ram import read_map, write_map
from deploy.k210.sim.sim_cli import load_model_input, run_simulation
from deploy.k210.sim.simulator import simulate
from hardware.k210 import KPU_RAM_BYTES, map_lines, row_layout
from models.yolo_decode import chw_to_hwc, decode_yolov2, nms
from pipeline.errors import PipelineError
from tests.conftest import shared_path

VOC_ANCHORS = np.array([1.08, 1.19, 3.42, 4.41, 6.63, 11.38, 9.42, 5.11, 16.62, 10.52], np.float32).reshape(5, 2)
BICYCLE, CAR, DOG = 1, 6, 11


@pytest.fixture(scope="module")
def dog_input() -> np.ndarray:
    pixels = np.asarray(Image.open(shared_path("kmodels", "dog.bmp")).convert("RGB"))
    return pixels.transpose(2, 0, 1).copy()


@pytest.mark.parametrize(("rounding", "golden"), [("reference", "voc20_dog_expected_output.npy"),
                                                  ("v0.1", "voc20_dog_expected_output_v01_rounding.npy")])
def test_nncase_yolo_output_is_byte_exact(dog_input, rounding, golden):
    result = simulate(shared_path("kmodels", "voc20_yolov2_v3.kmodel"), dog_input, rounding=rounding)
    expected = np.load(shared_path("kmodels", golden))
    assert result.outputs[0].dtype == np.float32
    assert result.outputs[0].tobytes() == expected.tobytes()
    assert len(result.layers) == 17 and result.layers[0].output.shape == (16, 120, 160)


def test_rounding_modes_differ_only_by_one_lsb_on_few_bytes(dog_input):
    path = shared_path("kmodels", "voc20_yolov2_v3.kmodel")
    ref = simulate(path, dog_input).layers
    alt = simulate(path, dog_input, rounding="v0.1").layers
    first_ref, first_alt = ref[0].output.astype(int), alt[0].output.astype(int)
    diff = np.abs(first_ref - first_alt)
    assert diff.max() == 1 and 0 < (diff > 0).mean() < 0.001


def test_decoded_detections_are_bicycle_car_dog(dog_input):
    result = simulate(shared_path("kmodels", "voc20_yolov2_v3.kmodel"), dog_input)
    grid = chw_to_hwc(result.dequantized[0], 125, 7, 10)
    kept = nms(decode_yolov2(grid, VOC_ANCHORS, 20, 0.5), 0.2)
    assert [d.class_id for d in kept] == [BICYCLE, CAR, DOG]
    assert [round(d.score, 3) for d in kept] == [0.967, 0.747, 0.595]
    dog_box = np.array(kept[2].box) * [320, 240, 320, 240]
    assert abs((dog_box[0] + dog_box[2]) / 2 - 85) < 2 and abs((dog_box[1] + dog_box[3]) / 2 - 154) < 2


def test_simulate_cli_saves_raw_and_dequantized(tmp_path, dog_input):
    out = tmp_path / "out.npz"
    npy = tmp_path / "dog.npy"
    np.save(npy, dog_input)
    run_simulation(shared_path("kmodels", "voc20_yolov2_v3.kmodel"), npy, out)
    saved = np.load(out)
    expected = np.load(shared_path("kmodels", "voc20_dog_expected_output.npy"))
    assert saved["output_0_raw"].tobytes() == expected.tobytes()
    assert saved["output_0_dequantized"].dtype == np.float32


@pytest.mark.parametrize("fast", [False, True])
def test_simulate_cli_runs_a_model_whose_first_layer_is_a_float_fully_connected(tmp_path, capsys, fast):
    """Small nncase v0.1 models start on the CPU: FULLY_CONNECTED on a float32 vector, then back to uint8; on the
    NumPy simulator and (--fast) on the C runtime alike."""
    weights = np.array([[1, 2, 0], [-3, 1, 0.5]], np.float32)
    layers = [km.Layer(km.LayerType.FULLY_CONNECTED,
                       km.FullyConnectedBody(0, 0, 16, 3, 2, 1, weights, np.array([0.5, 0], np.float32))),
              km.Layer(km.LayerType.QUANTIZE, km.QuantizeBody(0, 16, 24, 2, 0.5, 0.0))]
    model = km.KModel(flags=1, max_start_address=0, main_mem_usage=32, outputs=[km.OutputDesc(24, 2)],
                      layers=layers)
    path = tmp_path / "fc.kmodel"
    path.write_bytes(write_kmodel(model))
    vector = tmp_path / "x.npy"
    np.save(vector, np.array([1.0, 1.0, 2.0]))  # float64 is accepted and converted
    result = run_simulation(path, vector, tmp_path / "out.npz", fast=fast)
    assert result.outputs[0].tolist() == [7, 0]  # relu([3.5, -1]) / 0.5
    assert np.load(tmp_path / "out.npz")["output_0_raw"].tolist() == [7, 0]
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(image)
    with pytest.raises(PipelineError, match="float input"):
        run_simulation(path, image, None, fast=fast)
    np.save(vector, np.zeros(4, np.float32))
    with pytest.raises(PipelineError, match=r"shape \(3,\)"):
        run_simulation(path, vector, None, fast=fast)


def test_image_input_is_resized_and_npy_shape_checked(tmp_path):
    image = tmp_path / "big.png"
    Image.fromarray(np.full((48, 64, 3), 200, np.uint8)).save(image)
    assert load_model_input(image, (3, 24, 32)).shape == (3, 24, 32)
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((3, 24, 31), np.uint8))
    with pytest.raises(PipelineError, match="uint8 CHW"):
        load_model_input(bad, (3, 24, 32))


def test_wrong_input_shape_is_rejected():
    with pytest.raises(PipelineError, match="input"):
        simulate(shared_path("kmodels", "voc20_yolov2_v3.kmodel"), np.zeros((3, 240, 321), np.uint8))


def test_unknown_rounding_is_rejected():
    with pytest.raises(PipelineError, match="rounding"):
        simulate(b"", np.zeros(1), rounding="half-down")


def naive_kpu_layer(x, args, weights, bn, table, rounding):
    """Spec §5.8 pseudocode with Python integers and loops (the oracle for the vectorised version)."""
    in_c, height, width = x.shape
    k, p = args.kernel_size, 1 if args.kernel_type == 1 else 0
    out = np.zeros((args.out_channels, height, width), np.int64)
    w = weights.reshape(args.out_channels, -1, k, k)
    for o in range(args.out_channels):
        channels = [o] if args.depth_wise_layer else range(in_c)
        for y in range(height):
            for xx in range(width):
                s_xw = s_x = s_w = 0
                for ci, i in enumerate(channels):
                    for ky in range(k):
                        for kx in range(k):
                            yy, xc = y + ky - p, xx + kx - p
                            v = int(x[i, yy, xc]) if 0 <= yy < height and 0 <= xc < width else args.pad_value
                            wv = int(w[o, 0 if args.depth_wise_layer else ci, ky, kx])
                            s_xw, s_x, s_w = s_xw + v * wv, s_x + v, s_w + wv
                acc = s_xw + ((args.arg_x * s_x) >> args.shr_x) + ((args.arg_w * s_w) >> args.shr_w) \
                    + args.arg_add * len(channels)
                t = ((acc * int(bn.mul[o])) >> int(bn.shift[o])) + int(bn.add[o])
                hits = [i for i in range(16) if (t >= table.x_start[i] if rounding == "v0.1" else
                                                 t > table.x_start[i])]
                j = max(hits)
                v = (t - table.x_start[j]) * table.y_mul[j]
                s = table.shift[j]
                if s == 0:
                    r = v
                elif rounding == "v0.1":
                    r = (v + (1 << (s - 1))) >> s
                else:
                    q, rem = v >> s, v - ((v >> s) << s)
                    r = q + (rem > (1 << (s - 1)) or (rem == (1 << (s - 1)) and q % 2 == 1))
                out[o, y, xx] = min(max(r + table.bias[j], 0), 255)
    return out


@pytest.mark.parametrize("depthwise", [False, True])
@pytest.mark.parametrize("kernel_type", [0, 1])
@pytest.mark.parametrize("rounding", ["reference", "v0.1"])
def test_vectorised_layer_matches_literal_loops(depthwise, kernel_type, rounding):
    rng = np.random.default_rng(kernel_type * 2 + depthwise)
    in_c = 3
    out_c = in_c if depthwise else 4
    args = KpuLayerArgs(depth_wise_layer=int(depthwise), i_ch_num=in_c - 1, o_ch_num=out_c - 1,
                        kernel_type=kernel_type, i_row_wid=5, i_col_high=4, o_row_wid=5, o_col_high=4, pad_value=17,
                        arg_x=-100 << 3, shr_x=3, arg_w=-37 * 5, shr_w=2, arg_add=9 * 100 * 37)
    x = rng.integers(0, 256, (in_c, 5, 6), dtype=np.uint8)
    weights = rng.integers(0, 256, args.weight_count(), dtype=np.uint8)
    bn = BatchNormTable(mul=rng.integers(1, 1 << 12, out_c), add=rng.integers(-5000, 5000, out_c),
                        shift=rng.integers(0, 8, out_c))
    starts = sorted(int(v) for v in rng.integers(-3000, 3000, 15))
    starts[3] = starts[4]  # equal starts exercise the > / >= difference
    table = ActivationTable(x_start=[-(1 << 35)] + starts, y_mul=[int(v) for v in rng.integers(0, 300, 16)],
                            shift=[int(v) for v in rng.integers(0, 10, 16)],
                            bias=[int(v) for v in rng.integers(0, 200, 16)])
    stages = run_kpu_layer(x, args, weights, bn, table, rounding)
    assert np.array_equal(stages.activated, naive_kpu_layer(x, args, weights, bn, table, rounding))


def test_round_shift_half_even_and_half_up():
    values = np.array([2, 6, 10, 14, 3, 5, 7])  # /4: 0.5, 1.5, 2.5, 3.5, 0.75, 1.25, 1.75
    shift = np.full(values.shape, 2)
    assert round_shift(values, shift, "reference").tolist() == [0, 2, 2, 4, 1, 1, 2]
    assert round_shift(values, shift, "v0.1").tolist() == [1, 2, 3, 4, 1, 1, 2]
    assert round_shift(values, np.zeros_like(values), "reference").tolist() == values.tolist()


def test_activation_segment_selection_strict_vs_inclusive():
    table = ActivationTable(x_start=[-(1 << 35), 10] + [(1 << 35) - 1] * 14, y_mul=[0, 0] + [0] * 14,
                            shift=[0] * 16, bias=[1, 2] + [0] * 14)
    t = np.array([9, 10, 11])
    assert activate(t, table, "reference").tolist() == [1, 1, 2]
    assert activate(t, table, "v0.1").tolist() == [1, 2, 2]


def test_pool_modes():
    z = np.arange(1, 1 + 4 * 5, dtype=np.uint8).reshape(1, 4, 5)
    assert pool(z, 1, "reference").tolist() == [[[7, 9], [17, 19]]]
    assert pool(z, 2, "reference").tolist() == [[[4, 6], [14, 16]]]  # floor of (1+2+6+7)/4 = 4
    assert pool(z, 5, "reference").tolist() == [[[1, 3], [11, 13]]]
    assert pool(z, 6, "reference").tolist() == [[[2, 4], [12, 14]]]
    assert pool(z, 7, "reference").tolist() == [[[1]]]
    big = np.arange(64, dtype=np.uint8).reshape(1, 8, 8)
    assert pool(big, 3, "reference").tolist() == [[[27, 31], [59, 63]]]
    assert pool(big, 4, "reference")[0, 0, 0] == (sum(range(0, 4)) * 4 + 8 * (0 + 1 + 2 + 3) * 4) // 16
    s1 = pool(z, 9, "reference")
    assert s1.shape == z.shape and s1[0, 3, 4] == 20 and s1[0, 0, 0] == 7
    mean_ref, mean_alt = pool(z, 8, "reference"), pool(z, 8, "v0.1")
    assert mean_ref[0, 3, 4] == 20 and mean_alt[0, 3, 4] == 20
    assert mean_ref[0, 3, 0] == (16 + 17 + 16 + 17) // 4 and mean_alt[0, 3, 0] == (16 + 17) // 2


def test_layout_addresses_follow_spec_formula():
    ram = np.zeros(KPU_RAM_BYTES, np.uint8)
    rng = np.random.default_rng(3)
    for shape in [(3, 5, 10), (5, 7, 20), (3, 9, 70), (6, 4, 16), (2, 3, 64), (7, 4, 33)]:
        data = rng.integers(0, 256, shape, dtype=np.uint8)
        write_map(ram, 100, data)
        assert np.array_equal(read_map(ram, 100, shape), data)
        c, h, w = shape
        g, rl, pitch = row_layout(w)
        ci, y, x = c - 1, h - 1, w - 1
        assert ram[100 * 64 + ((ci // g) * rl * h + y * rl) * 64 + (ci % g) * pitch + x] == data[ci, y, x]
    assert map_lines(3, 240, 320) == 3600 and map_lines(125, 7, 10) == 7 * 32
    with pytest.raises(PipelineError, match="KPU RAM"):
        write_map(ram, 32000, np.zeros((3, 240, 320), np.uint8))


def test_carry_shift_is_literal_sdk_rule():
    values = np.array([5, 6, 7, -5, -6, -7])
    assert carry_shift(values, 1).tolist() == [3, 3, 4, -4, -3, -5]  # odd negatives step away from zero


def _run(layer_type, body, main_bytes=b"", size=256):
    mem = MainMemory(size)
    mem.data[:len(main_bytes)] = np.frombuffer(main_bytes, np.uint8)
    ram = np.zeros(KPU_RAM_BYTES, np.uint8)
    return run_cpu_layer(km.Layer(layer_type, body), mem, ram, "test"), mem, ram


def test_cpu_layers_follow_sdk_semantics():
    T = km.LayerType
    f = np.array([1.0, -2.0, 3.0, 0.5], np.float32).tobytes()
    out, mem, _ = _run(T.SOFTMAX, km.ChannelsBody(0, 0, 64, 4), f)
    x = np.frombuffer(f, np.float32)
    assert np.allclose(out, np.exp(x - 3) / np.exp(x - 3).sum(), rtol=1e-6)
    out, _, _ = _run(T.QUANTIZE, km.QuantizeBody(0, 0, 64, 4, 0.5, -1.0), f)
    assert out.tolist() == [4, 0, 8, 3]  # (x + 1) * 2 rounded half away from zero: 4, -2, 8, 3
    q = bytes([0, 10, 255])
    out, _, _ = _run(T.DEQUANTIZE, km.QuantizeBody(0, 0, 64, 3, 0.5, -1.0), q)
    assert out.tolist() == [-1.0, 4.0, 126.5]
    out, _, _ = _run(T.TENSORFLOW_FLATTEN, km.FlattenBody(0, 0, 64, 2, 1, 2), np.arange(4, dtype=np.float32).tobytes())
    assert out.reshape(-1).tolist() == [0, 2, 1, 3]
    out, _, _ = _run(T.QUANTIZED_MAX_POOL2D, km.Pool2dBody(0, 0, 64, 3, 3, 1, 2, 2, 1, 2, 2, 2, 2, 0, 0),
                     bytes(range(9)))
    assert out.reshape(-1).tolist() == [4, 5, 7, 8]
    out, _, _ = _run(T.FULLY_CONNECTED, km.FullyConnectedBody(0, 0, 64, 2, 2, 1, np.array([[1, 2], [-3, 1]],
                     np.float32), np.array([0.5, 0], np.float32)), np.array([1, 1], np.float32).tobytes())
    assert out.tolist() == [3.5, 0.0]
    out, _, ram = _run(T.K210_ADD_PADDING, km.AddPaddingBody(0, 0, 2, 5), bytes([9, 8, 7, 6, 5]))
    assert [ram[128], ram[128 + 16], ram[128 + 48], ram[128 + 256]] == [9, 8, 6, 5]
    out, _, _ = _run(T.QUANTIZED_ADD, km.QuantizedAddBody(0, 0, 8, 16, 2, 0, 1, 0, 0, 1, 0, 0, 1, 1),
                     bytes([10, 21] + [0] * 6 + [5, 6]))
    assert out.tolist() == [8, 14]  # (10+5)/2 -> 8 and (21+6)/2 -> 14, rounded half up


def test_cpu_layer_out_of_buffer_is_a_clean_error():
    with pytest.raises(PipelineError, match="main buffer"):
        _run(km.LayerType.SOFTMAX, km.ChannelsBody(0, 0, 250, 4), size=256)


def test_simulate_task_runs_through_invoke(tmp_path, capsys):
    from invoke import Context

    import tasks

    out = tmp_path / "out.npz"
    tasks.simulate(Context(), kmodel=str(shared_path("kmodels", "voc20_yolov2_v3.kmodel")),
                   image=str(shared_path("kmodels", "dog.bmp")), out=str(out), rounding="v0.1")
    expected = np.load(shared_path("kmodels", "voc20_dog_expected_output_v01_rounding.npy"))
    assert np.load(out)["output_0_raw"].tobytes() == expected.tobytes()
    assert "output[0]: float32" in capsys.readouterr().out
