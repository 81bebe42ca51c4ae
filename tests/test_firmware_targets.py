"""Rendered firmware built for the host (API shim) and for real RT-Thread in QEMU (bsp/qemu-virt64-riscv from
../shared/rtthread, booted through OpenSBI, driven at its msh console): same detections as the Python decoder on the
simulator's output, and output tensors byte-identical to the simulator's (the voc20 nncase kmodel on dog.bmp)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deploy.firmware.build import build_host
from deploy.firmware.camera_frames import boxes_to_frame, model_input, write_ppm_frames
from deploy.firmware.console import ConsoleResult
from deploy.firmware.memory_map import FLASH_SIZE
from deploy.firmware.model_spec import model_spec
from deploy.firmware.msh_console import MshConsole, msh_commands
from deploy.firmware.reference_model import VOC20_ANCHORS, voc20_report
from deploy.firmware.render import RenderOptions, render_firmware
from deploy.firmware.rtthread_build import build_board
from deploy.firmware.run import boot_flash_image, qemu_command, run_host, run_qemu
from deploy.isp.image import firmware_image
from deploy.k210.sim.simulator import simulate
from models.yolo_decode import chw_to_hwc, decode_yolov2, nms
from pipeline.errors import PipelineError
from tests.conftest import rtthread_root, shared_path

MODEL_ADDRESS = 0x300000
INPUT_SIZE = (320, 240)
QEMU_TOOLS = ("riscv64-unknown-elf-gcc", "qemu-system-riscv64", "scons")
needs_qemu = pytest.mark.skipif(any(shutil.which(t) is None for t in QEMU_TOOLS),
                                reason="riscv64-unknown-elf-gcc / qemu-system-riscv64 / scons not installed "
                                       "(invoke setup)")


@pytest.fixture(scope="module")
def kmodel() -> Path:
    return shared_path("kmodels", "voc20_yolov2_v3.kmodel")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("firmware")


@pytest.fixture(scope="module")
def frames(workdir) -> list[Path]:
    """dog.bmp, mirrored, and a 200x300 crop (narrower than the input's aspect: letterboxed with side bars)."""
    dog = shared_path("kmodels", "dog.bmp")
    flipped, tall = workdir / "dog_flipped.png", workdir / "dog_tall.png"
    with Image.open(dog) as image:
        image.transpose(Image.FLIP_LEFT_RIGHT).save(flipped)
        image.crop((20, 0, 220, 240)).resize((200, 300)).save(tall)
    return write_ppm_frames([dog, flipped, tall], workdir / "frames")


@pytest.fixture(scope="module")
def rendered(kmodel, workdir) -> Path:
    spec = model_spec(kmodel, voc20_report(), Path("voc20_report"), score_threshold=0.5, nms_iou=0.3,
                      max_candidates=256)
    return render_firmware(spec, RenderOptions(name="voc20", storage="flash"), workdir / "rendered").folder


@pytest.fixture(scope="module")
def qemu_build(rendered, workdir):
    """The voc20 app built into RT-Thread's qemu-virt64-riscv BSP (once for the module)."""
    rtthread_root()
    return build_board("qemu", [rendered], workdir / "qemu", workdir / "qemu_bsp")


def expected_frame(kmodel: Path, frame: Path, rounding: str = "reference") -> tuple[bytes, list, np.ndarray]:
    """The simulator's raw output, the Python decoder's detections and their boxes in frame pixels."""
    result = simulate(kmodel, model_input(frame, INPUT_SIZE, fill=0), rounding=rounding)
    grid = chw_to_hwc(result.dequantized[0], 125, 7, 10)
    decoded = nms(decode_yolov2(grid, np.array(VOC20_ANCHORS), 20, 0.5), 0.2)
    with Image.open(frame) as image:
        boxes = boxes_to_frame(np.array([d.box for d in decoded]), image.size, INPUT_SIZE)
    return result.outputs[0].tobytes(), decoded, boxes


def assert_same_detections(printed: list[dict], decoded: list, boxes: np.ndarray) -> None:
    assert [d["class"] for d in printed] == [d.class_id for d in decoded]
    for got, want, box in zip(printed, decoded, boxes, strict=True):
        assert got["score"] == pytest.approx(want.score, abs=2e-6)
        assert got["box"] == pytest.approx(list(box), abs=2e-3)


def assert_matches_simulator(result: ConsoleResult, kmodel: Path, frames: list[Path]) -> None:
    assert [f.frame for f in result.frames] == list(range(len(frames)))
    for index, frame in enumerate(frames):
        raw, decoded, boxes = expected_frame(kmodel, frame)
        assert result.outputs[(index, 0)] == raw
        assert_same_detections(result.frames[index].detections, decoded, boxes)


def test_host_build_matches_simulator_on_every_frame(rendered, kmodel, frames, workdir):
    build = build_host(rendered, workdir / "host", kmodel_bytes=kmodel.stat().st_size, work_bytes=43752)
    result = run_host(build.program, frames, flash_files={MODEL_ADDRESS: kmodel}, dump=True)
    assert_matches_simulator(result, kmodel, frames)
    labels = [d["label"] for d in result.frames[0].detections]
    assert labels == ["bicycle", "car", "dog"]
    assert build.size["fits"] and build.size["kmodel"] == kmodel.stat().st_size


def test_host_without_the_model_in_flash_fails_clearly(rendered, workdir, frames):
    build = build_host(rendered, workdir / "host_noflash")
    with pytest.raises(PipelineError, match="no kmodel of 1352588 bytes in flash at 0x300000"):
        run_host(build.program, frames[:1], flash_files={})


@needs_qemu
def test_qemu_build_matches_simulator_and_host(qemu_build, kmodel, frames):
    loaded = qemu_build.report.text + qemu_build.report.data  # the raw image: text + data, plus alignment padding
    assert loaded <= qemu_build.image.stat().st_size < loaded + 4096
    assert set(qemu_build.report.models) == {"voc20"}
    result = run_qemu(qemu_build.image, frames, command="voc20_detect", flash_files={MODEL_ADDRESS: kmodel},
                      dump=True)
    assert_matches_simulator(result, kmodel, frames)
    assert result.frames[0].instructions is None  # only counted under -icount
    assert 0 < result.boot_seconds < 30


@needs_qemu
def test_rtthread_console_lists_the_command_and_runs_it_as_typed(qemu_build, kmodel, frames):
    cmd = qemu_command(qemu_build.image, [], count_instructions=False)
    with MshConsole(cmd, what="QEMU RT-Thread") as console:
        assert "5.0.1" in console.run("version", 10)  # the real kernel, not a shim
        commands = msh_commands(console.run("help", 10))
        assert {"voc20_detect", "list", "free"} <= set(commands)
        # booted without the loader's flash contents: the app says what is missing instead of faulting
        assert "no kmodel of 1352588 bytes in flash at 0x300000" in console.run("voc20_detect", 30)


@needs_qemu
def test_the_generated_model_runs_on_rt_aks_own_rt_ai_lib(rendered, kmodel, frames, workdir):
    build = build_board("qemu", [rendered], workdir / "qemu_rtak", workdir / "qemu_rtak_bsp", rt_ai="rtak")
    bsp = workdir / "qemu_rtak_bsp"
    assert (bsp / "rt_ai_lib" / "rt_ai_core.c").is_file() and not (bsp / "face_ai" / "rt_ai" / "rt_ai.c").exists()
    assert "rt_ai_lib" in build.report.components  # RT-AK's runtime is what the image links
    result = run_qemu(build.image, frames[:1], command="voc20_detect", flash_files={MODEL_ADDRESS: kmodel},
                      dump=True)
    assert_matches_simulator(result, kmodel, frames[:1])


@needs_qemu
def test_qemu_boots_from_a_whole_flash_image_and_counts_instructions(qemu_build, kmodel, frames, workdir):
    flash = bytearray(b"\xff" * FLASH_SIZE)
    boot = firmware_image(qemu_build.image.read_bytes())  # what the flash stage writes at offset 0
    flash[:len(boot)] = boot
    data = kmodel.read_bytes()
    flash[MODEL_ADDRESS:MODEL_ADDRESS + len(data)] = data
    image = workdir / "flash.img"
    image.write_bytes(bytes(flash))
    result = boot_flash_image(image, frames[:1], command="voc20_detect", count_instructions=True)
    _, decoded, boxes = expected_frame(kmodel, frames[0])
    assert_same_detections(result.frames[0].detections, decoded, boxes)
    assert 1e8 < result.frames[0].instructions < 1e10


@needs_qemu
def test_qemu_unknown_command_fails_clearly(qemu_build, kmodel, frames):
    with pytest.raises(PipelineError, match="nope: command not found"):
        run_qemu(qemu_build.image, frames[:1], command="nope", flash_files={MODEL_ADDRESS: kmodel})


def test_embedded_kmodel_and_v01_rounding_build(kmodel, frames, workdir):
    spec = model_spec(kmodel, voc20_report(), Path("voc20_report"), score_threshold=0.5, nms_iou=0.3,
                      max_candidates=256)
    folder = render_firmware(spec, RenderOptions(name="voc20", storage="embedded"), workdir / "embedded").folder
    build = build_host(folder, workdir / "host_v01", rounding="v0.1")
    assert build.size["kmodel_in_image"] and build.size["text"] > kmodel.stat().st_size
    result = run_host(build.program, frames[:1], flash_files={}, dump=True)
    golden = np.load(shared_path("kmodels", "voc20_dog_expected_output_v01_rounding.npy"))
    assert result.outputs[(0, 0)] == golden.tobytes()
    assert [round(d["score"], 3) for d in result.frames[0].detections] == [0.967, 0.733, 0.578]
