"""The host kmodel runner (firmware/tools/kmodel_run.c): the C runtime alone on raw inputs, for byte comparisons
with the simulator and for timing."""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploy.firmware.boards import FIRMWARE_DIR, HOST, rounding_flags
from deploy.firmware.build import require_tools
from deploy.firmware.k210_headers import write_k210_headers
from pipeline.atomic import atomic_folder
from pipeline.errors import PipelineError

RUNTIME_DIR = FIRMWARE_DIR / "runtime"
RUNNER_SOURCE = FIRMWARE_DIR / "tools" / "kmodel_run.c"


@dataclass(frozen=True)
class RunnerResult:
    outputs: list[bytes]
    ms_per_run: float
    work_bytes: int


def build_kmodel_runner(out_dir: Path, *, rounding: str = "reference") -> Path:
    """Compile the runner with the host gcc (-Wall -Wextra -Werror); returns the executable."""
    host = HOST
    require_tools((host.cc,), host.apt_packages)
    flags = [f for f in host.cflags if f != "-std=c99"] + ["-std=c11"]  # C11: aligned_alloc
    with atomic_folder(Path(out_dir)) as tmp:
        generated = tmp / "generated"
        write_k210_headers(generated)
        cmd = [host.cc, *flags, *rounding_flags(rounding), f"-I{RUNTIME_DIR}", f"-I{generated}", str(RUNNER_SOURCE),
               *map(str, sorted(RUNTIME_DIR.glob("*.c"))), "-o", str(tmp / "kmodel_run"), "-lm"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise PipelineError(f"building the kmodel runner failed:\n{proc.stderr[-3000:]}")
    return Path(out_dir) / "kmodel_run"


def run_kmodel(runner: Path, kmodel: Path, model_input: np.ndarray, *, repeat: int = 1,
               timeout: float = 300.0) -> RunnerResult:
    """Run `kmodel` on one input `repeat` times; outputs as raw bytes, time per run."""
    with tempfile.TemporaryDirectory(prefix="kmodel_run_") as tmp:
        data = Path(tmp) / "input.bin"
        data.write_bytes(np.ascontiguousarray(model_input).tobytes())
        proc = subprocess.run([str(runner), str(kmodel), str(data), f"{tmp}/out", str(repeat)], capture_output=True,
                              text=True, timeout=timeout)
        if proc.returncode != 0:
            raise PipelineError(f"C runtime refused the model: {proc.stderr.strip()}", path=kmodel)
        summary = json.loads(proc.stdout)
        outputs = [p.read_bytes() for p in sorted(Path(tmp).glob("out.*.bin"), key=lambda p: int(p.name.split(".")[1]))]
    return RunnerResult(outputs=outputs, ms_per_run=summary["ms_per_run"], work_bytes=summary["work_bytes"])
