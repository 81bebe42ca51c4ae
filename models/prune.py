"""Structured (filter) pruning: remove the least important output filters of each convolution and rebuild a
smaller Keras model with the surviving weights. Fewer channels shrink the kmodel and the KPU time directly,
unlike unstructured sparsity, which the KPU cannot exploit.

Importance of a filter: |gamma| of the batch norm that follows it (network slimming), else the L1 norm of the
filter. Channel masks are propagated through the graph (batch norm, activations, pooling, padding, depthwise
convs, concatenation and the space-to-depth passthrough), so every consumer keeps exactly the surviving inputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from models.backbones.blocks import SpaceToDepth
from pipeline.errors import PipelineError

CHANNEL_PRESERVING = (keras.layers.LeakyReLU, keras.layers.ReLU, keras.layers.Activation, keras.layers.MaxPooling2D,
                      keras.layers.AveragePooling2D, keras.layers.ZeroPadding2D, keras.layers.Dropout)


@dataclass(frozen=True)
class PruneSummary:
    filters_before: int
    filters_after: int
    params_before: int
    params_after: int
    per_layer: dict[str, tuple[int, int]]

    def as_dict(self) -> dict[str, Any]:
        return {"filters_before": self.filters_before, "filters_after": self.filters_after,
                "params_before": self.params_before, "params_after": self.params_after,
                "per_layer": {k: list(v) for k, v in self.per_layer.items()}}


def _inputs_of(layer: keras.layers.Layer) -> list[keras.KerasTensor]:
    return list(layer._inbound_nodes[0].input_tensors)


def _consumers(model: keras.Model) -> dict[str, list[keras.layers.Layer]]:
    consumers: dict[str, list[keras.layers.Layer]] = {layer.name: [] for layer in model.layers}
    for layer in model.layers:
        for tensor in _inputs_of(layer):
            consumers[tensor._keras_history.operation.name].append(layer)
    return consumers


def filter_scores(model: keras.Model) -> dict[str, np.ndarray]:
    """Importance per output filter of every prunable conv (all Conv2D layers except model outputs)."""
    outputs = {t._keras_history.operation.name for t in model.outputs}
    consumers = _consumers(model)
    scores = {}
    for layer in model.layers:
        if type(layer) is not keras.layers.Conv2D or layer.name in outputs:
            continue
        after = consumers[layer.name]
        if len(after) == 1 and isinstance(after[0], keras.layers.BatchNormalization):
            scores[layer.name] = np.abs(after[0].gamma.numpy())
        else:
            scores[layer.name] = np.abs(layer.kernel.numpy()).sum(axis=(0, 1, 2))
    return scores


def keep_masks(scores: dict[str, np.ndarray], sparsity: float, min_filters: int = 4) -> dict[str, np.ndarray]:
    """Per conv, a boolean mask keeping the round((1 - sparsity) * n) highest-scoring filters (at least min_filters)."""
    if not 0 <= sparsity < 1:
        raise PipelineError(f"got {sparsity}", field="prune.sparsity", expected="a fraction in [0, 1)")
    masks = {}
    for name, score in scores.items():
        keep = min(len(score), max(min_filters, round(len(score) * (1 - sparsity))))
        order = np.argsort(-score, kind="stable")[:keep]
        mask = np.zeros(len(score), bool)
        mask[order] = True
        masks[name] = mask
    return masks


def _sliced_weights(layer: keras.layers.Layer, in_mask: np.ndarray, out_mask: np.ndarray) -> list[np.ndarray]:
    weights = layer.get_weights()
    if type(layer) is keras.layers.Conv2D:
        kernel = weights[0][:, :, in_mask, :][..., out_mask]
        return [kernel] + [w[out_mask] for w in weights[1:]]
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return [weights[0][:, :, in_mask, :]] + [w[in_mask] for w in weights[1:]]
    if isinstance(layer, keras.layers.BatchNormalization):
        return [w[in_mask] for w in weights]
    return weights


def _out_mask(layer: keras.layers.Layer, in_masks: list[np.ndarray], masks: dict[str, np.ndarray]) -> np.ndarray:
    if type(layer) is keras.layers.Conv2D:
        return masks.get(layer.name, np.ones(layer.filters, bool))
    if isinstance(layer, keras.layers.Concatenate):
        if layer.axis not in (-1, 3):
            raise PipelineError(f"layer {layer.name!r} concatenates on axis {layer.axis}",
                                expected="channel concatenation (axis -1) to prune through it")
        return np.concatenate(in_masks)
    if isinstance(layer, SpaceToDepth):
        return np.tile(in_masks[0], layer.block_size ** 2)  # tf.nn.space_to_depth: channel = block_offset * C + c
    if isinstance(layer, (keras.layers.BatchNormalization, keras.layers.DepthwiseConv2D, *CHANNEL_PRESERVING)):
        return in_masks[0]
    raise PipelineError(f"cannot prune through layer {layer.name!r} of type {type(layer).__name__}",
                        expected="Conv2D, DepthwiseConv2D, BatchNormalization, activations, pooling, padding, "
                                 "Concatenate or SpaceToDepth")


def prune_model(model: keras.Model, masks: dict[str, np.ndarray]) -> tuple[keras.Model, PruneSummary]:
    """A new model with only the kept filters of each masked conv; weights copied, nothing retrained."""
    tensors: dict[str, keras.KerasTensor] = {}
    channel_masks: dict[str, np.ndarray] = {}
    new_layers: list[tuple[keras.layers.Layer, keras.layers.Layer, np.ndarray, np.ndarray]] = []
    new_inputs = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            tensor = keras.Input(shape=layer.batch_shape[1:], name=layer.name)
            tensors[layer.name], channel_masks[layer.name] = tensor, np.ones(layer.batch_shape[-1], bool)
            new_inputs.append(tensor)
            continue
        sources = [t._keras_history.operation.name for t in _inputs_of(layer)]
        in_masks = [channel_masks[s] for s in sources]
        out_mask = _out_mask(layer, in_masks, masks)
        config = layer.get_config()
        if type(layer) is keras.layers.Conv2D:
            config["filters"] = int(out_mask.sum())
        clone = type(layer).from_config(config)
        args = [tensors[s] for s in sources]
        tensors[layer.name] = clone(args if len(args) > 1 else args[0])
        channel_masks[layer.name] = out_mask
        new_layers.append((layer, clone, in_masks[0] if len(in_masks) == 1 else np.ones(0, bool), out_mask))
    outputs = [tensors[t._keras_history.operation.name] for t in model.outputs]
    pruned = keras.Model(new_inputs if len(new_inputs) > 1 else new_inputs[0],
                         outputs if len(outputs) > 1 else outputs[0], name=model.name)
    for old, new, in_mask, out_mask in new_layers:
        if old.weights:
            new.set_weights(_sliced_weights(old, in_mask, out_mask))
    per_layer = {name: (len(mask), int(mask.sum())) for name, mask in masks.items()}
    summary = PruneSummary(sum(v[0] for v in per_layer.values()), sum(v[1] for v in per_layer.values()),
                           int(model.count_params()), int(pruned.count_params()), per_layer)
    return pruned, summary
