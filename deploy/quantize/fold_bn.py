"""Batch-norm folding made explicit: each Conv2D / DepthwiseConv2D whose only reader is a BatchNormalization gets the
normalisation folded into its kernel and bias (w * g / sqrt(v + eps), beta + (b - m) * g / sqrt(v + eps)), and the
BN becomes a FoldedBatchNorm (an identity). The converter folds BN the same way; doing it here lets cross-layer
equalisation see the weights the int8 model will hold."""

from __future__ import annotations

import keras
import numpy as np

from deploy.quantize.keras_graph import layer_graph


class FoldedBatchNorm(keras.layers.Layer):
    """Where a folded BatchNormalization was: passes its input through (takes the BN's call arguments)."""

    def call(self, inputs, training=None, mask=None):
        return inputs


def folded_pairs(model) -> dict[str, str]:
    """conv layer name -> the BatchNormalization it feeds alone."""
    graph = layer_graph(model)
    pairs = {}
    for layer in model.layers:
        if not isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
            continue
        if layer.get_config().get("activation", "linear") != "linear":
            continue
        user = graph.sole_consumer(layer.name)
        if user is not None and isinstance(model.get_layer(user), keras.layers.BatchNormalization) \
                and model.get_layer(user).axis in (-1, [-1], 3, [3]):
            pairs[layer.name] = user
    return pairs


def _folded_weights(conv, bn) -> list[np.ndarray]:
    kernel = np.asarray(conv.kernel, np.float64)
    mean = np.asarray(bn.moving_mean, np.float64)
    factor = (np.asarray(bn.gamma, np.float64) if bn.scale else 1.0) / np.sqrt(
        np.asarray(bn.moving_variance, np.float64) + bn.epsilon)
    beta = np.asarray(bn.beta, np.float64) if bn.center else 0.0
    bias = np.asarray(conv.bias, np.float64) if conv.use_bias else np.zeros_like(mean)
    if isinstance(conv, keras.layers.DepthwiseConv2D):  # kernel (k, k, C, multiplier): output c * m + j
        kernel = kernel * factor.reshape(kernel.shape[2], kernel.shape[3])
    else:
        kernel = kernel * factor
    return [kernel.astype(np.float32), (beta + (bias - mean) * factor).astype(np.float32)]


def fold_batch_norm(model):
    """A new model computing the same function with every conv + BN pair folded into the conv."""
    pairs = folded_pairs(model)
    folded_bns = set(pairs.values())

    def clone(layer):
        config = layer.get_config()
        if layer.name in folded_bns:
            return FoldedBatchNorm(name=layer.name)
        if layer.name in pairs:
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    new = keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        if layer.name in pairs:
            new.get_layer(layer.name).set_weights(_folded_weights(layer, model.get_layer(pairs[layer.name])))
        elif layer.name not in folded_bns and layer.weights:
            new.get_layer(layer.name).set_weights(layer.get_weights())
    return new
