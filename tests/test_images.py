"""One loader from frame paths to an array, one resize rule."""
from __future__ import annotations

import cv2
import numpy as np

from lus_utils.images import load_image, load_images, resize


def test_one_loader_stacks_frames_and_handles_none(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i, shape in enumerate([(40, 60, 3), (30, 20, 3)]):
        paths.append(tmp_path / f"{i}.png")
        cv2.imwrite(str(paths[-1]), rng.integers(0, 256, shape, dtype=np.uint8))
    rgb = load_images(paths, 24)
    assert rgb.shape == (2, 24, 24, 3) and rgb.dtype == np.uint8
    assert np.array_equal(rgb[0], load_image(paths[0], 24))
    assert load_images(paths, 16, grayscale=True).shape == (2, 16, 16)
    assert load_images([], 16).shape == (0, 16, 16, 3) and load_images([], 16, grayscale=True).shape == (0, 16, 16)


def test_resize_rule_area_to_shrink_cubic_to_enlarge():
    image = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    assert resize(image, 8) is image
    assert np.array_equal(resize(image, 4), cv2.resize(image, (4, 4), interpolation=cv2.INTER_AREA))
    assert np.array_equal(resize(image, 16), cv2.resize(image, (16, 16), interpolation=cv2.INTER_CUBIC))
