"""Face verification metrics (LFW View 2 protocol): k-fold accuracy, ROC AUC, TAR at fixed FAR, ROC plots.

One rule throughout: a pair is called "same person" when its similarity is strictly above (>) the threshold.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import PipelineError
from pipeline.plotting import new_figure, save_figure

FAR_TARGETS = (1e-3, 1e-2)


def _checked_scores(similarity: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Similarity as finite float64 and same as bool, both 1-D of one length, with same and different pairs."""
    similarity = np.asarray(similarity, dtype=np.float64)
    same = np.asarray(same)
    if similarity.ndim != 1 or same.shape != similarity.shape:
        raise PipelineError(f"similarity shape {similarity.shape}, same shape {same.shape}", field="similarity",
                            expected="two 1-D arrays of one length (one value per pair)")
    if not np.all(np.isfinite(similarity)):
        raise PipelineError("similarity holds NaN or infinity", field="similarity", expected="finite values")
    if same.dtype != bool:
        raise PipelineError(f"same has dtype {same.dtype}", field="same", expected="booleans")
    if same.all() or not same.any():
        raise PipelineError(f"{int(same.sum())} same pairs of {same.size}", field="same",
                            expected="both same-person and different-person pairs")
    return similarity, same


def _counts_above(similarity: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thresholds from high to low (each unique similarity, then one just below the lowest, which accepts all) and,
    per threshold, how many same and how many different pairs lie above it."""
    unique = np.unique(similarity)
    thresholds = np.append(unique[::-1], np.nextafter(unique[0], -np.inf))
    positives, negatives = np.sort(similarity[same]), np.sort(similarity[~same])
    above_pos = positives.size - np.searchsorted(positives, thresholds, side="right")
    above_neg = negatives.size - np.searchsorted(negatives, thresholds, side="right")
    return thresholds, above_pos, above_neg


def roc_points(similarity: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(FAR, TAR, thresholds) from (0, 0) to (1, 1): FAR rising, one point per distinct threshold."""
    similarity, same = _checked_scores(similarity, same)
    thresholds, above_pos, above_neg = _counts_above(similarity, same)
    return above_neg / np.count_nonzero(~same), above_pos / np.count_nonzero(same), thresholds


def roc_auc(similarity: np.ndarray, same: np.ndarray) -> float:
    """Area under the ROC (trapezoids): P(same pair scores above a different pair), ties counting one half."""
    far, tar, _ = roc_points(similarity, same)
    return float(np.trapezoid(tar, far))


def threshold_at_false_rate(negative_scores: np.ndarray, rate: float) -> float:
    """The lowest threshold (a negative's score) with at most `rate` of the negatives above it; below one negative
    (rate < 1 / len) that is the highest negative score, which accepts none."""
    scores = np.sort(np.asarray(negative_scores, dtype=np.float64))[::-1]
    if scores.size == 0:
        raise PipelineError("no negative scores", field="negative_scores", expected="at least one")
    allowed = math.floor(rate * scores.size + 1e-9)  # false accepts allowed; the epsilon absorbs 0.29 * 100 = 28.99..
    return float(scores[min(allowed, scores.size - 1)])


def _best_threshold(similarity: np.ndarray, same: np.ndarray) -> float:
    """The threshold of best accuracy: candidates are the midpoints of the sorted unique similarities plus the two
    extremes (just below the lowest: accept all; the highest: accept none); ties go to the highest candidate."""
    thresholds, above_pos, above_neg = _counts_above(similarity, same)
    correct = above_pos + (np.count_nonzero(~same) - above_neg)
    candidates = thresholds.copy()
    # threshold i (a unique similarity) splits the pairs as the midpoint between it and the next higher one does
    candidates[1:-1] = (thresholds[1:-1] + thresholds[:-2]) / 2
    return float(candidates[int(np.argmax(correct))])


def _tar_at_far(similarity: np.ndarray, same: np.ndarray, far: float) -> dict[str, Any]:
    negatives = similarity[~same]
    threshold = threshold_at_false_rate(negatives, far)
    return {"far": far, "tar": float(np.mean(similarity[same] > threshold)), "threshold": threshold,
            "achieved_far": float(np.mean(negatives > threshold)), "resolved": far * negatives.size >= 1 - 1e-9}


def verification_metrics(similarity: np.ndarray, same: np.ndarray, fold: np.ndarray) -> dict[str, Any]:
    """LFW View 2: per fold, the threshold of best accuracy on the other folds, applied to that fold.

    Returns accuracy_mean and accuracy_std over folds (population std, ddof=0), fold_accuracies and fold_thresholds
    (in sorted fold order, with `folds` naming them), roc_auc over all pairs, and tar_at_far: per FAR target (1e-3,
    1e-2), over all pairs, the TAR (fraction of same pairs above the threshold), the threshold (the lowest with at
    most that FAR on the different pairs) and the achieved FAR. far_resolution = 1 / different pairs is the smallest
    FAR the pairs can measure; a target below it is reported with resolved False, at the threshold accepting no
    different pair (achieved FAR 0).
    """
    similarity, same = _checked_scores(similarity, same)
    fold = np.asarray(fold)
    if fold.shape != similarity.shape or not np.issubdtype(fold.dtype, np.integer):
        raise PipelineError(f"fold shape {fold.shape}, dtype {fold.dtype}", field="fold",
                            expected=f"integers of shape {similarity.shape} (one fold per pair)")
    folds = np.unique(fold)
    if folds.size < 2:
        raise PipelineError(f"{folds.size} fold", field="fold", expected="at least 2 folds")
    accuracies, thresholds = [], []
    for k in folds:
        test = fold == k
        train = ~test
        if same[train].all() or not same[train].any():
            raise PipelineError(f"the folds other than {k} hold only one kind of pair", field="same",
                                expected="same and different pairs outside every fold")
        threshold = _best_threshold(similarity[train], same[train])
        thresholds.append(threshold)
        accuracies.append(float(np.mean((similarity[test] > threshold) == same[test])))
    return {
        "folds": [int(k) for k in folds],
        "accuracy_mean": float(np.mean(accuracies)),
        "accuracy_std": float(np.std(accuracies, ddof=0)),
        "fold_accuracies": accuracies,
        "fold_thresholds": thresholds,
        "roc_auc": roc_auc(similarity, same),
        "tar_at_far": [_tar_at_far(similarity, same, far) for far in FAR_TARGETS],
        "far_resolution": 1.0 / np.count_nonzero(~same),
    }


def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray]], png: Path) -> None:
    """One ROC per named (similarity, same) into a PNG (written atomically), FAR on a log axis from the finest FAR
    any curve resolves; points at FAR 0 cannot be drawn there and are left out."""
    if not curves:
        raise PipelineError("no curves to plot", field="curves", expected="at least one model's (similarity, same)")
    fig, ax = new_figure()
    finest = 1.0
    for name, (similarity, same) in curves.items():
        far, tar, _ = roc_points(similarity, same)
        drawn = far > 0
        ax.plot(far[drawn], tar[drawn], label=f"{name} (AUC {roc_auc(similarity, same):.4f})")
        finest = min(finest, float(far[drawn].min()))
    ax.set_xscale("log")
    ax.set_xlim(finest, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("false accept rate (FAR)")
    ax.set_ylabel("true accept rate (TAR)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    save_figure(fig, png)
