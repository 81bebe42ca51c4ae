"""The calibrated K210 cycle model: its constants are the fit of hardware/k210_timings.json, the fit reproduces the
published timings within the stated error, and reports / --inspect print the calibrated estimate."""

from __future__ import annotations

import json

import pytest

from deploy.k210.compiler import cycles
from deploy.k210.compiler.cycle_fit import TIMINGS, fit, fitted_point_count
from tests.conftest import shared_path


@pytest.fixture(scope="module")
def result():
    return fit()


def test_constants_are_the_fit_of_the_fixture(result):
    for name in cycles.FITTED:
        assert cycles.CONSTANTS[name][0] == pytest.approx(result.constants[name], rel=2e-3), name
    assert pytest.approx(result.layer_error, abs=1e-3) == cycles.LAYER_FIT_ERROR
    assert pytest.approx(result.model_error, abs=1e-3) == cycles.MODEL_FIT_ERROR
    assert fitted_point_count(result) == cycles.CALIBRATION_POINTS
    assert sum(m["fit"] for m in result.models.values()) == cycles.CALIBRATION_MODELS


def test_every_constant_says_where_it_comes_from():
    for name, (value, source) in cycles.CONSTANTS.items():
        assert value > 0 and source.split(":")[0] in ("fit", "fit, one point", "no data"), name
        assert source.startswith("fit") == (name in cycles.FITTED), name


def test_fit_reproduces_the_published_timings_within_the_stated_error(result):
    models = result.models
    for name, model in models.items():
        if model["whole_model"]:  # each published whole-model time within twice the RMS error
            assert abs(model["predicted_s"] / model["measured_s"] - 1) <= 2 * cycles.MODEL_FIT_ERROR, name
    fitted = [p for p in result.points if p.measured_s is not None and models[p.model]["fit"]]
    errors = [result.predicted_s(p) / p.measured_s - 1 for p in fitted]
    assert (sum(e * e for e in errors) / len(errors)) ** 0.5 == pytest.approx(cycles.LAYER_FIT_ERROR, abs=1e-3)
    big = [e for p, e in zip(fitted, errors, strict=True) if p.measured_s > 3e-4]  # the layers that set the total
    assert max(abs(e) for e in big) < 0.3
    assert models["sipeed_yolov2_face"]["predicted_s"] == pytest.approx(0.012732, rel=0.02)


def test_every_data_point_names_its_source():
    data = json.loads(TIMINGS.read_text())
    for name, model in data["models"].items():
        source = data["sources"][model["source"]]
        assert source["url"].startswith("https://") and source["says"], name
        assert model["architecture"] and all("op" in layer for layer in model["layers"]), name


def test_the_estimate_of_the_nncase_yolo_adds_input_and_cpu_layers():
    from deploy.k210.compiler.compile_stage import inspect_kmodel
    from deploy.k210.format.kmodel_io import load_kmodel

    path = shared_path("kmodels", "voc20_yolov2_v3.kmodel")
    estimate = cycles.estimate_kmodel(load_kmodel(path))
    kpu = sum(us for _, unit, us in estimate.layers if unit == "kpu")
    cpu = sum(us for _, unit, us in estimate.layers if unit == "cpu")
    assert estimate.input_us == pytest.approx(3 * 240 * 320 * cycles.CONSTANTS["input_byte"][0] / 400, rel=1e-6)
    assert cpu == pytest.approx(125 * 70 * cycles.CONSTANTS["dequantize_value"][0] / 400, rel=1e-3)
    assert estimate.total_us == pytest.approx(kpu + cpu + estimate.input_us)
    assert 8000 < kpu < 51000  # above the line-steps alone (3.17 M, spec §12.3); below the 19.5 fps whole demo
    text = inspect_kmodel(path)
    assert f"total {estimate.label()}" in text and "+-" in text and "input transfer" in text
