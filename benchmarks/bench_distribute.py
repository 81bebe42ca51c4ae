"""Training throughput with train.distribute: the tiny detector (the tests' config, 96 synthetic images, batches of
16) trained on one device (none) and mirrored on the CPU split into two logical devices, alternating, REPEATS times
each, in one process of tests/distribute_driver.py (logical devices must be set up before TensorFlow starts).
Images/s counts the steady-state steps only: epochs 2 and 3, the step-to-step time within an epoch (no tracing, no
epoch-end validation). Two logical devices share the same cores, so mirrored is not expected to be faster here; the
ratio is mirrored against none in the same run. Minutes, so it runs when asked (`invoke bench --only distribute`)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from pipeline.config import REPO_ROOT
from pipeline.errors import PipelineError
from pipeline.plotting import new_figure, save_figure

ON_REQUEST_ONLY = True
REPEATS = 2
STEPS_PER_EPOCH, BATCH = 6, 16
CONFIG = {"dataset": {"format": "synthetic", "classes": ["face"],
                      "synthetic": {"train_count": STEPS_PER_EPOCH * BATCH, "val_count": 4, "size": [160, 128],
                                    "seed": 5}},
          "model": {"family": "tiny", "width": 0.0625, "input_size": [128, 128], "num_anchors": 3},
          "train": {"epochs": 3, "batch_size": BATCH, "warmup_epochs": 1, "quiet": True, "budget_mib": 1.0}}
MODES = {"none": {"train.distribute": "none"},
         "mirrored": {"train.distribute": "mirrored", "train.devices": ["/cpu:0", "/cpu:1"]}}


def steady_images_per_second(step_end_times: list[float]) -> float:
    """Images/s over the steps of epochs 2 and on, each timed from the end of the step before it in its epoch."""
    ends = step_end_times
    steps = [ends[index] - ends[index - 1] for index in range(STEPS_PER_EPOCH, len(ends)) if index % STEPS_PER_EPOCH]
    return BATCH * len(steps) / sum(steps)


def run(out_dir: Path) -> dict[str, Any]:
    work = out_dir / "distribute"
    work.mkdir(parents=True, exist_ok=True)
    config = work / "tinyface.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    runs = [{"name": f"{mode}-{repeat}", "config": str(config), "set": settings,
             "build_root": str(work / f"{mode}-{repeat}")}
            for repeat in range(REPEATS) for mode, settings in MODES.items()]
    spec, result_path = work / "spec.json", work / "driver.json"
    spec.write_text(json.dumps({"cpus": 2, "runs": runs}))
    done = subprocess.run([sys.executable, "-m", "tests.distribute_driver", str(spec), str(result_path)],
                          cwd=REPO_ROOT, capture_output=True, text=True)
    if done.returncode:
        raise PipelineError(f"the distribute driver failed: {done.stderr.strip().splitlines()[-1:]}")
    driven = json.loads(result_path.read_text())
    per_mode = {mode: [round(steady_images_per_second(driven[f"{mode}-{r}"]["step_end_times"]), 1)
                       for r in range(REPEATS)] for mode in MODES}
    medians = {mode: statistics.median(values) for mode, values in per_mode.items()}
    result = {"config": CONFIG, "logical_cpu_devices": 2, "repeats": REPEATS, "load_average": os.getloadavg(),
              "steady_images_per_s": per_mode, "median_images_per_s": medians,
              "mirrored_vs_none": round(medians["mirrored"] / medians["none"], 3),
              "whole_fit_images_per_s": {run["name"]: driven[run["name"]]["metrics"]["train_images_per_second"]
                                         for run in runs}}
    fig, ax = new_figure(5, 3.5)
    ax.bar(list(medians), list(medians.values()), color=["tab:blue", "tab:orange"])
    for index, values in enumerate(per_mode.values()):
        ax.plot([index] * len(values), values, "k.", label="runs" if index == 0 else None)
    ax.set_ylabel("images/s (steady-state steps)")
    ax.set_title(f"tiny detector, 2 logical CPUs: mirrored/none {result['mirrored_vs_none']:.2f}")
    ax.legend()
    save_figure(fig, out_dir / "distribute.png")
    return result
