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


INTERRUPTED_EXIT = 130  # the shell's code for a command stopped by Ctrl-C (128 + SIGINT)


def reports_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Print a PipelineError as one clear line and exit 2 instead of a traceback; Ctrl-C says how to go on."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from pipeline.lock import task_scope

        try:
            with task_scope():
                return fn(*args, **kwargs)
        except PipelineError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        except KeyboardInterrupt:
            print(f"interrupted: `invoke {fn.__name__}` stopped before its stage was recorded as done; run the same "
                  "command again to continue (training resumes from its last finished epoch)", file=sys.stderr)
            raise SystemExit(INTERRUPTED_EXIT) from None

    wrapper.reports_errors = True  # type: ignore[attr-defined]  # tests check that every task has it
    return wrapper


def load(config: str | None, sets: list[str] | None = None, *, lock: bool = True, **flags: Any):
    """The config named by --config, with `--set key=value` overrides and then explicit flags (text, parsed by the
    config's rules) applied; its build folder stays locked until the task ends (lock=False: only read its path).

    Invoke hands flags only to the task they follow, so --config and --set given to any task of the command line
    (`invoke build flash --config c.yaml`) apply to all of its tasks."""
    from pipeline.config import parse_override
    from pipeline.invocation import shared_settings, shared_value
    from pipeline.lock import hold_for_task

    config = shared_value(config, sys.argv, "--config")
    overrides = dict(parse_override(text) for text in shared_settings(sets, sys.argv))
    overrides.update({key: value for key, value in flags.items() if value is not None})
    cfg = load_config(config, overrides)
    if lock:
        hold_for_task(cfg.build_dir)
    return cfg


def single_model(cfg, task: str) -> None:
    """An attendance config runs its two models' stages through their own configs; refuse the one-model tasks."""
    if cfg.model.task == "attendance":
        raise PipelineError(f"`invoke {task}` works on one model; {cfg.path.name} is an attendance config",
                            path=cfg.path, field="model.task", expected="its attendance.detector or "
                            "attendance.recognizer config (or `invoke build`, `flash`, `enroll`, `attendance`)")


SET_HELP = "override any config value, e.g. --set train.epochs=5 (repeatable)"


@task(help={"check": "only report what is missing; install nothing"})
@reports_errors
def setup(c, check=False):
    """Install the system tools later stages need (gcc, RISC-V gcc + picolibc, QEMU) via apt when missing."""
    from pipeline.system_tools import ensure_system_tools

    ensure_system_tools(install=not check)


@task(help={"slow": "also run tests marked slow", "k": "only tests matching this pytest -k expression"})
@reports_errors
def test(c, slow=False, k=None):
    """Run the test suite (pytest); the default suite skips tests marked slow."""
    marker = "" if slow else '-m "not slow"'
    select = f'-k "{k}"' if k else ""
    c.run(f"{sys.executable} -m pytest -q {marker} {select}", pty=False)


@task(help={"config": "only clean this config's build folder (default: all of build/)"})
@reports_errors
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
    """Train the face detector, or the recognizer (model.task), refusing a model over train.budget_mib first;
    resumes after an interrupt."""
    cfg = load(config, set_, **{"model.family": family, "model.width": width,
                                "train.epochs": epochs})
    single_model(cfg, "train")
    if cfg.model.task == "recognizer":  # TensorFlow loads only once the settings are valid
        from models.recognizer.train import format_recognizer_train as format_train
        from models.recognizer.train import train_recognizer_stage as train_stage
    else:
        from models.train import format_train, train_stage
    print(format_train(train_stage(cfg, force=force, resume=not fresh).metrics))


@task(iterable=["set_"], help={"config": CONFIG_HELP, "set_": SET_HELP,
                              "split": "data split to evaluate on (val or train)",
                              "model": "Keras model to evaluate (default build/<config>/pruned.keras when pruning, "
                                       "else model.keras)"})
