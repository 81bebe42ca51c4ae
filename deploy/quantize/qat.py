"""Quantization-aware training from the PTQ result: the BN-folded float model gets fake-quantised weights (per output
channel) and activations (per tensor, one learned clip range per tie group, started at the PTQ range of the chosen
method), is fine-tuned by a caller-given function, and is converted again; the learned clips become the activation
ranges written into the uint8 TFLite by apply_ranges, the fine-tuned weights the float weights the converter
quantizes.

Keras layers and float TFLite tensors are paired by value on one image (each layer output with the activation tensor
of the same shape that holds the same numbers), so the pairing needs no knowledge of the converter's tensor names;
a layer whose output the converter fused away (a ReLU into its conv) gets no quantizer of its own."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import keras
import numpy as np

from deploy.k210.compiler.tflite_graph import read_tflite
from deploy.quantize import graph as qgraph
from deploy.quantize.fake_quant import ActivationQuantizer, Quantized, raw_input_quantizer
from deploy.quantize.keras_graph import layer_graph
from deploy.quantize.ranges import represented
from deploy.quantize.statistics import FloatActivations
from pipeline.errors import PipelineError

WEIGHTED = ("Conv2D", "DepthwiseConv2D", "Dense")
PLAIN = ("InputLayer", "LeakyReLU", "ReLU", "Activation", "Add", "Concatenate", "MaxPooling2D", "AveragePooling2D",
         "GlobalAveragePooling2D", "ZeroPadding2D", "Reshape", "Flatten", "Dropout", "Identity", "FoldedBatchNorm",
         "SpaceToDepth")
ACTIVATIONS = ("linear", "relu", "relu6", "sigmoid", "softmax", "tanh")
MATCH_TOLERANCE = 1e-3  # relative difference between a Keras layer output and its float TFLite tensor


@dataclass
class QatModel:
    """The fake-quantised Keras model and, per layer name, its output quantizer (shared within a tie group)."""

    model: keras.Model
    quantizers: dict[str, ActivationQuantizer]


def check_supported(model) -> None:
    """Every layer is one QAT can fake-quantise (a batch norm: one that folds into its conv), else an error naming
    the first one that is not."""
    from deploy.quantize.fold_bn import folded_pairs

    folding = set(folded_pairs(model).values())
    for layer in model.layers:
        kind = type(layer).__name__
        config = layer.get_config()
        if layer.name in folding:
            continue
        if (kind in WEIGHTED or kind in PLAIN) and config.get("activation", "linear") in ACTIVATIONS:
            continue
        raise PipelineError(f"QAT cannot fake-quantise layer '{layer.name}' ({kind}"
                            f"{', activation ' + str(config['activation']) if 'activation' in config else ''})",
                            field="quantize.qat_epochs",
                            expected=f"layers of the kinds {', '.join(WEIGHTED + PLAIN)} with activations "
                                     f"{', '.join(ACTIVATIONS)} (a batch norm only right after a conv, where it "
                                     "folds), or quantize.qat_epochs: 0")


def layer_tensors(model, float_bytes: bytes, image: np.ndarray) -> dict[str, int]:
    """Layer name -> the float TFLite activation tensor holding the same values on `image` (layers without one,
    e.g. a ReLU fused into its conv by the converter, are left out)."""
    floating = read_tflite(float_bytes)
    candidates = [t.index for t in floating.tensors if t.data is None and t.index not in floating.inputs]
    values = FloatActivations(float_bytes, candidates).run(image)
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    probe = keras.Model(model.input, [layer.output for layer in layers])
    outputs = probe(image[None].astype(np.float32), training=False)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    found = {}
    for layer, output in zip(layers, outputs, strict=True):
        mine = np.asarray(output, np.float32)
        tolerance = MATCH_TOLERANCE * (1.0 + float(np.abs(mine).max()))
        best, error = None, tolerance
        for t in candidates:
            if values[t].shape == mine.shape:
                difference = float(np.abs(values[t] - mine).max())
                if difference <= error:
                    best, error = t, difference
        if best is not None:
            found[layer.name] = best
    return found


def _ptq_tensors(ptq_data: bytes, float_bytes: bytes) -> dict[int, tuple[float, float, int, bool]]:
    """Float tensor -> (low, high, tie group, fixed) as the PTQ uint8 TFLite quantizes its int8 twin."""
    quant, floating = read_tflite(ptq_data), read_tflite(float_bytes)
    plan = qgraph.plan(quant, floating)
    out = {}
    for group, members in enumerate(plan.groups):
        for t in members:
            if t in plan.twins:
                tensor = quant.tensors[t]
                low, high = represented(float(tensor.scale[0]), int(tensor.zero_point[0]))
                out[plan.twins[t]] = (low, high, group, t in plan.fixed)
    return out


def qat_model(model, float_bytes: bytes, ptq_data: bytes, image: np.ndarray, kurtosis: float = 0.0) -> QatModel:
    """The fake-quantised twin of `model` (BN folded, checked by check_supported) with its clips started at the PTQ
    ranges; its weights are a copy of the model's. With `kurtosis` > 0 the model's losses hold that weight x the
    mean over its weighted layers of their kurtosis penalties (fake_quant.kurtosis_penalty)."""
    tensors = layer_tensors(model, float_bytes, image)
    ptq = _ptq_tensors(ptq_data, float_bytes)
    shared: dict[int, ActivationQuantizer] = {}
    quantizers = {}
    for layer in model.layers:
        entry = ptq.get(tensors.get(layer.name, -1))
        if entry is None:
            continue
        low, high, group, fixed = entry
        if group not in shared:
            shared[group] = ActivationQuantizer(low, high, fixed_low=low >= 0, trainable=not fixed,
                                                name=f"clip_{layer.name}")
        quantizers[layer.name] = shared[group]
    graph = layer_graph(model)
    inputs = {layer.name for layer in model.layers if isinstance(layer, keras.layers.InputLayer)}
    raw = raw_input_quantizer()
    weighted = sum(type(layer).__name__ in WEIGHTED for layer in model.layers)
    per_layer = kurtosis / max(weighted, 1)

    def clone(layer):
        reads_input = any(name in inputs for name in graph.inputs[layer.name])
        return Quantized(layer.__class__.from_config(layer.get_config()), quantizers.get(layer.name),
                         raw if reads_input else None, kurtosis_weight=per_layer)

    fake = keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        if layer.weights:
            fake.get_layer(layer.name).inner.set_weights(layer.get_weights())
    return QatModel(model=fake, quantizers=quantizers)


def learned_ranges(qat: QatModel, model, float_bytes: bytes, image: np.ndarray) -> dict[int, tuple[float, float]]:
    """Float TFLite tensor of `model` -> the learned clip (low, high) of the layer writing it."""
    tensors = layer_tensors(model, float_bytes, image)
    return {tensors[name]: quantizer.range() for name, quantizer in qat.quantizers.items()
            if name in tensors and quantizer.trainable}


def fine_tuned(model, float_bytes: bytes, ptq_data: bytes, images: Sequence[np.ndarray],
               fine_tune: Callable[[keras.Model], None],
               kurtosis: float = 0.0) -> tuple[keras.Model, bytes, dict[int, tuple[float, float]]]:
    """(`model` with its weights replaced in place by the fine-tuned ones, its float TFLite, float tensor -> learned
    clip range); `kurtosis` weights the kernels' kurtosis penalty (qat_model)."""
    from deploy.tflite import convert_float

    qat = qat_model(model, float_bytes, ptq_data, images[0], kurtosis)
    fine_tune(qat.model)
    for layer in model.layers:
        if layer.weights:
            layer.set_weights(qat.model.get_layer(layer.name).inner.get_weights())
    float_bytes = convert_float(model)
    return model, float_bytes, learned_ranges(qat, model, float_bytes, images[0])
