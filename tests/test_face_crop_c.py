"""firmware/app/face_crop.c, the C twin of models/recognizer/crop.py: the same bytes as crop_face for random images,
boxes (inside, across the edge, outside, one pixel, huge), margins and sizes, in every layout; the same rounding as
rounded_box on float32 boxes; the mirror image of crop.py's `mirrored` on the planar crop; and a clean compile with
the RISC-V gcc the RT-Thread builds use."""

from __future__ import annotations

import ctypes
import math
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from deploy.firmware.boards import FIRMWARE_DIR, HOST
from models.recognizer.crop import CropPolicy, crop_face, mirrored, rounded_box

FACE_CROP = FIRMWARE_DIR / "app" / "face_crop.c"
HWC_TO_HWC, CHW_TO_HWC, HWC_TO_CHW, CHW_TO_CHW = 0, 1, 2, 3  # FACE_CROP_IN_PLANAR 1, FACE_CROP_OUT_PLANAR 2
BOX_KINDS = ("inside", "across", "outside", "tiny", "huge")
RISCV_GCC = "riscv64-unknown-elf-gcc"
# bsp/qemu-virt64-riscv (with Debian's lp64d fix) and bsp/k210 (single-precision FPU), as the BSP builds compile.
RISCV_ABIS = (("-march=rv64imafdc", "-mabi=lp64d"), ("-march=rv64imafc", "-mabi=lp64f"))

U8P = ctypes.POINTER(ctypes.c_uint8)
Box = ctypes.c_int * 4
FloatBox = ctypes.c_float * 4


@pytest.fixture(scope="module")
def lib(tmp_path_factory) -> ctypes.CDLL:
    if shutil.which(HOST.cc) is None:
        pytest.skip(f"{HOST.cc} not installed (invoke setup)")
    out = tmp_path_factory.mktemp("face_crop") / "libface_crop.so"
    subprocess.run([HOST.cc, *HOST.cflags, "-shared", "-fPIC", f"-I{FACE_CROP.parent}", str(FACE_CROP), "-o",
                    str(out)], check=True, capture_output=True, text=True)
    so = ctypes.CDLL(str(out))
    so.face_crop.restype = ctypes.c_int
    so.face_crop.argtypes = [U8P, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, Box, ctypes.c_int,
                             ctypes.c_int, U8P]
    so.face_crop_mirror.restype = None
    so.face_crop_mirror.argtypes = [U8P, ctypes.c_int, ctypes.c_int]
    so.face_crop_round_box.restype = ctypes.c_int
    so.face_crop_round_box.argtypes = [FloatBox, Box]
    return so


def c_round_box(lib: ctypes.CDLL, box: np.ndarray) -> tuple[int, int, int, int] | None:
    out = Box()
    return tuple(out) if lib.face_crop_round_box(FloatBox(*map(float, box)), out) == 0 else None


def c_crop(lib: ctypes.CDLL, image: np.ndarray, layout: int, box: tuple[int, ...], policy: CropPolicy) -> np.ndarray:
    """The C crop of an H x W x C image (passed planar when the layout says so), in the layout's output order."""
    height, width, channels = image.shape
    source = np.ascontiguousarray(image.transpose(2, 0, 1) if layout & 1 else image)
    out = np.zeros(policy.size * policy.size * channels, np.uint8)
    done = lib.face_crop(source.ctypes.data_as(U8P), width, height, channels, layout, Box(*box),
                         policy.margin_permille, policy.size, out.ctypes.data_as(U8P))
    assert done == 0
    shape = (channels, policy.size, policy.size) if layout & 2 else (policy.size, policy.size, channels)
    return out.reshape(shape)


def random_box(rng: np.random.Generator, kind: str, width: int, height: int) -> np.ndarray:
    """A float32 box (x1, y1, x2, y2) in pixels of the given kind relative to a width x height image."""
    if kind == "tiny":  # one pixel, or collapsed / inverted (rounded_box widens it to one pixel)
        x, y = rng.uniform(-3, width + 3), rng.uniform(-3, height + 3)
        return np.array([x, y, x + rng.uniform(-1, 1), y + rng.uniform(-1, 1)], np.float32)
    if kind == "huge":
        centre, half = rng.uniform(-5e4, 5e4, 2), rng.uniform(1e3, 4e5, 2)
        return np.concatenate([centre - half, centre + half]).astype(np.float32)
    if kind == "inside":
        x1, x2 = np.sort(rng.uniform(0, width, 2))
        y1, y2 = np.sort(rng.uniform(0, height, 2))
    elif kind == "across":
        x1, x2 = np.sort(rng.uniform(-0.5 * width, 1.5 * width, 2))
        y1, y2 = np.sort(rng.uniform(-0.5 * height, 1.5 * height, 2))
        x1, y1 = min(x1, -rng.uniform(0, width)), min(y1, -rng.uniform(0, height))  # over the top-left edge
        if rng.random() < 0.5:
            x1, x2, y1, y2 = width - x2, width - x1, height - y2, height - y1  # or over the bottom-right one
    else:  # entirely outside, on a random side
        side = max(width, height)
        x1, y1 = rng.uniform(width + 1, width + 3 * side), rng.uniform(-side, height + side)
        x2, y2 = x1 + rng.uniform(1, side), y1 + rng.uniform(1, side)
        if rng.random() < 0.5:
            x1, x2 = width - x2, width - x1
        if rng.random() < 0.5:
            x1, y1, x2, y2 = y1 * width / height, x1 * height / width, y2 * width / height, x2 * height / width
    return np.array([x1, y1, x2, y2], np.float32)


