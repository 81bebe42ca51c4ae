"""The recognizer's model side: margin heads and losses against numpy, the embedders, the training augmentation."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from models.budget import WIDTH_STEP, check_budget, measure_config  # noqa: E402
from models.recognizer.augment import ROOM, augment_batch, eval_images, roomy_policy, training_batches  # noqa: E402
from models.recognizer.crop import CropPolicy, crop_face  # noqa: E402
from models.recognizer.embedder import build_embedder, load_embedder  # noqa: E402
from models.recognizer.losses import MarginHead, classification_loss, distillation_loss  # noqa: E402
from pipeline.errors import PipelineError  # noqa: E402
from tests.conftest import shared_path  # noqa: E402

# --- margin heads -----------------------------------------------------------------------------------------------

CLASSES, DIM = 5, 8


def head_with(kind: str, kernel: np.ndarray, scale: float = 30.0, margin: float = 0.35,
              bias: np.ndarray | None = None) -> MarginHead:
    head = MarginHead(kernel.shape[1], kind, scale, margin)
    head(tf.zeros((1, kernel.shape[0])), tf.zeros((1,), tf.int32))
    head.kernel.assign(kernel)
    if bias is not None:
        head.bias.assign(bias)
    return head


def cosines(embedding: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    e = embedding / np.linalg.norm(embedding, axis=1, keepdims=True)
    k = kernel / np.linalg.norm(kernel, axis=0, keepdims=True)
    return np.clip(e @ k, -1 + 1e-6, 1 - 1e-6)


def reference_logits(kind: str, embedding, kernel, labels, scale, margin) -> np.ndarray:
    """The margin logits written out per sample in numpy (float64)."""
    cos = cosines(embedding, kernel)
    logits = scale * cos
    for row, label in enumerate(labels):
        theta = math.acos(cos[row, label])
        if kind == "cosface":
            target = cos[row, label] - margin
        elif theta + margin < math.pi:
            target = math.cos(theta + margin)
        else:
            target = cos[row, label] - margin * math.sin(margin)
        logits[row, label] = scale * target
    return logits


@pytest.fixture
def random_case():
    rng = np.random.default_rng(5)
    return (rng.normal(size=(6, DIM)).astype(np.float32), rng.normal(size=(DIM, CLASSES)).astype(np.float32),
            np.array([0, 1, 2, 3, 4, 2], np.int32))


@pytest.mark.parametrize(("kind", "margin"), [("cosface", 0.35), ("arcface", 0.5)])
def test_margin_logits_match_numpy(random_case, kind, margin):
    embedding, kernel, labels = random_case
    head = head_with(kind, kernel, 30.0, margin)
    got = np.asarray(head(tf.constant(embedding), tf.constant(labels)))
    np.testing.assert_allclose(got, reference_logits(kind, embedding, kernel, labels, 30.0, margin), atol=2e-4)
    plain = 30.0 * cosines(embedding, kernel)
    off_target = np.ones_like(plain, bool)
    off_target[np.arange(len(labels)), labels] = False
    np.testing.assert_allclose(got[off_target], plain[off_target], atol=2e-4)  # the margin is on the true class only
    assert np.all(got[~off_target] < plain[~off_target])


def test_arcface_past_pi_takes_the_fallback_that_keeps_decreasing():
    rng = np.random.default_rng(8)
    kernel = rng.normal(size=(DIM, CLASSES)).astype(np.float32)
    margin, scale = 0.5, 30.0
    # anti-aligned with its class centre (theta = pi) and 0.2 rad short of it: both have theta + m > pi
    centre = kernel[:, 1] / np.linalg.norm(kernel[:, 1])
    other = rng.normal(size=DIM)
    other -= other @ centre * centre
    other /= np.linalg.norm(other)
    near = math.cos(math.pi - 0.2) * centre + math.sin(math.pi - 0.2) * other
    embedding = np.stack([-centre, near, centre]).astype(np.float32)
    labels = np.array([1, 1, 1], np.int32)
    got = np.asarray(head_with("arcface", kernel, scale, margin)(tf.constant(embedding), tf.constant(labels)))
    np.testing.assert_allclose(got, reference_logits("arcface", embedding, kernel, labels, scale, margin), atol=2e-4)
    np.testing.assert_allclose(got[0, 1], scale * (-1 - margin * math.sin(margin)), atol=1e-3)
    naive = scale * math.cos(math.pi + margin)  # cos(theta + m) would rise again past pi
    assert got[0, 1] < got[1, 1] < got[2, 1] and got[0, 1] < naive - 5


def test_softmax_head_is_a_linear_classifier(random_case):
    embedding, kernel, labels = random_case
    bias = np.linspace(-1, 1, CLASSES).astype(np.float32)
    got = np.asarray(head_with("softmax", kernel, bias=bias)(tf.constant(embedding), tf.constant(labels)))
    np.testing.assert_allclose(got, embedding @ kernel + bias, rtol=1e-5, atol=1e-5)


def test_margin_head_refuses_unknown_kinds_and_huge_arcface_margins():
    with pytest.raises(PipelineError, match="recognizer.loss"):
        MarginHead(3, "sphereface", 30.0, 0.35)
    with pytest.raises(PipelineError, match="recognizer.margin"):
        MarginHead(3, "arcface", 30.0, 1.6)
    MarginHead(3, "cosface", 30.0, 1.6)  # a cosine margin has no such limit


def test_margin_head_round_trips_its_config():
    head = MarginHead(7, "arcface", 64.0, 0.4, name="margin_head")
    again = MarginHead.from_config(head.get_config())
    assert (again.classes, again.kind, again.scale, again.margin, again.name) == (7, "arcface", 64.0, 0.4,
                                                                                   "margin_head")


# --- losses -----------------------------------------------------------------------------------------------------


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_softmax[np.arange(len(labels)), labels]


def test_classification_loss_ignores_unlabelled_samples():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(5, 4)).astype(np.float32) * 3
    labels = np.array([0, -1, 3, -1, 1], np.int32)
    labelled = labels >= 0
    got = float(classification_loss(tf.constant(logits), tf.constant(labels)))
    assert got == pytest.approx(cross_entropy(logits[labelled], labels[labelled]).mean(), rel=1e-5)
    changed = logits.copy()
    changed[~labelled] = rng.normal(size=(2, 4)) * 100  # whatever the unlabelled rows say
    assert float(classification_loss(tf.constant(changed), tf.constant(labels))) == pytest.approx(got, rel=1e-6)
    assert float(classification_loss(tf.constant(logits), tf.constant(np.full(5, -1, np.int32)))) == 0.0


def test_distillation_loss_is_zero_for_the_same_direction_and_skips_samples_without_a_teacher():
    rng = np.random.default_rng(4)
    student = rng.normal(size=(4, 128)).astype(np.float32)
    teacher = 2.5 * student  # same directions, another length
    everyone = tf.constant([True] * 4)
    assert float(distillation_loss(tf.constant(student), tf.constant(teacher), everyone)) == pytest.approx(0, abs=1e-6)
    teacher[1] = -student[1]  # 1 - cos = 2, but that sample has no teacher
    teacher[3] = rng.normal(size=128)
    has = np.array([True, False, True, True])
    got = float(distillation_loss(tf.constant(student), tf.constant(teacher), tf.constant(has)))
    cos3 = student[3] @ teacher[3] / np.linalg.norm(student[3]) / np.linalg.norm(teacher[3])
    assert got == pytest.approx((1 - cos3) / 3, rel=1e-4, abs=1e-6)
    assert float(distillation_loss(tf.constant(student), tf.constant(teacher), tf.constant([False] * 4))) == 0.0



def test_centred_distillation_compares_the_embeddings_as_the_runtimes_normalise_them():
    from models.recognizer.centre import mean_direction, normalised

    rng = np.random.default_rng(5)
    shared = rng.normal(size=128) * 3  # a common component, as trained embeddings have
    student = (shared + rng.normal(size=(6, 128))).astype(np.float32)
    teacher = (shared + rng.normal(size=(6, 128))).astype(np.float32)
    centre = mean_direction(np.concatenate([student, teacher]))
    everyone = tf.constant([True] * 6)
    got = float(distillation_loss(tf.constant(student), tf.constant(teacher), everyone, tf.constant(centre)))
    want = float(np.mean(1 - np.sum(normalised(student, centre) * normalised(teacher, centre), axis=1)))
    plain = float(distillation_loss(tf.constant(student), tf.constant(teacher), everyone))
    assert got == pytest.approx(want, rel=1e-4)
    assert got > 2 * plain  # the shared component no longer hides the differences

# --- embedders --------------------------------------------------------------------------------------------------


def model_cfg(family: str, side: int = 128, width: float = 0.125) -> dict:
    return {"family": family, "width": width, "min_channels": 8, "input_size": [side, side]}


@pytest.mark.parametrize(("family", "side"), [("skip_darknet19", 128), ("mobilefacenet", 128),
                                              ("mobilefacenet", 112)])
def test_embedders_give_128_values_from_a_4x4_map(family, side):
    model = build_embedder(model_cfg(family, side), 128, 32)
    assert tuple(model.input.shape) == (None, side, side, 3)
    assert tuple(model.output.shape) == (None, 128)
    assert tuple(model.get_layer("head_reduce").input.shape[1:3]) == (4, 4)
    assert model.get_layer("head_reduce").filters == 32
    out = np.asarray(model(np.random.default_rng(0).random((2, side, side, 3), np.float32), training=False))
    assert out.shape == (2, 128) and np.all(np.isfinite(out))


def test_skip_darknet19_at_112_is_refused_naming_the_input_size():
    with pytest.raises(PipelineError) as caught:
        build_embedder(model_cfg("skip_darknet19", 112), 128, 32)
    assert caught.value.field == "model.input_size" and "[128, 128]" in str(caught.value)


@pytest.mark.parametrize("size", [[96, 96], [128, 112]])
def test_other_input_sizes_are_refused(size):
    with pytest.raises(PipelineError, match="model.input_size"):
        build_embedder({**model_cfg("mobilefacenet"), "input_size": size}, 128, 32)


def test_an_unknown_family_is_refused():
    with pytest.raises(PipelineError) as caught:
        build_embedder(model_cfg("resnet50"), 128, 32)
    assert caught.value.field == "model.family" and "mobilefacenet" in str(caught.value)


def test_a_saved_skip_darknet19_loads_back_with_its_reorg_layer(tmp_path):
    model = build_embedder(model_cfg("skip_darknet19"), 128, 16)
    path = tmp_path / "model.keras"
    model.save(path)
    images = np.random.default_rng(1).random((2, 128, 128, 3), np.float32)
    np.testing.assert_allclose(np.asarray(load_embedder(path)(images)), np.asarray(model(images)), atol=1e-5)
    with pytest.raises(PipelineError, match="invoke train"):
        load_embedder(tmp_path / "missing.keras")
    (tmp_path / "bad.keras").write_bytes(b"not a zip")
    with pytest.raises(PipelineError, match="cannot load"):
        load_embedder(tmp_path / "bad.keras")


def embedder_builder(cfg: dict, _classes: int) -> keras.Model:
    return build_embedder(cfg, 128, 32)


def test_check_budget_refuses_an_over_budget_embedder_naming_a_width_that_fits():
    cfg = model_cfg("skip_darknet19", width=0.25)
    with pytest.raises(PipelineError) as caught:
        check_budget(cfg, 0, 1.0, build=embedder_builder)
    assert caught.value.field == "model.width"
    advised = float(re.search(r"model\.width <= ([0-9.]+) fits", str(caught.value)).group(1))
    assert 0.125 < advised < 0.25
    assert check_budget({**cfg, "width": advised}, 0, 1.0, build=embedder_builder).uint8_mib <= 1.0
    assert measure_config({**cfg, "width": advised + WIDTH_STEP}, 0, embedder_builder).uint8_mib > 1.0


# --- augmentation -----------------------------------------------------------------------------------------------


def centred_window(wide: np.ndarray, fraction: float, size: int) -> np.ndarray:
    """The centred window of `fraction` of the wide crop's side, resampled as augment_batch does, in grey levels."""
    half = fraction / 2
    box = [[0.5 - half, 0.5 - half, 0.5 + half, 0.5 + half]]
    return tf.image.crop_and_resize(wide[None].astype(np.float32), box, [0], (size, size)).numpy()[0]


