"""16-bit KPU weights (compile.weight_bits: 16): the kmodel's header says 16-bit and every K210_CONV stores uint16
weights, the C runtime computes the same bytes as the NumPy simulator, the outputs come closer to the float model than
the 8-bit kmodel's, weight loads use the 60 KiB limit, and bad settings or a float model that is not the quantized
one are refused by field."""

from __future__ import annotations

import os

import numpy as np
import pytest

from deploy.k210.compiler.driver import compile_tflite
from deploy.k210.format import kmodel as km
from deploy.k210.format.inspect import describe_kmodel
from deploy.k210.format.kmodel_io import read_kmodel, write_kmodel
from deploy.k210.sim.batch import ReferenceSimulator
from deploy.k210.sim.fast import FastSimulator
from pipeline.errors import PipelineError
from tests.kpu_models import MIXED_KPU, WIDE_CONV, tflite_pair

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(scope="module")
def pair() -> tuple[bytes, bytes]:
    """(uint8 TFLite, float TFLite of the same model) of MIXED_KPU: conv, LeakyReLU layer, depthwise, one-hot, FC."""
    return tflite_pair(MIXED_KPU)


@pytest.fixture(scope="module")
def kmodels(pair) -> dict[int, bytes]:
    uint8, floating = pair
    return {8: compile_tflite(uint8).data, 16: compile_tflite(uint8, weight_bits=16, float_source=floating).data}


def conv_bodies(data: bytes) -> list[km.K210ConvBody]:
    return [layer.body for layer in read_kmodel(data).layers if isinstance(layer.body, km.K210ConvBody)]


def test_header_flag_and_uint16_weights_are_read_back(kmodels):
    wide, narrow = read_kmodel(kmodels[16]), read_kmodel(kmodels[8])
    assert wide.flags & km.FLAG_EIGHT_BIT_WEIGHTS == 0 and not wide.eight_bit_weights
    assert narrow.eight_bit_weights
    bodies = conv_bodies(kmodels[16])
    assert len(bodies) == len(conv_bodies(kmodels[8])) >= 6
    assert all(b.weights.dtype == np.uint16 and b.args.arg_x == -32768 for b in bodies)
    assert max(int(b.weights.max()) for b in bodies) > 255  # real 16-bit codes, not 8-bit ones widened
    for body in bodies:  # the weight loads cover the uint16 bytes
        assert body.args.para_size * (body.args.load_time + 1) >= body.weights.nbytes
    assert write_kmodel(wide) == kmodels[16]  # the reader and writer agree on the 16-bit layout
    assert "16-bit weights" in describe_kmodel(wide) and "8-bit weights" in describe_kmodel(narrow)


def test_sixteen_bit_kmodel_is_byte_identical_on_the_c_runtime(kmodels):
    fast, reference = FastSimulator(kmodels[16]), ReferenceSimulator(kmodels[16])
    batch = np.random.default_rng(4).integers(0, 256, (4, *fast.input_shape), dtype=np.uint8)
    batch[-1], batch[-2] = 255, 0
    batch = np.concatenate([batch, np.stack([i.transpose(2, 0, 1) for i in MIXED_KPU.calibration()[:2]])])
    got, want = fast.run(batch), reference.run(batch)
    for a, b in zip(got, want, strict=True):
        assert [x.tobytes() for x in a] == [y.tobytes() for y in b]
    assert not np.array_equal(got[0][0], got[1][0])


