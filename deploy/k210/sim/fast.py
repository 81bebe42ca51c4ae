"""The fast simulator: a kmodel on the C runtime (firmware/runtime, the host build of the firmware's own
interpreter and software KPU) driven from Python, a whole batch per runner process. It gives the same bytes as the
NumPy reference simulate() (tests/test_k210_fast_sim.py), which stays the definition."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deploy.firmware.kmodel_runner import cached_kmodel_runner, run_kmodel_batch
from deploy.k210.format import kmodel as km
from deploy.k210.sim.batch import BatchSimulator, ReferenceSimulator, check_batch
from deploy.k210.sim.layouts import output_layouts
from pipeline.errors import PipelineError


class FastSimulator(BatchSimulator):
    """The kmodel on the C runtime (host build, cached under build/tools/), same bytes as simulate()."""

    def __init__(self, kmodel: Path | str | bytes | km.KModel, *, rounding: str = "reference") -> None:
        if isinstance(kmodel, km.KModel):
            raise PipelineError("an in-memory kmodel (e.g. a per-layer weight-width mix, which no file can hold) "
                                "runs on the NumPy simulator only", field="eval.kmodel_engine", expected="reference")
        super().__init__(kmodel, rounding=rounding)
        self.source = None if isinstance(kmodel, (bytes, bytearray, memoryview)) else Path(kmodel)
        self.data = bytes(kmodel) if self.source is None else self.source.read_bytes()
        self.layouts = output_layouts(self.model)
        try:
            self.runner = cached_kmodel_runner(rounding)
        except PipelineError as exc:
            instead = "or the NumPy simulator instead (eval.kmodel_engine: reference; `invoke simulate` without --fast)"
            raise PipelineError(f"the fast simulator cannot build its C runner: {exc.message}", path=exc.path,
                                expected=f"{exc.expected or 'the host gcc (run `invoke setup`)'}, {instead}") from None

    def run(self, inputs: np.ndarray) -> list[list[np.ndarray]]:
        """inputs: N x (the model input shape, e.g. C x H x W uint8); per input, its raw output arrays, shaped and
        typed exactly as SimResult.outputs of simulate()."""
        batch = check_batch(inputs, self.model)
        count = len(batch)
        if count == 0:
            return []
        result = run_kmodel_batch(self.runner, self.data, batch, len(self.layouts), source=self.source)
        per_output = []
        for index, (data, layout, desc) in enumerate(zip(result.outputs, self.layouts, self.model.outputs,
                                                         strict=True)):
            if len(data) != count * desc.size:
                raise PipelineError(f"the C runtime wrote {len(data)} bytes for output {index}", path=self.source,
                                    expected=f"{count} x {desc.size} bytes")
            array = np.frombuffer(data, layout.dtype).reshape(count, *layout.shape)
            per_output.append(array.astype(np.float32 if layout.is_float else np.uint8))
        return [[arrays[n] for arrays in per_output] for n in range(count)]


def simulator_for(kmodel: Path | str | bytes | km.KModel, *, fast: bool, rounding: str = "reference"
                  ) -> BatchSimulator:
    """The kmodel on the C runtime (`fast`) or the NumPy reference, behind one .run / .dequantized interface."""
    return (FastSimulator if fast else ReferenceSimulator)(kmodel, rounding=rounding)
