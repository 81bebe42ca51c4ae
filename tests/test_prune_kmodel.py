"""Pruned models on the KPU (issue #15): a detector and an embedder pruned to the odd channel counts pruning leaves
(coupled groups kept in step) export, compile, and run byte for byte the same in the NumPy simulator and in the C
runtime the firmware uses, as the unpruned models do."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tests.kpu_models import EMBEDDING, detector_net, embedder_net, random_images, uint8_tflite
from tests.test_k210_fast_sim import assert_same, varied_inputs

pytest.importorskip("tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SPARSITY = 0.37  # leaves counts such as 5, 10, 20, 40 of 8, 16, 32, 64: not multiples of 4


def pruned_kmodel(model, images: list[np.ndarray]):
    """`model` pruned uniformly by |gamma| (coupled convs as one unit), exported to uint8 TFLite on `images` and
    compiled; returns the compiled kmodel and the conv filter counts before and after."""
    from deploy.k210.compiler.driver import compile_tflite
    from models.prune import filter_scores, keep_masks, prunable_convs, prune_model, prune_units, unit_masks

    masks = unit_masks(keep_masks(prune_units(model, filter_scores(model)), SPARSITY))
    pruned, _ = prune_model(model, masks)
    before = {layer.name: layer.filters for layer in prunable_convs(model)}
    after = {layer.name: layer.filters for layer in prunable_convs(pruned)}
    return compile_tflite(uint8_tflite(pruned, images)), before, after


def assert_both_engines_agree(data: bytes, seed: int) -> list[list[np.ndarray]]:
    """Random, blank and saturated inputs: every output the same on both engines; returns the outputs."""
    from deploy.k210.sim.batch import ReferenceSimulator
    from deploy.k210.sim.fast import FastSimulator

    fast, reference = FastSimulator(data), ReferenceSimulator(data)
    batch = varied_inputs(np.random.default_rng(seed), fast.input_shape, 4)
    got = fast.run(batch)
    assert_same(got, reference.run(batch))
    assert not np.array_equal(got[0][0], got[1][0])  # the inputs reach the outputs
    return got


def assert_pruned(before: dict[str, int], after: dict[str, int]) -> None:
    assert sum(after.values()) < 0.8 * sum(before.values())
    assert any(count % 4 for count in after.values()), after  # the KPU's channel packing is exercised
    assert min(after.values()) >= 4


def test_a_pruned_skip_darknet19_detector_compiles_and_runs_the_same_on_both_engines():
    from PIL import Image

    images = [np.asarray(Image.fromarray(i).resize((160, 128))) for i in random_images(128, 6, seed=2)]
    net = detector_net("skip_darknet19", width=0.125, size=(160, 128), num_classes=1, seed=3, bn_seed=4,
                       output_stride=16, calibration=("random_images(128, 6, seed=2) resized", lambda: images))
    compiled, before, after = pruned_kmodel(net.build(), net.calibration())
    assert_pruned(before, after)
    assert_both_engines_agree(compiled.data, seed=1)


def test_a_pruned_recognizer_embedder_compiles_and_runs_the_same_on_both_engines():
    net = embedder_net("skip_darknet19", 128)
    compiled, before, after = pruned_kmodel(net.build(), net.calibration())
    assert_pruned(before, after)
    outputs = assert_both_engines_agree(compiled.data, seed=2)
    assert outputs[0][0].size == EMBEDDING and outputs[0][0].dtype == np.float32
