"""Run the upstream kflash tool (PyPI) against a pyserial URL, for the conformance test and the benchmark. kflash
opens ports with serial.Serial(port=...), which cannot take URLs, so the child process routes that call through
serial.serial_for_url; nothing else of kflash is changed."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from pipeline.errors import PipelineError

_RUNNER = (
    "import sys, serial\n"
    "serial.Serial = lambda port=None, **kw: serial.serial_for_url(port, **kw)\n"
    "import kflash\n"
    "sys.argv = ['kflash', *sys.argv[1:]]\n"
    "kflash.main()\n"
)


def kflash_available() -> bool:
    return importlib.util.find_spec("kflash") is not None


def run_kflash(url: str, firmware: Path, *, baud: int = 1_500_000, board: str = "dan",
               timeout_s: float = 600.0) -> subprocess.CompletedProcess:
    """`kflash -p URL -b BAUD -B BOARD FIRMWARE` (a .bin or .kfpkg); output captured, never raises on failure."""
    if not kflash_available():
        raise PipelineError("the kflash package is not installed", expected="`pip install kflash==1.1.6`")
    command = [sys.executable, "-c", _RUNNER, "-p", url, "-b", str(baud), "-B", board, "-n", str(firmware)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
