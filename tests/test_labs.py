"""The course's bookkeeping, without running a lab: every lab has a page quoting its exact commands, its checks
add up to 100 points, its configs load, and a student who skipped a step is told which one."""

from __future__ import annotations

import pytest

from labs.course import LABS, config_builders, render_command
from labs.prepare import prepare
from labs.score import check_lab
from pipeline.config import REPO_ROOT, load_config
from pipeline.errors import PipelineError


@pytest.fixture
def empty_build(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_BUILD_ROOT", str(tmp_path / "build"))
    return tmp_path / "build"


def test_there_are_eight_labs_numbered_one_to_eight():
    assert sorted(LABS) == list(range(1, 9))


@pytest.mark.parametrize("number", sorted(LABS))
def test_each_lab_page_quotes_every_command_of_the_lab(number, monkeypatch):
    monkeypatch.delenv("PIPELINE_BUILD_ROOT", raising=False)
    lab = LABS[number]
    page = (REPO_ROOT / lab.doc).read_text(encoding="utf-8")
    for heading in ("## Goals", "## Time plan (90 minutes)", "## Steps", "## What to look at", "## Questions",
                    "## Extension", "## Teacher notes"):
        assert heading in page, f"{lab.doc} has no '{heading}' section"
    assert f"invoke lab {number}\n" in page and f"invoke lab-check {number}\n" in page
    for step in lab.steps:
        assert render_command(step.command, fast=False) in page, f"{lab.doc} does not show `{step.command}`"
    questions = page.split("## Questions")[1].split("\n## ")[0]
    numbered = [line for line in questions.splitlines() if line[:1].isdigit() and ". " in line[:4]]
    assert 3 <= len(numbered) <= 5, f"{lab.doc} asks {len(numbered)} questions"


@pytest.mark.parametrize("number", sorted(LABS))
def test_each_labs_checks_add_up_to_100_points_and_name_real_steps(number):
    lab = LABS[number]
    assert sum(check.points for check in lab.checks) == 100
    assert all(1 <= check.step <= len(lab.steps) for check in lab.checks)


@pytest.mark.parametrize("fast", [False, True])
def test_every_lab_config_is_a_valid_pipeline_config(fast, empty_build, tmp_path):
    subsets = {"classroom": tmp_path / "classroom", "students": ["id7201", "id7203"],
               "identities": tmp_path / "faces"}
    from labs.workspace import write_config, written_by_lab

    for name, build in config_builders(fast, subsets).items():
        if written_by_lab(name, fast):
            path = write_config(name, build(), "test")
            assert load_config(path).name == name


def test_a_student_who_skipped_the_steps_is_told_which_step_is_missing(empty_build):
    result = check_lab(3, fast=True)
    assert result.score == 0
    text = result.text()
    assert "lab 3 (fast path): 0/100" in text
    assert "step 1 not done (`invoke train --config" in text and "no finished `train` stage" in text
    assert "step 2 not done (`invoke eval --config" in text and "eval.json does not exist" in text


def test_the_fast_path_skips_only_the_bars_that_need_full_training():
    full_only = {(n, c.what) for n, lab in LABS.items() for c in lab.checks if c.full_only}
    assert full_only and all(n == 8 for n, _ in full_only)


def test_an_unknown_lab_is_refused_with_the_labs_there_are(empty_build):
    with pytest.raises(PipelineError, match=r"there is no lab 9.*one of \[1, 2, 3, 4, 5, 6, 7, 8\]"):
        prepare(9)


def test_preparing_a_lab_writes_its_configs_and_prints_its_steps(empty_build):
    plan = prepare(2, fast=True)
    assert (empty_build / "labs" / "lab_data.yaml").is_file()
    assert "1. invoke data --config" in plan and "then: invoke lab-check 2 --fast" in plan
    assert plan.count("\n    ") >= 2 * len(LABS[2].steps)
