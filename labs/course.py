"""The eight labs: their configs, the exact commands of each step, and the objective bars `invoke lab-check`
scores (one home: the docs in docs/labs/ quote these commands, and a test checks that they do)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labs import configs
from labs.checks import (
    Check,
    Outcome,
    StepNotDone,
    artifact,
    at_least,
    at_most,
    bar,
    exists,
    json_artifact,
    stage_done,
    stage_metrics,
)
from labs.workspace import build_folder, config_path
from pipeline.config import REPO_ROOT, SHARED_DATA, load_config

KPU_RAM_BYTES = 2 * 1024 * 1024
MIB = 1024 * 1024
DEMO_IMAGES = 4  # what `invoke flash --board sim` boots the board on by default (--demo-images)


@dataclass(frozen=True)
class Step:
    command: str  # {lab_x}: that config's path, {build_lab_x}: its build folder, {test_image}: a test image
    why: str


@dataclass(frozen=True)
class Lab:
    number: int
    slug: str
    title: str
    configs: tuple[str, ...]  # the lab configs `invoke lab N` writes
    steps: tuple[Step, ...]
    checks: tuple[Check, ...]
    pretrained: tuple[str, ...] = ()  # configs whose trained model must exist before step 1 (a checkpoint)

    @property
    def doc(self) -> str:
        return f"docs/labs/{self.number:02d}-{self.slug}.md"


def config_builders(fast: bool, subsets: dict[str, Any] | None = None) -> dict[str, Callable[[], dict[str, Any]]]:
    """Every lab config by name, as a function making its values."""
    builders: dict[str, Callable[[], dict[str, Any]]] = {
        "lab_demo": lambda: configs.demo(fast), "lab_data": lambda: configs.detector(False),
        "lab_detector": lambda: configs.detector(fast), "lab_pruned": lambda: configs.pruned(fast)}
    for name in configs.QUANTIZATION_VARIANTS:
        builders[name] = (lambda n: lambda: configs.quantized(n, fast))(name)
    for name in ("lab_face_detector", "lab_recognizer", "lab_classroom"):
        builders[name] = (lambda n: lambda: configs.classroom(fast, subsets)[n])(name)
    return builders


def shown(path: Path) -> str:
    """A path as a student types it from the repository: relative when inside it or beside it (../shared)."""
    return os.path.relpath(path, REPO_ROOT) if path.is_relative_to(REPO_ROOT.parent) else str(path)


def render_command(command: str, fast: bool) -> str:
    """A step's command with the config paths ({lab_x}) and build folders ({build_lab_x}) filled in."""
    names = {"test_image": shown(SHARED_DATA / "kmodels" / "dog.bmp")}
    for name in config_builders(fast):
        names[name] = shown(config_path(name, fast))
        names[f"build_{name}"] = shown(build_folder(name, fast))
    return command.format(**names)


# --- measures that read several artifacts -------------------------------------------------------------------------

def kmodel_in_flash(config: str) -> Callable[[bool], Outcome]:
    """The kmodel went through the ISP into the simulated board's flash image at its address."""
    def measure(fast: bool) -> Outcome:
        kmodel = artifact(config, "model.kmodel", fast).read_bytes()
        flash = artifact(config, "sim_flash.img", fast).read_bytes()
        address = load_config(config_path(config, fast)).deploy.kmodel_address
        same = flash[address:address + len(kmodel)] == kmodel
        return Outcome(same, f"flash at {address:#x} {'holds' if same else 'does NOT hold'} model.kmodel "
                             f"({len(kmodel):,} B)")
    return measure


def demo_lines(config: str) -> Callable[[bool], Outcome]:
    def measure(fast: bool) -> Outcome:
        lines = artifact(config, "demo/detections.jsonl", fast).read_text().splitlines()
        frames = [line for line in lines if line.startswith("{")]
        return Outcome(len(frames) == DEMO_IMAGES, f"the firmware printed {len(frames)} frames "
                                                   f"(bar: one per demo image, {DEMO_IMAGES})")
    return measure


def data_accounted(config: str) -> Callable[[bool], Outcome]:
    """Every image file of the train split is either used or counted as skipped."""
    def measure(fast: bool) -> Outcome:
        stats = json_artifact(config, "data/stats.json", fast)["splits"]["train"]
        cfg = load_config(config_path(config, fast))
        root = cfg.resolve_path(cfg.dataset.train)
        files = sum(1 for p in (root / "images").iterdir() if p.is_file())
        skipped = sum(stats["skipped"].values()) if isinstance(stats["skipped"], dict) else int(stats["skipped"])
        return Outcome(stats["images"] + skipped == files,
                       f"train: {stats['images']} used + {skipped} skipped of {files} image files")
    return measure


