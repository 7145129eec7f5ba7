"""The per-minority-patient view: with a handful of minority patients, an effect is only believable if it is
seen patient by patient. For each minority patient (id, probe, videos) and each run: its test frames' mean
minority probability, their median rank among all test frames of the run (as a percentile: 0 = scored
highest of all frames, 100 = lowest) and the share of them at or above their fold's threshold (sensitivity
at the fixed specificity). Per condition the runs are averaged; per comparison, the paired differences are
averaged per patient, and the view says whether the effect has the same sign for every patient.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from lus_utils.classify import metrics as M

MEASURES = ("mean_probability", "median_rank_pct", "sens_at_threshold")
MEASURE_LABELS = {"mean_probability": "mean {m} probability", "median_rank_pct": "median rank (percentile, 0 = top)",
                  "sens_at_threshold": "share at or above the threshold"}


def run_patients(table: pd.DataFrame, minority: str) -> pd.DataFrame:
    """One row per minority patient of one run's predictions: the measures of the module doc."""
    score = table[f"prob_{minority}"].to_numpy(dtype=np.float64)
    rank_pct = (M.midranks(-score) - 1) / max(len(score) - 1, 1) * 100  # 0: the highest minority score
    threshold = M.thresholds_of(table)
    frames = table.assign(_rank=rank_pct, _hit=score >= threshold, _thr=np.isfinite(threshold))
    rows = []
    for patient, group in frames[frames["label"] == minority].groupby("patient_id", sort=True):
        rows.append({"patient_id": patient,
                     "probe": ", ".join(sorted(map(str, group["probe"].unique()))) if "probe" in group else "",
                     "videos": ", ".join(sorted(map(str, group["video_id"].unique()))),
                     "source": str(group["path"].iloc[0]).rsplit("/", 1)[0], "n_frames": len(group),
                     "mean_probability": float(group[f"prob_{minority}"].mean()),
                     "median_rank_pct": float(group["_rank"].median()),
                     "sens_at_threshold": float(group["_hit"].mean()) if group["_thr"].all() else math.nan})
    return pd.DataFrame(rows)


def per_run(runs: pd.DataFrame, predictions: dict[str, pd.DataFrame], minority: str) -> pd.DataFrame:
    """The measures of every minority patient in every run that has predictions."""
    parts = []
    for _, run in runs.iterrows():
        table = predictions.get(run["unit_id"])
        if table is None:
            continue
        block = run_patients(table, minority)
        if len(block):
            parts.append(block.assign(unit_id=run["unit_id"], arch=run["arch"], condition=run["condition"]))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["unit_id", "arch", "condition",
                                                                                   "patient_id", *MEASURES])


def patient_table(patients: pd.DataFrame) -> pd.DataFrame:
    """Per architecture, condition and minority patient: the measures averaged over the condition's runs."""
    if patients.empty:
        return patients
    keys = ["arch", "condition", "patient_id", "probe", "videos", "source"]
    table = patients.groupby(keys, sort=False).agg(n_runs=("unit_id", "nunique"), n_frames=("n_frames", "first"),
                                                   **{m: (m, "mean") for m in MEASURES})
    return table.reset_index()


def patient_effects(patients: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """Per comparison and minority patient: the mean paired difference of each measure over the pairs, and
    per comparison and measure whether every patient moves the same way (`same_sign_all_patients`)."""
    columns = ["arch", "condition", "baseline", "patient_id", "n_pairs", *(f"diff_{m}" for m in MEASURES)]
    matched = pairs.dropna(subset=["baseline_unit_id"]) if not pairs.empty else pairs
    if patients.empty or matched.empty:
        return pd.DataFrame(columns=columns)
    by_run = patients.set_index(["unit_id", "patient_id"])[list(MEASURES)]
    rows = []
    for (arch, condition, baseline), group in matched.groupby(["arch", "condition", "baseline"], sort=False):
        diffs = []
        for run_id, base_id in zip(group["unit_id"], group["baseline_unit_id"]):
            if run_id in by_run.index.get_level_values(0) and base_id in by_run.index.get_level_values(0):
                diffs.append(by_run.loc[run_id] - by_run.loc[base_id])
        if not diffs:
            continue
        mean = pd.concat(diffs).groupby(level=0).mean()
        for patient, r in mean.iterrows():
            rows.append({"arch": arch, "condition": condition, "baseline": baseline, "patient_id": patient,
                         "n_pairs": len(diffs), **{f"diff_{m}": r[m] for m in MEASURES}})
    return pd.DataFrame(rows, columns=columns)


def sign_agreement(effects: pd.DataFrame) -> pd.DataFrame:
    """Per comparison and measure: how many minority patients moved up, down or not at all, and whether all
    moved the same way (a rank percentile moving down is an improvement; the sign is reported as is)."""
    rows = []
    for (arch, condition, baseline), group in effects.groupby(["arch", "condition", "baseline"], sort=False):
        for m in MEASURES:
            d = group[f"diff_{m}"].to_numpy(dtype=np.float64)
            d = d[np.isfinite(d)]
            up, down = int((d > 0).sum()), int((d < 0).sum())
            rows.append({"arch": arch, "condition": condition, "baseline": baseline,
                         "measure": MEASURE_LABELS[m].format(m="minority"), "patients": len(d), "up": up,
                         "down": down, "same_sign_all_patients": bool(len(d) and (up == len(d) or down == len(d)))})
    return pd.DataFrame(rows, columns=["arch", "condition", "baseline", "measure", "patients", "up", "down",
                                       "same_sign_all_patients"])
