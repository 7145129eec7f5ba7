"""Realism read in a feature space that knows ultrasound: density and coverage, a permutation test against the
real reference, and the images a realism measure must reject.

Why: the audit's random-CNN KID reads intensity statistics, so a blurred grey blob with the right histogram
scores as realistic. In the ultrasound encoder's space (`ultrasound_encoder`) the same set is compared with
held-out real frames of the class, beside the real reference (the class's real training frames against the same
held-out frames, at the same sizes), and the verdict is a one-sided permutation test:

- `mmd_permutation_test`: D = MMD^2(set, held-out) - MMD^2(real training, held-out) (unbiased, KID's cubic
  kernel, equal sizes); its p-value is the share of random relabellings of set + real training frames (the
  null: the two are exchangeable) with a D at least as large, the observed one counted. A set counts as
  realistic when p > `StructureCriterion.alpha`: no evidence that it lies farther from the held-out frames than
  real frames of other patients do. The test relabels images, not subsets of one sample, so it sees a set that
  is off as a whole even when some of its images are fine. (An interval rule on subset KIDs passed
  heterogeneous sets of blobs at 20 frames a side; benchmarks/bench_conditional_ddpm.py.)
- Density and coverage (Naeem et al. 2020) on the held-out frames' k-NN manifold: density about 1 when a set
  follows the real distribution (above 1 when it crowds into dense regions), coverage the share of real
  neighbourhoods it reaches; KID beside them. Each with its real reference, over seeded subsets.
- `degraded_images`: real frames made unrealistic as weak generators do (noise, blur, block upsampling,
  half-denoised noise): what the measure must reject (tests/test_realism_structure.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from lus_utils.generate.realism import kid, resize_grey


# --- density and coverage -----------------------------------------------------------------------------------
def _pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(squared, 0))


def density_coverage(real: np.ndarray, candidate: np.ndarray, k: int) -> dict[str, float]:
    """Density and coverage of `candidate` features on the k-NN manifold of `real` features.

    Each real sample's ball reaches its k-th nearest other real sample. Density: the mean number of balls a
    candidate lies in, over k. Coverage: the share of real balls holding at least one candidate."""
    real, candidate = np.asarray(real, dtype=np.float64), np.asarray(candidate, dtype=np.float64)
    if len(real) <= k:
        raise ValueError(f"density/coverage with k={k} needs more than k real samples, got {len(real)}")
    radii = np.sort(_pairwise_distances(real, real), axis=1)[:, k]  # column 0 is the sample itself
    inside = _pairwise_distances(real, candidate) <= radii[:, None]  # (real, candidate)
    return {"density": float(inside.sum() / (k * len(candidate))), "coverage": float(inside.any(axis=1).mean())}


def _interval(values: np.ndarray) -> dict[str, float]:
    low, high = np.quantile(values, [0.025, 0.975])
    return {"mean": float(values.mean()), "ci_low": float(low), "ci_high": float(high)}


def density_coverage_subsets(real: np.ndarray, candidate: np.ndarray, k: int, subset_size: int, n_subsets: int,
                             seed: int) -> dict[str, Any]:
    """Density and coverage averaged over seeded subsets of equal size on both sides (as `realism.kid`), with
    the 2.5-97.5 % range of the subset values."""
    m = min(subset_size, len(real), len(candidate))
    if m <= k:
        raise ValueError(f"density/coverage with k={k} needs subsets of more than k images, got {m}")
    rng = np.random.default_rng([seed, 23])
    values = [density_coverage(real[rng.choice(len(real), m, replace=False)],
                               candidate[rng.choice(len(candidate), m, replace=False)], k) for _ in range(n_subsets)]
    return {name: _interval(np.array([v[name] for v in values])) for name in ("density", "coverage")} | {
        "subset_size": int(m), "n_subsets": int(n_subsets), "k": int(k)}


# --- the permutation test -------------------------------------------------------------------------------------
def _kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1) ** 3  # KID's cubic polynomial kernel


def mmd_permutation_test(candidate: np.ndarray, reference: np.ndarray, holdout: np.ndarray, n_permutations: int,
                         seed: int) -> dict[str, float]:
    """Is `candidate` farther from `holdout` than `reference` is? D and its one-sided permutation p-value (module
    doc). Images are the unit: frames of one video count as exchangeable, so a set of one or two patients can
    fail against other patients' frames."""
    candidate, reference, holdout = (np.asarray(x, dtype=np.float64) for x in (candidate, reference, holdout))
    n = len(candidate)
    if n < 2 or len(reference) != n or len(holdout) != n:
        raise ValueError(f"the test needs equal sets of at least 2, got {len(candidate)}, {len(reference)}, "
                         f"{len(holdout)}")
    pooled = np.concatenate([candidate, reference])
    within, across = _kernel(pooled, pooled), _kernel(pooled, holdout)
    k_holdout = _kernel(holdout, holdout)
    holdout_term = (k_holdout.sum() - np.trace(k_holdout)) / (n * (n - 1))

    def mmd2(index: np.ndarray) -> float:
        block = within[np.ix_(index, index)]
        return float((block.sum() - np.trace(block)) / (n * (n - 1)) + holdout_term - 2 * across[index].mean())

    order = np.arange(2 * n)
    observed = mmd2(order[:n]) - mmd2(order[n:])
    rng = np.random.default_rng([seed, 37])
    permuted = np.array([mmd2(p[:n]) - mmd2(p[n:]) for p in (rng.permutation(2 * n) for _ in range(n_permutations))])
    return {"difference": float(observed), "p_value": float((1 + (permuted >= observed).sum()) / (1 + n_permutations)),
            "n_permutations": int(n_permutations)}