@reports_errors
def eval(c, config=None, set_=None, split="val", model=None):
    """Detector: VOC AP@0.5, COCO AP@[.5:.95], PR curve, recall by size; recognizer: LFW View 2 and classroom
    identification (+ the teacher); for Keras, float/uint8 TFLite and the kmodel in the KPU sim."""
    from pathlib import Path

    cfg = load(config, set_)
    single_model(cfg, "eval")
    model_path = Path(model) if model else None
    if cfg.model.task == "recognizer":
        from deploy.evaluate import evaluate_recognizer_stage
        from models.recognizer.evaluate import format_recognizer_eval

        print(format_recognizer_eval(evaluate_recognizer_stage(cfg, model_path=model_path)))
        return
    from deploy.evaluate import evaluate_stage
    from models.evaluate import format_eval

    print(format_eval(evaluate_stage(cfg, split=split, model_path=model_path)))


@task(iterable=["set_"], help={"config": CONFIG_HELP, "set_": SET_HELP,
                              "sparsity": "fraction of each conv's filters to remove (prune.sparsity)",
                              "target": "global target: the share of prune.target_metric to remove "
                                        "(prune.target_reduction)",
                              "metric": "macs | params | kmodel_bytes | latency (prune.target_metric)",
                              "allocation": "uniform | global_gamma | sensitivity (prune.allocation)",
                              "epochs": "fine-tuning epochs per round (prune.finetune_epochs)",
                              "sensitivity": "only measure the per-layer sensitivity curves (PNG + JSON)",
                              "compare": "run the pruning one-shot / two rounds, with / without distillation "
                                         "(prune_compare.json + .png)",
                              "force": FORCE_HELP})
@reports_errors
def prune(c, config=None, set_=None, sparsity=None, target=None, metric=None, allocation=None, epochs=None,
          sensitivity=False, compare=False, force=False):
    """Remove the least important conv filters (uniformly or to a global target), fine-tune, and write
    pruned.keras with the AP change; --sensitivity: the per-layer sensitivity curves only; --compare: the variants."""
    cfg = load(config, set_, **{"prune.sparsity": sparsity, "prune.target_reduction": target,
                                "prune.target_metric": metric, "prune.allocation": allocation,
                                "prune.finetune_epochs": epochs})
    single_model(cfg, "prune")
    from deploy.k210.compiler.cycles import kpu_conv_us
    from models.prune_stage import format_prune, prune_stage, sensitivity_stage  # TensorFlow loads only now

    if sensitivity:
        print(sensitivity_stage(cfg, force=force).metrics)
        return
    if compare:
        from models.prune_compare import compare_stage

        print(compare_stage(cfg, force=force, conv_time=kpu_conv_us).metrics)
        return
    print(format_prune(prune_stage(cfg, force=force, conv_time=kpu_conv_us).metrics))


TFLITE_HELP = {"config": CONFIG_HELP, "set_": SET_HELP,
               "model": "Keras model (default build/<config>/pruned.keras when pruning, else model.keras)",
               "calib_images": "calibration images for the uint8 model (default quantize.calib_images)",
               "method": "activation ranges: tflite | minmax | percentile | mse | kl (default quantize.method)",
               "percentile": "percentile method: values inside the range per tail, in % (default quantize.percentile)",
               "held_images": "held-out val images on which Keras/float/uint8 outputs are compared",
               "force": FORCE_HELP}


def tflite_stage(stage_name, config, set_, model, calib_images, held_images, force, method=None,
                 percentile=None) -> None:
    """Run the export or quantize stage and print its sizes and output agreement."""
    cfg = load(config, set_, **{"quantize.calib_images": calib_images, "export.held_images": held_images,
                                "quantize.method": method, "quantize.percentile": percentile})
    single_model(cfg, "export/quantize")
    import deploy.export  # TensorFlow loads only once the settings are valid

    stage, format_export = getattr(deploy.export, stage_name), deploy.export.format_export
    result = stage(cfg, model_path=model, calib_images=cfg.quantize.calib_images if calib_images else None,
                   held_images=cfg.export.held_images if held_images else None, force=force)
    print(format_export(result.metrics))


