"""How real synthetic frames look: a gate calibrated on real frames, KID and a classifier two-sample test.

Why this module exists: the original study's gate (grey std > 30, entropy > 4.7) keeps noise and rejects real viral
frames, and a Fréchet distance in the study's own classifier's feature space, from a few dozen frames, is
bias-dominated and in-sample. The figures here are meant to be read at tens of images:

- Feature space: a randomly initialised CNN with fixed, seeded weights (`RandomCNN`), the same for every
  condition, never the classifier under test. Random convolutional features are a published choice for
  domains far from ImageNet (Naeem et al. 2020, "Reliable fidelity and diversity metrics for generative
  models"); they respond to local texture and layout, which is what separates speckle from noise.
- KID: the unbiased MMD^2 estimate with the cubic polynomial kernel (Bińkowski et al. 2018), averaged over
  seeded subsets of equal size on both sides; the interval is the 2.5-97.5 % range of the subset estimates.
- C2ST: a logistic regression on the standardised features tells the two sets apart; its out-of-fold AUROC
  (0.5: indistinguishable) with a seeded bootstrap interval (Lopez-Paz & Oquab 2017). Both sides are cut to
  the same size.
- The real reference compares real frames with real frames (the fold's minority training frames against
  held-out minority frames of other patients) at the same sizes, so it is the scale a synthetic set is read on.
- The gate: per-image statistics (mean, std, share of dark pixels, roughness) must lie inside the range of
  the fold's real minority training frames, widened by a margin. Noise is rough and has no dark background;
  flat grey has no spread; both fall outside what real frames do.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
from scipy.stats import rankdata
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from lus_utils.synthetic_sets import original_gate
from lus_utils.images import load_image

FEATURE_SIZE = 64  # grey images are resized to this side before the random CNN
FEATURE_SEED = 0  # the random CNN's weights: fixed, so every condition is measured in one space
CNN_WIDTHS = (16, 32, 64, 128)
GATE_SIZE = 64  # side at which the gate statistics are computed
DARK_LEVEL = 20  # grey level (0-255) under which a pixel counts as dark (background outside the sector)
GATE_STATISTICS = ("mean", "std", "dark_share", "roughness")
ORIGINAL_GATE = "seed"  # the original study's std/entropy gate, kept as a named option
REAL_RANGE_GATE = "real_range"
GATES = (REAL_RANGE_GATE, ORIGINAL_GATE)


# --- feature space ------------------------------------------------------------------------------------------
def resize_grey(images: np.ndarray, size: int) -> np.ndarray:
    """Images (N, H, W) or RGB (N, H, W, 3) as grey float32 (N, size, size): area averaging down, bicubic up."""
    images = np.asarray(images)
    if images.ndim == 4:
        images = images.mean(axis=-1)
    out = [img if img.shape == (size, size) else
           cv2.resize(img.astype(np.float32), (size, size),
                      interpolation=cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_CUBIC)
           for img in images]
    return np.stack(out).astype(np.float32) if out else np.zeros((0, size, size), np.float32)


class RandomCNN:
    """A seeded, randomly initialised CNN: four conv-ReLU-pool stages; features are the spatial mean and
    standard deviation of every stage's channels (multi-scale texture statistics), 2 * sum(CNN_WIDTHS) numbers."""

    def __init__(self, seed: int = FEATURE_SEED, size: int = FEATURE_SIZE):
        self.size = size
        generator = torch.Generator().manual_seed(seed)
        self.weights, channels = [], 1
        for width in CNN_WIDTHS:
            fan_in = channels * 9
            self.weights.append(torch.randn(width, channels, 3, 3, generator=generator)
                                * np.sqrt(2.0 / fan_in))
            channels = width
        self.description = (f"random CNN (seed {seed}, widths {list(CNN_WIDTHS)}, grey {size} px; "
                            f"mean and std of each stage, {2 * sum(CNN_WIDTHS)} features)")

    def __call__(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Features (N, D) of grey uint8 images (N, H, W) (or RGB (N, H, W, 3), averaged to grey)."""
        grey = resize_grey(images, self.size)
        out = []
        with torch.no_grad():
            for start in range(0, len(grey), batch_size):
                x = torch.from_numpy(grey[start:start + batch_size])[:, None] / 127.5 - 1.0
                parts = []
                for w in self.weights:
                    x = torch.relu(torch.nn.functional.conv2d(x, w, padding=1))
                    parts += [x.mean(dim=(2, 3)), x.std(dim=(2, 3))]
                    x = torch.nn.functional.avg_pool2d(x, 2)
                out.append(torch.cat(parts, dim=1).double().numpy())
        return np.concatenate(out) if out else np.zeros((0, 2 * sum(CNN_WIDTHS)))


# --- KID ----------------------------------------------------------------------------------------------------
def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]
    m, n = len(x), len(y)
    kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2 * kxy.mean())


def kid(a: np.ndarray, b: np.ndarray, subset_size: int, n_subsets: int, seed: int) -> dict[str, float]:
    """Unbiased KID between feature sets `a` and `b`: subsets of `min(subset_size, len(a), len(b))` drawn
    without replacement on both sides; mean and 2.5-97.5 % range of the subset estimates."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise ValueError(f"KID needs at least 2 images per side, got {len(a)} and {len(b)}")
    rng = np.random.default_rng(seed)
    values = np.array([_mmd2_unbiased(a[rng.choice(len(a), m, replace=False)],
                                      b[rng.choice(len(b), m, replace=False)]) for _ in range(n_subsets)])
    low, high = np.quantile(values, [0.025, 0.975])
    return {"mean": float(values.mean()), "ci_low": float(low), "ci_high": float(high), "subset_size": int(m),
            "n_subsets": int(n_subsets)}


# --- classifier two-sample test -----------------------------------------------------------------------------
def _auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """sklearn's roc_auc_score by its rank form (Mann-Whitney U, ties at half): the same number without its
    input validation, which cost ~6 ms a call and so most of C2ST's 500-resample bootstrap."""

    ranks = rankdata(np.concatenate([positive, negative]))
    n1, n0 = len(positive), len(negative)
    return float((ranks[:n1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def c2st(a: np.ndarray, b: np.ndarray, seed: int, n_splits: int = 5, n_boot: int = 500,
         groups_a: np.ndarray | None = None) -> dict[str, float]:
    """Held-out AUROC of a logistic regression telling `a` (label 1) from `b` (label 0).

    Both sides are cut to the same size (seeded); predictions are out-of-fold over `n_splits` stratified
    folds; the interval is a seeded percentile bootstrap of the out-of-fold predictions. 0.5 means the
    classifier cannot tell the sets apart.
    """

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    n = min(len(a), len(b))
    if n < n_splits:
        raise ValueError(f"C2ST needs at least n_splits={n_splits} images per side, got {len(a)} and {len(b)}")
    rng = np.random.default_rng(seed)
    a, b = a[rng.choice(len(a), n, replace=False)], b[rng.choice(len(b), n, replace=False)]
    x, y = np.concatenate([a, b]), np.r_[np.ones(n), np.zeros(n)]
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    score = cross_val_predict(model, x, y, cv=folds, method="decision_function")
    auroc = _auroc(score[:n], score[n:])  # rows: a's n, then b's n
    boot = []
    for _ in range(n_boot):
        boot.append(_auroc(score[rng.integers(0, n, n)], score[n + rng.integers(0, n, n)]))
    low, high = np.quantile(boot, [0.025, 0.975])
    return {"auroc": auroc, "ci_low": float(low), "ci_high": float(high), "n_per_side": int(n)}


# --- comparisons against real frames ------------------------------------------------------------------------
def compare_sets(synthetic_features: np.ndarray, train_features: np.ndarray, holdout_features: np.ndarray,
                 kid_subset: int, kid_subsets: int, seed: int, c2st_folds: int = 5) -> dict[str, Any]:
    """KID and C2ST of the synthetic set against held-out real frames, and the real reference (training
    frames against the same held-out frames) at the same sizes: n = min of the three sets on every side;
    KID subsets of min(kid_subset, n // 2) images."""
    n = min(len(synthetic_features), len(train_features), len(holdout_features))
    rng = np.random.default_rng([seed, 11])

    def cut(features: np.ndarray) -> np.ndarray:
        return features[np.sort(rng.choice(len(features), n, replace=False))]

    synthetic, train, holdout = cut(synthetic_features), cut(train_features), cut(holdout_features)
    subset = min(kid_subset, max(2, n // 2))  # subsets smaller than the sets, so that they vary
    result = {"n_per_side": int(n)}
    for name, x in (("synthetic_vs_holdout", synthetic), ("real_train_vs_holdout", train)):
        result[name] = {"kid": kid(x, holdout, subset, kid_subsets, seed), "c2st": c2st(x, holdout, seed, c2st_folds)}
    return result


@dataclass(frozen=True)
class RealismCriterion:
    """When a set counts as realistic: its KID to held-out real frames is not clearly above the real
    reference's (the synthetic interval's low end at most the reference interval's high end)."""

    text: str = ("KID(synthetic, held-out real) ci_low <= KID(real training, held-out real) ci_high "
                 "(same feature space and sizes on both sides)")

    def __call__(self, comparison: dict[str, Any]) -> bool:
        return bool(comparison["synthetic_vs_holdout"]["kid"]["ci_low"]
                    <= comparison["real_train_vs_holdout"]["kid"]["ci_high"])


REALISM_CRITERION = RealismCriterion()


# --- the gate -----------------------------------------------------------------------------------------------
def gate_statistics(images: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image statistics the gate reads, at GATE_SIZE px: grey mean and std (0-255), the share of dark
    pixels (< DARK_LEVEL) and roughness (std of the image minus its 3x3 box blur, over the image's std;
    about 1 for pixel noise, small for smooth images)."""

    grey = resize_grey(images, GATE_SIZE)
    mean = grey.mean(axis=(1, 2))
    std = grey.std(axis=(1, 2))
    dark = (grey < DARK_LEVEL).mean(axis=(1, 2))
    blurred = np.stack([cv2.blur(g, (3, 3)) for g in grey]) if len(grey) else grey
    detail = (grey - blurred).std(axis=(1, 2))
    roughness = np.divide(detail, std, out=np.full_like(std, np.inf), where=std > 0)
    return {"mean": mean, "std": std, "dark_share": dark, "roughness": roughness}


def calibrate_gate(real_images: np.ndarray, quantile: float, margin: float) -> dict[str, Any]:
    """Acceptance ranges from real frames: each statistic's [q, 1 - q] quantile range, widened on both sides
    by `margin` times its width."""
    if len(real_images) < 3:
        raise ValueError(f"the gate needs at least 3 real frames to calibrate on, got {len(real_images)}")
    stats = gate_statistics(real_images)
    ranges = {}
    for name in GATE_STATISTICS:
        low, high = np.quantile(stats[name], [quantile, 1 - quantile])
        pad = margin * (high - low)
        ranges[name] = [float(low - pad), float(high + pad)]
    return {"gate": REAL_RANGE_GATE, "ranges": ranges, "n_calibration": int(len(real_images)),
            "quantile": float(quantile), "margin": float(margin), "size": GATE_SIZE, "dark_level": DARK_LEVEL}


def apply_gate(images: np.ndarray, calibration: dict[str, Any]) -> list[dict[str, Any]]:
    """One verdict per image: its statistics and `passed_gate` (every statistic inside its range)."""
    stats = gate_statistics(images)
    verdicts = []
    for i in range(len(images)):
        row = {f"gate_{name}": float(stats[name][i]) for name in GATE_STATISTICS}
        row["passed_gate"] = bool(all(low <= stats[name][i] <= high
                                      for name, (low, high) in calibration["ranges"].items()))
        verdicts.append(row)
    return verdicts


def noise_images(n: int, size: int, seed: int) -> dict[str, np.ndarray]:
    """What a broken generator makes, to check a gate against: Gaussian noise around mid-grey, uniform
    noise, flat grey and black-and-white saturated noise (uint8, n each)."""
    rng = np.random.default_rng(seed)
    shape = (n, size, size)
    return {"gaussian": np.clip(rng.normal(128, 60, shape), 0, 255).astype(np.uint8),
            "uniform": rng.integers(0, 256, shape).astype(np.uint8),
            "flat_grey": np.clip(rng.normal(128, 3, shape), 0, 255).astype(np.uint8),
            "saturated": (rng.random(shape) < 0.5).astype(np.uint8) * 255}


CALIBRATION_FRAMES = 400  # most real training frames the gate is calibrated on (seeded subset)


def calibration_paths(frames, split_column: str, seed: int) -> list[str]:
    """The real frames a gate is calibrated on: a seeded subset of the split's training part, every class
    (all are ultrasound; the minority class alone has too few patients to give its range)."""
    train = frames[frames[split_column] == "train"]
    if len(train) < 3:
        raise ValueError(f"split column '{split_column}' has {len(train)} training frames; the gate needs 3")
    rng = np.random.default_rng([seed, 13])
    pick = np.sort(rng.choice(len(train), min(CALIBRATION_FRAMES, len(train)), replace=False))
    return train["abspath"].iloc[pick].tolist()


def calibration_images(frames, split_column: str, audit) -> np.ndarray | None:
    """The grey real training frames (`calibration_paths`) the real-range gate calibrates on; None under the
    seed gate, which needs none."""
    if audit.gate == ORIGINAL_GATE:
        return None
    return np.stack([load_image(path, size=GATE_SIZE, grayscale=True)
                     for path in calibration_paths(frames, split_column, audit.audit_seed)])


def quality_gate(images: np.ndarray, audit, real_images: np.ndarray | None) -> tuple[list[dict[str, Any]],
                                                                                      dict[str, Any]]:
    """Verdicts (one per image) of the gate `audit.gate` and the gate's record.

    Every verdict carries the original study's gate's `std` and `entropy` (and `passed_seed_gate`), whichever gate
    decides `passed_gate`: `real_range` needs `real_images` (grey uint8 real training frames).
    """
    seed_verdicts = [original_gate(image, audit.min_std, audit.min_entropy) for image in images]
    seed_record = {"gate": ORIGINAL_GATE, "min_std": audit.min_std, "min_entropy": audit.min_entropy}
    if audit.gate == ORIGINAL_GATE:
        return [{**v, "passed_seed_gate": v["passed_gate"]} for v in seed_verdicts], seed_record
    if real_images is None:
        raise ValueError("the real_range gate needs real training frames to calibrate on (real_images); "
                         "or set audit.gate: seed")
    calibration = calibrate_gate(real_images, audit.gate_quantile, audit.gate_margin)
    verdicts = [{"std": s["std"], "entropy": s["entropy"], "passed_seed_gate": s["passed_gate"], **v}
                for s, v in zip(seed_verdicts, apply_gate(images, calibration))]
    return verdicts, {**calibration, "seed_gate": seed_record}
