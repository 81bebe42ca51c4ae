"""The rotation-consistent margin on constructed embeddings: a rotation the whole class shares leaves no individual
margin, a sample rotated further gets its extra angle as margin, and the margin head adds it to the true class's
angle. Rotations are isoclinic (every vector turns by the same angle), so the angles are known without the code."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("tensorflow")
DIM, PER_CLASS = 16, 40


def isoclinic(angle: float, seed: int) -> np.ndarray:
    """A DIM x DIM rotation turning every vector by exactly `angle`: 2x2 rotations by `angle` in DIM / 2 orthogonal
    planes of a random basis."""
    basis, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(DIM, DIM)))
    block = np.zeros((DIM, DIM))
    for i in range(0, DIM, 2):
        block[i:i + 2, i:i + 2] = [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
    return basis @ block @ basis.T


def classes_of(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(features, labels): PER_CLASS unit vectors scattered around each of `count` random class directions."""
    centres = rng.normal(size=(count, DIM))
    labels = np.repeat(np.arange(count), PER_CLASS)
    features = centres[labels] + 0.6 * rng.normal(size=(len(labels), DIM))
    return features / np.linalg.norm(features, axis=1, keepdims=True), labels


def means(features: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    sums = np.stack([features[labels == c].sum(axis=0) for c in range(count)])
    return sums / np.linalg.norm(sums, axis=1, keepdims=True)


def margins(quantized, full, labels, count):
    from models.recognizer.rcm import individual_margins

    return np.asarray(individual_margins(np.float32(quantized), np.float32(full), labels.astype(np.int32),
                                         np.float32(means(quantized, labels, count)),
                                         np.float32(means(full, labels, count))))


def angle_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.arccos(np.clip(np.sum(a * b, axis=1), -1, 1))


def test_a_rotation_the_whole_class_shares_leaves_no_individual_margin():
    rng = np.random.default_rng(0)
    full, labels = classes_of(rng, 3)
    turns = (0.05, 0.2, 0.5)  # each class turned by its own angle
    quantized = np.concatenate([full[labels == c] @ isoclinic(turn, c).T for c, turn in enumerate(turns)])
    np.testing.assert_allclose(angle_between(quantized, full), np.repeat(turns, PER_CLASS), atol=1e-6)
    assert np.abs(margins(quantized, full, labels, 3)).max() < 2e-3  # float32 arccos near small angles


@pytest.mark.parametrize("extra", [0.1, 0.3])
def test_a_sample_turned_further_than_its_class_gets_its_extra_angle(extra):
    rng = np.random.default_rng(1)
    full, labels = classes_of(rng, 2)
    rotations = [isoclinic(0.2, 10), isoclinic(0.4, 11)]
    quantized = np.stack([rotations[label] @ f for f, label in zip(full, labels, strict=True)])
    odd = 7  # a sample of class 0 turned `extra` further in the class's own planes
    quantized[odd] = isoclinic(0.2 + extra, 10) @ full[odd]
    measured = margins(quantized, full, labels, 2)
    assert measured[odd] == pytest.approx(extra, abs=0.02)  # the class mean moved by about extra / PER_CLASS
    others = np.delete(measured, odd)
    assert others.max() < 0.01 and measured[odd] > 10 * others.max()


def test_unlabelled_samples_and_samples_turned_less_than_their_class_get_none():
    rng = np.random.default_rng(2)
    full, labels = classes_of(rng, 1)
    quantized = full @ isoclinic(0.3, 3).T
    quantized[0] = isoclinic(0.1, 3) @ full[0]  # turned less than its class
    labels = labels.copy()
    labels[1] = -1
    from models.recognizer.rcm import individual_margins

    shared = means(quantized, np.zeros_like(labels), 1), means(full, np.zeros_like(labels), 1)
    measured = np.asarray(individual_margins(np.float32(quantized), np.float32(full), labels.astype(np.int32),
                                             np.float32(shared[0]), np.float32(shared[1])))
    assert measured[0] == 0.0 and measured[1] == 0.0


def test_running_means_move_only_the_classes_in_the_batch():
    from models.recognizer.rcm import updated_means

    old = np.eye(3, DIM, dtype=np.float32)
    batch = np.zeros((2, DIM), np.float32)
    batch[:, 4] = [2.0, 0.5]  # two samples of class 1 pointing along axis 4, at different lengths
    new = np.asarray(updated_means(old, batch, np.array([1, 1], np.int32), momentum=0.75))
    np.testing.assert_allclose(new[[0, 2]], old[[0, 2]])
    want = 0.75 * old[1] + 0.25 * np.eye(DIM)[4]
    np.testing.assert_allclose(new[1], want / np.linalg.norm(want), rtol=1e-6)


@pytest.mark.parametrize("kind", ["cosface", "arcface"])
def test_the_margin_head_adds_the_extra_angle_to_the_true_class(kind):
    import tensorflow as tf

    from models.recognizer.losses import MarginHead

    rng = np.random.default_rng(3)
    head = MarginHead(5, kind, scale=30.0, margin=0.3)
    head.build((None, DIM))
    embedding = rng.normal(size=(6, DIM)).astype(np.float32)
    labels = np.array([0, 1, 2, 3, 4, 0], np.int32)
    extra = np.array([0.0, 0.1, 0.2, 0.0, 0.4, 0.05], np.float32)
    plain = np.asarray(head(tf.constant(embedding), tf.constant(labels)))
    zero = np.asarray(head(tf.constant(embedding), tf.constant(labels), tf.zeros(6)))
    np.testing.assert_allclose(zero, plain, atol=1e-3)  # extra 0 is the usual margin
    logits = np.asarray(head(tf.constant(embedding), tf.constant(labels), tf.constant(extra)))
    rows = np.arange(6)
    kernel = np.asarray(head.kernel)
    cosine = (embedding / np.linalg.norm(embedding, axis=1, keepdims=True)) @ (kernel / np.linalg.norm(kernel, axis=0))
    theta = np.arccos(cosine[rows, labels])
    # the true-class logit as an angle: theta + (cosface: extra, the cosine margin kept; arcface: margin + extra)
    turned = np.arccos(logits[rows, labels] / 30.0 + (0.3 if kind == "cosface" else 0.0))
    np.testing.assert_allclose(turned - theta, extra + (0.0 if kind == "cosface" else 0.3), atol=2e-3)
    off = np.ones_like(logits, bool)
    off[rows, labels] = False
    np.testing.assert_allclose(logits[off], 30.0 * cosine[off], atol=1e-3)