def test_sixteen_bit_outputs_are_closer_to_the_float_model(pair, kmodels):
    """Mean squared error against the float TFLite on the calibration photos: measured for both widths."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=pair[1])
    interpreter.allocate_tensors()
    images = MIXED_KPU.calibration()
    errors = {}
    for bits, data in kmodels.items():
        simulator, total = ReferenceSimulator(data), 0.0
        outputs = simulator.dequantized(np.stack([i.transpose(2, 0, 1) for i in images]))
        for image, out in zip(images, outputs, strict=True):
            interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image[None].astype(np.float32) / 255)
            interpreter.invoke()
            reference = interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).reshape(-1)
            total += float(np.mean((out[0].reshape(-1) - reference) ** 2))
        errors[bits] = total / len(images)
    assert errors[16] < errors[8], errors


def test_weight_loads_use_the_60_kib_limit():
    """512 -> 512 3x3 at 16x16: 6 output channels per load either way, 55,296 bytes of 16-bit weights per load
    (over the 8-bit 30 KiB, within 60 KiB), and the same two slices of 384 and 128 channels; the worst-case
    accumulator keeps the codes of this wide layer below 32767."""
    uint8, floating = tflite_pair(WIDE_CONV)
    narrow, wide = compile_tflite(uint8), compile_tflite(uint8, weight_bits=16, float_source=floating)
    for compiled, per_load in ((narrow, 6 * 4608), (wide, 6 * 4608 * 2)):
        sliced = [b for b in conv_bodies(compiled.data) if b.args.in_channels == 512 and b.args.kernel_size == 3]
        assert [b.args.out_channels for b in sliced] == [384, 128]
        assert [b.args.para_size for b in sliced] == [per_load, per_load]
        assert [b.args.load_time for b in sliced] == [63, 21]
    assert 30 * 1024 < 6 * 4608 * 2 <= 60 * 1024
    big = [s for s in wide.program.steps if getattr(s, "in_shape", (0,))[0] == 512 and s.kernel == 3]
    assert all(0 < np.abs(s.weights.astype(np.int64) - 32768).max() < 32767 for s in big)


def test_bad_weight_bits_is_refused_by_field(pair):
    with pytest.raises(PipelineError, match="compile.weight_bits.*8 or 16"):
        compile_tflite(pair[0], weight_bits=12)
    with pytest.raises(PipelineError, match="compile.weight_bits.*model_quantized_float"):
        compile_tflite(pair[0], weight_bits=16)


def test_config_rule_refuses_other_widths():
    from pipeline.config import load_config

    with pytest.raises(PipelineError, match="compile.weight_bits"):
        load_config("configs/demo.yaml", {"compile.weight_bits": 12})


def test_a_float_model_that_was_not_quantized_is_refused(pair):
    other = MIXED_KPU.with_settings(seed=18)  # the same layers, other weights
    with pytest.raises(PipelineError, match=r"operators\[0\].*int8 codes up to .* away"):
        compile_tflite(pair[0], weight_bits=16, float_source=tflite_pair(other)[1])
    with pytest.raises(PipelineError, match="field 'operators'.*weighted ops"):
        compile_tflite(pair[0], weight_bits=16, float_source=tflite_pair(WIDE_CONV)[1])


def test_a_per_layer_width_mix_cannot_be_written(kmodels):
    model = read_kmodel(kmodels[16])
    body = next(layer.body for layer in model.layers if isinstance(layer.body, km.K210ConvBody))
    body.weights = (body.weights >> 8).astype(np.uint8)
    with pytest.raises(PipelineError, match="field 'flags'.*one weight width.*eight_bit_mode"):
        write_kmodel(model)


def test_per_layer_sensitivity_measures_each_layer_alone(pair, tmp_path):
    """Each weighted op alone at 16 bits in the simulator: one row per op, the bytes it adds are the weight counts of
    its KPU layers (one more byte per weight), and the all-16-bit model gains over all-8-bit on these images."""
    from deploy.k210.compiler.weight_sensitivity import layer_sensitivity, plot_sensitivity

    uint8, floating = tmp_path / "model_uint8.tflite", tmp_path / "model_quantized_float.tflite"
    uint8.write_bytes(pair[0])
    floating.write_bytes(pair[1])
    images = np.stack(MIXED_KPU.calibration()[:3]).astype(np.float32) / 255
    result = layer_sensitivity(uint8, floating, images)
    rows = result["layers"]
    assert [r["opcode"] for r in rows] == ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "CONV_2D", "FULLY_CONNECTED"]
    expected = [int(np.prod(r["weight_shape"])) for r in rows]
    expected[3] += 16 * 16 * 9  # the stride-2 'same' conv's one-hot decimation layer, lowered from the same op
    assert [r["extra_bytes"] for r in rows] == expected
    assert result["all_16bit"]["extra_bytes"] > sum(r["extra_bytes"] for r in rows)  # + the helper layers' weights
    assert result["all_16bit"]["gain_db"] > 0
    assert all(np.isfinite(r["gain_db"]) for r in rows)
    plot_sensitivity(result, tmp_path / "layers.png", "headline")
    assert (tmp_path / "layers.png").stat().st_size > 0


def test_a_per_layer_mix_runs_in_the_numpy_simulator_only(pair, kmodels, tmp_path):
    """The first conv alone 16-bit: the reference simulator runs the in-memory model and its first layer differs from
    the 8-bit model's; no file can hold it and the C runtime engine refuses it by field."""
    from deploy.k210.compiler.driver import wide_weights
    from deploy.k210.compiler.weight_sensitivity import mixed_model

    uint8, floating = tmp_path / "u.tflite", tmp_path / "f.tflite"
    uint8.write_bytes(pair[0])
    floating.write_bytes(pair[1])
    wide = wide_weights(uint8, floating)
    mix, program = mixed_model(uint8, wide.only([min(wide.twins)]))
    widths = [s.weight_bits for s in program.steps if hasattr(s, "weight_bits")]
    assert widths[0] == 16 and set(widths[1:]) == {8}
    batch = np.stack([i.transpose(2, 0, 1) for i in MIXED_KPU.calibration()[:2]])
    mixed_out, narrow_out = ReferenceSimulator(mix).run(batch), ReferenceSimulator(kmodels[8]).run(batch)
    assert any(a[0].tobytes() != b[0].tobytes() for a, b in zip(mixed_out, narrow_out, strict=True))
    with pytest.raises(PipelineError, match="one weight width"):
        write_kmodel(mix)
    with pytest.raises(PipelineError, match="eval.kmodel_engine.*reference"):
        FastSimulator(mix)

