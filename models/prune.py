"""Structured (filter) pruning: remove the least important output filters of each convolution and rebuild a
smaller Keras model with the surviving weights. Fewer channels shrink the kmodel and the KPU time directly,
unlike unstructured sparsity, which the KPU cannot exploit.

Importance of a filter (`prune.criterion`): |gamma| of the batch norm that follows it (network slimming) or the L1
norm of the filter. Channel masks are propagated through the graph (batch norm, activations, pooling, padding,
depthwise convs, concatenation and the space-to-depth passthrough), so every consumer keeps exactly the surviving
inputs; convs whose maps meet in a residual Add form one group that keeps the same channels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from models.backbones.blocks import KPU_MIN_CHANNELS, SpaceToDepth
from pipeline.config import RULES
from pipeline.errors import PipelineError

CRITERIA = RULES["prune.criterion"].choices

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


def prunable_convs(model: keras.Model) -> list[keras.layers.Layer]:
    """Every Conv2D whose filters may be removed: all but the model outputs."""
    outputs = {t._keras_history.operation.name for t in model.outputs}
    return [layer for layer in model.layers if type(layer) is keras.layers.Conv2D and layer.name not in outputs]


def batch_norm_after(model: keras.Model) -> dict[str, keras.layers.BatchNormalization | None]:
    """Per prunable conv, the batch norm that alone reads its output, or None."""
    consumers = _consumers(model)
    found = {}
    for layer in prunable_convs(model):
        after = consumers[layer.name]
        single = len(after) == 1 and isinstance(after[0], keras.layers.BatchNormalization)
        found[layer.name] = after[0] if single else None
    return found


def filter_scores(model: keras.Model, criterion: str = "gamma") -> dict[str, np.ndarray]:
    """Importance per output filter of every prunable conv: |gamma| of its batch norm, or the filter's L1 norm."""
    if criterion not in CRITERIA:
        raise PipelineError(f"got {criterion!r}", field="prune.criterion", expected=" | ".join(CRITERIA))
    norms = batch_norm_after(model)
    scores = {}
    for layer in prunable_convs(model):
        if criterion == "l1":
            scores[layer.name] = np.abs(layer.kernel.numpy()).sum(axis=(0, 1, 2))
        elif norms[layer.name] is None:
            raise PipelineError(f"conv {layer.name!r} of model {model.name!r} has no batch norm after it, so it has "
                                "no gamma to rank its filters by", field="prune.criterion",
                                expected="l1 (the filters' L1 norm) for a model without batch norm")
        else:
            scores[layer.name] = np.abs(norms[layer.name].gamma.numpy())
    return scores


def _channel_sources(model: keras.Model, name: str, prunable: set[str]) -> set[str] | None:
    """The prunable convs whose filters are the channels of layer `name`'s output, or None when some channel comes
    from elsewhere (the input, a concatenation, an output conv): such a map's channels cannot be removed."""
    layer = model.get_layer(name)
    if name in prunable:
        return {name}
    if isinstance(layer, keras.layers.Add):
        found: set[str] = set()
        for tensor in _inputs_of(layer):
            part = _channel_sources(model, tensor._keras_history.operation.name, prunable)
            if part is None:
                return None
            found |= part
        return found
    if isinstance(layer, (keras.layers.BatchNormalization, keras.layers.DepthwiseConv2D, *CHANNEL_PRESERVING)):
        return _channel_sources(model, _inputs_of(layer)[0]._keras_history.operation.name, prunable)
    return None


def coupled_groups(model: keras.Model) -> tuple[list[tuple[str, ...]], set[str]]:
    """(groups of convs that must keep the same filters because their maps are added, convs that must keep all
    of theirs because they are added to a map that cannot be pruned)."""
    prunable = {layer.name for layer in prunable_convs(model)}
    groups: list[set[str]] = []
    fixed: set[str] = set()
    for layer in model.layers:
        if not isinstance(layer, keras.layers.Add):
            continue
        parts = [_channel_sources(model, t._keras_history.operation.name, prunable) for t in _inputs_of(layer)]
        members = set().union(*(p for p in parts if p is not None))
        if any(p is None for p in parts):
            fixed |= members
            continue
        for group in [g for g in groups if g & members]:
            groups.remove(group)
            members |= group
        groups.append(members)
    merged = [tuple(sorted(g)) for g in groups if not g & fixed]
    return merged, fixed | {n for g in groups if g & fixed for n in g}


