"""firmware/app/letterbox.c, the detector's preprocessing on the board, against its Python twin letterbox_input
(deploy/firmware/camera_frames.py, what `invoke eval` feeds the kmodel): the same geometry and the same input bytes for
frames wider, taller, smaller and larger than the input, interleaved and planar, and the same box mapping back."""

from __future__ import annotations

import ctypes
import shutil
import subprocess

import numpy as np
import pytest

from deploy.firmware.boards import FIRMWARE_DIR, HOST
from deploy.firmware.camera_frames import boxes_to_frame, letterbox_input
from models.letterbox import letterbox_fit

LETTERBOX = FIRMWARE_DIR / "app" / "letterbox.c"
U8P = ctypes.POINTER(ctypes.c_uint8)
FRAME_SIZES = [(320, 240), (400, 225), (267, 400), (160, 128), (1, 1), (7, 300), (300, 7), (1280, 720), (33, 17)]
INPUT_SIZES = [(320, 256), (160, 128), (224, 224)]


class Box(ctypes.Structure):
    _fields_ = [("width", ctypes.c_uint32), ("height", ctypes.c_uint32), ("pad_x", ctypes.c_uint32),
                ("pad_y", ctypes.c_uint32)]


@pytest.fixture(scope="module")
def lib(tmp_path_factory) -> ctypes.CDLL:
    if shutil.which(HOST.cc) is None:
        pytest.skip(f"{HOST.cc} not installed (invoke setup)")
    out = tmp_path_factory.mktemp("letterbox") / "libletterbox.so"
    subprocess.run([HOST.cc, *HOST.cflags, "-shared", "-fPIC", str(LETTERBOX), "-o", str(out)], check=True,
                   capture_output=True, text=True)
    so = ctypes.CDLL(str(out))
    so.letterbox_fit.restype = Box
    so.letterbox_fit.argtypes = [ctypes.c_uint32] * 4
    so.letterbox_frame.restype = None
    so.letterbox_frame.argtypes = [U8P, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_int, ctypes.POINTER(Box),
                                   ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint8, U8P]
    so.letterbox_to_frame.restype = ctypes.c_float
    so.letterbox_to_frame.argtypes = [ctypes.c_float] + [ctypes.c_uint32] * 4
    return so


def c_letterbox(lib: ctypes.CDLL, frame: np.ndarray, input_size: tuple[int, int], fill: int, planar: bool):
    height, width = frame.shape[:2]
    box = lib.letterbox_fit(width, height, *input_size)
    source = np.ascontiguousarray(frame.transpose(2, 0, 1) if planar else frame)
    out = np.zeros((3, input_size[1], input_size[0]), np.uint8)
    lib.letterbox_frame(source.ctypes.data_as(U8P), width, height, int(planar), ctypes.byref(box), *input_size, 3,
                        fill, out.ctypes.data_as(U8P))
    return box, out


@pytest.mark.parametrize("input_size", INPUT_SIZES)
@pytest.mark.parametrize("frame_size", FRAME_SIZES)
def test_the_c_letterbox_makes_the_bytes_of_its_python_twin(lib, frame_size, input_size):
    rng = np.random.default_rng(frame_size[0] * 7 + frame_size[1])
    frame = rng.integers(0, 256, (frame_size[1], frame_size[0], 3), dtype=np.uint8)
    fill = int(rng.integers(0, 256))
    want = letterbox_input(frame, input_size, fill)
    fit = letterbox_fit(frame_size, input_size)
    for planar in (False, True):
        box, got = c_letterbox(lib, frame, input_size, fill, planar)
        assert (box.width, box.height, box.pad_x, box.pad_y) == (fit.width, fit.height, fit.pad_x, fit.pad_y)
        np.testing.assert_array_equal(got, want)


def test_boxes_map_back_to_the_frame_as_in_python(lib):
    frame_size, input_size = (400, 225), (320, 256)
    fit = letterbox_fit(frame_size, input_size)
    boxes = np.random.default_rng(1).random((20, 4), dtype=np.float32)
    want = boxes_to_frame(boxes, frame_size, input_size)
    got = np.array([[lib.letterbox_to_frame(float(v), input_size[k % 2], (fit.pad_x, fit.pad_y)[k % 2],
                                            (fit.width, fit.height)[k % 2], frame_size[k % 2])
                     for k, v in enumerate(row)] for row in boxes], np.float32)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)


def test_the_c_filter_uses_the_python_weight_precision():
    from models.letterbox import WEIGHT_BITS

    assert f"#define LETTERBOX_WEIGHT_BITS {WEIGHT_BITS} " in LETTERBOX.read_text()
