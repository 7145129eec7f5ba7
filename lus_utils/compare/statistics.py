"""The comparison's statistics: the exact Wilcoxon signed-rank test, Holm, what a number of pairs can detect,
and bounded intervals from the class-stratified patient bootstrap.

Choices (stated in the report beside the numbers):
- Paired test: two-sided exact Wilcoxon signed-rank over the paired units ((repeat, seed) pooled metrics).
  Zero differences are DROPPED (Wilcoxon's original treatment; they carry no sign); tied |differences| get
  mid-ranks. The null distribution of the positive rank sum is enumerated exactly over all 2^n sign
  assignments (by convolution over the doubled mid-ranks, which are integers), so ties keep an exact p.
  p = min(1, 2 x min(P(T+ <= t), P(T+ >= t))). With n non-zero pairs the smallest attainable p is 2^(1-n).
- Multiplicity: Holm over the declared primary comparisons alone; exploratory effects get no p-value.
- Minimum detectable effect: paired t-approximation, (t_{1-alpha/2, n-1} + t_{power, n-1}) x SD(diffs) / sqrt(n);
  infinite when even the smallest attainable exact p is >= alpha (no effect can pass, whatever its size).
- Intervals: percentile of the patient-bootstrap draws (stratified by class, see classify.metrics), which
  stays inside the metric's range; a difference interval that is a single point (every resample gives the
  same difference) is degenerate and never counts as excluding zero.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from lus_utils.classify import metrics as M


def finite(values: Sequence[float]) -> np.ndarray:
    """The finite values as floats (None, text, NaN and infinities left out)."""
    out = []
    for value in values:
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            out.append(number)
    return np.asarray(out, dtype=np.float64)


@dataclass(frozen=True)
class WilcoxonResult:
    p: float
    statistic: float  # sum of the ranks of the positive differences
    n_pairs: int  # finite differences given
    n_used: int  # non-zero differences ranked
    n_zero: int  # zero differences dropped
    note: str


def signed_rank_null(doubled_ranks: Sequence[int]) -> np.ndarray:
    """counts[s]: how many of the 2^n sign assignments give a positive doubled-rank sum of s (exact)."""
    counts = np.zeros(int(sum(doubled_ranks)) + 1, dtype=np.float64)
    counts[0] = 1.0
    for r in doubled_ranks:
        shifted = np.zeros_like(counts)
        shifted[r:] = counts[: len(counts) - r]
        counts = counts + shifted
    return counts


def wilcoxon_exact(diffs: Sequence[float]) -> WilcoxonResult:
    """Two-sided exact Wilcoxon signed-rank test of paired differences (zeros dropped, mid-ranks for ties)."""
    d = finite(diffs)
    nonzero = d[d != 0]
    n_zero = len(d) - len(nonzero)
    if len(nonzero) == 0:
        note = "no pairs" if len(d) == 0 else "every difference is zero: no sign to test"
        return WilcoxonResult(math.nan if len(d) == 0 else 1.0, math.nan, len(d), 0, n_zero, note)
    doubled = np.rint(2 * M.midranks(np.abs(nonzero))).astype(np.int64)  # mid-ranks are halves at most
    counts = signed_rank_null(doubled)
    observed = int(doubled[nonzero > 0].sum())
    total = counts.sum()
    lower, upper = counts[: observed + 1].sum() / total, counts[observed:].sum() / total
    p = float(min(1.0, 2 * min(lower, upper)))
    floor = smallest_p(len(nonzero))
    note = f"{n_zero} zero difference(s) dropped" if n_zero else ""
    if floor >= 0.05:
        note = "; ".join(filter(None, [note, f"{len(nonzero)} non-zero pairs: p cannot go below {floor:.3g}"]))
    return WilcoxonResult(p, observed / 2, len(d), len(nonzero), n_zero, note)


def smallest_p(n_nonzero: int) -> float:
    """The smallest two-sided p the exact signed-rank test can give with n untied non-zero pairs: 2^(1-n)."""
    return 2.0 ** (1 - n_nonzero) if n_nonzero >= 1 else math.nan


def pairs_needed(alpha: float) -> int:
    """The fewest pairs whose smallest attainable p is below alpha."""
    n = 1
    while smallest_p(n) >= alpha:
        n += 1
    return n


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm step-down adjusted p-values; NaN stays NaN and does not count as a test."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, math.nan)
    valid = np.flatnonzero(np.isfinite(p))
    m = len(valid)
    order = valid[np.argsort(p[valid], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        out[index] = running
    return out


def minimum_detectable_effect(diffs: Sequence[float], alpha: float, power: float) -> float:
    """Paired t-approximation of the smallest mean difference detected with `power` (module doc).

    NaN with fewer than two pairs (no SD); infinite when the exact test cannot reach alpha at all."""
    d = finite(diffs)
    n = len(d)
    if n < 2:
        return math.nan
    if smallest_p(n) >= alpha:
        return math.inf
    sd = float(d.std(ddof=1))
    return float((stats.t.ppf(1 - alpha / 2, n - 1) + stats.t.ppf(power, n - 1)) * sd / math.sqrt(n))


def percentile_interval(draws: Sequence[float], level: float,
                        bounds: tuple[float, float] = (-math.inf, math.inf)) -> tuple[float, float]:
    """Percentile interval of the finite draws, kept inside `bounds`; NaN without finite draws."""
    x = finite(draws)
    if not len(x):
        return math.nan, math.nan
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(x, [tail, 100 - tail])
    return float(np.clip(lo, *bounds)), float(np.clip(hi, *bounds))


def unit_bootstrap_interval(values: Sequence[float], level: float, n_boot: int, seed: int,
                            bounds: tuple[float, float] = (-math.inf, math.inf)) -> tuple[float, float]:
    """Percentile interval of the mean of independent units (simulated draws), resampled with replacement;
    NaN with fewer than two units."""
    x = finite(values)
    if len(x) < 2:
        return math.nan, math.nan
    rng = np.random.default_rng([seed, 2027])
    means = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)
    return percentile_interval(means, level, bounds)


def degenerate(lo: float, hi: float) -> bool:
    """An interval that is one point (every resample agrees): it carries no uncertainty information."""
    return math.isfinite(lo) and math.isfinite(hi) and hi - lo <= 1e-12


def excludes_zero(lo: float, hi: float) -> bool:
    """True when a proper (non-degenerate) interval lies entirely on one side of zero."""
    return bool(math.isfinite(lo) and math.isfinite(hi) and not degenerate(lo, hi) and (lo > 0 or hi < 0))


class PatientBootstrap:
    """One set of class-stratified patient resamples shared by every run (common random numbers), so a
    condition and its baseline are resampled on the same patients and their difference is paired."""

    def __init__(self, tables: Sequence[pd.DataFrame], minority: str, n_boot: int, seed: int):
        strata: dict[Any, bool] = {}
        for table in tables:
            for patient, flag in M.patient_strata(table, minority).items():
                strata[patient] = strata.get(patient, False) or flag
        self.patients = sorted(strata, key=str)
        self.is_minority = np.array([strata[p] for p in self.patients], dtype=bool)
        self.minority = minority
        self.n_boot = n_boot
        self.draws = M.stratified_patient_draws(self.patients, self.is_minority, n_boot, seed)

    @property
    def n_minority_patients(self) -> int:
        return int(self.is_minority.sum())

    def run_draws(self, table: pd.DataFrame, classes: Sequence[str], metrics: Sequence[str]) -> dict[str, np.ndarray]:
        """Each metric of one run's predictions in every resample (patients the run lacks add no rows)."""
        y_true, y_pred, prob = M._arrays(table, classes)
        threshold = M.thresholds_of(table)
        video = pd.factorize(table["video_id"])[0]
        n_videos = int(video.max()) + 1 if len(video) else 1
        by_patient = table.groupby("patient_id", sort=False).indices
        empty = np.zeros(0, dtype=np.int64)
        groups = [by_patient.get(p, empty) for p in self.patients]
        out = {m: np.full(self.n_boot, math.nan) for m in metrics}
        for b, draw in enumerate(self.draws):
            index, copy = M.resample_rows(groups, draw)
            values = M.endpoints(y_true[index], y_pred[index], prob[index], threshold[index],
                                 video[index] + copy * n_videos, classes, self.minority, wanted=metrics)
            for m in metrics:
                out[m][b] = values.get(m, math.nan)
        return out