@task(iterable=["set_"], help=TFLITE_HELP)
@reports_errors
def export(c, config=None, set_=None, model=None, calib_images=None, held_images=None, force=False, method=None,
           percentile=None):
    """Export the trained model to float32 and full-integer uint8 TFLite; report sizes and output agreement."""
    tflite_stage("export_stage", config, set_, model, calib_images, held_images, force, method, percentile)


@task(iterable=["set_"], help=TFLITE_HELP)
@reports_errors
def quantize(c, config=None, set_=None, model=None, calib_images=None, held_images=None, force=False, method=None,
             percentile=None):
    """Re-run only the full-integer (uint8 I/O) quantization of an exported model, e.g. with another method."""
    tflite_stage("quantize_stage", config, set_, model, calib_images, held_images, force, method, percentile)


@task(iterable=["set_"], help={"config": CONFIG_HELP, "set_": SET_HELP,
                              "tflite": "uint8 TFLite to compile (default build/<config>/model_uint8.tflite)",
                              "budget": "kmodel size budget in MiB (compile.budget_mib, default 5.5; MaixPy: 3.5)",
                              "inspect": "only print every header, output and layer field of this kmodel V3 file",
                              "weight_bits": "8 | 16 (compile.weight_bits): the kmodel's one weight width; 16 takes "
                                             "the weights from the export's model_quantized_float.tflite",
                              "force": FORCE_HELP})
@reports_errors
def compile(c, config=None, set_=None, tflite=None, budget=None, inspect=None, weight_bits=None, force=False):
    """Compile the uint8 TFLite to a K210 kmodel V3 + compile_report.json (layers, KPU RAM, cycles, FPS) + PNG."""
    from pathlib import Path

    from deploy.k210.compiler.compile_stage import compile_stage, inspect_kmodel

    if inspect:
        print(inspect_kmodel(Path(inspect)))
        return
    cfg = load(config, set_, **{"compile.budget_mib": budget, "compile.weight_bits": weight_bits})
    single_model(cfg, "compile")
    compile_stage(cfg, tflite=Path(tflite) if tflite else None, force=force)


@task(help={"kmodel": "kmodel V3 file to run",
            "image": "input: an image (resized to the model input) or a .npy of exactly the input shape (uint8 CHW; "
                     "float32 for a model whose first layer is a float FULLY_CONNECTED)",
            "out": "save every output, raw and dequantized, to this .npz",
            "rounding": "KPU activation rounding: reference (half to even, strict >) | v0.1 (half up, >=)",
            "fast": "run on the C runtime (built once with the host gcc): the same bytes, many times faster"})
@reports_errors
def simulate(c, kmodel, image, out=None, rounding="reference", fast=False):
    """Run a kmodel V3 on one input in the bit-exact KPU simulator; prints and saves its outputs."""
    from pathlib import Path

    from deploy.k210.sim.sim_cli import run_simulation

    run_simulation(Path(kmodel), Path(image), Path(out) if out else None, rounding=rounding, fast=fast)


@task(iterable=["only"], help={"only": "run only this benchmark (repeatable); default all but the hour-long backbones"})
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
    single_model(cfg, "render")
    result = render_stage(cfg, kmodel=kmodel, report=report, force=force)
    print(f"[render] {result.metrics['folder']} ({result.metrics['files']} files, kmodel {result.metrics['storage']})")


@task(help={"n": "the lab's number (1-8, docs/labs/NN-*.md)",
            "fast": "the tiny configs CI walks in minutes, instead of the 90-minute lab's"})
@reports_errors
def lab(c, n, fast=False):
    """Prepare lab N: write its configs into build/labs/, bring the checkpoint it continues from, print its steps."""
    from labs.prepare import prepare
    from pipeline.values import count

    print(prepare(int(count(1).parse(n, field="N")), fast=fast))


