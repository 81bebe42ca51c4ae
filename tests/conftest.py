"""What the tests share: the real data in ../shared/data (skip with a reason where a clone does not have it), the
real RT-Thread tree, running a task as a user does and checking it refused cleanly, the flasher tests' fast timing
and flash-image checks, a tiny identity set for the recognizer tests. The KPU test models are in kpu_models.py."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from invoke import Collection, Program

import tasks
from deploy.isp.flasher import FlashSummary, flash_artifacts
from deploy.isp.image import FLASH_SIZE
from deploy.isp.link import Timing
from deploy.isp.simboard.options import SimOptions
from labs.subsets import RECOGNIZER_IMAGES, identity_subset
from pipeline.config import REPO_ROOT, SHARED_DATA
from pipeline.lock import LOCK_NAME


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data; the calling test is skipped with a clear reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not present at {path} (it ships beside the repo in CI, not in a user's clone)")
    return path


def rtthread_root() -> Path:
    """The real RT-Thread 5.0.1 tree in ../shared/rtthread; the calling test is skipped with a reason without it."""
    from deploy.firmware.rtthread_tree import SHARED_RTT_ROOT

    if not (SHARED_RTT_ROOT / "include" / "rtdef.h").is_file():
        pytest.skip(f"the real RT-Thread tree is not present at {SHARED_RTT_ROOT} (it ships beside the repo in CI)")
    return SHARED_RTT_ROOT


# --- running a task the way a user does, for the hostile-input tests: exit code 2, one line naming the ---
# --- file/field/expectation, no traceback, nothing changed in build/                                  ---

@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str


def snapshot(root: Path) -> dict[str, str]:
    """Every file below `root` (the lock file aside, it is no artifact) with its content hash."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != LOCK_NAME}


def run_in_process(args: list[str], build_root: Path, monkeypatch) -> Outcome:
    """`invoke <args>` through invoke's Program API in this process (fast), with build/ at `build_root`."""
    argv = ["invoke", *args]
    monkeypatch.setenv("PIPELINE_BUILD_ROOT", str(build_root))
    monkeypatch.setattr(sys, "argv", argv)
    program = Program(namespace=Collection.from_module(tasks), version="test")
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            program.run(argv, exit=True)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return Outcome(code, out.getvalue(), err.getvalue())


def run_subprocess(args: list[str], build_root: Path, timeout: float = 120) -> Outcome:
    """`python -m invoke <args>` as a user runs it, with build/ at `build_root`."""
    env = dict(os.environ, PIPELINE_BUILD_ROOT=str(build_root))
    done = subprocess.run([sys.executable, "-m", "invoke", *args], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
    return Outcome(done.returncode, done.stdout, done.stderr)


def assert_refused(outcome: Outcome, *words: str) -> str:
    """Exit code 2 and exactly one `error:` line on stderr containing every one of `words`; no traceback."""
    assert outcome.code == 2, (outcome.code, outcome.stderr[-2000:])
    assert "Traceback" not in outcome.stderr + outcome.stdout, outcome.stderr[-2000:]
    errors = [line for line in outcome.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, outcome.stderr
    for word in words:
        assert word in errors[0], (word, errors[0])
    return errors[0]


# --- the flasher tests: fast timing, dummy flash-stage programs, and checks on a flash image ---

FAST_TIMING = Timing(reply_base_s=0.01, program_s_per_64k=0.05, greeting_s=0.15, boot_wait_s=0.0,
                     busy_backoff_s=0.005, baud_settle_s=0.0, greeting_rounds=3)
FAST_SIM = SimOptions(idle_timeout_s=30).fast()


def dummy_program(folder: Path, size: int = 1500) -> Path:
    """A random stand-in for the flash-stage program (the simulated board accepts any bytes)."""
    path = folder / "dummy_stub.bin"
    path.write_bytes(os.urandom(size))
    return path


def flash_sim(build_dir: Path, *, sim: SimOptions = FAST_SIM, dialect: str = "vowstar", baud: int = 1_500_000,
              board_type: str = "generic", stub_size: int = 1500, **artifacts: Path) -> FlashSummary:
    build_dir.mkdir(parents=True, exist_ok=True)
    return flash_artifacts(build_dir=build_dir, board="sim", board_type=board_type, baud=baud,
                           isp_prog=dummy_program(build_dir, stub_size), stub_dialect=dialect, sim_options=sim,
                           timing=FAST_TIMING, say=lambda _line: None, show_progress=False, **artifacts)


def assert_flash_holds(flash_image: Path, expected: dict[int, bytes]) -> None:
    """Every expected range holds exactly its bytes and every other byte of the 16 MiB is still erased (0xFF)."""
    flash = flash_image.read_bytes()
    assert len(flash) == FLASH_SIZE
    reference = bytearray(b"\xff" * FLASH_SIZE)
    for address, data in expected.items():
        assert flash[address:address + len(data)] == data, f"bytes differ at 0x{address:X}"
        reference[address:address + len(data)] = data
    assert flash == bytes(reference), "bytes outside the written ranges changed"


# A tiny identity set and recognizer config (real CelebA-299 faces) for the recognizer's train and prune tests
IMAGES = RECOGNIZER_IMAGES  # per identity
TINY = {"dataset": {"format": "folders"},
        "model": {"task": "recognizer", "family": "mobilefacenet", "width": 0.125, "min_channels": 8,
                  "input_size": [128, 128]},
        "recognizer": {"loss": "cosface", "margin": 0.35, "scale": 30.0, "val_identities": 3,
                       "stranger_identities": 3},
        "train": {"epochs": 1, "batch_size": 8, "warmup_epochs": 0, "quiet": True}}


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    """The lab 8 fast path's identity set (12 CelebA-299 people, none a classroom student, x 4 images with their
    boxes.csv rows), copied into a temp folder."""
    shared_path("celeba299")
    shared_path("classroom")
    return identity_subset(tmp_path_factory.mktemp("faces") / "celeba")


def tiny_recognizer_config(tmp_path: Path, faces: Path, name: str = "rec", **recognizer) -> Path:
    values = {section: dict(body) for section, body in TINY.items()}
    values["dataset"]["train"] = str(faces)
    values["recognizer"].update(recognizer)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path
