"""A noisy, lossy, stalling or vanishing line: the flash either completes with exactly the right bytes or fails
with a clear error. Never a success with wrong bytes (checked on the simulated board's flash image)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from deploy.isp.image import firmware_image
from pipeline.errors import PipelineError
from tests.conftest import FAST_SIM, assert_flash_holds, flash_sim


def _run(tmp_path: Path, sim_changes: dict, dialect: str = "vowstar") -> tuple[str, dict[int, bytes]]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    firmware, kmodel = os.urandom(600), os.urandom(300)
    (tmp_path / "fw.bin").write_bytes(firmware)
    (tmp_path / "m.kmodel").write_bytes(kmodel)
    expected = {0: firmware_image(firmware), 0x300000: kmodel}
    sim = dataclasses.replace(FAST_SIM, personality=dialect, **sim_changes)
    try:
        flash_sim(tmp_path / "build", sim=sim, dialect=dialect, stub_size=256, image=tmp_path / "fw.bin",
                  kmodel=tmp_path / "m.kmodel")
    except PipelineError as error:
        assert str(error), "a failure must say what went wrong"
        return "failed", expected
    assert_flash_holds(tmp_path / "build" / "sim_flash.img", expected)
    return "ok", expected


def _corruption_runs(tmp_path: Path, seeds: range, dialect: str, rate: float = 0.01) -> list[str]:
    return [_run(tmp_path / f"seed{seed}", {"corrupt_in": rate, "corrupt_out": rate, "seed": seed}, dialect)[0]
            for seed in seeds]


def test_one_percent_corruption_both_ways(tmp_path: Path) -> None:
    outcomes = _corruption_runs(tmp_path, range(4), "vowstar")
    assert outcomes.count("ok") >= 1, outcomes  # small adaptive frames get through a 1 % noisy line


def test_one_percent_corruption_with_sector_frames_fails_clearly(tmp_path: Path) -> None:
    """4 KiB frames (ktool dialect) essentially never cross a 1 % noisy line intact: a clean failure is expected."""
    assert _corruption_runs(tmp_path, range(1), "ktool") == ["failed"]


@pytest.mark.slow
@pytest.mark.parametrize(("dialect", "rate"), [("vowstar", 0.01), ("ktool", 0.0002)])
def test_corruption_many_seeds(tmp_path: Path, dialect: str, rate: float) -> None:
    """30 seeded runs each; every success was checked byte for byte inside _run; most runs must get through."""
    outcomes = _corruption_runs(tmp_path, range(100, 130), dialect, rate)
    assert outcomes.count("ok") >= 20, outcomes


@pytest.mark.parametrize("faults", [
    {"drop_reply": 0.05, "seed": 1},
    {"stall_rate": 0.05, "stall_s": 0.03, "seed": 2},  # replies later than the timeout must not ack the next frame
    {"busy_replies": 5, "drop_reply": 0.02, "seed": 3},
    {"junk_rate": 0.05, "wrong_greetings": 2, "seed": 4},  # noise with END bytes; an application-like greeting
])
def test_lost_and_late_replies_recovered(tmp_path: Path, faults: dict) -> None:
    assert _run(tmp_path, faults)[0] == "ok"


def test_disconnect_is_a_clear_failure(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="serial connection|not acknowledged|failed"):
        flash_sim(tmp_path / "build", sim=dataclasses.replace(FAST_SIM, disconnect_after=6), stub_size=4096,
                  kmodel=_write(tmp_path / "m.kmodel", os.urandom(4096)))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
