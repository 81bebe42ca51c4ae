"""The K210 board port: its frame conversion (firmware/port/common/frame_convert.c) against NumPy, the generated
k210_board.h, every port file compiled against the real bsp/k210 + K210 SDK headers, and the capture hand-over of
k210_camera.c run on the host over test doubles of the SDK."""

from __future__ import annotations

import ctypes
import functools
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from deploy.firmware.k210_board import HEADER_VALUES, K210_CAMERAS, write_k210_board_header
from deploy.firmware.k210_headers import write_k210_headers
from deploy.firmware.model_spec import model_spec
from deploy.firmware.reference_model import voc20_report
from deploy.firmware.render import RenderOptions, model_folder, render_firmware
from pipeline.errors import PipelineError
from tests.conftest import shared_path

REPO = Path(__file__).resolve().parents[1]
FRAME_CONVERT = REPO / "firmware" / "port" / "common" / "frame_convert.c"


class Offset(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int32), ("y", ctypes.c_int32)]


class Rect(ctypes.Structure):
    _fields_ = [("x1", ctypes.c_int32), ("y1", ctypes.c_int32), ("x2", ctypes.c_int32), ("y2", ctypes.c_int32)]


U16P = np.ctypeslib.ndpointer(np.uint16, flags="C_CONTIGUOUS")


@pytest.fixture(scope="module")
def lib(tmp_path_factory) -> ctypes.CDLL:
    if shutil.which("gcc") is None:
        pytest.skip("host gcc is not installed")
    out = tmp_path_factory.mktemp("frame_convert") / "libframe_convert.so"
    subprocess.run(["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-o", str(out),
                    str(FRAME_CONVERT)], check=True)
    so = ctypes.CDLL(str(out))
    so.frame_rgb565.restype = ctypes.c_uint16
    so.frame_rgb565.argtypes = [ctypes.c_uint8] * 3
    so.frame_class_color.restype = ctypes.c_uint16
    so.frame_class_color.argtypes = [ctypes.c_uint32]
    so.frame_center.restype = Offset
    so.frame_center.argtypes = [ctypes.c_uint32] * 4
    so.frame_dvp565_to_display.restype = None
    so.frame_dvp565_to_display.argtypes = [U16P, ctypes.c_uint32, ctypes.c_uint32, U16P, ctypes.c_uint32,
                                           ctypes.c_uint32, Offset]
    so.frame_box_to_display.restype = ctypes.c_int
    so.frame_box_to_display.argtypes = [ctypes.POINTER(ctypes.c_float * 4), Offset, ctypes.c_uint32, ctypes.c_uint32,
                                        ctypes.POINTER(Rect)]
    so.frame_draw_rect.restype = None
    so.frame_draw_rect.argtypes = [U16P, ctypes.c_uint32, ctypes.c_uint32, ctypes.POINTER(Rect), ctypes.c_uint32,
                                   ctypes.c_uint16]
    return so


