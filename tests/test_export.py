"""TFLite export: float and full-integer uint8 models agree with Keras; `invoke export` works on a small model."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from deploy.tflite import LiteRTRunner, export_float, export_uint8
from models.data.synthetic import SyntheticSpec, render_scene
from models.pipeline import prepare_image
from pipeline.config import REPO_ROOT
from pipeline.errors import PipelineError


def small_model():
    import keras

    keras.utils.set_random_seed(1)
    inputs = keras.Input((64, 80, 3))
    x = inputs
    for filters in (8, 16):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.LeakyReLU(0.1)(x)
        x = keras.layers.MaxPooling2D(2)(x)
    outputs = keras.layers.Conv2D(12, 1, padding="same")(x)
    model = keras.Model(inputs, outputs)
    # give batch norm non-trivial statistics so the folded weights are not the identity
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.set_weights([np.linspace(0.5, 1.5, n), np.linspace(-0.2, 0.2, n), np.linspace(-0.1, 0.1, n),
                               np.linspace(0.5, 2.0, n)])
    return model


def scenes(count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    spec = SyntheticSpec(count=1, width=160, height=128)
    return [prepare_image(render_scene(rng, spec)[0], (80, 64)) for _ in range(count)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    model = small_model()
    export_float(model, out / "f.tflite")
    export_uint8(model, out / "q.tflite", scenes(24, 1))
    return model, LiteRTRunner(out / "f.tflite"), LiteRTRunner(out / "q.tflite")


def test_uint8_model_contract(exported):
    _, _, quant = exported
    assert quant.is_quantized and quant.input_shape == (1, 64, 80, 3)
    scale, zero = quant.input["quantization"]
    assert zero == 0 and abs(scale - 1 / 255) < 1e-6  # raw RGB bytes are the model input
    assert quant.outputs[0]["dtype"] == np.uint8
    tensor_types = {d["dtype"] for d in quant.interpreter.get_tensor_details()}
    assert np.int8 in tensor_types and np.float32 not in tensor_types  # int8 inside


def test_keras_float_and_uint8_agree(exported):
    model, floating, quant = exported
    step = quant.outputs[0]["quantization"][0]
    for image in scenes(4, 2):
        reference = np.asarray(model(image[None], training=False))[0]
        np.testing.assert_allclose(floating.run(image)[0], reference, atol=1e-4)
        quantized = quant.run(image)[0]
        assert np.abs(quantized - reference).mean() < 3 * step
        assert np.corrcoef(quantized.ravel(), reference.ravel())[0, 1] > 0.99


def test_runner_rejects_a_broken_file(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"TFL3" + bytes(60))
    with pytest.raises(PipelineError, match="bad.tflite"):
        LiteRTRunner(bad)


def test_invoke_export_on_a_small_model(tmp_path):
    model = small_model()
    model.save(tmp_path / "small.keras")
    config = tmp_path / "small.yaml"
    config.write_text("dataset:\n  format: synthetic\n  synthetic:\n    train_count: 10\n    val_count: 4\n"
                      "model:\n  input_size: [80, 64]\n")
    env = dict(os.environ, PIPELINE_BUILD_ROOT=str(tmp_path / "build"))
    command = [sys.executable, "-m", "invoke", "export", "--config", str(config), "--model",
               str(tmp_path / "small.keras"), "--calib-images", "10", "--held-images", "4"]
    first = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "uint8 TFLite" in first.stdout and "output steps" in first.stdout
    report = json.loads((tmp_path / "build" / "small" / "export_report.json").read_text())
    assert report["uint8_tflite_bytes"] < report["float_tflite_bytes"]
    assert report["float_vs_uint8_mean_steps"] < 3
    second = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0 and "[export] skipped" in second.stdout
    missing = subprocess.run(command[:6] + ["--model", str(tmp_path / "none.keras")], cwd=REPO_ROOT, env=env,
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "none.keras" in missing.stderr and "invoke train" in missing.stderr