def anchor_fit(config: str, low: Callable[[bool], float]) -> Callable[[bool], Outcome]:
    def measure(fast: bool) -> Outcome:
        fit = json_artifact(config, "anchors.json", fast)["mean_best_iou"]
        return at_least(fit, low(fast), "anchors: mean best IoU")
    return measure


def eval_ap(config: str, runtime: str, low: Callable[[bool], float]) -> Callable[[bool], Outcome]:
    def measure(fast: bool) -> Outcome:
        rows = json_artifact(config, "eval.json", fast)["runtimes"]
        if runtime not in rows:
            raise StepNotDone(f"eval.json has no {runtime} row")
        return at_least(rows[runtime]["ap50"], low(fast), f"val AP@0.5 ({runtime})")
    return measure


def kmodel_matches_uint8(config: str) -> Callable[[bool], Outcome]:
    def measure(fast: bool) -> Outcome:
        rows = json_artifact(config, "eval.json", fast)["runtimes"]
        if "kmodel" not in rows or "uint8" not in rows:
            raise StepNotDone("eval.json has no kmodel or uint8 row (compile before eval)")
        gap = abs(rows["kmodel"]["ap50"] - rows["uint8"]["ap50"])
        return at_most(gap, 0.01, "|AP kmodel - AP uint8 TFLite|")
    return measure


def compiled_fits(config: str) -> Callable[[bool], Outcome]:
    def measure(fast: bool) -> Outcome:
        report = json_artifact(config, "compile_report.json", fast)
        peak = max(layer.get("kpu_ram_bytes", 0) for layer in report["layers"])
        ok = report["kmodel_bytes"] <= MIB and peak <= KPU_RAM_BYTES
        return Outcome(ok, f"kmodel {report['kmodel_bytes']:,} B (bar <= 1 MiB), KPU RAM peak {peak:,} B "
                           f"(bar <= 2 MiB)")
    return measure


def simulated_outputs(config: str, name: str) -> Callable[[bool], Outcome]:
    def measure(fast: bool) -> Outcome:
        import numpy as np

        with np.load(artifact(config, name, fast)) as outputs:
            keys = sorted(outputs.files)
        return Outcome("output_0_raw" in keys, f"{name} holds {', '.join(keys)}")
    return measure


def pruned_ratio(low: Callable[[bool], float]) -> Callable[[bool], Outcome]:
    def measure(fast: bool) -> Outcome:
        before = json_artifact("lab_detector", "compile_report.json", fast)["kmodel_bytes"]
        after = json_artifact("lab_pruned", "compile_report.json", fast)["kmodel_bytes"]
        return at_least(1 - after / before, low(fast), f"kmodel {before:,} -> {after:,} B: smaller by")
    return measure


def pruned_reduction(metric: str, low: float) -> Callable[[bool], Outcome]:
    def measure(fast: bool) -> Outcome:
        report = json_artifact("lab_pruned", "prune_report.json", fast)
        return at_least(report["reductions"][metric], low, f"{metric} reduced by")
    return measure


def pruned_ap(low: Callable[[bool], float]) -> Callable[[bool], Outcome]:
    def measure(fast: bool) -> Outcome:
        return at_least(stage_metrics("lab_pruned", "prune", fast)["val_ap50_finetuned"], low(fast),
                        "val AP@0.5 after pruning and fine-tuning")
    return measure


def quantized_drop(config: str, high: Callable[[bool], float]) -> Callable[[bool], Outcome]:
    """How many AP points the uint8 kmodel lost against the Keras model it came from."""
    def measure(fast: bool) -> Outcome:
        rows = json_artifact(config, "eval.json", fast)["runtimes"]
        if "kmodel" not in rows or "keras" not in rows:
            raise StepNotDone("eval.json has no keras or kmodel row")
        drop = rows["keras"]["ap50"] - rows["kmodel"]["ap50"]
        return at_most(drop, high(fast), f"{config}: AP@0.5 Keras {rows['keras']['ap50']:.4f} -> kmodel "
                                          f"{rows['kmodel']['ap50']:.4f}, a drop of")
    return measure


