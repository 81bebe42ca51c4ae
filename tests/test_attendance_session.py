"""The attendance session's host-side logic: the threshold tuned on impostors, the report, attendance rows."""

from __future__ import annotations

import numpy as np
import pytest

from deploy.attendance.matching import PERMYRIAD, decide, similarity, to_units
from deploy.attendance.people import Photo
from deploy.attendance.recognize import Face
from deploy.attendance.session import FrameCheck, attendance_rows, rejecting_threshold, session_report


@pytest.mark.parametrize("target", [0.5, 0.9, 0.95, 1.0])
def test_the_tuned_threshold_rejects_at_least_the_target_share(target):
    rng = np.random.default_rng(3)
    sims = list(rng.uniform(0.5, 0.99, size=37))
    threshold = rejecting_threshold(sims, target)
    rejected = sum(s * PERMYRIAD < threshold for s in sims) / len(sims)
    assert rejected >= target
    assert threshold == 1 + int(np.floor(sorted(sims)[int(np.ceil(target * 37)) - 1] * PERMYRIAD))  # the lowest


def test_decisions_follow_the_threshold_and_name_the_first_of_equals():
    a = to_units(np.array([0.6, 0.8, 0.0], np.float32))
    b = to_units(np.array([0.0, 0.6, 0.8], np.float32))
    face = to_units(np.array([0.6, 0.8, 0.0], np.float32))
    assert similarity(face, a) == pytest.approx(1.0)
    assert decide(face, ["a", "b"], [a, b], 9999).name == "a"
    assert decide(face, ["a", "a2"], [a, a], 10000).name == "a"  # ties: the first
    assert decide(to_units(np.array([0.0, 0.0, 1.0], np.float32)), ["a"], [a], 5000).name == "unknown"
    assert decide(face, [], [], 0).name == "unknown"


def _check(person, faces, stranger=False):
    expected = [(Face(tuple(f["box"]), f["score"], tuple(f["crop"]), np.zeros(3, np.int16)), f["name"],
                 f["similarity"], f["best"]) for f in faces]
    return FrameCheck(Photo(None, person, stranger), faces, expected)


def _face(name, sim, box=(0, 0, 10, 10), best=None):
    return {"box": list(box), "crop": list(box), "score": 0.9, "name": name, "similarity": sim, "best": best or name}


def test_the_report_counts_top1_by_the_largest_face_and_strangers_by_any_name():
    checks = [_check("ann", [_face("ann", 0.99, (0, 0, 50, 50)), _face("bob", 0.98)]),
              _check("bob", [_face("unknown", 0.5, best="bob")]),
              _check("cat", []),
              _check(None, [_face("unknown", 0.4, best="ann")], stranger=True),
              _check(None, [_face("bob", 0.99)], stranger=True),
              _check(None, [], stranger=True)]
    report = session_report(checks, 0.9)
    assert report["top1"] == round(1 / 3, 4) and report["closed_set_top1"] == round(2 / 3, 4)
    assert report["no_face"] == 1 and report["strangers_with_a_face"] == 2 and report["stranger_rejection"] == 0.5
    assert report["agree_with_python"] == len(checks)
    rows = attendance_rows(checks)
    assert [(r["name"], r["frames_seen"], r["first_frame"]) for r in rows] == [("ann", 1, 0), ("bob", 2, 0)]


def test_one_model_tasks_refuse_an_attendance_config_by_name(tmp_path):
    from tests.test_end_to_end import invoke

    config = tmp_path / "att.yaml"
    config.write_text("model: {task: attendance}\nattendance: {detector: d.yaml, recognizer: r.yaml}\n")
    for task in ("train", "compile", "render"):
        done = invoke([task, "--config", str(config)], tmp_path / "build", timeout=120)
        assert done.returncode == 2, done.stderr
        assert f"`invoke {task}` works on one model; att.yaml is an attendance config" in done.stderr
        assert "Traceback" not in done.stderr
    missing = invoke(["enroll", "--config", str(config)], tmp_path / "build", timeout=120)
    assert missing.returncode == 2 and "d.yaml" in missing.stderr and "Traceback" not in missing.stderr
