"""The board given once on an invoke command line reaches every task of it."""

import pytest

from pipeline.errors import PipelineError
from pipeline.invocation import board_for_task, flag_values


def test_flag_values_both_spellings():
    assert flag_values(["invoke", "build", "flash", "--board", "k210"], "--board") == ["k210"]
    assert flag_values(["invoke", "build", "--board=qemu", "run"], "--board") == ["qemu"]
    assert flag_values(["invoke", "build"], "--board") == []


def test_board_for_task():
    argv = ["invoke", "build", "flash", "--board", "k210"]
    assert board_for_task(None, argv) == "k210"  # build sees flash's board
    assert board_for_task("k210", argv) == "k210"
    assert board_for_task(None, ["invoke", "build"]) is None
    with pytest.raises(PipelineError, match="conflicting --board values"):
        board_for_task("sim", argv)


def test_tasks_named():
    from pipeline.invocation import tasks_named

    assert tasks_named(["invoke", "build", "flash", "--board", "k210"], {"flash", "run"}) == {"flash"}


def test_config_and_settings_reach_every_task():
    from pipeline.invocation import shared_settings, shared_value

    argv = ["invoke", "build", "flash", "--config", "configs/facemask.yaml", "--set", "train.epochs=2"]
    assert shared_value(None, argv, "--config") == "configs/facemask.yaml"
    assert shared_settings(None, argv) == ["train.epochs=2"]
    assert shared_settings(["train.epochs=3"], argv) == ["train.epochs=2", "train.epochs=3"]  # own last: it wins
    with pytest.raises(PipelineError, match="conflicting --config"):
        shared_value("configs/demo.yaml", argv, "--config")