def celeba_faces(count: int) -> list[tuple[np.ndarray, tuple]]:
    from models.data.records import read_image
    from models.recognizer.face_boxes import celeba_boxes

    root = shared_path("celeba299")
    boxes = celeba_boxes(root)
    return [(read_image(root / key), box) for key, box in list(boxes.items())[:count]]


def test_the_centred_window_of_the_roomy_crop_is_the_policy_crop():
    policy = CropPolicy(128, 250)
    roomy = roomy_policy(policy)
    assert roomy.size == round(128 * ROOM)
    assert (1000 + 2 * roomy.margin_permille) / (1000 + 2 * policy.margin_permille) == pytest.approx(ROOM, abs=2e-3)
    for image, box in celeba_faces(5):
        crop = crop_face(image, box, policy).astype(np.float32)
        wide = crop_face(image, box, roomy)
        assert np.abs(centred_window(wide, 1 / ROOM, 128) - crop).mean() < 3
        assert np.abs(centred_window(wide, 1 / 1.08, 128) - crop).mean() > 6  # a window 6% off is far


def wide_batch(count: int = 4, side: int = 37) -> np.ndarray:
    return np.random.default_rng(9).integers(0, 256, (count, side, side, 3), dtype=np.uint8)


def test_augment_batch_shape_range_and_seeded_determinism():
    images = tf.constant(wide_batch())
    out = augment_batch(images, 32, 0.5, tf.constant([1, 2], tf.int64)).numpy()
    assert out.shape == (4, 32, 32, 3) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_array_equal(augment_batch(images, 32, 0.5, tf.constant([1, 2], tf.int64)).numpy(), out)
    assert not np.allclose(augment_batch(images, 32, 0.5, tf.constant([1, 3], tf.int64)).numpy(), out)