def ranges_recorded(config: str, method: str) -> Callable[[bool], Outcome]:
    """quant_ranges.json holds the method the config asked for, with one range per activation tensor."""
    def measure(fast: bool) -> Outcome:
        ranges = json_artifact(config, "quant_ranges.json", fast)
        ok = ranges["method"] == method and len(ranges["tensors"]) > 0
        return Outcome(ok, f"{config}: method {ranges['method']}, {len(ranges['tensors'])} tensor ranges")
    return measure


def qat_learned(fast: bool) -> Outcome:
    """Quantization-aware training learned the activation clips: quant_ranges.json marks them, and some moved."""
    tensors = json_artifact("lab_qat", "quant_ranges.json", fast)["tensors"]
    learned = [r for r in tensors.values() if "learned" in r]
    return Outcome(bool(learned), f"lab_qat: {len(learned)} of {len(tensors)} activation ranges learned in training")


def kl_clips(fast: bool) -> Outcome:
    """KL calibration chose a narrower range than the converter's min-max on at least one activation."""
    tflite = json_artifact("lab_ptq", "quant_ranges.json", fast)["tensors"]
    kl = json_artifact("lab_ptq_kl", "quant_ranges.json", fast)["tensors"]
    narrower = [name for name, r in kl.items() if name in tflite and
                r["high"] - r["low"] < 0.99 * (tflite[name]["high"] - tflite[name]["low"])]
    return Outcome(bool(narrower), f"KL clipped {len(narrower)} of {len(kl)} activation ranges")


def session_value(key: str, low: float, what: str) -> Callable[[bool], Outcome]:
    def measure(fast: bool) -> Outcome:
        report = json_artifact("lab_classroom", "attendance/session.json", fast)["report"]
        return at_least(float(report[key] or 0.0), low, what)
    return measure


def twin_agreement(fast: bool) -> Outcome:
    report = json_artifact("lab_classroom", "attendance/session.json", fast)["report"]
    return Outcome(report["agree_with_python"] == report["frames"] > 0,
                   f"firmware == Python twin on {report['agree_with_python']} of {report['frames']} frames")


def enrolled(low: Callable[[bool], float]) -> Callable[[bool], Outcome]:
    def measure(fast: bool) -> Outcome:
        return at_least(stage_metrics("lab_classroom", "enroll", fast)["people"], low(fast), "students enrolled")
    return measure


def named_enrolled(fast: bool) -> Outcome:
    """The firmware named at least one face, and only enrolled students or `unknown`."""
    import csv

    with open(artifact("lab_classroom", "attendance/attendance.csv", fast), newline="") as handle:
        names = [row["name"] for row in csv.DictReader(handle)]
    people = set(load_config(config_path("lab_classroom", fast)).dataset.classes)
    strangers = sorted({n for n in names if n not in people and n != "unknown"})
    return Outcome(any(n in people for n in names) and not strangers,
                   f"attendance.csv names {len([n for n in names if n in people])} students"
                   + (f"; not enrolled: {', '.join(strangers)}" if strangers else ""))


# --- the course ----------------------------------------------------------------------------------------------------

