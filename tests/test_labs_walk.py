"""CI walks every lab of the course on its fast path, as a student would: `invoke lab N --fast`, each step's
command exactly as the lab prints it, then `invoke lab-check N --fast`, which must score 100/100. The labs share
one build folder and run in order (labs 4, 6 and 7 continue from lab 3's detector), so a change that breaks a
lab's commands or its checks fails here. Lab 8 is the classroom attendance path end to end (`invoke build flash
--board sim` on an attendance config: two models trained, compiled and built into real RT-Thread, the class
enrolled, firmware + kmodels + database flashed through the ISP, a session named on the booted board), with its
own assertions below."""

from __future__ import annotations

import csv
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from labs.course import LABS, render_command
from labs.subsets import STUDENTS, VAL_PHOTOS
from tests.conftest import rtthread_root, shared_path
from tests.test_end_to_end import invoke, needs_tools

pytest.importorskip("tensorflow")


@contextmanager
def build_root(root: Path) -> Iterator[None]:
    before = os.environ.get("PIPELINE_BUILD_ROOT")
    os.environ["PIPELINE_BUILD_ROOT"] = str(root)
    try:
        yield
    finally:
        if before is None:
            del os.environ["PIPELINE_BUILD_ROOT"]
        else:
            os.environ["PIPELINE_BUILD_ROOT"] = before


@pytest.fixture(scope="module")
def walked(tmp_path_factory):
    """walk(N): lab N prepared, its steps run and checked once per module, in the shared build folder."""
    rtthread_root()
    shared_path("facemask")
    root = tmp_path_factory.mktemp("labs") / "build"
    done: dict[int, dict[str, subprocess.CompletedProcess]] = {}

    def walk(number: int) -> dict[str, subprocess.CompletedProcess]:
        if number not in done:
            runs = {"prepare": invoke(["lab", str(number), "--fast"], root, timeout=1800)}
            assert runs["prepare"].returncode == 0, runs["prepare"].stdout[-3000:] + runs["prepare"].stderr[-3000:]
            with build_root(root):
                commands = [render_command(step.command, fast=True) for step in LABS[number].steps]
            for index, command in enumerate(commands, 1):
                runs[f"step {index}"] = run = invoke(command.split()[1:], root, timeout=1800)
                assert run.returncode == 0, f"lab {number} step {index} `{command}`:\n{run.stdout[-3000:]}" \
                                            f"\n{run.stderr[-3000:]}"
            runs["check"] = invoke(["lab-check", str(number), "--fast"], root)
            done[number] = runs
        return done[number]

    walk.root = root
    return walk


@needs_tools
@pytest.mark.parametrize("number", sorted(LABS))
def test_the_lab_walks_on_its_fast_path_and_scores_100(number, walked):
    check = walked(number)["check"]
    assert check.returncode == 0 and f"lab {number} (fast path): 100/100" in check.stdout, check.stdout + check.stderr


@needs_tools
def test_lab_8_names_the_session_on_the_simulated_board_as_the_python_twin_decides(walked):
    runs = walked(8)
    out = walked.root / "lab_classroom" / "attendance"
    report = json.loads((out / "session.json").read_text())["report"]
    assert report["board"] == "sim"
    assert report["frames"] == STUDENTS * VAL_PHOTOS + 2 and report["enrolled_photos"] == STUDENTS * VAL_PHOTOS
    assert report["agree_with_python"] == report["frames"]  # every frame: the same faces, crops and names
    assert report["faces"] > 0, "the tiny detector found no face in the session"
    assert "the firmware agrees with the Python twin on" in runs["step 1"].stdout
    students = json.loads((walked.root / "lab_classroom" / "manifest.json").read_text())["stages"]
    with open(out / "attendance.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and students["enroll"]["metrics"]["people"] >= 1
    assert (out / "contact_sheet.png").stat().st_size > 1000


@needs_tools
def test_lab_8_reads_the_enrolled_students_back_from_the_flashed_database(walked):
    listed = walked(8)["step 2"].stdout
    manifest = json.loads((walked.root / "lab_classroom" / "manifest.json").read_text())
    enrolled = manifest["stages"]["enroll"]["metrics"]["people"]
    students = yaml.safe_load((walked.root / "labs" / "lab_classroom.yaml").read_text())["dataset"]["classes"]
    assert enrolled >= 1
    for name in students[:enrolled]:
        assert f"  {name}: " in listed, listed
    assert "slot 0: valid (sequence 1)" in listed
