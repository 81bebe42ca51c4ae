"""The pipeline as Invoke tasks: face photos -> trained model -> uint8 TFLite -> K210 kmodel -> firmware -> board.

Every task reads `--config configs/<name>.yaml` (default configs/demo.yaml); flags override config values;
artifacts go to build/<config>/ with a manifest.json; a stage whose inputs are unchanged is skipped
(--force re-runs it). Tasks only parse flags and call one stage function.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

from invoke import task

from pipeline.config import load_config
from pipeline.errors import PipelineError

CONFIG_HELP = "pipeline config YAML (default configs/demo.yaml)"
FORCE_HELP = "re-run the stage even if its inputs are unchanged"


def reports_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Print a PipelineError as one clear line and exit 2 instead of a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PipelineError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper


@task(help={"check": "only report what is missing; install nothing"})
@reports_errors
def setup(c, check=False):
    """Install the system tools later stages need (gcc, RISC-V gcc + picolibc, QEMU) via apt when missing."""
    from pipeline.system_tools import ensure_system_tools

    ensure_system_tools(install=not check)


@task(help={"slow": "also run tests marked slow", "k": "only tests matching this pytest -k expression"})
def test(c, slow=False, k=None):
    """Run the test suite (pytest); the default suite skips tests marked slow."""
    marker = "" if slow else '-m "not slow"'
    select = f'-k "{k}"' if k else ""
    c.run(f"{sys.executable} -m pytest -q {marker} {select}", pty=False)


@task(help={"config": "only clean this config's build folder (default: all of build/)"})
def clean(c, config=None):
    """Delete build artifacts."""
    import shutil

    from pipeline.config import REPO_ROOT

    target = load_config(config).build_dir if config else REPO_ROOT / "build"
    shutil.rmtree(target, ignore_errors=True)
    print(f"removed {target}")
