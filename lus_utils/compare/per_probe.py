"""Minority-class metrics within each probe: does a classifier still find viral frames among frames of one probe?

Why: most viral frames are linear-probe frames and nearly all others convex, so a pooled minority AUROC
can be earned by recognising the probe. Within convex frames alone (and within linear frames alone) the
probe tells nothing; what is left there is the pathology (or another shortcut, such as the frame size).

Only probes where both the minority class and some other class exist are scored; the others get a row
with NaN metrics and a `status` saying what is missing, never a number. AUROC, AP and the confidence
intervals (patients resampled within their class stratum, seeded) are the study's own (classify.metrics).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from lus_utils import records
from lus_utils.classify import metrics as M
from lus_utils.paths import OutLayout
from lus_utils.provenance import write_csv_atomic
from lus_utils.vocabulary import VIRAL as MINORITY_CLASS

METRICS = ("minority_auroc", "minority_ap", "minority_recall", "minority_sens_at_threshold",
           "minority_spec_at_threshold")


def _check(predictions: pd.DataFrame, minority: str) -> str:
    score = f"prob_{minority}"
    missing = [c for c in ("label", "probe", "patient_id", score) if c not in predictions.columns]
    if missing:
        raise ValueError(f"predictions lack column(s) {missing}; a run's predictions.csv has them "
                         "(records.prediction_columns)")
    return score


def _ranking(positive: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    return M.binary_auroc(positive, score), M.average_precision(positive, score)


def minority_metrics(table: pd.DataFrame, minority: str = MINORITY_CLASS, n_boot: int = 0,
                     seed: int = 0) -> dict[str, Any]:
    """Minority-vs-rest metrics of one set of predictions (NaN, with a status, where a side is missing).

    AUROC and AP rank frames by `prob_<minority>`; recall counts frames predicted as the minority class
    (`pred`); sensitivity and specificity at the fold's own validation threshold (`threshold`) where the
    predictions carry one.
    """
    score_column = _check(table, minority)
    positive = table["label"].eq(minority).to_numpy()
    row: dict[str, Any] = {"n": len(table), "n_minority": int(positive.sum()),
                           "n_minority_patients": int(table.loc[positive, "patient_id"].nunique()),
                           "n_minority_videos": (int(table.loc[positive, "video_id"].nunique())
                                                 if "video_id" in table.columns else math.nan),
                           "prevalence": float(positive.mean()) if len(table) else math.nan}
    row.update({m: math.nan for m in METRICS})
    row.update({f"{m}_ci_low": math.nan for m in ("minority_auroc", "minority_ap")})
    row.update({f"{m}_ci_high": math.nan for m in ("minority_auroc", "minority_ap")})
    if not positive.any() or positive.all():
        row["status"] = f"no {minority} frames" if not positive.any() else f"only {minority} frames"
        return row
    score = table[score_column].to_numpy(float)
    row["status"] = "ok"
    row["minority_auroc"], row["minority_ap"] = _ranking(positive, score)
    if "pred" in table.columns:
        row["minority_recall"] = float(table.loc[positive, "pred"].eq(minority).mean())
    if "threshold" in table.columns:
        called = score >= table["threshold"].to_numpy(float)
        row["minority_sens_at_threshold"] = float(called[positive].mean())
        row["minority_spec_at_threshold"] = float((~called[~positive]).mean())
    if n_boot:
        low, high = _patient_bootstrap(table, positive, score, n_boot, seed)
        row.update({"minority_auroc_ci_low": low[0], "minority_ap_ci_low": low[1],
                    "minority_auroc_ci_high": high[0], "minority_ap_ci_high": high[1]})
    return row


def _patient_bootstrap(table: pd.DataFrame, positive: np.ndarray, score: np.ndarray, n_boot: int,
                       seed: int, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of (AUROC, AP) over patients drawn with replacement within their stratum (minority
    patients among themselves, the others among themselves: the study's bootstrap, classify.metrics)."""
    codes, patients = pd.factorize(table["patient_id"])
    groups = [np.flatnonzero(codes == i) for i in range(len(patients))]
    is_minority = [bool(positive[rows].any()) for rows in groups]
    draws = [_ranking(positive[rows], score[rows]) for rows in
             (M.resample_rows(groups, draw)[0] for draw in M.stratified_patient_draws(patients, is_minority,
                                                                                        n_boot, seed))]
    intervals = [M.percentile_interval([d[k] for d in draws], level) for k in range(2)]
    return np.array([i[0] for i in intervals]), np.array([i[1] for i in intervals])


def per_probe_metrics(predictions: pd.DataFrame, minority: str = MINORITY_CLASS, n_boot: int = 0,
                      seed: int = 0) -> pd.DataFrame:
    """One row for all frames and one per probe present: minority metrics within those frames."""
    _check(predictions, minority)
    groups = [("all", predictions)] + [(probe, group) for probe, group in predictions.groupby("probe", sort=True)]
    rows = [{"probe": name, **minority_metrics(group, minority, n_boot, seed)} for name, group in groups]
    return pd.DataFrame(rows).set_index("probe")


def per_probe_runs(run_dirs: Iterable[str | Path], minority: str = MINORITY_CLASS, n_boot: int = 0,
                   seed: int = 0) -> pd.DataFrame:
    """per_probe_metrics of several run folders, stacked, with each run's id and condition (from metrics.json)."""
    tables = []
    for run_dir in map(Path, run_dirs):
        _, record = records.read_run_record(run_dir / "metrics.json")
        predictions = records.read_predictions(run_dir / "predictions.csv", record["classes"])
        table = per_probe_metrics(predictions, minority, n_boot, seed).reset_index()
        tables.append(table.assign(run_id=run_dir.name, condition=record["condition"]))
    if not tables:
        raise ValueError("per_probe_runs needs at least one run folder")
    out = pd.concat(tables, ignore_index=True)
    return out[["run_id", "condition", "probe", *[c for c in out.columns if c not in ("run_id", "condition", "probe")]]]


def study_table(out_dir: str | Path, runs: pd.DataFrame, minority: str = MINORITY_CLASS, n_boot: int = 0,
                seed: int = 0, target: str | Path | None = None) -> pd.DataFrame:
    """per_probe_runs of every viral-design run of a study with predictions (`runs`: notebook 06's run table),
    also written to `target` when given; an empty table (with a note) when no run has predictions."""
    layout = OutLayout(Path(out_dir))
    listed = runs[runs["has_predictions"].astype(bool) & (runs["design"] == "viral")] if len(runs) else runs
    if listed.empty:
        print("no viral-design run with predictions: no per-probe table")
        return pd.DataFrame(columns=["run_id", "condition", "probe", "status"])
    table = per_probe_runs([layout.run_dir(r) for r in listed["run_id"].unique()], minority, n_boot, seed)
    if target is not None:
        write_csv_atomic(Path(target), table)
    return table


def summarise_by_condition(table: pd.DataFrame, metrics: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Mean of each metric over a condition's runs (seeds, repeats) per probe, scored probes only."""
    metrics = dict(metrics or {"minority_auroc": "mean", "minority_ap": "mean"})
    scored = table[table["status"] == "ok"]
    if scored.empty:
        return pd.DataFrame()
    summary = scored.groupby(["condition", "probe"]).agg(n_runs=("run_id", "nunique"), **{
        m: (m, how) for m, how in metrics.items()})
    return summary.unstack("probe")
