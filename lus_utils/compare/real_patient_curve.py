"""The simulated-minority design's positive control and its yardstick: what real patients are worth.

Per target class, the practitioner's baseline recipe trained with k' real target patients (the curve's points,
nested within each draw) gives the REAL-PATIENT CURVE: the target's metric against k', each point the mean over
draws with an interval over resampled draws. If adding real patients does not raise it, nothing that imitates
them can be expected to, and the limit is the classifier, not the data (`positive_control`).

The EXCHANGE RATE of a condition at k (a synthetic family, the oversampling control, no augmentation): the number
of real patients k* whose curve value the condition matches, minus k ("a DDPM set made from 3 patients is worth
+X real patients"; negative when it hurts). The curve is made monotone (isotonic regression, increasing, on
log k') before it is inverted, by linear interpolation between its points on log k'. A value below the curve's
first point or above its last cannot be placed: it is reported at that bound and marked censored. Its interval
resamples draws (the curve and the condition on the same resampled draws).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression

from lus_utils.compare import statistics as S
from lus_utils.config.classify import EvaluationParams
from lus_utils.vocabulary import Condition

CURVE_COLUMNS = ["target", "arch", "k", "condition", "metric", "estimate", "lower", "upper", "n_draws"]
EXCHANGE_COLUMNS = ["target", "arch", "family", "condition", "metric", "patients", "lower", "upper", "n_draws",
                    "censored"]
CONTROL_COLUMNS = ["target", "arch", "metric", "k_low", "k_high", "difference", "lower", "upper", "n_draws", "rises"]


def _parsed(runs: pd.DataFrame) -> pd.DataFrame:
    simulated = runs[runs["design"] == "simulated_minority"]
    return simulated.assign(_c=[Condition.parse(c) for c in simulated["condition"]])


def is_curve_point(condition: Condition) -> bool:
    """The baseline recipe (augmented, no strategy, nothing added) at some k: a point of the curve."""
    return (condition.augment and condition.strategy == "none" and not condition.synthetic
            and not condition.oversample and not condition.reference)


def per_draw(units: pd.DataFrame, metric: str) -> pd.Series:
    """A condition's metric per draw (the mean over its seeds: the draw is the unit)."""
    return pd.to_numeric(units[metric], errors="coerce").groupby(units["draw"]).mean()


def curve_table(units: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Draws x k' values of the curve's conditions (draws missing a point are dropped)."""
    points = units[[is_curve_point(c) for c in units["_c"]]]
    table = pd.DataFrame({int(c.k): per_draw(g, metric) for c, g in points.groupby("_c", sort=False)})
    return table.reindex(columns=sorted(table.columns)).dropna()


def invert(values: np.ndarray, ks: np.ndarray, target: float) -> tuple[float, str]:
    """k* where the monotone curve through (log k, values) reaches `target`, and "below"/"above" when censored."""
    x = np.log(ks.astype(float))
    y = IsotonicRegression(increasing=True).fit(x, values).predict(x)
    tolerance = 1e-9  # the fit's float error: a value equal to a point is that point, not beyond it
    if target < y[0] - tolerance:
        return float(ks[0]), "below"
    if target > y[-1] + tolerance:
        return float(ks[-1]), "above"
    i = int(np.argmax(y >= target - tolerance))  # the first point reaching it: on a plateau, the fewest patients
    if i == 0 or abs(y[i] - target) <= tolerance:
        return float(ks[i]), ""
    fraction = (target - y[i - 1]) / (y[i] - y[i - 1])
    return float(math.exp(x[i - 1] + fraction * (x[i] - x[i - 1]))), ""


def draw_resamples(n_draws: int, n_boot: int, seed: int) -> np.ndarray:
    return np.random.default_rng([seed, 2031]).integers(0, n_draws, size=(n_boot, n_draws))


def real_patient_curve(runs: pd.DataFrame, metrics: list[str], evaluation: EvaluationParams,
                       seed: int) -> pd.DataFrame:
    """Every simulated condition's mean over draws with its draw-resampled interval, by k (the curve's points
    and the other conditions at their k, for the figure)."""
    rows = []
    for (target, arch), units in _parsed(runs).groupby(["minority", "arch"], sort=False):
        for condition, group in units.groupby("_c", sort=False):
            for metric in metrics:
                values = per_draw(group, metric).dropna()
                lo, hi = S.unit_bootstrap_interval(values, evaluation.ci_level, evaluation.n_boot, seed, (0.0, 1.0))
                rows.append({"target": target, "arch": arch, "k": condition.k, "condition": condition.name,
                             "metric": metric, "estimate": float(values.mean()) if len(values) else math.nan,
                             "lower": lo, "upper": hi, "n_draws": len(values)})
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def exchange_rates(runs: pd.DataFrame, metrics: list[str], evaluation: EvaluationParams,
                   seed: int) -> pd.DataFrame:
    """Per target, architecture, condition off the curve and metric: what it is worth in real patients."""
    rows = []
    for (target, arch), units in _parsed(runs).groupby(["minority", "arch"], sort=False):
        for metric in metrics:
            curve = curve_table(units, metric)
            if curve.shape[1] < 2:
                continue
            ks = curve.columns.to_numpy()
            for condition, group in units.groupby("_c", sort=False):
                if is_curve_point(condition) or condition.reference:
                    continue
                values = per_draw(group, metric).reindex(curve.index)
                usable = values.notna().to_numpy()
                table, own = curve.to_numpy()[usable], values.to_numpy()[usable]
                if len(own) < 2:
                    continue
                k_star, censored = invert(table.mean(axis=0), ks, float(own.mean()))
                boot = []
                for draw in draw_resamples(len(own), evaluation.n_boot, seed):
                    boot.append(invert(table[draw].mean(axis=0), ks, float(own[draw].mean()))[0] - condition.k)
                lo, hi = S.percentile_interval(boot, evaluation.ci_level)
                rows.append({"target": target, "arch": arch, "family": condition.synthetic or (
                    "oversampling" if condition.oversample else condition.plain_name), "condition": condition.name,
                    "metric": metric, "patients": k_star - condition.k, "lower": lo, "upper": hi,
                    "n_draws": len(own), "censored": censored})
    return pd.DataFrame(rows, columns=EXCHANGE_COLUMNS)


def positive_control(runs: pd.DataFrame, metrics: list[str], evaluation: EvaluationParams,
                     seed: int) -> pd.DataFrame:
    """Does the curve rise? The paired difference of its last and first points over draws, with its interval;
    `rises` when the interval lies above zero."""
    rows = []
    for (target, arch), units in _parsed(runs).groupby(["minority", "arch"], sort=False):
        for metric in metrics:
            curve = curve_table(units, metric)
            if curve.shape[1] < 2:
                continue
            low, high = curve.columns[0], curve.columns[-1]
            diffs = (curve[high] - curve[low]).to_numpy()
            lo, hi = S.unit_bootstrap_interval(diffs, evaluation.ci_level, evaluation.n_boot, seed, (-1.0, 1.0))
            rows.append({"target": target, "arch": arch, "metric": metric, "k_low": int(low), "k_high": int(high),
                         "difference": float(diffs.mean()), "lower": lo, "upper": hi, "n_draws": len(diffs),
                         "rises": bool(math.isfinite(lo) and lo > 0)})
    return pd.DataFrame(rows, columns=CONTROL_COLUMNS)
