"""Batch-norm folding (the folded model computes the original function) and cross-layer equalisation (same function,
balanced weight ranges, the passthrough / concat convs left alone, bias absorption exact where its bound holds)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from deploy.quantize.cle import equalize, equalized, pairs
from deploy.quantize.fold_bn import fold_batch_norm, folded_pairs

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def randomise_bn(model, seed: int = 0) -> None:
    import keras

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.set_weights([rng.uniform(0.2, 3, n), rng.normal(0, 0.5, n), rng.normal(0, 0.2, n),
                               rng.uniform(0.3, 3, n)])


@pytest.fixture(scope="module")
def detector():
    import keras

    from models.yolo_head import build_detector

    keras.utils.set_random_seed(1)
    model = build_detector({"family": "skip_darknet19", "width": 0.125, "input_size": [160, 128], "num_anchors": 5,
                            "anchors": None, "output_stride": 16, "min_channels": 16}, 1)
    randomise_bn(model)
    return model


@pytest.fixture(scope="module")
def inputs():
    return np.random.default_rng(2).random((2, 128, 160, 3)).astype(np.float32)


def test_folded_model_computes_the_original(detector, inputs):
    import keras

    reference = np.asarray(detector(inputs))
    folded = fold_batch_norm(detector)
    assert len(folded_pairs(detector)) == sum(isinstance(layer, keras.layers.BatchNormalization)
                                              for layer in detector.layers)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in folded.layers)
    np.testing.assert_allclose(np.asarray(folded(inputs)), reference, atol=1e-4 * np.abs(reference).max())
    conv = folded.get_layer("darknet_conv1")
    original = detector.get_layer("darknet_conv1").get_weights()[0]
    assert conv.use_bias and not np.allclose(conv.get_weights()[0], original)


def test_equalised_model_computes_the_original_with_balanced_ranges(detector, inputs):
    reference = np.asarray(detector(inputs))
    folded = fold_batch_norm(detector)
    found = pairs(folded)
    report = equalize(folded)
    np.testing.assert_allclose(np.asarray(folded(inputs)), reference, atol=1e-4 * np.abs(reference).max())
    assert len(report) == len(found) >= 15
    assert all(entry["after"] < 1.02 for entry in report.values())
    assert max(entry["before"] for entry in report.values()) > 5
    # the passthrough branch point, its 1x1 conv and the convs around the concat are left alone
    names = {name for pair in found for name in (pair.first, pair.second)}
    assert "passthrough_conv" not in names and "darknet_conv18" not in {p.first for p in found}
    assert "head_conv1" not in {p.second for p in found}


def test_bias_absorption_moves_the_bound_into_the_next_conv():
    import keras

    keras.utils.set_random_seed(3)
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="a")(inp)
    x = keras.layers.BatchNormalization(name="a_bn")(x)
    x = keras.layers.LeakyReLU(0.1)(x)
    out = keras.layers.Conv2D(4, 1, name="b")(x)
    model = keras.Model(inp, out)
    model.get_layer("a").set_weights([model.get_layer("a").get_weights()[0] * 0.01])  # pre-activations near beta
    model.get_layer("a_bn").set_weights([np.full(8, 0.5), np.linspace(3, 6, 8), np.zeros(8), np.ones(8)])
    data = np.random.default_rng(0).random((2, 16, 16, 3)).astype(np.float32)
    reference = np.asarray(model(data))
    balanced, _ = equalized(model)
    np.testing.assert_allclose(np.asarray(balanced(data)), reference, atol=1e-4 * np.abs(reference).max())
    plain = fold_batch_norm(model)
    equalize(plain)  # the same scaling without absorption
    moved = plain.get_layer("a").get_weights()[1] - balanced.get_layer("a").get_weights()[1]
    assert np.all(moved > 0) and np.all(moved < plain.get_layer("a").get_weights()[1])  # h = (beta - 1.5) / s


def test_cle_quantized_model_tracks_keras(detector, inputs):
    from deploy.quantize.calibrate import quantize_keras
    from deploy.tflite import convert_float

    images = list(np.random.default_rng(4).random((6, 128, 160, 3)).astype(np.float32))
    calibrated = quantize_keras(detector, convert_float(detector), images, "minmax", 99.99, cle=True)
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=calibrated.data)
    interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.set_tensor(source["index"], np.round(inputs[:1] * 255).astype(np.uint8))
    interpreter.invoke()
    scale, zero = target["quantization"]
    got = (interpreter.get_tensor(target["index"]).astype(np.float32) - zero) * scale
    reference = np.asarray(detector(np.round(inputs[:1] * 255) / 255))
    assert np.corrcoef(got.ravel(), reference.ravel())[0, 1] > 0.98
