"""Augmentation keeps boxes on the same pixels; the tf.data pipeline yields the documented tensors."""

from __future__ import annotations

import numpy as np
import pytest

from models.augment import augment, letterbox
from models.data.records import DetectionRecord

COLOURS = np.array([[250, 20, 20], [20, 250, 20], [20, 20, 250], [250, 250, 20]], np.uint8)


def _scene(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    h, w = int(rng.integers(150, 400)), int(rng.integers(150, 400))
    image = np.full((h, w, 3), 128, np.uint8)
    boxes = []
    for index, colour in enumerate(COLOURS):  # one box per quadrant, so no box hides another
        bw, bh = int(rng.integers(20, 60)), int(rng.integers(20, 60))
        left, top = (index % 2) * (w // 2), (index // 2) * (h // 2)
        x1 = left + int(rng.integers(0, w // 2 - bw))
        y1 = top + int(rng.integers(0, h // 2 - bh))
        image[y1:y1 + bh, x1:x1 + bw] = colour
        boxes.append([x1, y1, x1 + bw, y1 + bh])
    return image, np.asarray(boxes, np.float32), np.arange(len(COLOURS))


def _fraction(image: np.ndarray, region: tuple[int, int, int, int], colour: np.ndarray) -> float:
    x1, y1, x2, y2 = region
    patch = image[y1:y2, x1:x2].astype(int)
    if patch.size == 0:
        return float("nan")
    return float((np.abs(patch - colour).sum(axis=2) < 60).mean())


@pytest.mark.parametrize("seed", range(25))
def test_boxes_cover_the_same_pixels_after_augmentation(seed):
    rng = np.random.default_rng(seed)
    image, boxes, labels = _scene(rng)
    out, out_boxes, out_labels = augment(image, boxes, labels, rng, colour=False)
    out, out_boxes, _ = letterbox(out, out_boxes, (320, 256))
    for box, label in zip(out_boxes, out_labels, strict=True):
        x1, y1, x2, y2 = box
        if min(x2 - x1, y2 - y1) < 6:
            continue
        inner = (int(np.ceil(x1)) + 2, int(np.ceil(y1)) + 2, int(x2) - 2, int(y2) - 2)
        assert _fraction(out, inner, COLOURS[label]) > 0.95
        # one band just outside each side holds no box colour (the box is tight), unless the side is an image edge
        for band in ((int(x1) - 4, int(y1) + 2, int(x1) - 2, int(y2) - 2),
                     (int(x2) + 2, int(y1) + 2, int(x2) + 4, int(y2) - 2)):
            if band[0] >= 0 and band[2] <= out.shape[1]:
                assert _fraction(out, band, COLOURS[label]) < 0.2


def test_colour_jitter_changes_pixels_not_boxes():
    rng = np.random.default_rng(3)
    image, boxes, labels = _scene(rng)
    _, boxes_a, _ = augment(image, boxes, labels, np.random.default_rng(5), colour=False)
    jittered, boxes_b, _ = augment(image, boxes, labels, np.random.default_rng(5), colour=True)
    np.testing.assert_array_equal(boxes_a, boxes_b)


def test_letterbox_round_trip():
    image = np.zeros((240, 320, 3), np.uint8)
    boxes = np.array([[10, 20, 110, 220]], np.float32)
    canvas, moved, info = letterbox(image, boxes, (320, 256))
    assert canvas.shape == (256, 320, 3) and (info.pad_x, info.pad_y) == (0, 8)
    np.testing.assert_allclose(info.to_image(moved), boxes, atol=1e-4)


def test_dataset_tensors(tmp_path):
    from PIL import Image

    from models.pipeline import detection_dataset

    records = []
    for i in range(5):
        image, boxes, labels = _scene(np.random.default_rng(i))
        path = tmp_path / f"{i}.png"
        Image.fromarray(image).save(path)
        records.append(DetectionRecord(path, boxes, labels, image.shape[1], image.shape[0]))
    batches = list(detection_dataset(records, (320, 256), batch_size=2, augment=True, seed=1, max_boxes=6))
    assert [int(b[0].shape[0]) for b in batches] == [2, 2, 1]
    images, target = batches[0]
    assert images.shape == (2, 256, 320, 3) and images.dtype.name == "float32"
    assert float(images.numpy().min()) >= 0 and float(images.numpy().max()) <= 1
    assert target["boxes"].shape == (2, 6, 4) and target["labels"].shape == (2, 6)
    labels = target["labels"].numpy()
    valid = labels >= 0
    assert valid.any() and (labels[~valid] == -1).all()
    b = target["boxes"].numpy()[valid]
    assert (b >= 0).all() and (b <= 1).all() and (b[:, 2] > b[:, 0]).all()
    plain = list(detection_dataset(records, (320, 256), batch_size=5, augment=False, seed=1, max_boxes=6))
    again = list(detection_dataset(records, (320, 256), batch_size=5, augment=False, seed=1, max_boxes=6))
    np.testing.assert_array_equal(plain[0][0].numpy(), again[0][0].numpy())
