"""The project's one letterbox (models/letterbox.py): what training, evaluation and the firmware feed the models."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from models.letterbox import WEIGHT_BITS, axis_taps, letterbox_fit, letterbox_image, resize

SIZES = [((300, 400), (240, 320)), ((480, 640), (256, 341)), ((100, 120), (256, 307)), ((37, 53), (200, 286)),
         ((61, 33), (256, 139)), ((1000, 1500), (171, 256))]


@pytest.mark.parametrize(("src", "dst"), [(400, 320), (33, 139), (1500, 256), (7, 7), (1, 5), (5, 1)])
def test_every_output_pixel_has_weights_summing_to_one_in_fixed_point(src, dst):
    index, weight = axis_taps(src, dst)
    sums = weight.sum(axis=1)
    assert index.max() < src and (weight >= 0).all()
    assert np.abs(sums - (1 << WEIGHT_BITS)).max() <= index.shape[1]  # each weight rounded by at most 1/2


def test_the_same_size_is_an_exact_copy():
    image = np.random.default_rng(0).integers(0, 256, (31, 47, 3), dtype=np.uint8)
    index, weight = axis_taps(47, 47)
    assert ((weight > 0).sum(axis=1) == 1).all() and (weight.max(axis=1) == 1 << WEIGHT_BITS).all()
    assert (index[weight > 0] == np.arange(47)).all()
    assert np.array_equal(resize(image, 47, 31), image)


@pytest.mark.parametrize(("src_hw", "dst_hw"), SIZES)
def test_it_is_within_one_level_of_pils_bilinear_filter(src_hw, dst_hw):
    """PIL's BILINEAR (what training used before) filters the same way; only its rounding differs."""
    image = np.random.default_rng(src_hw[0]).integers(0, 256, (*src_hw, 3), dtype=np.uint8)
    ours = resize(image, dst_hw[1], dst_hw[0]).astype(int)
    pil = np.asarray(Image.fromarray(image).resize((dst_hw[1], dst_hw[0]), Image.BILINEAR)).astype(int)
    assert np.abs(ours - pil).max() <= 1 and np.abs(ours - pil).mean() < 0.05


def test_the_letterbox_centres_the_fitted_frame_and_fills_the_rest():
    image = np.full((240, 320, 3), 200, np.uint8)
    canvas, fit = letterbox_image(image, (320, 256), fill=7)
    assert fit == letterbox_fit((320, 240), (320, 256)) and (fit.width, fit.height, fit.pad_y) == (320, 240, 8)
    assert (canvas[:8] == 7).all() and (canvas[248:] == 7).all() and (canvas[8:248] == 200).all()
