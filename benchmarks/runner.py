"""Find and run the benchmark modules, writing each result to build/bench/<name>.json. Everything a benchmark's
stages write (trained comparison models, anchors, cached tools) goes below the output folder too, in
<out>/stages/ (the build root while it runs)."""

from __future__ import annotations

import contextlib
import importlib
import os
import platform
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.atomic import write_json
from pipeline.config import Config, build_root
from pipeline.errors import PipelineError

BENCH_DIR = Path(__file__).resolve().parent
STAGES_DIR = "stages"
BUILD_ROOT_VARIABLE = "PIPELINE_BUILD_ROOT"  # what pipeline.config.build_root() reads
_outer_root: list[Path] = []  # the build root `invoke bench` started with, while a benchmark runs


def available() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in BENCH_DIR.glob("bench_*.py"))


def _module(name: str):
    return importlib.import_module(f"benchmarks.bench_{name}")


def default_names() -> list[str]:
    """The benchmarks `invoke bench` runs without --only: all but those marked ON_REQUEST_ONLY (hour-long ones)."""
    return [name for name in available() if not getattr(_module(name), "ON_REQUEST_ONLY", False)]


def run_benchmarks(out_dir: Path, only: list[str] | None = None) -> dict[str, Any]:
    """Run the named benchmarks (by default all but those marked ON_REQUEST_ONLY); returns {name: result}."""
    names = available()
    unknown = sorted(set(only or []) - set(names))
    if unknown:
        raise PipelineError(f"unknown benchmark(s) {unknown}", field="--only", expected=", ".join(names))
    results = {}
    for name in only or default_names():
        module = _module(name)
        started = time.perf_counter()
        _outer_root[:] = [build_root()]
        with build_root_at(Path(out_dir) / STAGES_DIR):
            result = module.run(out_dir)
        result = {"benchmark": name, "machine": machine(),
                  "wall_s": round(time.perf_counter() - started, 2), **result}
        write_json(out_dir / f"{name}.json", result)
        print(f"[bench] {name}: {out_dir / (name + '.json')}")
        results[name] = result
    return results


def trained_build(cfg: Config) -> Path:
    """The folder of `cfg`'s trained product models (build/<config>/ of the build root `invoke bench` started with),
    which benchmarks read but never write."""
    return (_outer_root[0] if _outer_root else build_root()) / cfg.name


@contextlib.contextmanager
def build_root_at(folder: Path) -> Iterator[None]:
    """Make `folder` the build root (build/<config>/ becomes folder/<config>/) for the duration of the block."""
    before = os.environ.get(BUILD_ROOT_VARIABLE)
    os.environ[BUILD_ROOT_VARIABLE] = str(folder)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(BUILD_ROOT_VARIABLE, None)
        else:
            os.environ[BUILD_ROOT_VARIABLE] = before


def machine() -> dict[str, Any]:
    """What a benchmark ran on: the cores it may use, the CPU model, its vector extensions, Python."""
    flags: set[str] = set()
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    return {"cpus": len(os.sched_getaffinity(0)), "cpu_model": model,
            "vector": [f for f in ("sse4_2", "avx", "avx2", "avx512f", "fma") if f in flags],
            "python": platform.python_version()}
