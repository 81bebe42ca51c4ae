"""Cross-layer equalisation (Nagel et al. 2019, "Data-free quantization") on a BN-folded Keras model.

A pair (A, B) of Conv2D layers is equalised when A's output reaches B, and nothing else, through layers that commute
with a positive per-channel scale: LeakyReLU, ReLU without a cap, MaxPooling2D, ZeroPadding2D, Identity and
FoldedBatchNorm (a folded BN). Channel c of A is divided by s_c = sqrt(r1_c / r2_c) and input channel c of B
multiplied by it (r1: A's weight range of output channel c, r2: B's weight range of input channel c), so both
become sqrt(r1_c r2_c). Left alone by rule: convs whose output has several readers (the passthrough branch
point), that feed or read a Concatenate, Add or SpaceToDepth (tie groups share one quantization, so their channels
cannot be rescaled apart), depthwise convs, ReLU6 (not homogeneous beyond its cap) and convs with a fused
activation other than ReLU.

Bias absorption: where B is a 1x1 conv (no padding, so the shift is exact at the borders) and A's BN statistics
say the pre-activation of channel c stays above h_c = max(0, beta_c - 3 |gamma_c|) / s_c (three standard deviations),
h_c is moved out of A's bias into B's: b_A -= h, b_B += sum over taps W_B[:, :, c, :] * h_c. The activation range
of A's output then starts near zero instead of h_c, narrowing its quantization step."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deploy.quantize.keras_graph import LayerGraph, layer_graph

ROUNDS = 20  # equalisation sweeps over the chain (each pair is re-balanced as its neighbours change)
PASS_THROUGH = ("LeakyReLU", "MaxPooling2D", "ZeroPadding2D", "Identity", "FoldedBatchNorm")


@dataclass
class Pair:
    first: str
    second: str
    path: list[str]  # the layers between them


def _passes(layer) -> bool:
    name = type(layer).__name__
    if name == "ReLU":
        config = layer.get_config()
        return config.get("max_value") is None and not config.get("threshold") and not config.get("negative_slope")
    if name == "Activation":
        return layer.get_config().get("activation") == "relu"
    return name in PASS_THROUGH


def pairs(model, graph: LayerGraph | None = None) -> list[Pair]:
    """The conv pairs the rules above allow, in model order."""
    import keras

    graph = graph or layer_graph(model)
    found = []
    for layer in model.layers:
        if type(layer) is not keras.layers.Conv2D or layer.get_config()["activation"] not in ("linear", "relu") \
                or not layer.use_bias:
            continue
        path, name = [], graph.sole_consumer(layer.name)
        while name is not None and _passes(model.get_layer(name)):
            path.append(name)
            name = graph.sole_consumer(name)
        if name is None:
            continue
        second = model.get_layer(name)
        if type(second) is keras.layers.Conv2D and len(graph.inputs[name]) == 1:
            found.append(Pair(layer.name, name, path))
    return found


def equalize(model, bn_stats: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
             ) -> dict[str, dict[str, float]]:
    """Equalise `model` (BN already folded) in place; bn_stats: conv name -> (beta, |gamma|) of the BN folded into
    it, for bias absorption. Returns per pair the largest weight-range ratio before and after (for reports)."""
    found = pairs(model)
    weights = {name: [np.asarray(w, np.float64) for w in model.get_layer(name).get_weights()]
               for pair in found for name in (pair.first, pair.second)}
    before = {f"{p.first}->{p.second}": _imbalance(weights[p.first][0], weights[p.second][0]) for p in found}
    total = {p.first: np.ones(weights[p.first][0].shape[-1]) for p in found}
    for _ in range(ROUNDS):
        for p in found:
            a, b = weights[p.first], weights[p.second]
            r1 = np.abs(a[0]).max(axis=(0, 1, 2))
            r2 = np.abs(b[0]).max(axis=(0, 1, 3))
            s = np.where((r1 > 0) & (r2 > 0), np.sqrt(r1 / np.where(r2 > 0, r2, 1)), 1.0)
            a[0] /= s
            a[1] /= s
            b[0] *= s[None, None, :, None]
            total[p.first] *= s
    for p in found:
        a, b = weights[p.first], weights[p.second]
        if bn_stats and p.first in bn_stats and b[0].shape[:2] == (1, 1) and len(b) > 1:
            beta, gamma = bn_stats[p.first]
            h = np.maximum(0.0, (beta - 3 * gamma) / total[p.first])
            a[1] -= h
            b[1] += np.einsum("ijco,c->o", b[0], h)
    for name, values in weights.items():
        layer = model.get_layer(name)
        layer.set_weights([v.astype(np.float32) for v in values])
    return {key: {"before": value, "after": _imbalance(weights[key.split("->")[0]][0],
                                                      weights[key.split("->")[1]][0])}
            for key, value in before.items()}


def _imbalance(first: np.ndarray, second: np.ndarray) -> float:
    """max over channels of A's output range divided by B's input range for that channel (1 when balanced)."""
    r1 = np.abs(first).max(axis=(0, 1, 2))
    r2 = np.abs(second).max(axis=(0, 1, 3))
    ratio = np.maximum(r1, 1e-12) / np.maximum(r2, 1e-12)
    return float(np.max(np.maximum(ratio, 1 / ratio)))


def equalized(model):
    """(a new model with BN folded and the conv pairs equalised, the per-pair imbalance report); `model` is kept."""
    from deploy.quantize.fold_bn import fold_batch_norm, folded_pairs

    stats = {}
    for conv, bn_name in folded_pairs(model).items():
        bn = model.get_layer(bn_name)
        channels = np.asarray(bn.moving_mean).shape
        stats[conv] = (np.asarray(bn.beta, np.float64) if bn.center else np.zeros(channels),
                       np.abs(np.asarray(bn.gamma, np.float64)) if bn.scale else np.ones(channels))
    folded = fold_batch_norm(model)
    return folded, equalize(folded, stats)