@task(name="lab-check", help={"n": "the lab's number (1-8)", "fast": "score the fast path's artifacts (CI)"})
@reports_errors
def lab_check(c, n, fast=False):
    """Score lab N out of 100 on what its steps left in build/; names each missing step. Exit 1 below 100."""
    from labs.score import check_lab
    from pipeline.values import count

    result = check_lab(int(count(1).parse(n, field="N")), fast=fast)
    print(result.text())
    if result.score < 100:
        raise SystemExit(1)


BOARD_HELP = ("host (native executable) | qemu (bare-metal RV64) | sim (simulated K210: QEMU firmware booted from a "
              "flash image) | k210 (real board, RT-Thread tree); default: the --board given to another task of this "
              "command, else deploy.board")


def board_of(own: str | None, cfg) -> str:
    """This task's board: its own flag, else one given to another task on the command line, else the config's."""
    from pipeline.invocation import board_for_task

    return board_for_task(own, sys.argv) or cfg.deploy.board


@task(iterable=["set_"], help={"config": CONFIG_HELP, "set_": SET_HELP, "board": BOARD_HELP,
                              "rtt_root": "RT-Thread tree (4.1.1+) for the qemu, sim and k210 boards "
                                          "(default $RTT_ROOT, else ../shared/rtthread/rt-thread)",
                              "rounding": "soft-KPU rounding: reference | v0.1 (firmware.rounding)",
                              "force": FORCE_HELP})
@reports_errors
def build(c, config=None, set_=None, board=None, rtt_root=None, rounding=None, force=False):
    """Build the firmware for a board, running every stage before it (train ... render) that changed.

    Stages whose inputs are unchanged are skipped; reports the size against the K210's 6 MiB SRAM."""
    from deploy.end_to_end import build_for_board
    from pipeline.invocation import tasks_named

    cfg = load(config, set_, **{"firmware.rounding": rounding})
    board = board_of(board, cfg)
    metrics = build_for_board(cfg, board, rtt_root=rtt_root, force=force,
                              check_port=bool(tasks_named(sys.argv, {"flash"})))
    if cfg.model.task == "attendance":
        from deploy.attendance.stages import format_attendance_build

        print(f"[build] {board}: {metrics.get('image') or metrics.get('program')}")
        print(f"[build] enrolled {metrics['enrolled']['people']} people into {metrics['enrolled']['db']}")
        for line in format_attendance_build(metrics).splitlines():
            print(f"[build] {line}")
        return
    from deploy.firmware.stages import format_build

    print(f"[build] {board}: {metrics.get('image') or metrics.get('program')}")
    for line in format_build(metrics).splitlines():
        print(f"[build] {line}")


@task(iterable=["set_"], help={"config": CONFIG_HELP, "set_": SET_HELP, "board": "host | qemu | sim (default as build)",
                              "images": "folder of images (or one image) to feed as camera frames",
                              "dump": "also print every raw output tensor as a hex JSON line",
                              "icount": "QEMU: count instructions per frame exactly (-icount)"})
@reports_errors
def run(c, config=None, set_=None, board=None, images=None, dump=False, icount=False):
    """Run the built firmware on images; prints one JSON line per frame (detections, ms)."""
    from pathlib import Path

    from deploy.end_to_end import board_config
    from deploy.firmware.stages import run_firmware

    if not images:
        raise PipelineError("no images given", field="--images", expected="a folder of images")
    cfg = load(config, set_)
    single_model(cfg, "run")
    board = board_of(board, cfg)
    result = run_firmware(board_config(cfg, board), board, Path(images), dump=dump, count_instructions=icount)
    print("\n".join(line for line in result.text.splitlines() if line.startswith("{")))


