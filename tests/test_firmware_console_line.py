"""Console output that real RT-Thread can print: firmware/app/console_line.c writes decimals as printf's %.Nf would
(without rt_kprintf's missing %f), and the host shim behaves like the real rt_kprintf (no float conversions: it
aborts; each call cut at RT_CONSOLEBUF_SIZE), so host tests catch what would break on the board."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from deploy.firmware.boards import FIRMWARE_DIR, HOST, PORT_DIR

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed (invoke setup)")
VALUES = ["0", "0.5", "0.9671626", "-0.0004", "-1.25", "255.58449", "1e-7", "123456.7891", "0.0005", "-7.9995"]


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("console") / "console_line_check"
    sources = [Path(__file__).parent / "c" / "console_line_check.c", FIRMWARE_DIR / "app" / "console_line.c",
               PORT_DIR / "common" / "rt_port_core.c"]
    cmd = [HOST.cc, *HOST.cflags, f"-I{PORT_DIR}", f"-I{FIRMWARE_DIR / 'app'}", *map(str, sources), "-o", str(out),
           "-lm"]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return out


@pytest.mark.parametrize("decimals", [0, 3, 6])
def test_decimals_are_the_nearest_with_the_digits_asked_for(program, decimals):
    printed = subprocess.run([str(program), str(decimals), *VALUES], capture_output=True, text=True, check=True)
    unit = 10.0 ** -decimals
    for value, line in zip(VALUES, printed.stdout.splitlines(), strict=True):
        assert abs(float(line) - float(value)) <= unit / 2 * (1 + 1e-9), (value, line)
        if abs(float(value) / unit - round(float(value) / unit)) != 0.5:  # printf rounds exact ties to even
            assert float(line) == float(f"{float(value):.{decimals}f}"), (value, line)
        assert line.split(".")[1:] == ([] if decimals == 0 else [line.split(".")[1]])
        assert decimals == 0 or len(line.split(".")[1]) == decimals


def test_shim_rt_kprintf_refuses_float_conversions_like_the_kernel_cannot_print_them(program):
    done = subprocess.run([str(program), "--kprintf-float"], capture_output=True, text=True)
    assert done.returncode != 0 and "no floating-point conversion %f" in done.stderr


def test_shim_rt_kprintf_cuts_each_call_at_the_console_buffer(program):
    done = subprocess.run([str(program), "--kprintf-long"], capture_output=True, text=True, check=True)
    assert done.stdout == "x" * 127  # RT_CONSOLEBUF_SIZE 128 (bsp/k210): 127 characters, the newline is cut too
