"""Training batches of the recognizer: policy crops taken with extra room, then a random window of them (scale and
shift jitter), mirrored, greyed and lit differently, as float32 in [0, 1]."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from models.recognizer.crop import CropPolicy

ROOM = 1.15  # the training crop is this much wider than the policy's; the centred window of 1/ROOM is the policy crop
WINDOW_RANGE = (0.78, 0.96)  # window side as a fraction of the wide crop (1/ROOM = 0.87 in the middle)
SHIFT = 0.05  # window centre jitter, as a fraction of the wide crop


def roomy_policy(policy: CropPolicy) -> CropPolicy:
    """The wider crop training samples windows from: ROOM times the side, at ROOM times the pixels."""
    margin = ((1000 + 2 * policy.margin_permille) * ROOM - 1000) / 2
    return CropPolicy(int(round(policy.size * ROOM)), int(round(margin)))


def augment_batch(images: tf.Tensor, size: int, gray_prob: float, seed: tf.Tensor) -> tf.Tensor:
    """(B, S', S', 3) uint8 wide crops -> (B, size, size, 3) float32 jittered windows."""
    batch = tf.shape(images)[0]
    seeds = tf.random.experimental.stateless_split(seed, 6)
    side = tf.random.stateless_uniform((batch,), seeds[0], *WINDOW_RANGE)
    centre = 0.5 + tf.random.stateless_uniform((batch, 2), seeds[1], -SHIFT, SHIFT)
    boxes = tf.stack([centre[:, 0] - side / 2, centre[:, 1] - side / 2, centre[:, 0] + side / 2,
                      centre[:, 1] + side / 2], axis=1)
    x = tf.image.crop_and_resize(tf.cast(images, tf.float32) / 255.0, boxes, tf.range(batch), (size, size))
    flip = tf.random.stateless_uniform((batch, 1, 1, 1), seeds[2]) < 0.5
    x = tf.where(flip, tf.reverse(x, axis=[2]), x)
    gray = tf.random.stateless_uniform((batch, 1, 1, 1), seeds[3]) < gray_prob
    x = tf.where(gray, tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(x)), x)
    contrast = tf.random.stateless_uniform((batch, 1, 1, 1), seeds[4], 0.75, 1.25)
    brightness = tf.random.stateless_uniform((batch, 1, 1, 1), seeds[5], -0.12, 0.12)
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    return tf.clip_by_value((x - mean) * contrast + mean + brightness, 0.0, 1.0)


def training_batches(crops: np.ndarray, labels: np.ndarray, teacher: np.ndarray, has_teacher: np.ndarray,
                     size: int, batch_size: int, gray_prob: float, seed: int) -> tf.data.Dataset:
    """Reshuffled batches of ({"image", "label", "teacher", "has_teacher"}) for the recognizer's train step."""
    count = len(crops)
    data = tf.data.Dataset.from_tensor_slices({"image": crops, "label": labels.astype(np.int32),
                                               "teacher": teacher.astype(np.float32), "has_teacher": has_teacher})
    data = data.shuffle(count, seed=seed, reshuffle_each_iteration=True).batch(batch_size, drop_remainder=True)
    steps = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)

    def jitter(batch: dict, draw: tf.Tensor) -> dict:
        return {**batch, "image": augment_batch(batch["image"], size, gray_prob, draw)}

    return tf.data.Dataset.zip(data, steps).map(jitter, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)


def eval_images(crops: np.ndarray) -> np.ndarray:
    """Policy crops (uint8) as the model input: float32 in [0, 1]."""
    return crops.astype(np.float32) / 255.0


def centre_windows(wide: np.ndarray, size: int) -> np.ndarray:
    """Wide training crops (uint8, roomy_policy) -> their centred policy-crop windows as model input (float32)."""
    side = 1.0 / ROOM
    box = [0.5 - side / 2, 0.5 - side / 2, 0.5 + side / 2, 0.5 + side / 2]
    return np.asarray(tf.image.crop_and_resize(tf.cast(wide, tf.float32) / 255.0, [box] * len(wide),
                                               tf.range(len(wide)), (size, size)))
