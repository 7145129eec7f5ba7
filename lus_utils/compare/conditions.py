"""Per-condition estimates: each metric's mean over the condition's runs ((repeat, seed) pooled metrics)
with a class-stratified patient-bootstrap interval, and the reference points every minority figure stands
beside (the baseline, the metadata reference, the oversampling control).

The interval resamples patients (minority and other patients separately, the same resamples for every run)
and averages the runs of a condition in each resample, so it reflects the uncertainty of having these few
patients, not only the training noise; percentiles keep it inside [0, 1].
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from lus_utils.compare import statistics as S
from lus_utils.compare.runs import metric_label
from lus_utils.classify.run_identity import SEED_REPLICA
from lus_utils.params import CompareParams

SUMMARY_COLUMNS = ["arch", "condition", "leakage_ablation", "seed_replica", "reference", "control", "n_runs",
                   "metric", "n", "mean", "lo", "hi"]
SEED_REPLICA_TABLE = "seed replica (the seed study's recipe: video split, last epoch; not leak-free)"


def _interval(run_ids: Sequence[str], draws: dict[str, dict[str, np.ndarray]], metric: str,
              level: float) -> tuple[float, float]:
    if not run_ids or any(r not in draws for r in run_ids):
        return math.nan, math.nan
    stacked = np.vstack([draws[r][metric] for r in run_ids])
    with np.errstate(invalid="ignore"):
        means = np.where(np.isfinite(stacked).all(axis=0), stacked.mean(axis=0), np.nan)
    return S.percentile_interval(means, level, bounds=(0.0, 1.0))


def summarize(runs: pd.DataFrame, draws: dict[str, dict[str, np.ndarray]], metrics: Sequence[str],
              level: float) -> pd.DataFrame:
    """Long table: arch, condition, metric, n (runs with a finite value), mean, lo, hi."""
    rows = []
    for (arch, condition), group in runs.groupby(["arch", "condition"], sort=False):
        for metric in metrics:
            values = pd.to_numeric(group.get(metric, pd.Series(dtype=float)), errors="coerce")
            finite = values[np.isfinite(values)]
            lo, hi = _interval(list(group["run_id"]), draws, metric, level)
            rows.append({"arch": arch, "condition": condition,
                         "leakage_ablation": bool(group["leakage_ablation"].any()),
                         "seed_replica": bool(group.get("seed_replica", pd.Series(False)).any()),
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


def condition_tables(summary: pd.DataFrame, params: CompareParams) -> dict[str, pd.DataFrame]:
    """One display table per architecture (and, apart, one per architecture for the leakage ablation and one
    for the seed replica)."""
    tables: dict[str, pd.DataFrame] = {}
    if summary.empty:
        return tables
    for (arch, seed_replica, leakage), block in summary.groupby(["arch", "seed_replica", "leakage_ablation"],
                                                                sort=False):
        rows = []
        for condition, group in block.groupby("condition", sort=False):
            row = {"condition": condition, "n runs": int(group["n_runs"].iloc[0])}
            for _, r in group.iterrows():
                row[metric_label(r["metric"], params.minority_class)] = cell(r["mean"], r["lo"], r["hi"], r["n"])
            rows.append(row)
        name = f"{arch} · {SEED_REPLICA_TABLE}" if seed_replica else f"{arch} · leakage ablation" if leakage else arch
        table = pd.DataFrame(rows).set_index("condition")
        tables[name] = pd.concat([tables[name], table]) if name in tables else table
    return dict(sorted(tables.items(), key=lambda kv: ("seed replica" in kv[0], "leakage" in kv[0], kv[0])))


MINORITY_FIGURES = ("minority_auroc", "minority_ap", "minority_sens_at_spec")


def reference_points(summary: pd.DataFrame, params: CompareParams) -> pd.DataFrame:
    """Every condition's minority figures beside the baseline's, the metadata reference's and the
    oversampling control's (each with its interval), one row per architecture and condition.

    The metadata reference may use its own `arch` (a logistic regression): it is shown beside every
    architecture's rows."""
    if summary.empty:
        return pd.DataFrame()
    block = summary[summary["metric"].isin(MINORITY_FIGURES)]
    cells = {(r["arch"], r["condition"], r["metric"]): cell(r["mean"], r["lo"], r["hi"], r["n"])
             for _, r in block.iterrows()}
    reference = block[block["reference"]]
    rows = []
    for (arch, condition), group in block[~block["reference"]].groupby(["arch", "condition"], sort=False):
        seed_replica = bool(group["seed_replica"].any())
        baseline = SEED_REPLICA if seed_replica else "none"  # the seed replica's baseline is its own
        controls = [] if seed_replica else sorted({c for a, c, _ in cells if a == arch and str(c).startswith("oversampl")})
        amount = condition.split("@", 1)[1].split("+")[0] if "@" in condition else ""
        wanted = f"oversampling@{amount}"
        control = wanted if wanted in controls else (controls[0] if controls else "")
        for metric in MINORITY_FIGURES:
            ref = reference[reference["metric"] == metric]
            rows.append({"arch": arch, "condition": condition, "metric": metric_label(metric, params.minority_class),
                         "condition value": cells.get((arch, condition, metric), "n/a"),
                         "baseline": f"{cells.get((arch, baseline, metric), 'n/a')} ({baseline})",
                         "metadata reference": (cell(ref["mean"].iloc[0], ref["lo"].iloc[0], ref["hi"].iloc[0],
                                                     ref["n"].iloc[0]) if len(ref) else "n/a"),
                         "oversampling control": (f"{cells.get((arch, control, metric), 'n/a')} ({control})"
                                                  if control else "n/a (the seed ran none)" if seed_replica
                                                  else "n/a")})
    frame = pd.DataFrame(rows)
    return frame.set_index(["arch", "condition", "metric"]) if len(frame) else frame