@task(iterable=["set_"], auto_shortflags=False, help={
    "config": CONFIG_HELP, "set_": SET_HELP,
    "image": "firmware .bin (rtthread.bin): wrapped in the K210 image format (flags, length, SHA-256) at 0",
    "kmodel": "raw file (a .kmodel) written as is at --address",
    "address": "flash address of --kmodel (default deploy.kmodel_address = 0x300000; hex accepted)",
    "kfpkg": "a kflash .kfpkg (zip + flash-list.json) written as listed",
    "board": "k210 (a real board on a serial port) | sim (start the simulated board; build/<config>/sim_flash.img); "
             "default: the --board given to another task of this command, else deploy.board",
    "demo_images": "sim: boot the flashed board on this many validation images and save PNGs with boxes (0: don't)",
    "board_type": "reset wiring: auto | dan | bit | trainer | kd233 | goE | maixduino | bit_mic | goD | generic",
    "port": "serial device or pyserial URL such as rfc2217://127.0.0.1:4000 (default: auto-detect / start the sim)",
    "baud": "flash-stage baud rate (default 1500000; steps down on failure)",
    "isp_prog": "flash-stage program file (default: read at run time from the installed kflash package)",
    "stub_dialect": "dialect of an --isp-prog whose SHA-256 is not known: vowstar | sipeed | ktool"})
@reports_errors
def flash(c, config=None, set_=None, image=None, kmodel=None, address=None, kfpkg=None, board=None, board_type=None,
          port=None, baud=None, isp_prog=None, stub_dialect=None, demo_images="4"):
    """Flash the built firmware (+ kmodel) or given files over the serial ISP; on sim, boot it and show detections.

    Writes to a real K210 (--board k210) or the simulated board (sim), which then boots from its flash image and
    runs on sample images (PNGs with boxes + JSON lines). Exits 2 on failure."""
    from pathlib import Path

    from deploy.end_to_end import board_config, built_artifacts, show_on_sim
    from deploy.end_to_end import demo_images as sample_images
    from deploy.isp.flasher import flash_stage
    from pipeline.values import count

    demo_count = count(0, "images").parse(demo_images, field="--demo-images")
    cfg = load(config, set_, **{
        "deploy.board_type": board_type, "deploy.port": port,
        "deploy.baud": baud, "deploy.kmodel_address": address,
        "deploy.isp_prog": str(Path(isp_prog).resolve()) if isp_prog else None, "deploy.stub_dialect": stub_dialect})
    board = board_of(board, cfg)
    cfg = board_config(cfg, board)
    given = [Path(p) if p else None for p in (image, kmodel, kfpkg)]
    if cfg.model.task == "attendance" and not any(given):
        from deploy.attendance.board import attendance_kfpkg, session
        from deploy.attendance.session import format_session

        flash_stage(cfg, kfpkg=attendance_kfpkg(cfg, board))
        if board == "sim" and demo_count > 0:
            print(f"[sim] {format_session(session(cfg, board))}")
            print(f"[sim] attendance sheet, contact sheet and per-frame JSON in {cfg.build_dir / 'attendance'}")
        return
    if not any(given):
        given = [*built_artifacts(cfg, board), None]
    flash_stage(cfg, image=given[0], kmodel=given[1], kfpkg=given[2])
    if board == "sim" and demo_count > 0:
        shown = show_on_sim(cfg, sample_images(cfg, demo_count))
        for path, png, detections in zip(shown.images, shown.pngs, shown.detections, strict=True):
            found = ", ".join(f"{d.get('label', d['class'])} {d['score']:.2f}" for d in detections) or "nothing"
            print(f"[sim] {path.name}: {found} -> {png}")
        print(f"[sim] JSON lines: {shown.jsonl}")


@task(iterable=["set_"], help={"config": CONFIG_HELP, "set_": SET_HELP,
                              "people": "a folder per person with photos (default attendance.people, else the "
                                        "config's dataset.train with named boxes)",
                              "list": "only read a database back and list who is enrolled",
                              "db": "--list: a database image file (default build/<config>/attendance/face_db.bin)",
                              "flash_image": "--list: read the database from this 16 MiB flash image (e.g. the "
                                             "simulated board's build/<config>/sim_flash.img)",
                              "force": FORCE_HELP})
