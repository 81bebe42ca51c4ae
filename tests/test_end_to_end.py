"""The whole product on a tiny config: `invoke build flash --board sim` trains, exports, compiles, renders, builds
the QEMU firmware, flashes it through the ISP protocol into the simulated K210 and boots it from that flash image.
The assertions are on the detections the firmware prints on the QEMU console after flashing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deploy.firmware.camera_frames import boxes_to_frame, model_input
from deploy.k210.sim.simulator import simulate
from models.data import load_records
from models.yolo_decode import box_iou, chw_to_hwc, decode_yolov2, nms
from pipeline.config import REPO_ROOT, load_config
from tests.conftest import rtthread_root

TOOLS = ("riscv64-unknown-elf-gcc", "qemu-system-riscv64", "gcc")
needs_tools = pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS),
                                 reason="RISC-V gcc / QEMU not installed (run `invoke setup`)")
TINY = """\
dataset:
  format: synthetic
  synthetic: {train_count: 240, val_count: 6, size: [224, 224], seed: 7}
model: {family: tiny, width: 0.125, input_size: [224, 224], num_anchors: 3}
train: {epochs: 20, batch_size: 16, patience: 20, quiet: true}
quantize: {calib_images: 32}
export: {held_images: 2}
"""


def invoke(args: list[str], build_root: Path, timeout: int = 900, **env_vars: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PIPELINE_BUILD_ROOT=str(build_root))
    env.pop("RTT_ROOT", None)  # the qemu and sim boards build on ../shared/rtthread
    env.update(env_vars)
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def sim_run(tmp_path_factory):
    rtthread_root()  # the sim board boots real RT-Thread, built from ../shared/rtthread
    root = tmp_path_factory.mktemp("e2e")
    config = root / "tiny.yaml"
    config.write_text(TINY)
    done = invoke(["build", "flash", "--board", "sim", "--config", str(config), "--demo-images", "4"], root / "build")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return config, root / "build" / "tiny", done


def reference_detections(build: Path, frame: Path, threshold: float, nms_iou: float) -> tuple[list, np.ndarray]:
    """What the firmware must print for one frame: simulator output on the firmware's input, decoded in Python."""
    report = json.loads((build / "compile_report.json").read_text())
    detector, (output,) = report["detector"], report["outputs"]
    result = simulate(build / "model.kmodel", model_input(frame, tuple(detector["input_size"]), fill=0))
    grid = chw_to_hwc(result.dequantized[0], *output["shape"])
    decoded = nms(decode_yolov2(grid, np.array(detector["anchors"]), len(detector["classes"]), threshold), nms_iou)
    with Image.open(frame) as image:
        boxes = boxes_to_frame(np.array([d.box for d in decoded]), image.size, tuple(detector["input_size"]))
    return decoded, boxes


@needs_tools
def test_flashed_firmware_prints_the_simulators_detections(sim_run, monkeypatch):
    config, build, done = sim_run
    monkeypatch.setenv("PIPELINE_BUILD_ROOT", str(build.parent))
    cfg = load_config(config)
    lines = [json.loads(line) for line in (build / "demo" / "detections.jsonl").read_text().splitlines()]
    assert len(lines) == 4 and "[sim]" in done.stdout
    flash = (build / "sim_flash.img").read_bytes()
    kmodel = (build / "model.kmodel").read_bytes()
    assert flash[0x300000:0x300000 + len(kmodel)] == kmodel  # the kmodel went through the ISP into flash
    frames = sorted((build / "firmware" / "frames_sim").glob("*.ppm"))
    assert len(frames) == 4
    for line, frame in zip(lines, frames, strict=True):
        decoded, boxes = reference_detections(build, frame, cfg.deploy.score_threshold, cfg.deploy.nms_iou)
        printed = line["detections"]
        assert [d["class"] for d in printed] == [d.class_id for d in decoded]
        for got, want, box in zip(printed, decoded, boxes, strict=True):
            assert got["score"] == pytest.approx(want.score, abs=2e-6)
            assert got["box"] == pytest.approx(list(box), abs=2e-3)
    assert all(Path(p).is_file() for p in (build / "demo").glob("*.png"))


