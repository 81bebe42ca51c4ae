"""Quantization-aware training (quantize.qat_epochs): the learned clips reach the uint8 TFLite and the kmodel, the
fake-quantised weights are the converter's, training moves the clips and brings the uint8 model closer to the float
one, and a layer QAT cannot fake-quantise is refused by name."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

from deploy.k210.compiler.tflite_graph import read_tflite
from deploy.quantize import graph as qgraph
from deploy.quantize.calibrate import quantize_keras
from deploy.quantize.fake_quant import Quantized, fake_quant_weights
from deploy.quantize.ranges import int8_params
from pipeline.errors import PipelineError
from tests.kpu_models import HEIGHT, WIDTH, compare, conv_chain_layers, litert_outputs, real_images
from tests.test_quantize_ranges import assert_kmodel_holds, chosen

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
EPOCHS = 4
PERCENTILE = 99.0


def model_skip():
    """A detector-like model: conv + BN + LeakyReLU blocks with pooling and a passthrough branch (SpaceToDepth
    concatenated with the deeper path: a tie group), a 1x1 output conv."""
    import keras

    from models.backbones.blocks import SpaceToDepth

    L = keras.layers
    inp = keras.Input((HEIGHT, WIDTH, 3))
    x = inp
    for i, filters in enumerate((8, 16)):
        x = L.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = L.BatchNormalization(name=f"conv{i}_bn")(x)
        x = L.LeakyReLU(0.1, name=f"conv{i}_leaky")(x)
        x = L.MaxPooling2D(2, name=f"pool{i}")(x)
    skip = SpaceToDepth(2, name="reorg")(x)
    deep = L.MaxPooling2D(2, name="pool2")(x)
    deep = L.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(deep)
    x = L.Concatenate(name="concat")([deep, skip])
    return keras.Model(inp, L.Conv2D(12, 1, name="out")(x))


BUILDERS = {"model_conv_chain": conv_chain_layers, "model_skip": model_skip}


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    return real_images()


@pytest.fixture(scope="module")
def results(images):
    """name -> {"ptq", "qat": Calibrated, "targets": float outputs, "clips": the trained model's (start, learned)
    clips, "model": the fake-quantised model after training, "loss": its mean squared error to the targets}. PTQ
    clips 1 % of each tail (a start QAT can improve on); QAT fine-tunes on matching the float model's outputs."""
    import keras
    import tensorflow as tf

    floats = [image.astype(np.float32) / 255.0 for image in images]
    batch = np.stack(floats)
    out = {}
    for name, build in BUILDERS.items():
        keras.utils.set_random_seed(20261207)
        model = build()
        float_bytes = tf.lite.TFLiteConverter.from_keras_model(model).convert()
        targets = np.asarray(model.predict(batch, verbose=0))
        trained = {}

        def fine_tune(fake, targets=targets, trained=trained):
            fake.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
            fake.fit(batch, targets, epochs=EPOCHS, batch_size=4, verbose=0)
            trained.update(model=fake, loss=float(fake.evaluate(batch, targets, verbose=0)))

        ptq = quantize_keras(model, float_bytes, floats, "percentile", PERCENTILE)
        qat = quantize_keras(model, float_bytes, floats, "percentile", PERCENTILE, fine_tune=fine_tune)
        quantizers = {id(layer.output_quantizer): layer.output_quantizer for layer in trained["model"].layers
                      if isinstance(layer, Quantized) and layer.output_quantizer is not None}
        clips = [(q.start, q.range()) for q in quantizers.values() if q.trainable]
        out[name] = {"ptq": ptq, "qat": qat, "targets": targets, "clips": clips, **trained}
    return out


