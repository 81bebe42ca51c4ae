"""The C kmodel V3 runtime (soft KPU, fast and reference kernel, + CPU layers) against the golden outputs and the
NumPy simulator, byte for byte."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from deploy.firmware.boards import KPU_KERNELS
from deploy.firmware.kmodel_runner import build_kmodel_runner, run_kmodel
from deploy.k210.format.kmodel_io import write_kmodel
from deploy.k210.sim.simulator import simulate
from pipeline.errors import PipelineError
from tests.conftest import shared_path
from tests.kpu_models import KPU_PLANS, synthetic_model

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


# --- synthetic models (tests/kpu_models.py): every pool type, KPU layouts with 1, 2 and 4 channels per line, 8- and ---
# --- 16-bit weights, depthwise, main-memory outputs and every CPU layer the runtime executes                        ---

@pytest.mark.parametrize(("plan", "sixteen", "rounding"), [
    ("all_pools", False, "reference"), ("all_pools", True, "reference"), ("all_pools", False, "v0.1"),
    ("pool_before_activation", False, "reference"), ("pool_before_activation", True, "v0.1")])
def test_synthetic_model_matches_simulator_byte_for_byte(runners, tmp_path, plan, sixteen, rounding):
    rng = np.random.default_rng(20261122 + sixteen)
    model, kpu_count = synthetic_model(rng, plan, sixteen)
    path = tmp_path / "synthetic.kmodel"
    path.write_bytes(write_kmodel(model))
    model_input = rng.integers(0, 256, KPU_PLANS[plan].input_shape, dtype=np.uint8)
    expected = simulate(path, model_input, rounding=rounding)
    result = run_kmodel(runners[rounding], path, model_input)
    assert len(result.outputs) == len(model.outputs)
    for index, (got, want) in enumerate(zip(result.outputs, expected.outputs, strict=True)):
        assert got == want.tobytes(), f"output {index} differs"
    kpu_values = [len(np.unique(trace.output)) for trace in expected.layers[:kpu_count]]
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