@needs_tools
def test_the_flashed_detector_finds_the_faces(sim_run, monkeypatch):
    config, build, _ = sim_run
    monkeypatch.setenv("PIPELINE_BUILD_ROOT", str(build.parent))
    lines = [json.loads(line) for line in (build / "demo" / "detections.jsonl").read_text().splitlines()]
    truth = {r.image_path: r.boxes for r in load_records(load_config(config), "val")}
    hits = misses = 0
    for line in lines:
        gt = truth[Path(line["image"])]
        for box in gt:
            if any(box_iou(tuple(box), tuple(d["box"])) >= 0.5 for d in line["detections"]):
                hits += 1
            else:
                misses += 1
    assert hits >= max(1, (hits + misses) // 3), f"{hits} of {hits + misses} faces found"


@needs_tools
def test_eval_scores_the_compiled_kmodel_like_the_uint8_tflite(sim_run, monkeypatch):
    from deploy.evaluate import evaluate_stage

    config, build, _ = sim_run
    monkeypatch.setenv("PIPELINE_BUILD_ROOT", str(build.parent))
    report = evaluate_stage(load_config(config), runtimes=("uint8", "kmodel"))["runtimes"]
    assert report["kmodel"]["model"] == str(build / "model.kmodel")
    assert report["kmodel"]["ap50"] > 0.3  # the simulator runs a working detector, not noise
    assert report["kmodel"]["ap50"] == pytest.approx(report["uint8"]["ap50"], abs=0.05)


@needs_tools
def test_second_run_skips_every_unchanged_stage(sim_run):
    config, build, _ = sim_run
    again = invoke(["build", "--board", "sim", "--config", str(config)], build.parent, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    for stage in ("train", "export", "quantize", "compile", "render", "build_qemu"):
        assert f"[{stage}] skipped" in again.stdout


@needs_tools
def test_k210_build_on_the_real_tree_links_the_trained_model(sim_run):
    config, build, _ = sim_run
    done = invoke(["build", "--board", "k210", "--config", str(config)], build.parent, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    kmodel_bytes = (build / "model.kmodel").stat().st_size
    assert "model tiny: msh command tiny_detect at 0x" in done.stdout
    assert f"kmodel {kmodel_bytes} B at 0x" in done.stdout
    assert (build / "firmware" / "k210" / "rtthread.bin").is_file()


def test_k210_without_an_rt_thread_tree_fails_before_any_work(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY)
    done = invoke(["build", "flash", "--board", "k210", "--config", str(config)], tmp_path / "build", timeout=300,
                  RTT_ROOT=str(tmp_path / "no-rt-thread"))
    assert done.returncode == 2
    assert "RT-Thread" in done.stderr and "RTT_ROOT" in done.stderr
    assert not (tmp_path / "build" / "tiny" / "model.keras").exists()  # failed early: nothing was trained


def test_k210_preflight_names_each_missing_piece(tmp_path, monkeypatch):
    from deploy.end_to_end import preflight_port, preflight_rtthread
    from pipeline.errors import PipelineError
    from tests.test_firmware_k210 import make_tree

    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.delenv("RTT_EXEC_PATH", raising=False)
    monkeypatch.setattr("deploy.firmware.rtthread_tree.DEBIAN_PICOLIBC_SPECS", tmp_path / "none.specs")
    legacy = make_tree(tmp_path / "legacy", sdk="kendryte-sdk-v0.5.7")
    with pytest.raises(PipelineError, match="legacy package kendryte-sdk-v0.5.7"):
        preflight_rtthread("k210", str(legacy))
    tree = make_tree(tmp_path / "rt-thread")
    with pytest.raises(PipelineError, match="RTT_EXEC_PATH"):
        preflight_rtthread("k210", str(tree))
    gcc = tmp_path / "bin" / "riscv-none-embed-gcc"
    gcc.parent.mkdir()
    gcc.write_text("#!/bin/sh\n")
    gcc.chmod(0o755)
    preflight_rtthread("k210", str(tree))  # tree, BSP, SDK package and toolchain present
    monkeypatch.setattr("serial.tools.list_ports.comports", lambda: [])
    with pytest.raises(PipelineError, match="no K210 USB-UART bridge found"):
        preflight_port(None, "auto", check_port=True)
    preflight_port("/dev/ttyUSB0", "auto", check_port=True)  # a port given
