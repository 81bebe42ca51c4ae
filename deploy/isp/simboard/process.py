"""Start the simulated board as its own process and hand back its rfc2217:// URL; stop it afterwards."""

from __future__ import annotations

import contextlib
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from deploy.isp.simboard.flash_memory import check_flash_file
from deploy.isp.simboard.options import SimOptions
from pipeline.config import REPO_ROOT
from pipeline.errors import PipelineError

STARTUP_S = 20.0


@contextlib.contextmanager
def running_simboard(flash_path: Path, options: SimOptions | None = None) -> Iterator[str]:
    """Run `python -m deploy.isp.simboard` on `flash_path`; yields its URL; its stderr goes to <flash>.simboard.log."""
    flash_path = Path(flash_path)
    check_flash_file(flash_path)
    flash_path.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "deploy.isp.simboard", "--flash", str(flash_path),
               *(options or SimOptions()).as_args()]
    with open(flash_path.with_name(flash_path.name + ".simboard.log"), "w") as errors:
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=errors, text=True)
        try:
            ready, _, _ = select.select([process.stdout], [], [], STARTUP_S)
            line = process.stdout.readline().strip() if ready else ""
            if not line.startswith("rfc2217://"):
                raise PipelineError(f"the simulated board did not start (exit code {process.poll()})",
                                    path=errors.name, expected="an rfc2217:// URL on its first output line")
            yield line
        finally:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
            process.stdout.close()
