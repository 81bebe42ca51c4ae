"""Open-set face identification: one template per enrolled person; a probe is that of its most similar template
(cosine similarity) when the similarity is strictly above the threshold, else a stranger."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from models.recognizer.verification import threshold_at_false_rate
from pipeline.errors import PipelineError

FPIR_TARGET = 0.01


def _unit_rows(embeddings: np.ndarray, field: str) -> np.ndarray:
    """Rows of a non-empty finite (N, D) array scaled to length 1."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    if embeddings.ndim != 2 or embeddings.shape[0] == 0 or not np.all(np.isfinite(embeddings)):
        raise PipelineError(f"shape {embeddings.shape}", field=field,
                            expected="a non-empty finite (N, D) array, one embedding per row")
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    if not np.all(norms > 0):
        raise PipelineError(f"row {int(np.argmin(norms[:, 0]))} has length 0", field=field,
                            expected="non-zero embeddings (cosine similarity needs a direction)")
    return embeddings / norms


def enroll_templates(embeddings: np.ndarray, labels: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """(names sorted, templates (K, D)): each person's template is the L2-normalised mean of their L2-normalised
    embeddings."""
    unit = _unit_rows(embeddings, "embeddings")
    labels = np.asarray(labels, dtype=str)
    if labels.shape != (unit.shape[0],):
        raise PipelineError(f"{labels.size} labels for {unit.shape[0]} embeddings", field="labels",
                            expected="one label per embedding")
    names, person = np.unique(labels, return_inverse=True)
    sums = np.zeros((names.size, unit.shape[1]))
    np.add.at(sums, person, unit)
    return [str(name) for name in names], _unit_rows(sums, "templates")


def identification_metrics(templates: np.ndarray, names: Sequence[str], probe_embeddings: np.ndarray,
                           probe_labels: Sequence[str], stranger_embeddings: np.ndarray,
                           threshold: float | None = None) -> dict[str, Any]:
    """Closed set: top1_accuracy of the enrolled probes. Open set: fpir_threshold, the lowest threshold accepting at
    most 1 % of the strangers (fpir_resolution = 1 / strangers: below it, the highest stranger score; fpir is the
    rate achieved), and tpir there (probes identified correctly AND above it). With `threshold`, at_threshold holds
    the stranger_rejection (strangers not above it) and probe_accuracy (probes correct and above it) there."""
    templates = _unit_rows(templates, "templates")
    names = [str(name) for name in names]
    if len(names) != templates.shape[0] or len(set(names)) != len(names):
        raise PipelineError(f"{len(names)} names for {templates.shape[0]} templates", field="names",
                            expected="one distinct name per template")
    probes = _unit_rows(probe_embeddings, "probe_embeddings")
    strangers = _unit_rows(stranger_embeddings, "stranger_embeddings")
    for field, array in (("probe_embeddings", probes), ("stranger_embeddings", strangers)):
        if array.shape[1] != templates.shape[1]:
            raise PipelineError(f"{array.shape[1]} dimensions", field=field,
                                expected=f"the templates' {templates.shape[1]}")
    probe_labels = [str(label) for label in probe_labels]
    if len(probe_labels) != probes.shape[0]:
        raise PipelineError(f"{len(probe_labels)} labels for {probes.shape[0]} probes", field="probe_labels",
                            expected="one label per probe embedding")
    unknown = sorted(set(probe_labels) - set(names))
    if unknown:
        raise PipelineError(f"probe labels {unknown[:5]} are not enrolled", field="probe_labels",
                            expected="enrolled names (strangers go in stranger_embeddings)")
    probe_similarity = probes @ templates.T
    best = probe_similarity.max(axis=1)
    correct = np.array(names)[probe_similarity.argmax(axis=1)] == np.array(probe_labels)
    stranger_best = (strangers @ templates.T).max(axis=1)
    fpir_threshold = threshold_at_false_rate(stranger_best, FPIR_TARGET)
    result: dict[str, Any] = {
        "probes": int(probes.shape[0]),
        "strangers": int(strangers.shape[0]),
        "top1_accuracy": float(np.mean(correct)),
        "fpir_target": FPIR_TARGET,
        "fpir_threshold": fpir_threshold,
        "fpir": float(np.mean(stranger_best > fpir_threshold)),
        "fpir_resolution": 1.0 / strangers.shape[0],
        "tpir": float(np.mean(correct & (best > fpir_threshold))),
        "at_threshold": None,
    }
    if threshold is not None:
        result["at_threshold"] = {"threshold": float(threshold),
                                  "stranger_rejection": float(np.mean(stranger_best <= threshold)),
                                  "probe_accuracy": float(np.mean(correct & (best > threshold)))}
    return result
