"""Recognizer metrics: the LFW pairs reader, the View 2 verification protocol, ROC plots, open-set identification."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest

from models.recognizer.identification import enroll_templates, identification_metrics
from models.recognizer.lfw_pairs import read_lfw_pairs
from models.recognizer.verification import (
    plot_roc,
    roc_auc,
    roc_points,
    threshold_at_false_rate,
    verification_metrics,
)
from pipeline.errors import PipelineError
from tests.conftest import shared_path

# --- LFW pairs reader ------------------------------------------------------------------------------------------------

PEOPLE = {"Ann_A": 3, "Bob_B": 2, "Cy_C": 1}  # person -> images on disk
GOOD_LINES = ["2\t1",
              "Ann_A\t1\t2", "Bob_B\t1\tCy_C\t1",  # fold 1: one matched, one mismatched
              "Bob_B\t1\t2", "Ann_A\t3\tBob_B\t2"]  # fold 2


def _images(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    for name, count in PEOPLE.items():
        (root / name).mkdir(parents=True)
        for n in range(1, count + 1):
            (root / name / f"{name}_{n:04d}.jpg").write_bytes(b"jpeg")
    return root


def _pairs(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "pairs.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_reader_reads_indices_kinds_and_folds(tmp_path):
    root = _images(tmp_path)
    pairs = read_lfw_pairs(_pairs(tmp_path, GOOD_LINES), root)
    expected_images = [("Ann_A", 1), ("Ann_A", 2), ("Bob_B", 1), ("Cy_C", 1), ("Bob_B", 2), ("Ann_A", 3)]
    assert pairs.images == tuple(root / name / f"{name}_{n:04d}.jpg" for name, n in expected_images)
    assert pairs.a.tolist() == [0, 2, 2, 5]
    assert pairs.b.tolist() == [1, 3, 4, 4]
    assert pairs.same.tolist() == [True, False, True, False]
    assert pairs.fold.tolist() == [0, 0, 1, 1]
    with pytest.raises(ValueError):
        pairs.a[0] = 3  # read-only, like the frozen dataclass holding it


def _replaced(line_no: int, text: str) -> list[str]:
    lines = list(GOOD_LINES)
    lines[line_no - 1] = text
    return lines


BAD_FILES = {
    "bad header: space": (_replaced(1, "2 1"), 1, "5<TAB>300"),
    "bad header: word": (_replaced(1, "two\t1"), 1, "5<TAB>300"),
    "bad header: zero folds": (_replaced(1, "0\t1"), 1, "5<TAB>300"),
    "two fields": (_replaced(2, "Ann_A\t1"), 2, "3 (name<TAB>n1<TAB>n2)"),
    "five fields": (_replaced(3, "Bob_B\t1\tCy_C\t1\t9"), 3, "3 (name<TAB>n1<TAB>n2)"),
    "number is a word": (_replaced(2, "Ann_A\tone\t2"), 2, "a positive integer"),
    "number is zero": (_replaced(3, "Bob_B\t1\tCy_C\t0"), 3, "a positive integer"),
    "number is fractional": (_replaced(4, "Bob_B\t1.0\t2"), 4, "a positive integer"),
    "name climbs out": (_replaced(2, "..\t1\t2"), 2, "a folder name"),
    "mismatched where matched": (_replaced(4, "Bob_B\t1\tAnn_A\t1"), 4, "2 folds of 1 lines"),
    "matched where mismatched": (_replaced(3, "Bob_B\t1\t2"), 3, "2 folds of 1 lines"),
    "extra line": (GOOD_LINES + ["Ann_A\t1\t3"], 6, "(4 pair lines)"),
    "fold too short": (GOOD_LINES[:-1], 4, "2 folds of 2 pair lines"),
    "missing image": (_replaced(5, "Ann_A\t3\tBob_B\t7"), 5, "every pair's images to exist"),
    "empty file": ([], 1, "5<TAB>300"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_reader_names_file_line_and_expectation(tmp_path, case):
    lines, line_no, expected = BAD_FILES[case]
    path = _pairs(tmp_path, lines) if lines else tmp_path / "pairs.txt"
    if not lines:
        path.write_bytes(b"")
    with pytest.raises(PipelineError) as caught:
        read_lfw_pairs(path, _images(tmp_path))
    assert caught.value.path == str(path)
    assert caught.value.field == f"line {line_no}"
    assert expected in caught.value.expected


def test_reader_refuses_missing_and_non_utf8_files(tmp_path):
    root = _images(tmp_path)
    with pytest.raises(PipelineError, match="cannot read") as caught:
        read_lfw_pairs(tmp_path / "absent.txt", root)
    assert caught.value.path == str(tmp_path / "absent.txt")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("2\t1\nJos\xe9_M\t1\t2\n".encode("latin-1"))
    with pytest.raises(PipelineError, match="not UTF-8") as caught:
        read_lfw_pairs(latin, root)
    assert caught.value.path == str(latin)


def test_reader_on_real_lfw_dev_pairs():
    lfw = shared_path("lfw")
    start = time.perf_counter()
    pairs = read_lfw_pairs(lfw / "pairs_dev.txt", lfw / "images")
    assert time.perf_counter() - start < 5.0
    assert pairs.a.size == pairs.b.size == pairs.same.size == 3000
    for k in range(5):
        in_fold = pairs.fold == k
        assert np.count_nonzero(in_fold & pairs.same) == 300
        assert np.count_nonzero(in_fold & ~pairs.same) == 300
    assert len(pairs.images) == len(set(pairs.images)) == 3811
    assert set(pairs.a.tolist()) | set(pairs.b.tolist()) == set(range(3811))
    # a matched pair is two images of one person; a mismatched pair, two people
    person_a = np.array([pairs.images[i].parent.name for i in pairs.a])
    person_b = np.array([pairs.images[i].parent.name for i in pairs.b])
    assert np.array_equal(person_a == person_b, pairs.same)


# --- verification ----------------------------------------------------------------------------------------------------


def test_separable_pairs_give_accuracy_one_and_midpoint_thresholds():
    # every fold: same pairs at 0.8 and 0.9, different pairs at 0.1 and 0.2 -> the other folds' best threshold is the
    # one midpoint between their highest different (0.2) and lowest same (0.8) similarity
    similarity = np.tile([0.8, 0.9, 0.1, 0.2], 3)
    same = np.tile([True, True, False, False], 3)
    fold = np.repeat([0, 1, 2], 4)
    metrics = verification_metrics(similarity, same, fold)
    assert metrics["folds"] == [0, 1, 2]
    assert metrics["fold_accuracies"] == [1.0, 1.0, 1.0]
    assert metrics["accuracy_mean"] == 1.0 and metrics["accuracy_std"] == 0.0
    assert metrics["fold_thresholds"] == pytest.approx([0.5, 0.5, 0.5])
    assert metrics["roc_auc"] == 1.0


def test_threshold_is_chosen_on_the_other_folds():
    # (same, different) similarity per fold:   fold 0: (0.9, 0.5)   fold 1: (0.65, 0.2)   fold 2: (0.7, 0.3)
    # fold 0 is tested with the threshold of folds 1+2: sorted 0.2d 0.3d 0.65s 0.7s -> midpoint 0.475; 0.5 > 0.475
    #   calls fold 0's different pair "same": accuracy 1/2
    # fold 1 <- folds 0+2: 0.3d 0.5d 0.7s 0.9s -> 0.6; fold 1: 0.65 > 0.6, 0.2 < 0.6: accuracy 1
    # fold 2 <- folds 0+1: 0.2d 0.5d 0.65s 0.9s -> 0.575; fold 2: 0.7 above, 0.3 below: accuracy 1
    similarity = np.array([0.9, 0.5, 0.65, 0.2, 0.7, 0.3])
    same = np.array([True, False] * 3)
    fold = np.array([0, 0, 1, 1, 2, 2])
    metrics = verification_metrics(similarity, same, fold)
    assert metrics["fold_thresholds"] == pytest.approx([0.475, 0.6, 0.575])
    assert metrics["fold_accuracies"] == [0.5, 1.0, 1.0]
    assert metrics["accuracy_mean"] == pytest.approx(5 / 6)
    # deviations -1/3, 1/6, 1/6 -> variance (1/9 + 2/36) / 3 = 1/18 (ddof=0; ddof=1 would give 1/12)
    assert metrics["accuracy_std"] == pytest.approx(math.sqrt(1 / 18))
    assert metrics["roc_auc"] == 1.0  # pooled, every same pair is above every different pair


def test_extreme_thresholds_accept_all_or_none():
    # fold 1: 0.1s 0.2s 0.3d 0.4s 0.55s -> accepting all is right 4/5 times, every midpoint at most 3/5, so fold 0 is
    #   tested with a threshold just below 0.1 (everything "same"): only its one same pair is right
    # fold 0: 0.15d 0.25d 0.35s 0.45d 0.55d -> rejecting all (threshold 0.55, nothing above) is right 4/5 times;
    #   fold 1 tested with it: only its one different pair is right (its 0.55 is not above 0.55)
    similarity = np.array([0.15, 0.25, 0.35, 0.45, 0.55, 0.1, 0.2, 0.3, 0.4, 0.55])
    same = np.array([False, False, True, False, False, True, True, False, True, True])
    fold = np.repeat([0, 1], 5)
    metrics = verification_metrics(similarity, same, fold)
    assert metrics["fold_thresholds"] == [np.nextafter(0.1, -np.inf), 0.55]
    assert metrics["fold_accuracies"] == [pytest.approx(0.2), pytest.approx(0.2)]


def test_accuracy_ties_go_to_the_highest_threshold():
    # fold 1: 0.2d 0.4s 0.6d 0.8s: accept all 2/4, 0.3 -> 3/4, 0.5 -> 2/4, 0.7 -> 3/4, reject all 2/4: 0.7 wins the tie
    similarity = np.array([0.9, 0.1, 0.2, 0.4, 0.6, 0.8])
    same = np.array([True, False, False, True, False, True])
    metrics = verification_metrics(similarity, same, np.array([0, 0, 1, 1, 1, 1]))
    assert metrics["fold_thresholds"][0] == pytest.approx(0.7)


def test_tar_at_far_on_a_hand_made_case():
    # 1000 different pairs: 998 at 0.0, one at 0.5, one at 0.9; five same pairs
    negatives = np.concatenate([np.zeros(998), [0.5, 0.9]])
    positives = np.array([0.95, 0.8, 0.6, 0.4, 0.1])
    similarity = np.concatenate([positives, negatives])
    same = np.arange(similarity.size) < positives.size
    fold = np.arange(similarity.size) % 2
    metrics = verification_metrics(similarity, same, fold)
    assert metrics["far_resolution"] == pytest.approx(1e-3)
    at_1e3, at_1e2 = metrics["tar_at_far"]
    # FAR 1e-3 allows 1 false accept: the threshold is the second-highest different pair, 0.5 (only 0.9 above)
    assert at_1e3 == {"far": 1e-3, "tar": 3 / 5, "threshold": 0.5, "achieved_far": 1e-3, "resolved": True}
    # FAR 1e-2 allows 10: the 11th-highest is 0.0; all five same pairs are above it, and 2 different pairs
    assert at_1e2 == {"far": 1e-2, "tar": 1.0, "threshold": 0.0, "achieved_far": 2e-3, "resolved": True}


def test_far_below_resolution_is_flagged():
    negatives = np.linspace(0.0, 0.5, 100)  # 100 different pairs: FAR can only be measured in steps of 1/100
    similarity = np.concatenate([[0.45, 0.7], negatives])
    same = np.arange(similarity.size) < 2
    metrics = verification_metrics(similarity, same, np.arange(similarity.size) % 2)
    assert metrics["far_resolution"] == pytest.approx(0.01)
    at_1e3, at_1e2 = metrics["tar_at_far"]
    assert not at_1e3["resolved"] and at_1e3["threshold"] == 0.5 and at_1e3["achieved_far"] == 0.0
    assert at_1e3["tar"] == 0.5  # 0.7 is above the highest different pair, 0.45 is not
    assert at_1e2["resolved"] and at_1e2["threshold"] == pytest.approx(negatives[-2])
    assert at_1e2["achieved_far"] == pytest.approx(0.01)


def test_auc_counts_pairs_and_halves_ties():
    # same 0.8, 0.4 vs different 0.6, 0.2: 3 of the 4 (same, different) combinations are ordered right
    assert roc_auc(np.array([0.8, 0.4, 0.6, 0.2]), np.array([True, True, False, False])) == pytest.approx(0.75)
    assert roc_auc(np.array([0.5, 0.5]), np.array([True, False])) == pytest.approx(0.5)
    assert roc_auc(np.array([0.1, 0.9]), np.array([True, False])) == 0.0


def test_roc_matches_a_brute_force_count_and_scikit_learn():
    rng = np.random.default_rng(7)
    similarity = np.round(rng.normal(size=400), 1)  # rounded: many ties
    same = rng.random(400) < 0.3
    similarity[same] += 0.8
    pos, neg = similarity[same], similarity[~same]
    brute = (np.sum(pos[:, None] > neg[None, :]) + 0.5 * np.sum(pos[:, None] == neg[None, :])) / (pos.size * neg.size)
    assert roc_auc(similarity, same) == pytest.approx(brute)
    far, tar, thresholds = roc_points(similarity, same)
    assert (far[0], tar[0], far[-1], tar[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(far) >= 0) and np.all(np.diff(tar) >= 0) and np.all(np.diff(thresholds) < 0)
    metrics = sklearn_metrics()
    sk_far, sk_tar, _ = metrics.roc_curve(same, similarity, drop_intermediate=False)
    assert np.allclose(sk_far, far) and np.allclose(sk_tar, tar)
    assert roc_auc(similarity, same) == pytest.approx(metrics.roc_auc_score(same, similarity))


def sklearn_metrics():
    return pytest.importorskip("sklearn.metrics", reason="scikit-learn is only a cross-check here")


def test_threshold_at_false_rate_counts_allowed_false_accepts():
    scores = np.arange(100, dtype=float)  # 0 .. 99
    assert threshold_at_false_rate(scores, 0.29) == 70.0  # 29 scores (71..99) above it; 0.29 * 100 is 28.999...
    assert threshold_at_false_rate(scores, 0.0) == 99.0
    assert threshold_at_false_rate(scores, 1.0) == 0.0  # the lowest score: all but it accepted


@pytest.mark.parametrize("similarity, same, fold, field", [
    (np.array([0.1, 0.2]), np.array([True]), np.array([0, 1]), "similarity"),
    (np.array([0.1, np.nan]), np.array([True, False]), np.array([0, 1]), "similarity"),
    (np.array([0.1, 0.2]), np.array([1, 0]), np.array([0, 1]), "same"),
    (np.array([0.1, 0.2]), np.array([True, True]), np.array([0, 1]), "same"),
    (np.array([0.1, 0.2]), np.array([True, False]), np.array([0, 0]), "fold"),
    (np.array([0.1, 0.2]), np.array([True, False]), np.array([0.0, 1.0]), "fold"),
    (np.array([0.1, 0.2, 0.3]), np.array([True, True, False]), np.array([0, 0, 1]), "same"),
])
def test_verification_refuses_bad_input(similarity, same, fold, field):
    with pytest.raises(PipelineError) as caught:
        verification_metrics(similarity, same, fold)
    assert caught.value.field == field


def test_plot_roc_writes_a_png_atomically(tmp_path):
    rng = np.random.default_rng(3)
    same = rng.random(300) < 0.5
    curves = {"good": (rng.normal(size=300) + 3 * same, same), "weak": (rng.normal(size=300) + 0.5 * same, same)}
    png = tmp_path / "plots" / "roc.png"
    plot_roc(curves, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in png.parent.iterdir()] == ["roc.png"]  # no temp file left beside it
    with pytest.raises(PipelineError):
        plot_roc({}, tmp_path / "empty.png")
    assert not (tmp_path / "empty.png").exists()


# --- identification --------------------------------------------------------------------------------------------------


def test_template_is_normalised_mean_of_normalised_embeddings():
    names, templates = enroll_templates(np.array([[2.0, 0, 0], [0, 3.0, 0], [0, 0, 5.0]]), ["ann", "ann", "bob"])
    assert names == ["ann", "bob"]
    # (1,0,0) and (0,1,0) averaged then normalised; the raw mean (1, 1.5, 0) would point elsewhere
    assert np.allclose(templates, [[1 / math.sqrt(2), 1 / math.sqrt(2), 0], [0, 0, 1]])


def _three_people():
    """Templates on the three axes; probes: ann clearly, bob weakly (0.64), cy's probe closest to ann (wrong)."""
    names, templates = enroll_templates(np.eye(3) * [[1.0], [2.0], [3.0]], ["ann", "bob", "cy"])
    probes = np.array([[0.9, 0.1, 0.0], [0.6, 0.64, 0.48], [0.8, 0.0, 0.6]])
    # 98 strangers far from everyone (best cosine -0.577), one at 0.7 to ann, one at 0.95 to ann
    strangers = np.vstack([np.tile([-1.0, -1.0, -1.0], (98, 1)),
                           [[0.7, -math.sqrt(1 - 0.49), 0.0], [0.95, -math.sqrt(1 - 0.9025), 0.0]]])
    return names, templates, probes, ["ann", "bob", "cy"], strangers