def test_gray_prob_one_greys_every_crop_and_zero_none():
    images = tf.constant(wide_batch())
    grey = augment_batch(images, 32, 1.0, tf.constant([5, 6], tf.int64)).numpy()
    np.testing.assert_allclose(grey[..., 0], grey[..., 1], atol=1e-6)
    np.testing.assert_allclose(grey[..., 1], grey[..., 2], atol=1e-6)
    colour = augment_batch(images, 32, 0.0, tf.constant([5, 6], tf.int64)).numpy()
    assert np.abs(colour[..., 0] - colour[..., 1]).mean() > 0.05


def test_training_batches_hold_whole_batches_of_jittered_crops():
    crops = wide_batch(count=10)
    labels = np.arange(10) % 3
    teacher = np.random.default_rng(0).normal(size=(10, 128))
    data = training_batches(crops, labels, teacher, np.arange(10) % 2 == 0, 32, 4, 0.3, seed=1)
    batches = list(data)
    assert len(batches) == 2  # 10 // 4, the remainder dropped
    for batch in batches:
        assert batch["image"].shape == (4, 32, 32, 3) and batch["image"].dtype == tf.float32
        assert batch["label"].dtype == tf.int32 and batch["teacher"].shape == (4, 128)
        assert batch["has_teacher"].dtype == tf.bool
    np.testing.assert_array_equal(eval_images(crops[:1]), crops[:1].astype(np.float32) / 255)