def prune_units(model: keras.Model, scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Scores per pruning unit: a single conv by its name, a coupled group by its members joined with '+' (the sum
    of their scores); convs that must keep every filter are left out."""
    groups, fixed = coupled_groups(model)
    grouped = {name for group in groups for name in group}
    units = {name: score for name, score in scores.items() if name not in grouped and name not in fixed}
    for group in groups:
        units["+".join(group)] = np.sum([scores[name] for name in group], axis=0)
    return units


def unit_masks(unit_keep: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per conv masks from per unit masks (a group's mask goes to each member)."""
    return {name: mask for unit, mask in unit_keep.items() for name in unit.split("+")}


def top_mask(score: np.ndarray, keep: int) -> np.ndarray:
    """A boolean mask keeping the `keep` highest-scoring filters (ties: the first)."""
    mask = np.zeros(len(score), bool)
    mask[np.argsort(-score, kind="stable")[:keep]] = True
    return mask


def keep_masks(scores: dict[str, np.ndarray], sparsity: float, min_filters: int = KPU_MIN_CHANNELS
               ) -> dict[str, np.ndarray]:
    """Per unit, a boolean mask keeping the round((1 - sparsity) * n) highest-scoring filters (at least
    min_filters)."""
    if not 0 <= sparsity < 1:
        raise PipelineError(f"got {sparsity}", field="prune.sparsity", expected="a fraction in [0, 1)")
    return {name: top_mask(score, min(len(score), max(min_filters, round(len(score) * (1 - sparsity)))))
            for name, score in scores.items()}


def _sliced_weights(layer: keras.layers.Layer, in_mask: np.ndarray, out_mask: np.ndarray) -> list[np.ndarray]:
    weights = layer.get_weights()
    if type(layer) is keras.layers.Conv2D:
        kernel = weights[0][:, :, in_mask, :][..., out_mask]
        return [kernel] + [w[out_mask] for w in weights[1:]]
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return [weights[0][:, :, in_mask, :]] + [w[in_mask] for w in weights[1:]]
    if isinstance(layer, keras.layers.BatchNormalization):
        return [w[in_mask] for w in weights]
    if isinstance(layer, keras.layers.Dense):
        return [weights[0][in_mask]] + weights[1:]
    return weights


def _out_mask(layer: keras.layers.Layer, in_masks: list[np.ndarray], masks: dict[str, np.ndarray]) -> np.ndarray:
    if type(layer) is keras.layers.Conv2D:
        return masks.get(layer.name, np.ones(layer.filters, bool))
    if isinstance(layer, keras.layers.Concatenate):
        if layer.axis not in (-1, 3):
            raise PipelineError(f"layer {layer.name!r} concatenates on axis {layer.axis}",
                                expected="channel concatenation (axis -1) to prune through it")
        return np.concatenate(in_masks)
    if isinstance(layer, keras.layers.Add):
        if any(not np.array_equal(m, in_masks[0]) for m in in_masks[1:]):
            raise PipelineError(f"the maps added by {layer.name!r} keep different channels",
                                expected="the convs feeding one Add pruned as one group (models.prune.prune_units)")
        return in_masks[0]
    if isinstance(layer, keras.layers.Flatten):  # (H, W, C) -> index (h * W + w) * C + c
        return np.tile(in_masks[0], int(np.prod(layer.input.shape[1:-1])))
    if isinstance(layer, keras.layers.Dense):
        return np.ones(layer.units, bool)
    if isinstance(layer, SpaceToDepth):
        return np.tile(in_masks[0], layer.block_size ** 2)  # tf.nn.space_to_depth: channel = block_offset * C + c
    if isinstance(layer, (keras.layers.BatchNormalization, keras.layers.DepthwiseConv2D, *CHANNEL_PRESERVING)):
        return in_masks[0]
    raise PipelineError(f"cannot prune through layer {layer.name!r} of type {type(layer).__name__}",
                        expected="Conv2D, DepthwiseConv2D, BatchNormalization, activations, pooling, padding, "
                                 "Concatenate, Add, SpaceToDepth, Flatten or Dense")


def prune_model(model: keras.Model, masks: dict[str, np.ndarray]) -> tuple[keras.Model, PruneSummary]:
    """A new model with only the kept filters of each masked conv; weights copied, nothing retrained. A conv left
    with fewer filters than the KPU's floor (4) is refused by name."""
    for name, mask in masks.items():
        if int(mask.sum()) < min(KPU_MIN_CHANNELS, len(mask)):
            raise PipelineError(f"conv {name!r} would keep {int(mask.sum())} of its {len(mask)} filters",
                                field="prune.min_filters",
                                expected=f"at least {KPU_MIN_CHANNELS} filters per conv (the KPU's floor)")
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