@pytest.mark.parametrize("name", list(BUILDERS))
def test_tflite_holds_the_learned_clips(results, name):
    qat = results[name]["qat"]
    graph = read_tflite(qat.data)
    learned = [entry for entry in qat.ranges.values() if "learned" in entry]
    assert learned
    for entry in learned:
        tensor = graph.tensors[entry["tensor"]]
        scale, zero = int8_params(*entry["learned"])
        if tensor.dtype == "uint8":  # the model output: the same codes shifted by 128
            zero += 128
        assert (float(tensor.scale[0]), int(tensor.zero_point[0])) == (scale, zero), tensor.name
    # every trained clip is the range of some tensor, and the clips moved from their PTQ start
    written = {tuple(entry["learned"]) for entry in learned}
    clips = results[name]["clips"]
    assert {learned_clip for _, learned_clip in clips} <= written
    moved = [abs(new[1] - start[1]) > int8_params(*start)[0] for start, new in clips]
    assert sum(moved) >= len(clips) // 2, clips
    # a tie group keeps one quantization in and out of every tied op
    for op in graph.operators:
        if op.opcode in qgraph.TIED_OPS:
            acts = [t for t in op.inputs + op.outputs if t >= 0 and graph.tensors[t].dtype == "int8"
                    and graph.tensors[t].data is None]
            assert len({(float(graph.tensors[t].scale[0]), int(graph.tensors[t].zero_point[0]))
                        for t in acts}) == 1, op.opcode


@pytest.mark.parametrize("name", list(BUILDERS))
def test_kmodel_holds_the_learned_clips(results, name):
    assert_kmodel_holds(results[name]["qat"].data, chosen(results[name]["qat"]))


@pytest.mark.parametrize("name", list(BUILDERS))
def test_litert_and_simulator_agree_on_the_qat_model(results, images, name):
    cosine, within_one, _ = compare(results[name]["qat"].data, images)
    assert cosine >= 0.999 and within_one >= 0.999, (cosine, within_one)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_fake_quantised_weights_are_the_converters(results, name):
    """Each conv's per-channel fake-quantised kernel in training equals the int8 weights times their scales in the
    converted model (symmetric, [-127, 127], max|w| / 127)."""
    graph = read_tflite(results[name]["qat"].data)
    convs = [op for op in graph.operators if op.opcode == "CONV_2D"]
    layers = [layer for layer in results[name]["model"].layers
              if isinstance(layer, Quantized) and hasattr(layer.inner, "kernel")]
    assert len(convs) == len(layers)
    for op, layer in zip(convs, layers, strict=True):
        weights = graph.tensors[op.inputs[1]]
        assert weights.data.min() >= -127 and np.all(weights.zero_point == 0)
        converted = weights.data.astype(np.float64) * weights.scale.reshape(-1, 1, 1, 1)  # OHWI
        ours = np.asarray(fake_quant_weights(layer.inner.kernel)).transpose(3, 0, 1, 2)
        np.testing.assert_allclose(ours, converted, atol=float(weights.scale.max()) * 0.51)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_qat_brings_the_uint8_model_closer_to_the_float_one(results, images, name):
    def error(calibrated) -> float:
        total = 0.0
        for image, target in zip(images, results[name]["targets"], strict=True):
            (codes, (scale, zero)), = litert_outputs(calibrated.data, image)[:1]
            total += float(np.mean(((codes.astype(np.float64) - zero) * scale - target) ** 2))
        return total / len(images)

    ptq, qat = error(results[name]["ptq"]), error(results[name]["qat"])
    assert qat < 0.8 * ptq, (ptq, qat)
    # training saw what the uint8 model computes: its fake-quantised loss is the converted model's error
    assert qat == pytest.approx(results[name]["loss"], rel=0.15)