def random_cases(seed: int, count: int):
    rng = np.random.default_rng(seed)
    for n in range(count):
        width, height = (int(v) for v in rng.integers(1, 401, 2))
        channels = (1, 3)[n % 2]
        image = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
        if n % 5 == 0:  # smooth content too, where a misplaced sample shows as a small difference
            ramp = np.add.outer(np.arange(height), np.arange(width))[:, :, None] * (1 + np.arange(channels))
            image = (ramp % 256).astype(np.uint8)
        policy = CropPolicy(size=(4, 112, 128)[n % 3], margin_permille=(0, 250, 1000)[(n // 3) % 3])
        yield image, random_box(rng, BOX_KINDS[n % len(BOX_KINDS)], width, height), policy


def test_c_crop_gives_crop_faces_bytes_in_every_layout(lib):
    for image, box, policy in random_cases(seed=20240611, count=300):
        expected = crop_face(image, tuple(float(v) for v in box), policy)
        rounded = c_round_box(lib, box)
        assert rounded == rounded_box(tuple(box)), box
        case = (image.shape, box.tolist(), policy)
        np.testing.assert_array_equal(c_crop(lib, image, HWC_TO_HWC, rounded, policy), expected, err_msg=str(case))
        np.testing.assert_array_equal(c_crop(lib, image, HWC_TO_CHW, rounded, policy), expected.transpose(2, 0, 1),
                                      err_msg=str(case))
        np.testing.assert_array_equal(c_crop(lib, image, CHW_TO_CHW, rounded, policy), expected.transpose(2, 0, 1),
                                      err_msg=str(case))
        np.testing.assert_array_equal(c_crop(lib, image, CHW_TO_HWC, rounded, policy), expected, err_msg=str(case))


def test_c_crop_of_a_grey_image_is_crop_face_of_the_2d_array(lib):
    image = np.random.default_rng(7).integers(0, 256, (37, 53), dtype=np.uint8)
    policy = CropPolicy(size=112, margin_permille=250)
    expected = crop_face(image, (10.4, -3.5, 40.6, 30.5), policy)
    assert expected.shape == (112, 112)
    got = c_crop(lib, image[:, :, None], HWC_TO_HWC, rounded_box((10.4, -3.5, 40.6, 30.5)), policy)
    np.testing.assert_array_equal(got[:, :, 0], expected)


@pytest.mark.parametrize("box", [(0, 0, 1, 1), (5, 7, 5, 7), (9, 9, 2, 3), (-2**31, -2**31, 2**31 - 1, 2**31 - 1),
                                 (2**31 - 2, 0, 2**31 - 1, 1), (-2**31, 3, -2**31 + 1, 4)])
def test_c_crop_of_integer_boxes_at_the_ends_of_int_range(lib, box):
    image = np.random.default_rng(3).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    policy = CropPolicy(size=4, margin_permille=2000)
    np.testing.assert_array_equal(c_crop(lib, image, HWC_TO_HWC, box, policy), crop_face(image, box, policy))


@pytest.mark.parametrize("change", [{"width": 0}, {"height": 0}, {"channels": 0}, {"layout": 4}, {"size": 3},
                                    {"margin": -1}, {"margin": 2001}])
def test_c_crop_refuses_what_crop_policy_refuses_and_leaves_the_output(lib, change):
    args = {"width": 4, "height": 4, "channels": 3, "layout": HWC_TO_HWC, "margin": 250, "size": 4} | change
    image = np.zeros(4 * 4 * 3, np.uint8)
    out = np.full(4 * 4 * 3, 7, np.uint8)
    assert lib.face_crop(image.ctypes.data_as(U8P), args["width"], args["height"], args["channels"], args["layout"],
                         Box(0, 0, 2, 2), args["margin"], args["size"], out.ctypes.data_as(U8P)) == -1
    assert (out == 7).all()


def float32_coordinates(seed: int) -> np.ndarray:
    """Float32 values boxes can take, dense around the ties: k + 1/2 and its neighbours, +-0.5, tiny, near 2^20."""
    rng = np.random.default_rng(seed)
    halves = np.concatenate([rng.integers(-2**20, 2**20, 2000), np.arange(-4, 5)]).astype(np.float32) + np.float32(0.5)
    halves = halves[np.abs(halves) < 2**20]
    edges = np.array([0.5, -0.5, 1e-30, -1e-30, 1e-45, -1e-45, 0.0, -0.0, 2**20 - 0.5, -(2**20) + 0.5,
                      np.nextafter(np.float32(2**20), np.float32(0))], np.float32)
    up = down = np.concatenate([halves, edges])
    near = [up]
    for _ in range(3):  # the three float32 values either side of each
        up, down = np.nextafter(up, np.float32(np.inf)), np.nextafter(down, np.float32(-np.inf))
        near += [up, down]
    spread = rng.uniform(-2**20, 2**20, 4000).astype(np.float32)
    small = rng.uniform(-4, 4, 4000).astype(np.float32)
    values = np.concatenate([*near, spread, small])
    return values[np.abs(values) < 2**20]


def test_c_box_rounding_equals_rounded_box_on_float32_and_is_exact_half_up(lib):
    values = float32_coordinates(seed=11)
    rng = np.random.default_rng(12)
    assert len(values) > 10000
    for box in rng.permutation(values)[: len(values) // 4 * 4].reshape(-1, 4):
        assert c_round_box(lib, box) == rounded_box(tuple(box)), box.tolist()
    for v in values[:4000]:
        x1 = rounded_box((v, 0.0, 2.0**21, 1.0))[0]
        assert x1 == math.floor(Fraction(float(v)) + Fraction(1, 2)), float(v)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 2.0**20, -(2.0**20), 3e9])
def test_c_box_rounding_refuses_non_finite_and_far_coordinates(lib, bad):
    for k in range(4):
        box = np.array([1.0, 2.0, 30.0, 40.0])
        box[k] = bad
        assert c_round_box(lib, box) is None


@pytest.mark.parametrize("value", [0.49999999999999994, -0.5000000000000001, 2.0**52 + 1, 2.0**53 - 1, -(2.0**52) - 1,
                                   2.5, -2.5, -0.5, 0.5])
def test_python_rounded_box_is_exact_half_up_on_float64(value):
    # floor(x + 0.5) evaluated in float64 rounds the sum first: 0.49999999999999994 gave 1, 2^52 + 1 gave 2^52 + 2
    assert rounded_box((value, value, value + 2.0**54, value + 2.0**54))[:2] == (
        (math.floor(Fraction(value) + Fraction(1, 2)),) * 2)


@pytest.mark.skipif(shutil.which(RISCV_GCC) is None,
                    reason=f"{RISCV_GCC} not installed (apt: gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf)")
@pytest.mark.parametrize("abi", RISCV_ABIS, ids=lambda abi: abi[1])
def test_face_crop_compiles_cleanly_for_the_rtthread_boards(tmp_path: Path, abi):
    cmd = [RISCV_GCC, *abi, "-mcmodel=medany", "--specs=picolibc.specs", "-std=c99", "-O2", "-ffp-contract=off",
           "-Wall", "-Wextra", "-Werror", "-pedantic", "-c", str(FACE_CROP), "-o", str(tmp_path / "face_crop.o")]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    symbols = subprocess.run(["riscv64-unknown-elf-nm", "-u", str(tmp_path / "face_crop.o")], capture_output=True,
                             text=True)
    if symbols.returncode == 0:  # no libm or libc calls: plain integer code (and float compares) only
        assert symbols.stdout.strip() == "", symbols.stdout


@pytest.mark.parametrize(("size", "channels"), [(4, 3), (7, 3), (112, 3), (5, 1)])
def test_the_c_mirror_of_a_planar_crop_is_crop_py_mirrored(lib, size, channels):
    """face_crop_mirror, in place on the KPU's planar input, gives the planar layout of mirrored(crop): odd and even
    sides (the middle column stays)."""
    crop = np.random.default_rng(size).integers(0, 256, (size, size, channels), dtype=np.uint8)
    planar = crop.transpose(2, 0, 1).copy()  # a copy: with one channel the transpose is already contiguous
    lib.face_crop_mirror(planar.ctypes.data_as(U8P), channels, size)
    assert np.array_equal(planar, mirrored(crop).transpose(2, 0, 1))
