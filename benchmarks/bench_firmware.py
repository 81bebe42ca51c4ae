"""Firmware speed: frames/s of the C kmodel runtime (software KPU, host build) against the NumPy simulator on the
same model and input (the baseline, measured in the same run; both in process CPU time), and the QEMU build's exact
instruction count per frame on RT-Thread's qemu-virt64-riscv
BSP (-icount, read from instret by the firmware). Model: the voc20 nncase kmodel on
dog.bmp from ../shared/data."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from deploy.firmware.camera_frames import model_input, write_ppm_frames
from deploy.firmware.kmodel_runner import build_kmodel_runner, run_kmodel
from deploy.firmware.model_spec import model_spec
from deploy.firmware.reference_model import voc20_report
from deploy.firmware.render import RenderOptions, render_firmware
from deploy.firmware.rtthread_build import build_board
from deploy.firmware.run import run_qemu
from deploy.k210.sim.simulator import simulate
from pipeline.config import SHARED_DATA
from pipeline.errors import PipelineError

C_RUNS = 10
SIM_RUNS = 3
QEMU_FRAMES = 2
MODEL_ADDRESS = 0x300000


def _simulator_seconds(kmodel: Path, chw: np.ndarray) -> float:
    """Process CPU seconds per simulated frame (like the C runner's figure, robust to other load)."""
    simulate(kmodel, chw)  # warm-up
    started = time.process_time()
    for _ in range(SIM_RUNS):
        simulate(kmodel, chw)
    return (time.process_time() - started) / SIM_RUNS


def _qemu(kmodel: Path, frames: list[Path], work: Path) -> dict[str, Any]:
    if shutil.which("qemu-system-riscv64") is None or shutil.which("riscv64-unknown-elf-gcc") is None:
        return {"skipped": "qemu-system-riscv64 / riscv64-unknown-elf-gcc not installed (invoke setup)"}
    spec = model_spec(kmodel, voc20_report(), Path("voc20_report"), score_threshold=0.5, nms_iou=0.2,
                      max_candidates=256)
    folder = render_firmware(spec, RenderOptions(name="voc20"), work / "rendered").folder
    try:
        build = build_board("qemu", [folder], work / "qemu", work / "qemu_bsp")
    except PipelineError as exc:
        return {"skipped": f"no RT-Thread build here: {exc}"}
    started = time.perf_counter()
    result = run_qemu(build.image, frames, command="voc20_detect", flash_files={MODEL_ADDRESS: kmodel},
                      count_instructions=True)
    wall = time.perf_counter() - started
    counts = [f.instructions for f in result.frames]
    return {"instructions_per_frame": counts, "mean_instructions_per_frame": float(np.mean(counts)),
            "wall_s_per_frame_under_icount": round(wall / len(frames), 3),
            "method": "qemu-system-riscv64 -icount shift=0; the firmware reads minstret around each frame "
                      "(inference + region layer + NMS)", "firmware": "RT-Thread qemu-virt64-riscv",
            "image": {"text": build.report.text, "data": build.report.data, "bss": build.report.bss}}


def run(out_dir: Path) -> dict[str, Any]:
    kmodel = SHARED_DATA / "kmodels" / "voc20_yolov2_v3.kmodel"
    image = SHARED_DATA / "kmodels" / "dog.bmp"
    if not kmodel.is_file():
        raise PipelineError("benchmark model not found", path=kmodel, expected="../shared/data/kmodels")
    with tempfile.TemporaryDirectory(prefix="bench_firmware_") as tmp:
        work = Path(tmp)
        frames = write_ppm_frames([image] * QEMU_FRAMES, work / "frames")
        chw = model_input(frames[0], (320, 240), fill=0)
        runner = build_kmodel_runner(work / "runner")
        c_result = run_kmodel(runner, kmodel, chw, repeat=C_RUNS)
        sim_s = _simulator_seconds(kmodel, chw)
        identical = c_result.outputs[0] == simulate(kmodel, chw).outputs[0].tobytes()
        qemu = _qemu(kmodel, frames, work)
    c_fps = 1000.0 / c_result.ms_per_run
    sim_fps = 1.0 / sim_s
    return {
        "model": kmodel.name,
        "c_runtime_host": {"frames_per_s": round(c_fps, 2), "ms_per_frame": round(c_result.ms_per_run, 2),
                           "runs": C_RUNS, "work_bytes": c_result.work_bytes},
        "numpy_simulator": {"frames_per_s": round(sim_fps, 3), "ms_per_frame": round(1000 * sim_s, 1),
                            "runs": SIM_RUNS},
        "speedup_c_vs_numpy": round(c_fps / sim_fps, 2),
        "timing": "process CPU time per frame (C: CLOCK_PROCESS_CPUTIME_ID, Python: time.process_time)",
        "goal_speedup": 10.0,
        "outputs_byte_identical": identical,
        "qemu": qemu,
    }