DETECTOR_AP = bar(0.40, 0.40)
LABS: dict[int, Lab] = {lab.number: lab for lab in (
    Lab(1, "setup", "Set-up and the simulated board", ("lab_demo",), (
        Step("invoke setup --check", "which system tools are installed (`invoke setup` installs what is missing)"),
        Step("invoke build flash --board sim --config {lab_demo}",
             "train, export, compile, render, build RT-Thread for QEMU, flash over the ISP protocol, boot"),
    ), (
        Check("the detector was trained", 2, 10, stage_done("lab_demo", "train")),
        Check("the uint8 TFLite was exported", 2, 10, stage_done("lab_demo", "quantize")),
        Check("the kmodel was compiled", 2, 10, stage_done("lab_demo", "compile")),
        Check("the RT-Thread firmware was built", 2, 15, stage_done("lab_demo", "build_qemu")),
        Check("firmware and kmodel were flashed through the ISP", 2, 15, stage_done("lab_demo", "flash")),
        Check("the flash image holds the kmodel at its address", 2, 20, kmodel_in_flash("lab_demo")),
        Check("the booted board printed one JSON line per demo image", 2, 20, demo_lines("lab_demo")),
    )),
    Lab(2, "data", "Data: annotations, class maps, bad items, box statistics, anchors", ("lab_data",), (
        Step("invoke data --config {lab_data}", "read and check every image and box; count what was skipped"),
        Step("invoke data --config {lab_data} --stats", "counts per class and split, box-size histograms"),
        Step("invoke data --config {lab_data} --anchors", "anchors by IoU k-means on the train boxes"),
    ), (
        Check("box statistics written (JSON + one PNG per split)", 2, 25,
              exists("lab_data", "data/stats.json", "data/stats_train.png", "data/stats_val.png")),
        Check("every train image file is used or counted as skipped", 2, 25, data_accounted("lab_data")),
        Check("anchors computed (JSON + PNG)", 3, 20, exists("lab_data", "anchors.json", "anchors.png")),
        Check("the anchors fit the boxes", 3, 30, anchor_fit("lab_data", bar(0.6, 0.6))),
    )),
    Lab(3, "detector", "Train and evaluate the detector", ("lab_detector",), (
        Step("invoke train --config {lab_detector}", "train; loss curves in train_curves.png"),
        Step("invoke eval --config {lab_detector}", "AP@0.5, AP@[.5:.95], PR curve, recall by face size"),
    ), (
        Check("training finished", 1, 20, stage_done("lab_detector", "train")),
        Check("loss curves plotted", 1, 10, exists("lab_detector", "train_curves.png", "train_log.csv")),
        Check("evaluated (eval.json + PR curve)", 2, 20, exists("lab_detector", "eval.json", "eval_pr.png")),
        Check("the detector finds faces", 2, 50, eval_ap("lab_detector", "keras", DETECTOR_AP)),
    )),
    Lab(4, "pruning", "Pruning: sensitivity, a MAC target, distillation", ("lab_detector", "lab_pruned"), (
        Step("invoke prune --config {lab_pruned} --sensitivity",
             "prune each conv alone at 10-90 % of its filters and measure val AP: one curve per layer"),
        Step("invoke prune --config {lab_pruned}",
             "40 % fewer MACs, allocated by the curves; fine-tune with distillation from the unpruned model"),
        Step("invoke export compile --config {lab_pruned}", "the pruned model as a kmodel"),
        Step("invoke export compile --config {lab_detector}", "the unpruned model as a kmodel, to compare"),
    ), (
        Check("sensitivity curves measured (JSON + PNG)", 1, 15,
              exists("lab_pruned", "prune_sensitivity.json", "prune_sensitivity.png")),
        Check("pruned and fine-tuned", 2, 10, stage_done("lab_pruned", "prune")),
        Check("the MAC target was reached", 2, 15, pruned_reduction("macs", 0.38)),
        Check("the pruned detector still finds faces", 2, 25, pruned_ap(bar(0.40, 0.30))),
        Check("the pruned kmodel compiled", 3, 10, stage_done("lab_pruned", "compile")),
        Check("the pruned kmodel is at least 30 % smaller", 4, 25, pruned_ratio(bar(0.30, 0.30))),
    ), pretrained=("lab_detector",)),
    Lab(5, "quantization", "Quantization: calibration methods, cross-layer equalisation and QAT",
        ("lab_detector", *configs.QUANTIZATION_VARIANTS), (
        Step("invoke export --config {lab_ptq} --model {build_lab_ptq}/model.keras",
             "uint8 TFLite with the converter's own min-max calibration on 200 images"),
        Step("invoke compile eval --config {lab_ptq}", "its kmodel and its AP next to Keras"),
        Step("invoke export --config {lab_ptq_kl} --model {build_lab_ptq_kl}/model.keras",
             "activation ranges chosen by KL divergence (entropy calibration)"),
        Step("invoke compile eval --config {lab_ptq_kl}", "its kmodel and its AP"),
        Step("invoke export --config {lab_ptq_cle} --model {build_lab_ptq_cle}/model.keras",
             "cross-layer equalisation first, then min-max on all 597 train images"),
        Step("invoke compile eval --config {lab_ptq_cle}", "its kmodel and its AP"),
        Step("invoke export --config {lab_qat} --model {build_lab_qat}/model.keras",
             "quantization-aware training: 2 epochs with fake-quantised weights and learned clips, from CLE + min-max"),
        Step("invoke compile eval --config {lab_qat}", "its kmodel and its AP"),
    ), (
        Check("min-max ranges recorded", 1, 10, ranges_recorded("lab_ptq", "tflite")),
        Check("min-max kmodel evaluated", 2, 10, exists("lab_ptq", "eval.json")),
        Check("KL ranges recorded", 3, 10, ranges_recorded("lab_ptq_kl", "kl")),
        Check("KL kmodel evaluated", 4, 10, exists("lab_ptq_kl", "eval.json")),
        Check("KL clipped some activations that min-max kept whole", 3, 10, kl_clips),
        Check("equalised kmodel evaluated", 6, 10, exists("lab_ptq_cle", "eval.json")),
        Check("the equalised kmodel lost little AP", 6, 15, quantized_drop("lab_ptq_cle", bar(0.02, 0.05))),
        Check("QAT learned activation clips", 7, 10, qat_learned),
        Check("the QAT kmodel lost little AP", 8, 15, quantized_drop("lab_qat", bar(0.02, 0.05))),
    ), pretrained=("lab_detector",)),
    Lab(6, "compile", "Compile and simulate", ("lab_detector",), (
        Step("invoke export --config {lab_detector}", "float and uint8 TFLite"),
        Step("invoke compile --config {lab_detector}", "kmodel V3 + compile_report.json (layers, KPU RAM, cycles)"),
        Step("invoke compile --inspect {build_lab_detector}/model.kmodel", "every header and layer of the kmodel"),
        Step("invoke simulate {build_lab_detector}/model.kmodel {test_image} --fast "
             "--out {build_lab_detector}/lab06_outputs.npz", "one image through the bit-exact KPU simulator"),
        Step("invoke eval --config {lab_detector}", "the kmodel's AP next to Keras and the uint8 TFLite"),
    ), (
        Check("compiled", 2, 15, stage_done("lab_detector", "compile")),
        Check("fits the K210: kmodel <= 1 MiB, KPU RAM <= 2 MiB", 2, 20, compiled_fits("lab_detector")),
        Check("per-layer plot written", 2, 10, exists("lab_detector", "compile_layers.png")),
        Check("simulated outputs saved", 4, 20, simulated_outputs("lab_detector", "lab06_outputs.npz")),
        Check("the kmodel scores what the uint8 TFLite scores", 5, 35, kmodel_matches_uint8("lab_detector")),
    ), pretrained=("lab_detector",)),
    Lab(7, "firmware", "Firmware: RT-Thread glue, QEMU, flashing over the ISP", ("lab_detector",), (
        Step("invoke render --config {lab_detector}", "the RT-Thread C glue from the Jinja templates"),
        Step("invoke build --board qemu --config {lab_detector}", "real RT-Thread 5.0.1 for QEMU with the model"),
        Step("invoke build flash --board sim --config {lab_detector}",
             "flash firmware + kmodel into the simulated K210 through the ISP protocol, boot, detect"),
    ), (
        Check("glue rendered", 1, 15, stage_done("lab_detector", "render")),
        Check("RT-Thread firmware built", 2, 20, stage_done("lab_detector", "build_qemu")),
        Check("flashed through the ISP", 3, 20, stage_done("lab_detector", "flash")),
        Check("the flash image holds the kmodel at its address", 3, 20, kmodel_in_flash("lab_detector")),
        Check("the booted board printed one JSON line per demo image", 3, 25, demo_lines("lab_detector")),
    ), pretrained=("lab_detector",)),
    Lab(8, "attendance", "Capstone: the attendance system",
        ("lab_face_detector", "lab_recognizer", "lab_classroom"), (
        Step("invoke build flash --board sim --config {lab_classroom}",
             "train (if needed) and compile both models, build, enroll the class, flash, name a session's photos"),
        Step("invoke enroll --list --config {lab_classroom} --flash-image {build_lab_classroom}/sim_flash.img",
             "the database as the board stores it"),
    ), (
        Check("the class was enrolled", 1, 15, enrolled(bar(10, 1))),
        Check("the firmware decides what the Python twin decides", 1, 25, twin_agreement),
        Check("the attendance sheet names enrolled students", 1, 20, named_enrolled),
        Check("contact sheet drawn", 1, 10, exists("lab_classroom", "attendance/contact_sheet.png")),
        Check("students named correctly (top-1, open set)", 1, 15, session_value("top1", 0.20, "top-1"),
              full_only=True),
        Check("strangers rejected", 1, 15, session_value("stranger_rejection", 0.80, "rejected"), full_only=True),
    ), pretrained=("lab_face_detector", "lab_recognizer")),
)}