def test_identification_closed_and_open_set():
    names, templates, probes, labels, strangers = _three_people()
    metrics = identification_metrics(templates, names, probes, labels, strangers)
    assert metrics["top1_accuracy"] == pytest.approx(2 / 3)  # ann and bob right, cy taken for ann
    # 1 % of 100 strangers = 1 may pass: the threshold is the second-best stranger score, 0.7
    assert metrics["fpir_threshold"] == pytest.approx(0.7)
    assert metrics["fpir"] == pytest.approx(0.01)
    assert metrics["fpir_resolution"] == pytest.approx(0.01)
    assert metrics["tpir"] == pytest.approx(1 / 3)  # only ann's probe (0.994) is right and above 0.7; bob's is 0.64
    assert metrics["at_threshold"] is None
    at_06 = identification_metrics(templates, names, probes, labels, strangers, threshold=0.6)["at_threshold"]
    assert at_06 == pytest.approx({"threshold": 0.6, "stranger_rejection": 0.98, "probe_accuracy": 2 / 3})
    at_09 = identification_metrics(templates, names, probes, labels, strangers, threshold=0.9)["at_threshold"]
    assert at_09 == pytest.approx({"threshold": 0.9, "stranger_rejection": 0.99, "probe_accuracy": 1 / 3})


