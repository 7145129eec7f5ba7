"""Per-condition estimates: each metric's mean over the condition's units with an interval, and the reference
points every minority figure stands beside (the baseline, the metadata reference, the oversampling control).

Viral design: the interval resamples patients (viral and other patients separately, the same resamples for every
run) and averages the runs of a condition in each resample, so it reflects the uncertainty of having these few
patients, not only the training noise; percentiles keep it inside [0, 1]. Simulated-minority design: the units
are draws, each with its own split and test patients; the interval resamples draws.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from lus_utils.compare import statistics as S
from lus_utils.compare.labels import arch_label
from lus_utils.config.classify import EvaluationParams
from lus_utils.vocabulary import MINORITY_METRICS, Condition, metric_label

SUMMARY_COLUMNS = ["design", "target", "arch", "condition", "leakage_ablation", "original_replica", "reference",
                   "control", "n_runs", "metric", "n", "mean", "lo", "hi"]
ORIGINAL_REPLICA_TABLE = "original study's replica (its recipe: video split, last epoch; not leak-free)"


def _interval(group: pd.DataFrame, draws: dict[str, dict[str, np.ndarray]], metric: str,
              evaluation: EvaluationParams, seed: int) -> tuple[float, float]:
    if (group["design"] == "simulated_minority").all():
        values = pd.to_numeric(group[metric], errors="coerce")
        return S.unit_bootstrap_interval(values, evaluation.ci_level, evaluation.n_boot, seed, bounds=(0.0, 1.0))
    unit_ids = list(group["unit_id"])
    if not unit_ids or any(u not in draws for u in unit_ids):
        return math.nan, math.nan
    stacked = np.vstack([draws[u][metric] for u in unit_ids])
    with np.errstate(invalid="ignore"):
        means = np.where(np.isfinite(stacked).all(axis=0), stacked.mean(axis=0), np.nan)
    return S.percentile_interval(means, evaluation.ci_level, bounds=(0.0, 1.0))


def summarize(runs: pd.DataFrame, draws: dict[str, dict[str, np.ndarray]], metrics: Sequence[str],
              evaluation: EvaluationParams, seed: int = 0) -> pd.DataFrame:
    """Long table: design, target, arch, condition, metric, n (units with a finite value), mean, lo, hi."""
    rows = []
    for (design, target, arch, condition), group in runs.groupby(["design", "minority", "arch", "condition"],
                                                                  sort=False):
        for metric in metrics:
            values = pd.to_numeric(group.get(metric, pd.Series(dtype=float)), errors="coerce")
            finite = values[np.isfinite(values)]
            lo, hi = _interval(group, draws, metric, evaluation, seed)
            rows.append({"design": design, "target": target, "arch": arch, "condition": condition,
                         "leakage_ablation": bool(group["leakage_ablation"].any()),
                         "original_replica": bool(group["original_replica"].any()),
                         "reference": bool(group["reference"].any()), "control": bool(group["control"].any()),
                         "n_runs": len(group), "metric": metric, "n": len(finite),
                         "mean": float(finite.mean()) if len(finite) else math.nan, "lo": lo, "hi": hi})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def cell(mean: float, lo: float, hi: float, n: int) -> str:
    """`0.812 [0.701, 0.905]`; 'n/a' without a value; 'no CI' without an interval."""
    if n == 0 or not math.isfinite(mean):
        return "n/a"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{mean:.3f} (n={n}, no CI)"
    return f"{mean:.3f} [{lo:.3f}, {hi:.3f}]"


def condition_tables(summary: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """One display table per design and architecture (and, apart, one per architecture for the leakage ablation
    and one for the original study's replica)."""
    tables: dict[str, pd.DataFrame] = {}
    if summary.empty:
        return tables
    keys = ["design", "target", "arch", "original_replica", "leakage_ablation"]
    for (design, target, arch, replica, leakage), block in summary.groupby(keys, sort=False):
        rows = []
        for condition, group in block.groupby("condition", sort=False):
            row = {"condition": condition, "n units": int(group["n_runs"].iloc[0])}
            for _, r in group.iterrows():
                row[metric_label(r["metric"], target)] = cell(r["mean"], r["lo"], r["hi"], r["n"])
            rows.append(row)
        where = arch_label(arch) if design == "viral" else f"simulated {target} · {arch_label(arch)}"
        name = (f"{where} · {ORIGINAL_REPLICA_TABLE}" if replica else f"{where} · leakage ablation" if leakage
                else where)
        table = pd.DataFrame(rows).set_index("condition")
        tables[name] = pd.concat([tables[name], table]) if name in tables else table
    return dict(sorted(tables.items(), key=lambda kv: ("replica" in kv[0], "leakage" in kv[0], kv[0])))


def reference_points(summary: pd.DataFrame) -> pd.DataFrame:
    """Every condition's minority figures beside its baseline's, the metadata reference's and the oversampling
    control's (each with its interval), one row per design, architecture and condition.

    The baseline and control are the condition's own (`Condition.baselines`); the metadata reference of the same
    design and target (a logistic regression, its own `arch`) stands beside every architecture's rows."""
    if summary.empty:
        return pd.DataFrame()
    block = summary[summary["metric"].isin(MINORITY_METRICS)]
    cells = {(r["design"], r["target"], r["arch"], r["condition"], r["metric"]): cell(r["mean"], r["lo"], r["hi"],
                                                                                        r["n"])
             for _, r in block.iterrows()}
    references = block[block["reference"]]
    rows = []
    for (design, target, arch, name), group in block[~block["reference"]].groupby(
            ["design", "target", "arch", "condition"], sort=False):
        condition = Condition.parse(name)
        baselines = condition.baselines()
        plain = next((b.name for b in baselines if not b.oversample), "") or condition.replace(
            strategy="none", augment=False, synthetic="", oversample=False, amount=1.0, unit="ratio").name
        present = sorted({c for d, t, a, c, _ in cells if (d, t, a) == (design, target, arch)
                          and Condition.parse(c).oversample})
        control = next((b.name for b in baselines if b.oversample), "") or (
            "" if condition.original_replica else next(iter(present), ""))
        for metric in MINORITY_METRICS:
            ref = references[(references["metric"] == metric) & (references["design"] == design)
                             & (references["target"] == target)]
            here = (design, target, arch)
            rows.append({"design": design, "arch": arch, "condition": name, "metric": metric_label(metric, target),
                         "condition value": cells.get((*here, name, metric), "n/a"),
                         "baseline": f"{cells.get((*here, plain, metric), 'n/a')} ({plain})" if plain else "n/a",
                         "metadata reference": (cell(ref["mean"].iloc[0], ref["lo"].iloc[0], ref["hi"].iloc[0],
                                                     ref["n"].iloc[0]) if len(ref) else "n/a"),
                         "oversampling control": (f"{cells.get((*here, control, metric), 'n/a')} ({control})"
                                                  if control else "n/a (the original study ran none)"
                                                  if condition.original_replica else "n/a")})
    frame = pd.DataFrame(rows)
    return frame.set_index(["design", "arch", "condition", "metric"]) if len(frame) else frame
