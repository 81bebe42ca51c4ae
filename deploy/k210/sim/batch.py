"""A kmodel over a batch of inputs, with one interface for either engine (the NumPy reference here, the C runtime in
`fast.py`): run() gives each input's raw outputs as SimResult.outputs, dequantized() as SimResult.dequantized."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from deploy.k210.format import kmodel as km
from deploy.k210.format.kmodel_io import load_kmodel
from deploy.k210.sim.kpu_arith import check_rounding
from deploy.k210.sim.simulator import dequantize_outputs, model_input_shape, simulate
from pipeline.errors import PipelineError


def check_batch(inputs: np.ndarray, model: km.KModel) -> np.ndarray:
    """`inputs` as an N x (model input) array of the model's input dtype, else a PipelineError naming both."""
    shape, dtype = model_input_shape(model)
    expected = (f"a NumPy array N x {'x'.join(map(str, shape))} of {dtype} (N inputs, each "
                f"{'CHW planar' if len(shape) == 3 else 'the first layer input'})")
    if not isinstance(inputs, np.ndarray):
        raise PipelineError(f"inputs are a {type(inputs).__name__}", field="inputs", expected=expected)
    if inputs.shape[1:] != shape or inputs.dtype != dtype:
        raise PipelineError(f"inputs have shape {inputs.shape} and dtype {inputs.dtype}", field="inputs",
                            expected=expected)
    return inputs


class BatchSimulator(ABC):
    """The batch interface evaluation code uses, over either engine."""

    def __init__(self, kmodel: Path | str | bytes | km.KModel, *, rounding: str = "reference") -> None:
        check_rounding(rounding)
        self.rounding = rounding
        # a file or bytes (a clear PipelineError when missing or malformed), or a model built in memory
        self.model = kmodel if isinstance(kmodel, km.KModel) else load_kmodel(kmodel)
        self.input_shape, self.input_dtype = model_input_shape(self.model)

    @abstractmethod
    def run(self, inputs: np.ndarray) -> list[list[np.ndarray]]:
        """inputs: N x the model input; per input, its raw output arrays (as SimResult.outputs)."""

    def dequantized(self, inputs: np.ndarray) -> list[list[np.ndarray]]:
        """As SimResult.dequantized, per input."""
        return [dequantize_outputs(outputs) for outputs in self.run(inputs)]


class ReferenceSimulator(BatchSimulator):
    """The NumPy reference simulator, one simulate() per input; it also runs an in-memory KModel that cannot be
    written (the per-layer weight-width mixes of compiler/weight_sensitivity)."""

    def run(self, inputs: np.ndarray) -> list[list[np.ndarray]]:
        return [simulate(self.model, x, rounding=self.rounding).outputs for x in check_batch(inputs, self.model)]
