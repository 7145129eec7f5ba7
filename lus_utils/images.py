"""Reading frames (one loader, one resize rule) and the intensity statistics that describe real frames and
gate synthetic ones."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import cv2
import numpy as np


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """`image` squashed to a `size` x `size` square: area averaging to shrink, bicubic to enlarge."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    interpolation = cv2.INTER_AREA if size < max(image.shape[:2]) else cv2.INTER_CUBIC
    return cv2.resize(image, (size, size), interpolation=interpolation)


def load_image(path: str | Path, size: int | None = None, grayscale: bool = False) -> np.ndarray:
    """One frame as a uint8 RGB (or grey) array, optionally resized to a square of `size` pixels."""
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE if grayscale else cv2.IMREAD_COLOR)
    if image is None:
        raise OSError(f"cannot read image {path}")
    if not grayscale:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return resize(image, size) if size else image


def load_images(paths: Iterable[str | Path], size: int, grayscale: bool = False) -> np.ndarray:
    """Frames as one uint8 array, (N, size, size, 3) RGB or (N, size, size) grey; N may be 0."""
    images = [load_image(p, size, grayscale) for p in paths]
    if not images:
        return np.zeros((0, size, size) if grayscale else (0, size, size, 3), dtype=np.uint8)
    return np.stack(images)


def to_grey(image: np.ndarray) -> np.ndarray:
    """uint8 grey levels (ITU-R 601 luma for RGB input)."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 3:
        image = image[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        image = np.clip(np.rint(image), 0, 255)
    return image.astype(np.uint8)


def histogram_entropy(grey: np.ndarray) -> float:
    """Entropy in nats of the 256-bin grey-level histogram (the original study's gate used natural log)."""
    counts = np.bincount(np.asarray(grey, dtype=np.uint8).ravel(), minlength=256).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def intensity_stats(image: np.ndarray) -> dict[str, float]:
    """Mean, standard deviation (0-255 scale) and histogram entropy (nats) of a frame's grey levels."""
    grey = to_grey(image)
    return {"mean": float(grey.mean()), "std": float(grey.std()), "entropy": histogram_entropy(grey)}
