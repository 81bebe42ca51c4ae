"""The course's timings: every lab walked on its full (90-minute) configs as a student would (`invoke lab N`, each
step, `invoke lab-check N`), with the wall time of each step and the score, on this machine. Hours of training:
only on request (`invoke bench --only labs`; BENCH_LABS=3,6 walks only those labs). The teacher notes quote it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from labs.course import LABS, render_command
from pipeline.config import REPO_ROOT

ON_REQUEST_ONLY = True


def _timed(command: str) -> dict[str, Any]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "invoke", *command.split()[1:]], cwd=REPO_ROOT,
                          capture_output=True, text=True)
    return {"command": command, "seconds": round(time.monotonic() - started, 1), "exit": done.returncode,
            "first_line": next(iter(done.stdout.splitlines()), ""), "tail": (done.stdout + done.stderr)[-600:]}


def walk(number: int) -> dict[str, Any]:
    """Lab `number` on its full configs: preparation, steps and check, each timed."""
    runs = [_timed(f"invoke lab {number}")]
    runs += [_timed(render_command(step.command, fast=False)) for step in LABS[number].steps]
    runs.append(_timed(f"invoke lab-check {number}"))
    steps = sum(run["seconds"] for run in runs[1:-1])
    return {"runs": runs, "prepare_seconds": runs[0]["seconds"], "steps_seconds": round(steps, 1),
            "score": runs[-1]["first_line"]}


def run(out_dir: Path) -> dict[str, Any]:
    """Walk the labs (BENCH_LABS, default all); labs walked by an earlier run and not now keep their entries."""
    numbers = [int(n) for n in os.environ.get("BENCH_LABS", ",".join(map(str, sorted(LABS)))).split(",")]
    earlier = Path(out_dir) / "labs.json"
    kept = json.loads(earlier.read_text()) if earlier.is_file() else {}
    results: dict[str, Any] = {"cpus": len(os.sched_getaffinity(0)), "walked_now": numbers,
                               **{key: value for key, value in kept.items() if key.startswith("lab_")}}
    for number in numbers:
        results[f"lab_{number}"] = {**walk(number), "measured": time.strftime("%Y-%m-%d %H:%M"),
                                    "load_average": os.getloadavg()}
        print(f"[labs] lab {number}: steps {results[f'lab_{number}']['steps_seconds']} s, "
              f"{results[f'lab_{number}']['score']}", flush=True)
    _plot(results, Path(out_dir))
    return results


def _plot(results: dict[str, Any], out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labs = sorted(key for key in results if key.startswith("lab_"))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar([key.removeprefix("lab_") for key in labs],
           [(results[k]["prepare_seconds"] + results[k]["steps_seconds"]) / 60 for k in labs], label="prepare + steps")
    ax.axhline(90, color="k", linestyle="--", linewidth=1, label="90-minute lab")
    ax.set_xlabel("lab")
    ax.set_ylabel("minutes on this machine")
    ax.set_title(f"labs walked on their full configs ({results['cpus']} CPUs)")
    ax.legend()
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_dir / "labs.png", dpi=100)
    plt.close(fig)