def test_identification_is_cosine_so_scale_does_not_matter():
    names, templates, probes, labels, strangers = _three_people()
    plain = identification_metrics(templates, names, probes, labels, strangers, threshold=0.6)
    scaled = identification_metrics(templates * 4, names, probes * [[10.0], [0.1], [3.0]], labels, strangers * 7,
                                    threshold=0.6)
    assert scaled.pop("at_threshold") == pytest.approx(plain.pop("at_threshold"))
    assert scaled == pytest.approx(plain)


def test_identification_refuses_bad_input():
    names, templates, probes, labels, strangers = _three_people()
    with pytest.raises(PipelineError, match="not enrolled") as caught:
        identification_metrics(templates, names, probes, ["ann", "bob", "dan"], strangers)
    assert caught.value.field == "probe_labels"
    with pytest.raises(PipelineError, match="length 0") as caught:
        enroll_templates(np.array([[1.0, 0.0], [0.0, 0.0]]), ["ann", "bob"])
    assert caught.value.field == "embeddings"
    with pytest.raises(PipelineError, match="dimensions") as caught:
        identification_metrics(templates, names, probes[:, :2], labels, strangers)
    assert caught.value.field == "probe_embeddings"
    with pytest.raises(PipelineError) as caught:
        identification_metrics(templates, names, probes, labels, strangers[:0])
    assert caught.value.field == "stranger_embeddings"
    with pytest.raises(PipelineError) as caught:
        enroll_templates(np.eye(2), ["ann"])
    assert caught.value.field == "labels"
