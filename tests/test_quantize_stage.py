"""`invoke export/quantize --method ...` end to end on a small model, and its bad input: one line, exit 2, nothing
written."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pipeline.config import REPO_ROOT
from tests.test_export import small_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("quantize")
    small_model().save(folder / "small.keras")
    config = folder / "small.yaml"
    config.write_text("dataset:\n  format: synthetic\n  synthetic:\n    train_count: 10\n    val_count: 4\n"
                      "model:\n  input_size: [80, 64]\n")
    return folder, config


def invoke(setup, *args: str) -> subprocess.CompletedProcess:
    folder, config = setup
    env = dict(os.environ, PIPELINE_BUILD_ROOT=str(folder / "build"))
    command = [sys.executable, "-m", "invoke", "export", "--config", str(config), "--model",
               str(folder / "small.keras"), "--held-images", "2", *args]
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)


def assert_refused(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]  # not TensorFlow's log
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize(("args", "words"), [
    (["--method", "mse2"], ["quantize.method", "did you mean 'mse'"]),
    (["--method", "KL"], ["quantize.method", "did you mean 'kl'"]),
    (["--set", "quantize.percentile=0"], ["quantize.percentile", "> 0 and <= 100"]),
    (["--percentile", "100.5"], ["quantize.percentile", "> 0 and <= 100"]),
    (["--calib-images", "11"], ["quantize.calib_images", "has 10 images", "at most 10"]),
])
def test_bad_quantize_settings_are_refused_before_anything_is_written(setup, args, words):
    assert_refused(invoke(setup, *args), *words)
    assert not (setup[0] / "build" / "small").exists() or not any((setup[0] / "build" / "small").glob("*.tflite"))


def assert_sixteen_bit_source(build, refuses_model_float: bool) -> None:
    """The export's model_quantized_float.tflite passes the compiler's check as the source of 16-bit weights;
    `refuses_model_float`: the model before equalisation / QAT (model_float.tflite) is refused."""
    from deploy.k210.compiler.driver import compile_tflite
    from pipeline.errors import PipelineError

    uint8 = build / "model_uint8.tflite"
    assert not compile_tflite(uint8, weight_bits=16, float_source=build / "model_quantized_float.tflite"
                              ).model.eight_bit_weights
    if refuses_model_float:
        with pytest.raises(PipelineError, match="int8 codes up to"):
            compile_tflite(uint8, weight_bits=16, float_source=build / "model_float.tflite")


def test_export_with_a_method_writes_its_ranges(setup):
    result = invoke(setup, "--calib-images", "10", "--method", "percentile", "--percentile", "99.9", "--set",
                    "quantize.cle=true")
    assert result.returncode == 0, result.stderr
    assert "activation ranges by percentile on 10 images" in result.stdout
    build = setup[0] / "build" / "small"
    ranges = json.loads((build / "quant_ranges.json").read_text())
    assert ranges["method"] == "percentile" and ranges["percentile"] == 99.9 and ranges["cle"] is True
    report = json.loads((build / "export_report.json").read_text())
    assert report["quantize_method"] == "percentile" and report["quantize_cle"] is True
    assert report["float_vs_uint8_mean_steps"] < 3  # the equalised model still computes the exported float one
    from deploy.k210.compiler.tflite_graph import read_tflite

    graph = read_tflite(build / "model_uint8.tflite")
    for entry in ranges["tensors"].values():
        tensor = graph.tensors[entry["tensor"]]
        assert (float(tensor.scale[0]), int(tensor.zero_point[0])) == (entry["scale"], entry["zero_point"])
    # what each range clips of the float values it was chosen on (the 10 calibration images): percentile 99.9 cuts
    # at most 0.1 % per tail (plus the histogram's bin width), and cuts something somewhere
    clipped = [entry["clipped_share"] for entry in ranges["tensors"].values() if "clipped_share" in entry]
    assert ranges["histogram_images"] == 10 and len(clipped) >= 5
    assert 0 < max(clipped) <= 0.004, clipped
    assert (build / "quant_ranges.png").stat().st_size > 10_000
    assert_sixteen_bit_source(build, refuses_model_float=True)


def test_export_with_qat_writes_the_learned_ranges(setup):
    """quantize.qat_epochs on the tiny synthetic config: the detector fine-tunes with its own loss and data, and the
    learned clips are what the uint8 TFLite and the compiled kmodel hold."""
    from deploy.k210.compiler.tflite_graph import read_tflite
    from deploy.quantize.ranges import int8_params
    from tests.test_quantize_ranges import assert_kmodel_holds

    folder, _ = setup
    meta = {"classes": ["face"], "anchors": [[1.0, 1.0], [2.5, 2.5]], "grid": [20, 16], "num_anchors": 2}
    (folder / "model_meta.json").write_text(json.dumps(meta))
    result = invoke(setup, "--calib-images", "10", "--set", "quantize.qat_epochs=1", "--set", "quantize.cle=true")
    assert result.returncode == 0, result.stderr
    assert "activation ranges by tflite on 10 images, then learned in 1 epoch of QAT" in result.stdout
    build = folder / "build" / "small"
    ranges = json.loads((build / "quant_ranges.json").read_text())
    assert ranges["qat_epochs"] == 1 and ranges["qat_learning_rate"] == 0.0001
    assert json.loads((build / "export_report.json").read_text())["quantize_qat_epochs"] == 1
    graph = read_tflite(build / "model_uint8.tflite")
    learned = [entry for entry in ranges["tensors"].values() if "learned" in entry]
    assert len(learned) >= 5  # two convs, two LeakyReLUs, the output conv (and the tied pools)
    for entry in ranges["tensors"].values():
        tensor = graph.tensors[entry["tensor"]]
        assert (float(tensor.scale[0]), int(tensor.zero_point[0])) == (entry["scale"], entry["zero_point"])
    for entry in learned:
        scale, zero = int8_params(*entry["learned"])
        assert (entry["scale"], entry["zero_point"] - (128 if graph.tensors[entry["tensor"]].dtype == "uint8" else 0)
                ) == (scale, zero)
    assert_kmodel_holds((build / "model_uint8.tflite").read_bytes(),
                        {e["tensor"]: (e["scale"], e["zero_point"]) for e in ranges["tensors"].values()})
    assert_sixteen_bit_source(build, refuses_model_float=True)


@pytest.mark.parametrize(("task", "loss", "words"), [
    ("detector", "cosface", "a recognizer loss"), ("recognizer", "softmax", "needs a margin loss, not 'softmax'")])
def test_rcm_without_a_margin_loss_is_refused(task, loss, words):
    from pathlib import Path

    from deploy.export import check_qat
    from pipeline.config import Config
    from pipeline.errors import PipelineError

    def config(epochs: int, qat_loss: str) -> Config:
        return Config(name="rec", path=Path("rec.yaml"), values={
            "quantize": {"qat_epochs": epochs, "qat_loss": qat_loss}, "model": {"task": task},
            "recognizer": {"loss": loss}})

    with pytest.raises(PipelineError, match=words) as caught:
        check_qat(config(2, "rcm"))
    assert caught.value.field == "quantize.qat_loss"
    check_qat(config(0, "rcm"))
    check_qat(config(2, "distill"))


def test_qat_on_a_layer_it_cannot_fake_quantise_is_refused_before_anything_is_written(tmp_path):
    """A batch norm after the activation does not fold into a conv: `invoke export` with QAT names it, exit 2, and
    writes neither TFLite model."""
    import keras

    inputs = keras.Input((64, 80, 3))
    x = keras.layers.LeakyReLU(0.1)(keras.layers.Conv2D(8, 3, padding="same")(inputs))
    x = keras.layers.BatchNormalization(name="late_bn")(x)
    keras.Model(inputs, keras.layers.Conv2D(12, 1)(x)).save(tmp_path / "small.keras")
    config = tmp_path / "small.yaml"
    config.write_text("dataset:\n  format: synthetic\n  synthetic:\n    train_count: 10\n    val_count: 4\n"
                      "model:\n  input_size: [80, 64]\n")
    assert_refused(invoke((tmp_path, config), "--set", "quantize.qat_epochs=2"), "quantize.qat_epochs",
                   "QAT cannot fake-quantise layer 'late_bn' (BatchNormalization)")
    assert not list((tmp_path / "build").rglob("*.tflite"))
