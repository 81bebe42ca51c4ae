"""firmware/app/detection.c, the detector application's logic, compiled on its own (no model rendered): the input it
makes is letterbox_input's, and the console line it prints holds the detections of the Python decoder
(models/yolo_decode.py) in frame pixels (deploy/firmware/camera_frames.py boxes_to_frame), for float32 and uint8 model
outputs, wider, taller and planar frames; more boxes than it has room for are counted as dropped; labels reach the
line as JSON; `<name>_detect [N]` runs N frames only when N is one of those available. And every source of
firmware/app (the applications included) compiles on its own, with no model rendered, for the host and the RISC-V
boards."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from deploy.firmware.boards import FIRMWARE_DIR, HOST, PORT_DIR
from deploy.firmware.camera_frames import boxes_to_frame, letterbox_input
from deploy.firmware.k210_headers import write_k210_headers
from models.yolo_decode import chw_to_hwc, decode_yolov2, nms

pytestmark = pytest.mark.skipif(shutil.which(HOST.cc) is None, reason=f"{HOST.cc} not installed (invoke setup)")
APP = FIRMWARE_DIR / "app"
SOURCES = [APP / name for name in ("detection.c", "letterbox.c", "region_layer.c", "console_line.c")]
GRID_W, GRID_H, ANCHORS = 10, 7, [[1.08, 1.19], [3.42, 4.41], [6.63, 11.38]]
INPUT_SIZE = (160, 112)
LABELS = ["face", 'say "hi"', "back\\slash"]


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("detection")
    out = folder / "detection_check"
    write_k210_headers(folder / "generated")  # rt_port_board.h's K210 facts, as a render writes them
    sources = [Path(__file__).parent / "c" / "detection_check.c", *SOURCES, PORT_DIR / "common" / "rt_port_core.c"]
    includes = [f"-I{PORT_DIR}", f"-I{APP}", f"-I{folder / 'generated'}"]
    cmd = [HOST.cc, *HOST.cflags, *includes, *map(str, sources), "-o", str(out), *HOST.ldflags]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return out


def detect(program: Path, folder: Path, frame: np.ndarray, output: np.ndarray, *, planar: bool = False,
           quantization: tuple[float, int] | None = None, score_threshold: float = 0.3, nms_iou: float = 0.4,
           max_candidates: int = 64, fill: int = 0, index: int = 0, counted: bool = True) -> tuple[np.ndarray, dict]:
    """The C input bytes (CHW) and the parsed console line for one frame (H x W x 3) and model output (CHW, float32
    or uint8 codes of `quantization` (scale, zero point))."""
    height, width = frame.shape[:2]
    labels = b"".join(json.dumps(label, ensure_ascii=True)[1:-1].encode() + b"\0" for label in LABELS)  # as rendered
    scale, zero = quantization or (0.0, 0)
    case = struct.pack("<16I", GRID_W, GRID_H, len(ANCHORS), len(LABELS), *INPUT_SIZE, 3, fill, max_candidates,
                       width, height, int(planar), int(quantization is not None), index, int(counted), len(labels))
    case += struct.pack("<3fi2Q", score_threshold, nms_iou, scale, zero, 79, 123456789)
    case += np.asarray(ANCHORS, np.float32).tobytes() + labels
    case += np.ascontiguousarray(frame.transpose(2, 0, 1) if planar else frame).tobytes()
    case += output.astype(np.uint8 if quantization else np.float32).tobytes()
    (folder / "case.bin").write_bytes(case)
    done = subprocess.run([str(program), str(folder / "case.bin"), str(folder / "input.bin")], capture_output=True,
                          text=True, check=True)
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout
    chw = np.frombuffer((folder / "input.bin").read_bytes(), np.uint8).reshape(3, INPUT_SIZE[1], INPUT_SIZE[0])
    return chw, json.loads(lines[0])


def random_output(rng: np.random.Generator, quantized: bool) -> tuple[np.ndarray, tuple[float, int] | None]:
    """A CHW output grid whose objectness and class logits spread over both sides of the threshold."""
    channels = len(ANCHORS) * (5 + len(LABELS))
    if quantized:
        return rng.integers(0, 256, (channels, GRID_H, GRID_W), dtype=np.uint8), (0.05, 128)
    return rng.normal(0, 2, (channels, GRID_H, GRID_W)).astype(np.float32), None


def python_decode(output: np.ndarray, quantization, score_threshold: float) -> list:
    """models/yolo_decode.py on the output: every box above the threshold, in the C loop order."""
    values = output.astype(np.float32)
    if quantization:
        values = (values - np.float32(quantization[1])) * np.float32(quantization[0])
    grid = chw_to_hwc(values.reshape(-1), len(ANCHORS) * (5 + len(LABELS)), GRID_H, GRID_W)
    return decode_yolov2(grid, np.array(ANCHORS), len(LABELS), score_threshold)


def assert_same_detections(printed: list[dict], decoded: list, boxes: np.ndarray) -> None:
    assert [d["class"] for d in printed] == [d.class_id for d in decoded]
    assert [d["label"] for d in printed] == [LABELS[d.class_id] for d in decoded]
    for got, want, box in zip(printed, decoded, boxes, strict=True):
        assert got["score"] == pytest.approx(want.score, abs=2e-6)
        assert got["box"] == pytest.approx(list(box), abs=2e-3, rel=1e-6)  # float32 boxes printed to 3 places


@pytest.mark.parametrize("quantized", [False, True], ids=["float32", "uint8"])
@pytest.mark.parametrize(("frame_size", "planar"), [((320, 240), False), ((200, 300), False), ((400, 225), True),
                                                    ((160, 112), True)])
def test_the_c_detector_prints_the_python_decoders_detections(program, tmp_path, frame_size, planar, quantized):
    rng = np.random.default_rng(frame_size[0] + 7 * quantized)
    frame = rng.integers(0, 256, (frame_size[1], frame_size[0], 3), dtype=np.uint8)
    output, quantization = random_output(rng, quantized)
    chw, line = detect(program, tmp_path, frame, output, planar=planar, quantization=quantization, fill=17, index=3,
                       score_threshold=0.6, max_candidates=256)
    np.testing.assert_array_equal(chw, letterbox_input(frame, INPUT_SIZE, 17))
    decoded = nms(python_decode(output, quantization, 0.6), 0.4)
    assert line["frame"] == 3 and len(line["detections"]) > 3 and "dropped" not in line
    assert_same_detections(line["detections"], decoded,
                           boxes_to_frame(np.array([d.box for d in decoded]), frame_size, INPUT_SIZE))


def test_more_boxes_than_room_are_kept_by_score_and_the_rest_counted(program, tmp_path):
    """Decoding stops filling at max_candidates (in grid order) and NMS ranks those; the line says how many of the
    boxes above the threshold found no room."""
    rng = np.random.default_rng(5)
    frame = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    output, _ = random_output(rng, False)
    decoded = python_decode(output, None, 0.05)
    _, line = detect(program, tmp_path, frame, output, score_threshold=0.05, nms_iou=1.0, max_candidates=5)
    assert len(decoded) > 5 and line["dropped"] == len(decoded) - 5
    first = nms(decoded[:5], 1.0)  # no box overlaps another by more than all of it: the five by score
    assert_same_detections(line["detections"], first, boxes_to_frame(np.array([d.box for d in first]), (320, 240),
                                                                      INPUT_SIZE))
    _, everything = detect(program, tmp_path, frame, output, score_threshold=0.05, nms_iou=1.0,
                           max_candidates=len(decoded))
    assert len(everything["detections"]) == len(decoded) and "dropped" not in everything


def test_the_line_holds_time_instructions_and_json_labels(program, tmp_path):
    rng = np.random.default_rng(6)
    frame = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    output, _ = random_output(rng, False)
    _, counted = detect(program, tmp_path, frame, output, score_threshold=0.01)
    assert counted["ms"] == 79 and counted["insn"] == 123456789
    assert {d["label"] for d in counted["detections"]} == set(LABELS)  # escaped at render time, read back as text
    _, plain = detect(program, tmp_path, frame, output, score_threshold=0.01, counted=False)
    assert "insn" not in plain and plain["detections"] == counted["detections"]


@pytest.mark.parametrize(("args", "available", "count"), [
    ([], 5, 5), (["2"], 5, 2), (["4"], 5, 4), (["5"], 5, 5), (["9"], 5, 5), (["0"], 5, 5), (["-1"], 5, 5),
    (["x"], 5, 5), ([], 0, 0), (["3"], 0, 0)])
def test_the_frame_count_argument(program, args, available, count):
    done = subprocess.run([str(program), "--count", str(available), *args], capture_output=True, text=True,
                          check=True)
    assert int(done.stdout) == count


RISCV_GCC = "riscv64-unknown-elf-gcc"
RISCV_FLAGS = ("-mcmodel=medany", "--specs=picolibc.specs", "-std=c99", "-O2", "-ffp-contract=off", "-Wall",
               "-Wextra", "-Werror", "-pedantic")
# the host build, bsp/qemu-virt64-riscv (with Debian's lp64d fix) and bsp/k210 (single-precision FPU)
COMPILERS = {"host": (HOST.cc, *HOST.cflags), "lp64d": (RISCV_GCC, "-march=rv64imafdc", "-mabi=lp64d", *RISCV_FLAGS),
             "lp64f": (RISCV_GCC, "-march=rv64imafc", "-mabi=lp64f", *RISCV_FLAGS)}


@pytest.mark.parametrize("target", sorted(COMPILERS))
def test_every_app_source_compiles_without_a_rendered_model(tmp_path, target):
    """Over the RT-Thread API shim's headers and the generated K210 facts: what a model adds (its headers, its
    <name>_app.c) is not needed to compile the applications."""
    cmd = COMPILERS[target]
    if shutil.which(cmd[0]) is None:
        pytest.skip(f"{cmd[0]} not installed (invoke setup)")
    write_k210_headers(tmp_path / "generated")
    includes = [f"-I{d}" for d in (APP, FIRMWARE_DIR / "rt_ai", PORT_DIR, tmp_path / "generated")]
    sources = sorted(APP.glob("*.c"))
    assert {"detection.c", "detect_app.c", "embed_app.c", "app_model.c"} <= {p.name for p in sources}
    done = subprocess.run([*cmd, *includes, "-c", *map(str, sources)], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.glob("*.o")) == sorted(p.with_suffix(".o").name for p in sources)