@reports_errors
def enroll(c, config=None, set_=None, people=None, list_=False, db=None, flash_image=None, force=False):
    """Enroll people from their photos (the detector finds each face) into the face database image that `flash`
    writes; --list reads one back."""
    from pathlib import Path

    from deploy.attendance.session import database_path, enroll_stage, format_region
    from deploy.attendance.stages import attendance_models

    cfg = load(config, set_, lock=not list_)
    models = attendance_models(cfg)
    if list_:
        if flash_image:
            from deploy.attendance.session import read_database

            print(format_region(*read_database(models, Path(flash_image))))
        else:
            from deploy.attendance.face_db import read_region

            path = Path(db) if db else database_path(models)
            if not path.is_file():
                raise PipelineError("no face database", path=path, expected="run `invoke enroll` first")
            print(format_region(*read_region(path.read_bytes())))
        return
    from deploy.attendance.stages import prepare_models

    prepare_models(models, force=False)
    metrics = enroll_stage(models, people=Path(people) if people else None, force=force).metrics
    print(f"[enroll] {metrics['people']} people from {metrics['photos']} photos -> {metrics['db']} "
          f"({metrics['photos_without_face']} photos without a detected face"
          + (f"; nobody found for {', '.join(metrics['people_without_face'])}" if metrics["people_without_face"]
             else "") + ")")


@task(iterable=["set_"], help={"config": CONFIG_HELP, "set_": SET_HELP, "board": "host | qemu | sim (default as build)",
                              "images": "a folder of a session's photos (default: dataset.val, whose names are the "
                                        "truth, plus attendance.strangers held-out strangers)",
                              "icount": "QEMU: count instructions per frame exactly (-icount)"})
@reports_errors
def attendance(c, config=None, set_=None, board=None, images=None, icount=False):
    """Name the people in a session's photos on the firmware; writes attendance.csv, a contact sheet (PNG) and
    session.json, and prints the accuracy where the truth is known."""
    from pathlib import Path

    from deploy.attendance.board import session
    from deploy.attendance.session import format_session

    cfg = load(config, set_)
    board = board_of(board, cfg)
    print(format_session(session(cfg, board, Path(images) if images else None, count_instructions=icount)))
    print(f"written: {cfg.build_dir / 'attendance'}/attendance.csv, contact_sheet.png, session.json")


def simboard_task() -> Callable[..., Any]:
    """`invoke simboard`: one flag per field of the simulated board's options (deploy/isp/simboard/options.py, where
    each has its help and its rule), plus the config, the flash image and --fast; --idle-timeout waits 600 s."""
    import inspect
    from dataclasses import fields

    from deploy.isp.simboard.options import HELP, SimOptions

    own = {"config": (None, CONFIG_HELP),
           "flash": (None, "flash image file (default build/<config>/sim_flash.img; created erased when missing)"),
           "fast": (False, "model no time at all (no line rate, no flash timing)"),
           "idle_timeout": ("600", HELP["idle_timeout_s"] + " (seconds)")}
    options = [f.name for f in fields(SimOptions) if f.name != "idle_timeout_s"]

    def simboard(c, config=None, flash=None, fast=False, idle_timeout="600", **given):
        """Run the simulated K210 (ROM ISP + flash stage, 16 MiB flash image) as an RFC 2217 port on 127.0.0.1."""
        from pathlib import Path

        from deploy.isp.simboard.server import serve_simboard

        settings = SimOptions.from_text(idle_timeout_s=idle_timeout, **given)
        target = Path(flash) if flash else load(config, lock=False).build_dir / "sim_flash.img"
        print(f"simulated K210, flash image {target}; stop with Ctrl-C or after {settings.idle_timeout_s:g} s idle")
        print(f"stopped: {serve_simboard(target, settings.fast() if fast else settings)}")

    keyword = inspect.Parameter.KEYWORD_ONLY
    simboard.__signature__ = inspect.Signature(
        [inspect.Parameter("c", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + [inspect.Parameter(name, keyword, default=default) for name, (default, _) in own.items()]
        + [inspect.Parameter(name, keyword, default=None) for name in options])
    helps = {**{name: text for name, (_, text) in own.items()}, **{name: HELP[name] for name in options}}
    return task(auto_shortflags=False, help=helps)(reports_errors(simboard))


simboard = simboard_task()