def _with_lambda():
    import keras

    inp = keras.Input((HEIGHT, WIDTH, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="first")(inp)
    x = keras.layers.Lambda(lambda v: v * 2.0, name="doubling")(x)
    return keras.Model(inp, keras.layers.Conv2D(4, 1)(x))


def _with_loose_batch_norm():
    import keras

    inp = keras.Input((HEIGHT, WIDTH, 3))
    a = keras.layers.Conv2D(8, 3, padding="same")(inp)
    b = keras.layers.Conv2D(8, 1)(inp)
    x = keras.layers.BatchNormalization(name="after_concat_bn")(keras.layers.Concatenate()([a, b]))
    return keras.Model(inp, x)


@pytest.mark.parametrize(("build", "layer"), [(_with_lambda, "'doubling' (Lambda)"),
                                              (_with_loose_batch_norm, "'after_concat_bn' (BatchNormalization)")])
def test_a_layer_qat_cannot_fake_quantise_is_refused_by_name(images, build, layer):
    calls = []
    floats = [image.astype(np.float32) / 255.0 for image in images[:2]]
    with pytest.raises(PipelineError, match=re.escape(f"QAT cannot fake-quantise layer {layer}")) as caught:
        quantize_keras(build(), b"", floats, "tflite", 99.9, fine_tune=calls.append)
    assert caught.value.field == "quantize.qat_epochs" and not calls


def test_kurtosis_penalty_is_each_channels_distance_from_a_uniform_distribution():
    from deploy.quantize.fake_quant import UNIFORM_KURTOSIS, kurtosis_penalty

    rng = np.random.default_rng(3)
    kernel = np.stack([rng.uniform(-1, 1, 4000), rng.laplace(size=4000)], axis=-1).reshape(20, 20, 10, 2)
    flat = kernel.reshape(-1, 2)
    centred = flat - flat.mean(axis=0)
    kurtosis = (centred ** 4).mean(axis=0) / (centred ** 2).mean(axis=0) ** 2  # about 1.8 and 6
    want = np.mean((kurtosis - UNIFORM_KURTOSIS) ** 2)
    assert float(kurtosis_penalty(kernel.astype(np.float32))) == pytest.approx(want, rel=1e-4)
    assert abs(kurtosis[0] - UNIFORM_KURTOSIS) < 0.1 < abs(kurtosis[1] - UNIFORM_KURTOSIS)
    depthwise = kernel.reshape(20, 20, 2, 10).astype(np.float32)  # (k, k, C, M): C * M channels of 400 weights
    per_channel = depthwise.reshape(400, 20)
    centred = per_channel - per_channel.mean(axis=0)
    want = np.mean(((centred ** 4).mean(axis=0) / (centred ** 2).mean(axis=0) ** 2 - UNIFORM_KURTOSIS) ** 2)
    assert float(kurtosis_penalty(depthwise, depthwise=True)) == pytest.approx(want, rel=1e-4)


def test_qat_kurtosis_draws_the_kernels_toward_a_compact_distribution(images):
    import keras
    import tensorflow as tf

    from deploy.quantize.fake_quant import kurtosis_penalty

    floats = [image.astype(np.float32) / 255.0 for image in images]
    batch = np.stack(floats)

    def penalties(weight: float) -> tuple[float, int]:
        keras.utils.set_random_seed(20261207)
        model = conv_chain_layers()
        float_bytes = tf.lite.TFLiteConverter.from_keras_model(model).convert()
        targets = np.asarray(model.predict(batch, verbose=0))
        seen = {}

        def fine_tune(fake):
            fake.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
            fake.fit(batch, targets, epochs=EPOCHS, batch_size=4, verbose=0)
            fake(batch[:1], training=True)
            seen["losses"] = len(fake.losses)
            seen["kernels"] = [layer.inner.kernel for layer in fake.layers
                               if isinstance(layer, Quantized) and hasattr(layer.inner, "kernel")]

        quantize_keras(model, float_bytes, floats[:4], "tflite", 100.0, fine_tune=fine_tune, qat_kurtosis=weight)
        return float(np.mean([kurtosis_penalty(k) for k in seen["kernels"]])), seen["losses"]

    plain, plain_losses = penalties(0.0)
    compact, compact_losses = penalties(1.0)
    assert plain_losses == 0 and compact_losses >= 3  # one term per weighted layer
    assert compact < 0.8 * plain, (compact, plain)
