"""Fuzzing: seeded truncations and byte flips of valid kmodel and TFLite files must end in a PipelineError
(or a valid result), never in another exception."""

from __future__ import annotations

import numpy as np
import pytest

from deploy.k210.compiler.driver import compile_tflite
from deploy.k210.format.kmodel_io import read_kmodel, write_kmodel
from deploy.k210.sim.simulator import model_input_shape, simulate
from pipeline.errors import PipelineError
from tests.kpu_models import FUZZ_NET, every_body_model, tflite

SEED = 20261122


def mutations(data: bytes, count: int, seed: int):
    """`count` corrupted copies: half truncations, half 1-8 random byte flips."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        if i % 2 == 0:
            yield data[:int(rng.integers(0, len(data)))]
        else:
            corrupt = bytearray(data)
            for _ in range(int(rng.integers(1, 9))):
                corrupt[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
            yield bytes(corrupt)


@pytest.fixture(scope="module")
def small_tflite() -> bytes:
    return tflite(FUZZ_NET)


def _read_and_run(data: bytes) -> None:
    model = read_kmodel(data)
    shape, dtype = model_input_shape(model)
    if np.prod(shape) <= 1 << 20:
        simulate(model, np.full(shape, 7, dtype=dtype))


@pytest.mark.parametrize("source", ["every_body", "compiled"])
def test_corrupt_kmodels_fail_cleanly(source, small_tflite):
    data = write_kmodel(every_body_model()) if source == "every_body" else compile_tflite(small_tflite).data
    outcomes = {"ok": 0, "error": 0}
    for corrupt in mutations(data, 1500, SEED):
        try:
            _read_and_run(corrupt)
            outcomes["ok"] += 1
        except PipelineError:
            outcomes["error"] += 1
    assert outcomes["error"] > 500  # most truncations must be detected


def test_corrupt_tflite_files_fail_cleanly(small_tflite):
    outcomes = {"ok": 0, "error": 0}
    for corrupt in mutations(small_tflite, 1200, SEED + 1):
        try:
            compile_tflite(corrupt)
            outcomes["ok"] += 1
        except PipelineError:
            outcomes["error"] += 1
    assert outcomes["error"] > 500
