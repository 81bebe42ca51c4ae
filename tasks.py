"""The pipeline as Invoke tasks: face photos -> trained model -> uint8 TFLite -> K210 kmodel -> firmware -> board.

Every task reads `--config configs/<name>.yaml` (default configs/demo.yaml); flags override config values;
artifacts go to build/<config>/ with a manifest.json; a stage whose inputs are unchanged is skipped
(--force re-runs it). Tasks only parse flags and call one stage function.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

from invoke import task

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter off the console

from pipeline.config import load_config
from pipeline.errors import PipelineError

CONFIG_HELP = "pipeline config YAML (default configs/demo.yaml)"
FORCE_HELP = "re-run the stage even if its inputs are unchanged"


def reports_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Print a PipelineError as one clear line and exit 2 instead of a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PipelineError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper


def load(config: str | None, sets: list[str] | None = None, **flags: Any):
    """The config named by --config, with `--set key=value` overrides and then explicit flags applied."""
    from pipeline.config import parse_override

    overrides = dict(parse_override(text) for text in sets or [])
    overrides.update({key: value for key, value in flags.items() if value is not None})
    return load_config(config, overrides)


SET_HELP = "override any config value, e.g. --set train.epochs=5 (repeatable)"


@task(help={"check": "only report what is missing; install nothing"})
@reports_errors
def setup(c, check=False):
    """Install the system tools later stages need (gcc, RISC-V gcc + picolibc, QEMU) via apt when missing."""
    from pipeline.system_tools import ensure_system_tools

    ensure_system_tools(install=not check)


@task(help={"slow": "also run tests marked slow", "k": "only tests matching this pytest -k expression"})
def test(c, slow=False, k=None):
    """Run the test suite (pytest); the default suite skips tests marked slow."""
    marker = "" if slow else '-m "not slow"'
    select = f'-k "{k}"' if k else ""
    c.run(f"{sys.executable} -m pytest -q {marker} {select}", pty=False)


@task(help={"config": "only clean this config's build folder (default: all of build/)"})
def clean(c, config=None):
    """Delete build artifacts."""
    import shutil

    from pipeline.config import REPO_ROOT

    target = load_config(config).build_dir if config else REPO_ROOT / "build"
    shutil.rmtree(target, ignore_errors=True)
    print(f"removed {target}")


@task(iterable=["set_"], help={"config": CONFIG_HELP, "set_": SET_HELP,
                              "stats": "print counts and write box-size/aspect histograms (PNG) per split",
                              "strict": "fail on the first bad image or annotation instead of skipping it",
                              "anchors": "compute the model's anchors by IoU k-means on the train boxes (+ PNG)",
                              "force": FORCE_HELP})
@reports_errors
def data(c, config=None, set_=None, stats=False, strict=False, anchors=False, force=False):
    """Read (or generate) the data set and check every image and box; --stats adds counts and histograms."""
    from models.data.report import check_data_report, data_stats_report, format_stats

    cfg = load(config, set_)
    if stats:
        print(format_stats(data_stats_report(cfg, strict=strict, force=force)))
    else:
        print(check_data_report(cfg, strict=strict, force=force))
    if anchors:
        from models.anchors import dataset_anchors

        found = dataset_anchors(cfg, force=force)
        cells = ", ".join(f"({w:.2f}, {h:.2f})" for w, h in found)
        print(f"anchors (grid cells): {cells}\nwritten to {cfg.build_dir / 'anchors.json'} and anchors.png")


@task(iterable=["set_"], help={"config": CONFIG_HELP, "set_": SET_HELP,
                              "family": "backbone: tiny | darknet19 | skip_darknet19 | mobilenet_v1 (model.family)",
                              "width": "width multiplier of every layer (model.width)",
                              "epochs": "number of epochs (train.epochs)",
                              "fresh": "ignore the last checkpoint and the CSV log; start from epoch 1",
                              "force": FORCE_HELP})
@reports_errors
def train(c, config=None, set_=None, family=None, width=None, epochs=None, fresh=False, force=False):
    """Train the YOLOv2 face detector (refuses a model over train.budget_mib first); resumes after an interrupt."""
    from models.train import format_train, train_stage

    cfg = load(config, set_, **{"model.family": family, "model.width": float(width) if width else None,
                                "train.epochs": int(epochs) if epochs else None})
    print(format_train(train_stage(cfg, force=force, resume=not fresh).metrics))


@task(iterable=["set_"], help={"config": CONFIG_HELP, "set_": SET_HELP,
                              "split": "data split to evaluate on (val or train)",
                              "model": "Keras model to evaluate (default build/<config>/model.keras)"})
@reports_errors
def eval(c, config=None, set_=None, split="val", model=None):
    """VOC AP@0.5, COCO AP@[.5:.95], PR curve and recall by face size for Keras, float and uint8 TFLite."""
    from pathlib import Path

    from models.evaluate import evaluate_stage, format_eval

    cfg = load(config, set_)
    print(format_eval(evaluate_stage(cfg, split=split, model_path=Path(model) if model else None)))


@task(iterable=["set_"], help={"config": CONFIG_HELP, "set_": SET_HELP,
                              "model": "Keras model to export (default build/<config>/pruned.keras or model.keras)",
                              "calib_images": "calibration images for the uint8 model (default quantize.calib_images)",
                              "held_images": "held-out val images on which Keras/float/uint8 outputs are compared",
                              "force": FORCE_HELP})
@reports_errors
def export(c, config=None, set_=None, model=None, calib_images=None, held_images=None, force=False):
    """Export the trained model to float32 and full-integer uint8 TFLite; report sizes and output agreement."""
    from deploy.export import export_stage, format_export

    cfg = load(config, set_)
    result = export_stage(cfg, model_path=model, calib_images=calib_images, held_images=held_images, force=force)
    print(format_export(result.metrics))


@task(iterable=["set_"], help={"config": CONFIG_HELP, "set_": SET_HELP,
                              "model": "Keras model (default build/<config>/pruned.keras or model.keras)",
                              "calib_images": "calibration images (default quantize.calib_images)",
                              "held_images": "held-out val images on which Keras/float/uint8 outputs are compared",
                              "force": FORCE_HELP})
@reports_errors
def quantize(c, config=None, set_=None, model=None, calib_images=None, held_images=None, force=False):
    """Re-run only the full-integer (uint8 I/O) quantization of an exported model, e.g. with more calibration images."""
    from deploy.export import format_export, quantize_stage

    cfg = load(config, set_)
    result = quantize_stage(cfg, model_path=model, calib_images=calib_images, held_images=held_images, force=force)
    print(format_export(result.metrics))


@task(iterable=["only"], help={"only": "run only this benchmark (repeatable); default all in benchmarks/"})
@reports_errors
def bench(c, only=None):
    """Run the benchmarks; results go to build/bench/<name>.json (with PNG plots where useful)."""
    from benchmarks.runner import run_benchmarks
    from pipeline.config import REPO_ROOT

    run_benchmarks(REPO_ROOT / "build" / "bench", only or None)


@task(iterable=["set_"], help={"config": CONFIG_HELP, "set_": SET_HELP,
                              "kmodel": "kmodel to render for (default build/<config>/model.kmodel)",
                              "report": "compile report with the detector section (default build/<config>/"
                                        "compile_report.json)",
                              "storage": "where the board keeps the kmodel: embedded | flash (firmware.kmodel_storage)",
                              "force": FORCE_HELP})
@reports_errors
def render(c, config=None, set_=None, kmodel=None, report=None, storage=None, force=False):
    """Render the RT-Thread glue (rt_ai model files, detector app, SConscript, Kconfig) from the compiled model."""
    from deploy.firmware.stages import render_stage

    cfg = load(config, set_, **{"firmware.kmodel_storage": storage})
    result = render_stage(cfg, kmodel=kmodel, report=report, force=force)
    print(f"[render] {result.metrics['folder']} ({result.metrics['files']} files, kmodel {result.metrics['storage']})")


@task(iterable=["set_"], help={"config": CONFIG_HELP, "set_": SET_HELP,
                              "board": "host (native executable) | qemu (bare-metal RV64) | k210 (RT-Thread tree)",
                              "rtt_root": "RT-Thread tree for --board k210 (default $RTT_ROOT)",
                              "rounding": "soft-KPU rounding: reference | v0.1 (firmware.rounding)",
                              "force": FORCE_HELP})
@reports_errors
def build(c, config=None, set_=None, board="host", rtt_root=None, rounding=None, force=False):
    """Build the rendered firmware for a board and report its size against the K210's 6 MiB SRAM."""
    from deploy.firmware.stages import build_stage

    cfg = load(config, set_, **{"firmware.rounding": rounding})
    result = build_stage(cfg, board, rtt_root=rtt_root, force=force)
    size = result.metrics.get("size")
    print(f"[build] {board}: {result.metrics.get('image') or result.metrics.get('program')}")
    if size:
        print(f"[build] text {size['text']} + data {size['data']} + bss {size['bss']} + kmodel {size['kmodel']} "
              f"+ work {size['work']} = {size['total']} bytes, {size['percent']}% of 6 MiB SRAM")


@task(iterable=["set_"], help={"config": CONFIG_HELP, "set_": SET_HELP,
                              "board": "host | qemu",
                              "images": "folder of images (or one image) to feed as camera frames",
                              "dump": "also print every raw output tensor as a hex JSON line",
                              "icount": "QEMU: count instructions per frame exactly (-icount)"})
@reports_errors
def run(c, config=None, set_=None, board="host", images=None, dump=False, icount=False):
    """Run the built firmware on images; prints one JSON line per frame (detections, ms)."""
    from pathlib import Path

    from deploy.firmware.stages import run_firmware

    if not images:
        raise PipelineError("no images given", field="--images", expected="a folder of images")
    cfg = load(config, set_)
    result = run_firmware(cfg, board, Path(images), dump=dump, count_instructions=icount)
    print("\n".join(line for line in result.text.splitlines() if line.startswith("{")))
