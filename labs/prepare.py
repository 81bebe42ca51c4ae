"""`invoke lab N`: write the lab's configs into build/labs/, make the data subsets of the fast path, bring the
checkpoints a lab continues from (trained now when missing, by the same `invoke train` a student would type), and
print the plan."""

from __future__ import annotations

import shutil
import subprocess
import sys

from labs.configs import QUANTIZATION_VARIANTS
from labs.course import LABS, Lab, config_builders, render_command, shown
from labs.subsets import write_subsets
from labs.workspace import build_folder, config_path, workspace, write_config, written_by_lab
from pipeline.config import REPO_ROOT
from pipeline.errors import PipelineError
from pipeline.manifest import Manifest

CHECKPOINT_FILES = ("model.keras", "model_meta.json")
COPIES_OF_LAB_3 = ("lab_pruned", *QUANTIZATION_VARIANTS)  # configs that start from a copy of lab 3's detector


def lab(number: int) -> Lab:
    if number not in LABS:
        raise PipelineError(f"there is no lab {number}", field="N", expected=f"one of {sorted(LABS)}")
    return LABS[number]


def trained(config: str, fast: bool) -> bool:
    folder = build_folder(config, fast)
    return (folder / "manifest.json").is_file() and Manifest(folder).stage("train") is not None


def run_invoke(command: str) -> None:
    """Run one `invoke ...` command as the student would, its output shown as it comes."""
    print(f"$ {command}", flush=True)
    done = subprocess.run([sys.executable, "-m", "invoke", *command.split()[1:]], cwd=REPO_ROOT)
    if done.returncode != 0:
        raise PipelineError(f"`{command}` failed (exit {done.returncode})", expected="see its message above")


def bring_checkpoints(target: Lab, fast: bool) -> list[str]:
    """Train each model the lab starts from when it is missing; the pruning and quantization labs get copies of lab
    3's detector in their own build folders. Returns what was done, for the plan."""
    done = []
    for name in target.pretrained:
        if not trained(name, fast):
            command = render_command(f"invoke train --config {{{name}}}", fast)
            print(f"the lab starts from a trained {name}, which is missing: training it now", flush=True)
            run_invoke(command)
            done.append(f"trained {name} ({command})")
    for config in (c for c in target.configs if c in COPIES_OF_LAB_3):
        source, copy = build_folder("lab_detector", fast), build_folder(config, fast)
        copy.mkdir(parents=True, exist_ok=True)
        for name in CHECKPOINT_FILES:
            shutil.copy2(source / name, copy / name)
        done.append(f"copied lab 3's {', '.join(CHECKPOINT_FILES)} into {shown(copy)}")
    return done


def write_configs(target: Lab, fast: bool) -> list[str]:
    subsets = write_subsets(workspace() / "data") if fast and "lab_classroom" in target.configs else None
    builders = config_builders(fast, subsets)
    header = (f"Lab {target.number} ({'fast path' if fast else '90-minute lab'}): written by `invoke lab "
              f"{target.number}`, which rewrites it; to change a setting, use --set or edit a copy")
    return [shown(write_config(name, builders[name](), header)) if written_by_lab(name, fast)
            else f"{shown(config_path(name, fast))} (the project's own)" for name in target.configs]


def prepare(number: int, fast: bool = False) -> str:
    """Everything lab `number` needs before its first step; returns the plan to print."""
    target = lab(number)
    configs = write_configs(target, fast)
    done = bring_checkpoints(target, fast)
    lines = [f"Lab {number}: {target.title}", f"  read: {target.doc}", *(f"  config: {c}" for c in configs),
             *(f"  {line}" for line in done), "  steps:"]
    lines += [f"    {i}. {render_command(step.command, fast)}\n       ({step.why})"
              for i, step in enumerate(target.steps, 1)]
    lines.append(f"  then: invoke lab-check {number}{' --fast' if fast else ''}")
    return "\n".join(lines)
