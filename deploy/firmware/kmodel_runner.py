"""The host kmodel runner (firmware/tools/kmodel_run.c): the C runtime alone on raw inputs, for byte comparisons
with the simulator, for timing, and (in batch mode, built once and cached) for the fast simulator."""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploy.firmware.boards import FIRMWARE_DIR, HOST, rounding_flags
from deploy.firmware.build import require_tools
from deploy.firmware.k210_headers import kpu_header_text, layout_header_text, write_k210_headers
from pipeline.atomic import atomic_folder
from pipeline.config import build_root
from pipeline.errors import PipelineError

RUNTIME_DIR = FIRMWARE_DIR / "runtime"
RUNNER_SOURCE = FIRMWARE_DIR / "tools" / "kmodel_run.c"
RUNNER_NAME = "kmodel_run"


@dataclass(frozen=True)
class RunnerResult:
    outputs: list[bytes]  # per output: its bytes (batch mode: every input's, back to back)
    ms_per_run: float
    work_bytes: int
    runs: int = 1


def _flags(rounding: str, kernel: str) -> list[str]:
    """The host flags in C11 (for aligned_alloc) with the soft KPU's switches."""
    return [f for f in HOST.cflags if f != "-std=c99"] + ["-std=c11", *rounding_flags(rounding, kernel)]


def build_kmodel_runner(out_dir: Path, *, rounding: str = "reference", kernel: str = "fast") -> Path:
    """Compile the runner with the host gcc (-Wall -Wextra -Werror) and the soft KPU's rounding and kernel
    (firmware.kpu_kernel); returns the executable."""
    require_tools((HOST.cc,), HOST.apt_packages)
    with atomic_folder(Path(out_dir)) as tmp:
        generated = tmp / "generated"
        write_k210_headers(generated)
        cmd = [HOST.cc, *_flags(rounding, kernel), f"-I{RUNTIME_DIR}", f"-I{generated}", str(RUNNER_SOURCE),
               *map(str, sorted(RUNTIME_DIR.glob("*.c"))), "-o", str(tmp / RUNNER_NAME), "-lm"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise PipelineError(f"building the kmodel runner failed:\n{proc.stderr[-3000:]}")
    return Path(out_dir) / RUNNER_NAME


@functools.cache
def runner_key(rounding: str) -> str:
    """Hash of what the runner is made of: its C sources, the generated headers, the flags and the compiler (version
    and the target -march=native resolves to)."""
    require_tools((HOST.cc,), HOST.apt_packages)
    flags = _flags(rounding, "fast")  # the fast simulator runs the fast kernel
    compiler = subprocess.run([HOST.cc, *flags, "-###", "-E", "-"], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL).stderr
    digest = hashlib.sha256()
    for part in (compiler, " ".join(flags), kpu_header_text(), layout_header_text()):
        digest.update(part.encode() + b"\0")
    for path in [RUNNER_SOURCE, *sorted(RUNTIME_DIR.glob("*.[ch]"))]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def cached_kmodel_runner(rounding: str = "reference") -> Path:
    """The runner for `rounding`, compiled once per change of its sources, flags or compiler, under
    build/tools/ (or $PIPELINE_BUILD_ROOT/tools/); written atomically."""
    folder = build_root() / "tools" / f"{RUNNER_NAME}-{rounding}-{runner_key(rounding)}"
    program = folder / RUNNER_NAME
    return program if program.is_file() else build_kmodel_runner(folder, rounding=rounding)


def _run(cmd: list[str], kmodel: Path | None, out_prefix: Path, output_count: int | None,
         timeout: float) -> RunnerResult:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise PipelineError(f"the C runtime took more than {timeout:g} s", path=kmodel) from None
    if proc.returncode != 0:
        raise PipelineError(f"C runtime refused the model or input: {proc.stderr.strip()}", path=kmodel)
    summary = json.loads(proc.stdout)
    files = sorted(out_prefix.parent.glob(f"{out_prefix.name}.*.bin"), key=lambda p: int(p.name.split(".")[1]))
    if output_count is not None and len(files) != output_count:
        raise PipelineError(f"the C runtime wrote {len(files)} outputs", path=kmodel, expected=f"{output_count}")
    return RunnerResult(outputs=[p.read_bytes() for p in files], ms_per_run=summary["ms_per_run"],
                        work_bytes=summary["work_bytes"], runs=summary["runs"])


def run_kmodel(runner: Path, kmodel: Path, model_input: np.ndarray, *, repeat: int = 1,
               timeout: float = 300.0) -> RunnerResult:
    """Run `kmodel` on one input `repeat` times; outputs as raw bytes, time per run."""
    with tempfile.TemporaryDirectory(prefix="kmodel_run_") as tmp:
        data = Path(tmp) / "input.bin"
        data.write_bytes(np.ascontiguousarray(model_input).tobytes())
        return _run([str(runner), str(kmodel), str(data), f"{tmp}/out", str(repeat)], kmodel, Path(tmp) / "out",
                    None, timeout)


def run_kmodel_batch(runner: Path, kmodel: bytes, inputs: np.ndarray, output_count: int, *,
                     source: Path | None = None, timeout_per_input: float = 60.0) -> RunnerResult:
    """Run the kmodel (its bytes; `source` the file they came from, for messages) on every input of `inputs`
    (N x the input) in one runner process, each from a fresh state; per output, all N results back to back."""
    with tempfile.TemporaryDirectory(prefix="kmodel_batch_") as tmp:
        folder = Path(tmp)
        (folder / "model.kmodel").write_bytes(kmodel)
        (folder / "inputs.bin").write_bytes(np.ascontiguousarray(inputs).tobytes())
        cmd = [str(runner), "--batch", str(folder / "model.kmodel"), str(folder / "inputs.bin"), str(folder / "out")]
        return _run(cmd, source, folder / "out", output_count, timeout_per_input * len(inputs) + 10)