def compare_structure(synthetic_features: np.ndarray, train_features: np.ndarray, holdout_features: np.ndarray,
                      kid_subset: int, kid_subsets: int, k: int, seed: int, n_permutations: int) -> dict[str, Any]:
    """KID, density and coverage of the synthetic set and of the real reference (real training frames) against
    held-out real frames, at the same sizes on every side (n = the smallest of the three sets; subsets of
    min(kid_subset, n // 2) images, at least k + 1), and the permutation test the criterion reads."""
    n = min(len(synthetic_features), len(train_features), len(holdout_features))
    rng = np.random.default_rng([seed, 11])

    def cut(features: np.ndarray) -> np.ndarray:
        return np.asarray(features)[np.sort(rng.choice(len(features), n, replace=False))]

    synthetic, train, holdout = cut(synthetic_features), cut(train_features), cut(holdout_features)
    subset = min(n, max(k + 1, min(kid_subset, n // 2)))
    result: dict[str, Any] = {"n_per_side": int(n)}
    for name, x in (("synthetic_vs_holdout", synthetic), ("real_train_vs_holdout", train)):
        result[name] = {"kid": kid(x, holdout, subset, kid_subsets, seed),
                        **density_coverage_subsets(holdout, x, k, subset, kid_subsets, seed)}
    result["farther_than_reference"] = mmd_permutation_test(synthetic, train, holdout, n_permutations, seed)
    return result


@dataclass(frozen=True)
class StructureCriterion:
    """When a set counts as realistic: the permutation test finds no evidence at `alpha` that it lies farther
    from held-out real frames than the real reference frames do."""

    alpha: float = 0.05

    @property
    def text(self) -> str:
        return ("permutation test in the ultrasound encoder's space (images relabelled between the set and the real "
                "training frames, equal sizes): MMD^2(set, held-out real) - MMD^2(real training, held-out real) not "
                f"larger than by chance, p > {self.alpha}")

    def __call__(self, comparison: dict[str, Any]) -> bool:
        return bool(comparison["farther_than_reference"]["p_value"] > self.alpha)


STRUCTURE_CRITERION = StructureCriterion()


# --- what a realism measure must reject ------------------------------------------------------------------------
def degraded_images(images: np.ndarray, size: int, seed: int, blur_sigma: float = 1.5,
                    block_factor: int = 4) -> dict[str, np.ndarray]:
    """Real frames made unrealistic in the ways a weak generator is, all grey uint8 at `size` px:
    - `noise`: Gaussian noise with the frames' own mean and spread (a generator that learned nothing);
    - `blurred`: the frames blurred (Gaussian, `blur_sigma` px at `size`; the 3-frame DDPM's blobs);
    - `block_upsampled`: shrunk `block_factor` times and blown up with nearest-neighbour (a low-resolution image
      written at a larger size);
    - `half_denoised`: the frames under Gaussian noise of their own spread (a sampler that stopped half-way, as
      DDIM's few deterministic steps leave a briefly trained generator's images)."""

    grey = resize_grey(images, size)
    rng = np.random.default_rng([seed, 29])
    noise = rng.normal(grey.mean(), grey.std(), grey.shape)
    small = max(1, size // block_factor)
    blocky = [cv2.resize(cv2.resize(g, (small, small), interpolation=cv2.INTER_AREA), (size, size),
                         interpolation=cv2.INTER_NEAREST) for g in grey]
    blurred = [cv2.GaussianBlur(g, (0, 0), blur_sigma) for g in grey]
    half_denoised = grey + rng.normal(0, grey.std(), grey.shape)

    def as_uint8(x) -> np.ndarray:
        return np.clip(np.rint(np.asarray(x)), 0, 255).astype(np.uint8)

    return {"noise": as_uint8(noise), "blurred": as_uint8(blurred), "block_upsampled": as_uint8(blocky),
            "half_denoised": as_uint8(half_denoised)}