def rgb565_reference(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (rgb[..., i].astype(np.uint16) for i in range(3))
    return ((r >> 3) << 11) | ((g >> 2) << 5) | (b >> 3)


def test_rgb565_packs_every_channel_value(lib):
    values = np.arange(256, dtype=np.uint8)
    for channel in range(3):
        rgb = np.zeros((256, 3), np.uint8)
        rgb[:, channel] = values
        got = np.array([lib.frame_rgb565(*map(int, px)) for px in rgb], np.uint16)
        np.testing.assert_array_equal(got, rgb565_reference(rgb))


def test_class_colors_are_distinct_and_repeat(lib):
    colors = [lib.frame_class_color(i) for i in range(16)]
    assert len(set(colors[:8])) == 8 and colors[8:] == colors[:8]


def display_reference(src: np.ndarray, dst_w: int, dst_h: int) -> np.ndarray:
    """Pixel pairs swapped, centred (cropped or black-padded) into dst."""
    h, w = src.shape
    swapped = src.reshape(h, w // 2, 2)[:, :, ::-1].reshape(h, w)
    ox, oy = int((dst_w - w) / 2), int((dst_h - h) / 2)  # C division truncates towards zero
    out = np.zeros((dst_h, dst_w), np.uint16)
    ys, xs = np.mgrid[0:dst_h, 0:dst_w]
    sy, sx = ys - oy, xs - ox
    inside = (sy >= 0) & (sy < h) & (sx >= 0) & (sx < w)
    out[inside] = swapped[sy[inside], sx[inside]]
    return out


@pytest.mark.parametrize("src_size, dst_size", [((320, 240), (320, 240)), ((320, 240), (240, 320)),
                                                ((64, 48), (75, 51)), ((66, 40), (31, 17))])
def test_dvp_frame_lands_centred_with_pixel_pairs_swapped(lib, src_size, dst_size):
    (sw, sh), (dw, dh) = src_size, dst_size
    src = np.random.default_rng(sw * dw + dh).integers(1, 65536, (sh, sw), dtype=np.uint16)
    dst = np.full((dh, dw), 0xBEEF, np.uint16)
    at = lib.frame_center(sw, sh, dw, dh)
    lib.frame_dvp565_to_display(src, sw, sh, dst, dw, dh, at)
    np.testing.assert_array_equal(dst, display_reference(src, dw, dh))


def box_reference(box, ox, oy, w, h):
    """In float32, as the C code computes."""
    f = np.float32
    x1, y1, x2, y2 = box[0] + f(ox), box[1] + f(oy), box[2] + f(ox), box[3] + f(oy)
    if not (x1 <= x2 and y1 <= y2) or x2 < 0 or y2 < 0 or x1 > w - 1 or y1 > h - 1:
        return None

    def clip(v, limit):
        return 0 if v <= 0 else limit - 1 if v >= limit - 1 else int(v + f(0.5))

    return clip(x1, w), clip(y1, h), clip(x2, w), clip(y2, h)


def test_boxes_are_moved_clipped_and_rounded(lib):
    rng = np.random.default_rng(7)
    boxes = rng.uniform(-80, 400, (400, 4)).astype(np.float32)
    boxes[:, 2:] = boxes[:, :2] + rng.uniform(-5, 120, (400, 2)).astype(np.float32)
    boxes[0] = [np.nan, 0, 10, 10]
    visible = 0
    for box in boxes:
        for (ox, oy, w, h) in ((0, 0, 320, 240), (-40, 40, 240, 320)):
            rect = Rect()
            ok = lib.frame_box_to_display((ctypes.c_float * 4)(*box), Offset(ox, oy), w, h, ctypes.byref(rect))
            expected = box_reference(box, ox, oy, w, h)
            assert bool(ok) == (expected is not None)
            if expected is not None:
                visible += 1
                assert (rect.x1, rect.y1, rect.x2, rect.y2) == expected
    assert visible > 100  # the sample covers both outcomes


def rect_reference(shape, rect, thickness, color, fill):
    h, w = shape
    out = np.full(shape, fill, np.uint16)
    x1, y1, x2, y2 = rect
    ys, xs = np.mgrid[0:h, 0:w]
    inside = (xs >= x1) & (xs <= x2) & (ys >= y1) & (ys <= y2)
    border = np.minimum.reduce([xs - x1, x2 - xs, ys - y1, y2 - ys]) < thickness
    out[inside & border] = color
    return out


@pytest.mark.parametrize("rect, thickness", [((10, 5, 60, 40), 2), ((0, 0, 79, 49), 1), ((30, 30, 30, 30), 3),
                                             ((5, 10, 12, 13), 4), ((70, 2, 79, 49), 6)])
def test_rect_outline_matches_numpy(lib, rect, thickness):
    dst = np.full((50, 80), 0x1234, np.uint16)
    lib.frame_draw_rect(dst, 80, 50, ctypes.byref(Rect(*rect)), thickness, 0xF800)
    np.testing.assert_array_equal(dst, rect_reference(dst.shape, rect, thickness, 0xF800, 0x1234))


def test_rect_outside_the_buffer_is_not_drawn(lib):
    dst = np.zeros((50, 80), np.uint16)
    lib.frame_draw_rect(dst, 80, 50, ctypes.byref(Rect(10, 10, 80, 20)), 2, 0xFFFF)
    assert not dst.any()


def test_board_header_holds_every_fact_and_the_camera(tmp_path):
    text = write_k210_board_header(tmp_path / "k210_board.h", "ov2640").read_text()
    for name, value in HEADER_VALUES.items():
        assert f"#define {name} {value}\n" in text
    assert '#define K210_CAMERA_NAME "ov2640"' in text and "#define K210_CAMERA_OV2640 1" in text
    assert "OV5640" not in text


def test_board_header_refuses_an_unknown_camera(tmp_path):
    with pytest.raises(PipelineError, match="firmware.camera") as err:
        write_k210_board_header(tmp_path / "k210_board.h", "gc0308")
    assert all(name in str(err.value) for name in K210_CAMERAS)
    assert not (tmp_path / "k210_board.h").exists()


# --- compile proof: every file of firmware/port/k210 (and the KPU backend) with Debian's riscv64-unknown-elf-gcc ---
# --- against the real RT-Thread 5.0.1 headers, bsp/k210's rtconfig.h and drivers, and the K210 SDK package      ---

RTTHREAD = REPO.parent / "shared" / "rtthread" / "rt-thread"
K210_BSP = RTTHREAD / "bsp" / "k210"
K210_SDK = K210_BSP / "packages" / "K210-SDK-latest" / "lib"
PORT_DIR = REPO / "firmware" / "port" / "k210"
RISCV_GCC = "riscv64-unknown-elf-gcc"
# The CI target (Debian's default multilib) and bsp/k210's own (rtconfig.py DEVICE: single-precision FPU).
ABI_FLAGS = {"lp64d": ["-march=rv64imafdc", "-mabi=lp64d"], "lp64f": ["-march=rv64imafc", "-mabi=lp64f"]}
COMMON_FLAGS = ["-mcmodel=medany", "--specs=picolibc.specs"]
WARNING_FLAGS = ["-std=gnu99", "-Os", "-ffunction-sections", "-fdata-sections", "-Wall", "-Wextra", "-Werror"]
# Real headers as system headers: their own warnings (cpuport.h redefines FSTORE under ARCH_RISCV_FPU_S with
# -march=...d) are not ours to fix, ours must be clean.
SYSTEM_INCLUDES = [RTTHREAD / "include", RTTHREAD / "components" / "finsh",
                   RTTHREAD / "components" / "drivers" / "include",
                   RTTHREAD / "components" / "libc" / "compilers" / "common" / "include",
                   RTTHREAD / "libcpu" / "risc-v" / "k210", RTTHREAD / "libcpu" / "risc-v" / "common",
                   K210_BSP / "drivers", K210_BSP / "drivers" / "camera",
                   K210_SDK / "drivers" / "include", K210_SDK / "bsp" / "include", K210_SDK / "utils" / "include"]
# bsp/k210's rtconfig.h has the LCD on and the camera off; the other variants add or drop them (Kconfig defaults).
CAMERA_DEFINES = """#define BSP_USING_CAMERA
#define BSP_CAMERA_SCCB_SDA_PIN 9
#define BSP_CAMERA_SCCB_SCLK_PIN 10
#define BSP_CAMERA_CMOS_RST_PIN 11
#define BSP_CAMERA_CMOS_VSYNC_PIN 12
#define BSP_CAMERA_CMOS_PWDN_PIN 13
#define BSP_CAMERA_CMOS_XCLK_PIN 14
#define BSP_CAMERA_CMOS_PCLK_PIN 15
#define BSP_CAMERA_CMOS_HREF_PIN 17
"""


def needs_k210_tree() -> None:
    if not (K210_BSP / "rtconfig.h").is_file() or not K210_SDK.is_dir():
        pytest.skip(f"the real RT-Thread tree with bsp/k210 and its K210-SDK package is not at {RTTHREAD.parent} "
                    "(it ships beside the repo in CI, not in a user's clone)")
    if shutil.which(RISCV_GCC) is None:
        pytest.skip(f"{RISCV_GCC} not installed (apt: gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf)")


def rtconfig_variant(folder: Path, camera: bool, lcd: bool) -> Path:
    """A copy of bsp/k210's rtconfig.h with the camera pins added and/or the LCD removed, in its own folder."""
    text = (K210_BSP / "rtconfig.h").read_text()
    if not lcd:
        text = "\n".join(line for line in text.splitlines() if "BSP_USING_LCD" not in line) + "\n"
    if camera:
        head, tail = text.rsplit("#endif", 1)
        text = head + CAMERA_DEFINES + "#endif" + tail
    folder.mkdir(parents=True)
    (folder / "rtconfig.h").write_text(text)
    return folder


@pytest.fixture(scope="module")
def rendered_board(tmp_path_factory) -> Path:
    """The model's rendered K210 board file (its msh dump switch), which compiles against the port's header."""
    spec = model_spec(shared_path("kmodels", "voc20_yolov2_v3.kmodel"), voc20_report(), Path("report.json"),
                      score_threshold=0.5, nms_iou=0.3, max_candidates=16)
    folder = tmp_path_factory.mktemp("rendered") / "face"
    render_firmware(spec, RenderOptions(name="face", storage="flash"), folder)
    return model_folder(folder, "face") / "face_board_k210.c"


def port_sources() -> list[Path]:
    """What firmware/port/k210/SConscript lists, resolved, plus the KPU backend the same BSP build compiles."""
    listed = []
    text = (PORT_DIR / "SConscript").read_text()
    listed += [PORT_DIR / name for name in text.split("Split('''")[1].split("''')")[0].split()]
    listed.append((PORT_DIR / "../common/frame_convert.c").resolve())
    return listed + [REPO / "firmware" / "rt_ai" / "backend_k210_kpu.c"]


def test_sconscript_lists_every_port_file():
    listed = {p.name for p in port_sources()}
    assert {p.name for p in PORT_DIR.glob("*.c")} <= listed


@pytest.mark.parametrize("abi, camera, with_camera, with_lcd", [
    ("lp64d", "ov5640", True, True), ("lp64d", "ov2640", True, True), ("lp64d", "ov5640", False, True),
    ("lp64d", "ov2640", False, False), ("lp64f", "ov5640", True, True), ("lp64f", "ov2640", True, False)])
def test_port_compiles_against_the_real_bsp_and_sdk(tmp_path, rendered_board, abi, camera, with_camera, with_lcd):
    needs_k210_tree()
    if abi == "lp64f":
        assert " ".join(ABI_FLAGS[abi]) in (K210_BSP / "rtconfig.py").read_text()  # the BSP's own flags
    config = rtconfig_variant(tmp_path / "config", with_camera, with_lcd)
    write_k210_board_header(tmp_path / "k210_board.h", camera)
    write_k210_headers(tmp_path)  # k210_kpu.h: the flash geometry rt_port_board.h uses
    includes = ["-I", str(tmp_path), "-I", str(PORT_DIR), "-iquote", str(REPO / "firmware" / "port"),
                "-I", str(REPO / "firmware" / "rt_ai"), "-isystem", str(config)]
    for folder in SYSTEM_INCLUDES:
        includes += ["-isystem", str(folder)]
    objects = []
    for source in [*port_sources(), rendered_board]:
        obj = tmp_path / (source.stem + ".o")
        run = subprocess.run([RISCV_GCC, *ABI_FLAGS[abi], *COMMON_FLAGS, *WARNING_FLAGS, "-DRT_AI_USE_K210",
                              *includes, "-c", str(source), "-o", str(obj)], capture_output=True, text=True)
        assert run.returncode == 0, f"{source.name}:\n{run.stderr}"
        objects.append(obj)
    symbols = subprocess.run(["riscv64-unknown-elf-nm", *map(str, objects)], capture_output=True, text=True,
                             check=True).stdout
    defined = {line.split()[-1] for line in symbols.splitlines() if len(line.split()) == 3}
    for name in ("rt_port_flash_map", "rt_port_kpu_ram", "rt_port_frame_count", "rt_port_frame_get",
                 "rt_port_dump_outputs", "rt_port_show", "rt_port_instructions", "rt_port_storage_read",
                 "rt_port_storage_erase", "rt_port_storage_write", "backend_k210_kpu",
                 "k210_board_sensor", "k210_port_set_dump", "__fsym_face_dump"):
        assert name in defined, name
    missing = unresolved_symbols(objects, ABI_FLAGS[abi], tmp_path / "port.elf") - real_tree_definitions()
    assert not missing, f"symbols no source of RT-Thread, bsp/k210, the SDK or firmware/rt_ai defines: {missing}"


def unresolved_symbols(objects: list[Path], abi_flags: list[str], elf: Path) -> set[str]:
    """What a link of the port objects with picolibc alone (all sections kept) leaves undefined: the BSP image
    must provide it."""
    run = subprocess.run([RISCV_GCC, *abi_flags, *COMMON_FLAGS, "-nostartfiles", "-Wl,--no-gc-sections", "-Wl,-e,0",
                          "-o", str(elf), *map(str, objects)], capture_output=True, text=True)
    return set(re.findall(r"undefined reference to `([^']+)'", run.stderr))


@functools.lru_cache(maxsize=1)
def real_tree_definitions() -> frozenset[str]:
    """Names of the functions and objects defined (not declared) in the sources a bsp/k210 image links."""
    roots = [RTTHREAD / "src", RTTHREAD / "libcpu" / "risc-v" / "k210", RTTHREAD / "libcpu" / "risc-v" / "common",
             K210_BSP / "drivers", K210_SDK / "drivers", K210_SDK / "bsp", REPO / "firmware" / "rt_ai"]
    head = re.compile(r"^(?!static\b)[A-Za-z_][\w \t\*]*?\b(\w+)\s*(?:\(|\[|=)[^;]*$", re.M)
    names = set()
    for root in roots:
        for source in root.rglob("*.c"):
            names.update(head.findall(source.read_text(errors="replace")))
    return frozenset(names)


# Widest expansion of each conversion in the port's messages: names are RT-Thread object names or sensor names
# (rt_ai names are at most RT_AI_NAME_MAX = 16 characters), numbers are 32-bit (64-bit for %l).
CONVERSION_WIDTH = {"s": 16, "d": 11, "u": 10, "x": 8, "lu": 20, "lx": 16, "ld": 20}
KPRINTF = re.compile(r'rt_kprintf\(((?:\s*"(?:[^"\\]|\\.)*")+)')
CONVERSION = re.compile(r"%0?(\d*)(l?[sdux])")


def widest_message(fmt: str) -> int:
    text = fmt.replace("\\n", "\n").replace('\\"', '"')
    return len(CONVERSION.sub(lambda m: "x" * max(int(m.group(1) or 0), CONVERSION_WIDTH[m.group(2)]), text))


def test_port_messages_fit_one_rt_kprintf_buffer():
    needs_k210_tree()
    size = int(re.search(r"#define RT_CONSOLEBUF_SIZE (\d+)", (K210_BSP / "rtconfig.h").read_text()).group(1))
    checked = 0
    for source in port_sources():
        for call in KPRINTF.findall(source.read_text()):
            fmt = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', call))
            assert "%f" not in fmt and "%g" not in fmt, f"{source.name}: rt_kprintf has no float conversions"
            assert widest_message(fmt) < size, f"{source.name}: {fmt!r} can exceed RT_CONSOLEBUF_SIZE {size}"
            checked += 1
    assert checked >= 15


# --- the port's logic on the host, over test doubles of the SDK and RT-Thread (tests/k210_host) ---

HOST_FAKES = Path(__file__).parent / "k210_host"


def build_harness(out: Path, name: str, sources: list[Path], defines: list[str]) -> Path:
    """gcc the harness `name`.c with the fake RT-Thread and the port sources under test."""
    if shutil.which("gcc") is None:
        pytest.skip("host gcc is not installed")
    write_k210_board_header(out / "k210_board.h", "ov2640")
    write_k210_headers(out)
    subprocess.run(["gcc", "-std=gnu99", "-O1", "-Wall", "-Wextra", "-Werror", *defines, "-I", str(HOST_FAKES),
                    "-I", str(out), "-I", str(PORT_DIR), "-I", str(REPO / "firmware" / "rt_ai"),
                    "-iquote", str(REPO / "firmware" / "port"), "-o", str(out / name),
                    str(HOST_FAKES / f"{name}.c"), str(HOST_FAKES / "fake_rtthread.c"), *map(str, sources)],
                   check=True)
    return out / name


@pytest.fixture(scope="module")
def camera_harness(tmp_path_factory) -> Path:
    return build_harness(tmp_path_factory.mktemp("camera"), "camera_harness",
                         [PORT_DIR / "k210_camera.c", PORT_DIR / "k210_sensor_ov2640.c"], ["-DBSP_USING_CAMERA"])


@pytest.fixture(scope="module")
def port_harness(tmp_path_factory) -> Path:
    return build_harness(tmp_path_factory.mktemp("port"), "port_harness",
                         [PORT_DIR / "k210_flash.c", PORT_DIR / "k210_display.c", FRAME_CONVERT,
                          REPO / "firmware" / "rt_ai" / "backend_k210_kpu.c"], ["-DRT_AI_USE_K210"])


def run_harness(harness: Path, mode: str) -> tuple[dict, str]:
    run = subprocess.run([str(harness), mode], capture_output=True, text=True, check=True, timeout=60)
    return json.loads(run.stdout), run.stderr


def test_capture_hands_out_the_newest_frame_and_never_writes_the_held_one(camera_harness):
    result, console = run_harness(camera_harness, "stream")
    assert result["opened"] == 0 and "board: ov2640 streaming 320x240, XCLK 24000000 Hz" in console
    assert result["got"] == 40 and result["frames_run"] > 60  # frames also ran while the app held one
    assert result["newest"] == 40 and result["display_match"] == 40 and result["planar"] == 1
    assert result["writes_into_held"] == 0 and result["lock_nesting_errors"] == 0
    assert result["last_sccb"] == [0xE0, 0x00]  # the OV2640 set-up ends by releasing its DVP interface


def test_absent_sensor_is_reported_and_its_buffers_freed(camera_harness):
    result, console = run_harness(camera_harness, "absent")
    assert result["opened"] == -1 and result["allocated"] == result["freed"] == 2
    assert "board: no OV2640 on SCCB (0x60): id 0xffff" in console


def test_silent_dvp_is_reported_instead_of_hanging(camera_harness):
    result, console = run_harness(camera_harness, "stalled")
    assert result["opened"] == 0 and result["got"] == 0
    assert "board: no frame from the ov2640 within 1000 ms (DVP frame interrupt not firing)" in console


def test_flash_map_reads_the_chip_into_an_aligned_copy(port_harness):
    result, console = run_harness(port_harness, "flash")
    assert result["mapped"] == result["aligned"] == result["equal"] == result["same_again"] == 1
    assert result["reads_with_irq_on"] == 0 and 0 < result["longest_read"] <= 256
    assert result["erased_null"] == 1 and "board: flash 0x800000 is erased" in console
    assert result["past_null"] == 1 and "past the 16777216-byte chip" in console
    assert result["extra_maps"] == 3 and "more than 4 flash regions mapped" in console


def test_silent_flash_is_reported_once(port_harness):
    result, console = run_harness(port_harness, "noflash")
    assert result["mapped"] == 0 and result["past_null"] == 1
    assert console.count("board: SPI3 flash not answering (JEDEC id ff ff ff)") == 1


def test_kpu_runs_on_a_dmalock_channel_released_when_done_or_failed(port_harness):
    result, console = run_harness(port_harness, "kpu")
    assert result["init"] == 0 and result["model_from_flash"] == 1  # model NULL: read through rt_port_flash_map
    assert result["run"] == 0 and result["run_channel"] == 3 and result["released_before_done"] == 0
    assert result["done_calls"] == 1
    assert result["failed_run"] == -1 and "kpu_run_kmodel failed" in console
    assert result["no_channel"] == -1 and "no free DMA channel within 1000 ms" in console
    assert result["taken"] == result["released"] == 2 and result["last_released"] == 3
    assert result["config"] == -1 and "comes from dmalock" in console


def test_display_draws_the_swapped_frame_and_the_box(port_harness):
    result, console = run_harness(port_harness, "lcd")
    assert console == "" and result["finds"] == 1 and result["updates"] == result["full_updates"] == 2
    # the harness frame holds y * 320 + x: pairs swap, the class-0 outline is green, the inside is the frame
    assert result["pixel_0_0"] == 1 and result["pixel_1_0"] == 0
    assert result["box_corner"] == 0x07E0 and result["inside_box"] == 100 * 320 + 51


def test_missing_lcd_is_reported_once(port_harness):
    result, console = run_harness(port_harness, "nolcd")
    assert result["finds"] == 1 and result["updates"] == 0
    assert console.count("board: no LCD device 'lcd' (enable BSP_USING_LCD)") == 1


def test_storage_erases_sectors_and_programs_pages_like_the_chip_wants(port_harness):
    """Two sectors erased, 3000 bytes from 0x11FA0 (mid-page, across a sector boundary) programmed and read back;
    the mapped RAM copy of a region around them follows."""
    result, console = run_harness(port_harness, "nor")
    assert console.count("not whole 4096-byte sectors") == 1 and "past the 16777216 bytes it can reach" in console
    assert result["erase"] == result["write"] == result["read"] == 0 and result["unaligned"] == result["past"] == -1
    assert result["read_equal"] == result["image_equal"] == result["map_equal"] == 1
    first = 256 - 0x11FA0 % 256
    assert result["erases"] == 2 and result["programs"] == 1 + -(-(3000 - first) // 256)
    assert result["page_crossings"] == result["commands_while_busy"] == result["without_wel"] == 0
    assert result["sends_with_irq_on"] == 0


def test_a_write_protected_flash_is_reported(port_harness):
    result, console = run_harness(port_harness, "nor_protected")
    assert result == {"erase": -1, "write": -1, "erases": 0, "programs": 0}
    assert console.count("board: SPI3 flash refuses writes (status 00 after WRITE ENABLE: write-protected?)") == 2


def test_a_flash_that_stays_busy_is_reported(port_harness):
    result, console = run_harness(port_harness, "nor_stuck")
    assert result["erase"] == result["write"] == -1 and result["erases"] == 1 and result["programs"] == 0
    limit = HEADER_VALUES["K210_FLASH_ERASE_TIMEOUT_MS"]
    assert f"board: SPI3 flash still busy after {limit} ms (status 01)" in console
