"""The original study's claim, correction by correction.

The original study (lamitay/uls_inversion) reported a boost from its DDPM images. Three rows say whether that
boost survives each correction, for each metric (mean paired difference with its patient-bootstrap interval):

1. its recipe (its replica, conditions `seed_replica...`): its video split (a patient's videos in train and
   test), its last-epoch checkpoint, its generator (three frames whatever their split), sampler, gate and amount
   (every image kept), against the same recipe without synthetic images;
2. the leak-free split and checkpoint with a generator that still saw frames of the test patients (leakage
   ablations: its own set, `ddpm_seed_3_mixed@1fraction`, every image of it as in row 1; and
   `3_mixed_any_split` where the profile runs it), against the baseline;
3. leak-free: the study's declared primary comparisons against the baseline (patient-grouped cv, the
   best-validation epoch, generators trained on their fold's training frames, the real-range gate).

Rows 1 and 2 are not valid estimates of what synthetic data does; they are there to show what the original
study's choices did to its number. A step the profile did not run is absent.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from lus_utils.compare.labels import comparison_label
from lus_utils.compare.text import interval
from lus_utils.data import splits
from lus_utils.paths import OutLayout
from lus_utils.vocabulary import Condition, metric_label, split_columns

STEPS = {
    1: "the original study's recipe: video split, last epoch, its generator, gate and amount",
    2: "leak-free split and checkpoint, a generator that saw the test patients (leakage ablation)",
    3: "leak-free (the declared primary comparisons)",
}
# The study's minority endpoints, then the original study's own headline figures: it reported test accuracy and
# weighted precision / recall / F1 (and a macro AP; its AUROC was hard-coded to 0), classifier/metrics.py:13-35 there.
HEADLINE = ("minority_ap", "minority_auroc", "accuracy", "weighted_f1")
COLUMNS = ["step", "correction", "arch", "comparison", "metric", "pairs", "difference", "excludes zero"]


def step_of(row: pd.Series, primary_pairs: set[tuple[str, str]]) -> int | None:
    """Which step of the ladder an effects row of the viral design is (module doc), or None; step 3 takes every
    metric of a declared primary (condition, baseline) pair against the plain baseline."""
    if row["design"] != "viral":
        return None
    condition, baseline = Condition.parse(row["condition"]), Condition.parse(row["baseline"])
    if condition.original_replica and condition.synthetic and baseline == condition.replace(synthetic="", amount=1.0,
                                                                                            unit="ratio"):
        return 1
    if condition.original_replica or baseline.synthetic or baseline.oversample or baseline.strategy != "none":
        return None
    if row["leakage"]:
        return 2
    return 3 if (row["condition"], row["baseline"]) in primary_pairs else None


def ladder(effects: pd.DataFrame, minority: str, primary_pairs: set[tuple[str, str]],
           metrics: tuple[str, ...] = HEADLINE) -> pd.DataFrame:
    """One row per step, arch, comparison and metric (in `metrics` order), from the effects table."""
    rows = []
    for _, r in effects.iterrows():
        step = step_of(r, primary_pairs)
        if step is None or r["metric"] not in metrics:
            continue
        rows.append({"step": step, "correction": STEPS[step], "arch": r["arch"],
                     "comparison": comparison_label(r["condition"], r["baseline"]),
                     "metric": metric_label(r["metric"], minority),
                     "order": metrics.index(r["metric"]), "pairs": int(r["n_pairs"]),
                     "difference": (f"{r['mean_diff']:+.3f} {interval(r['ci_low'], r['ci_high'])}"
                                    if math.isfinite(r["mean_diff"]) else "n/a"),
                     "excludes zero": bool(r["ci_excludes_zero"])})
    if not rows:
        return pd.DataFrame(columns=COLUMNS)
    table = pd.DataFrame(rows).sort_values(["arch", "order", "step"], kind="stable").drop(columns="order")
    return table[COLUMNS].reset_index(drop=True)


def sentences(table: pd.DataFrame, metric_name: str) -> list[str]:
    """One line per step of the ladder for one metric (its label), in step order."""
    block = table[table["metric"] == metric_name]
    if block.empty:
        return []
    lines = []
    for _, r in block.sort_values("step", kind="stable").iterrows():
        verdict = "its interval excludes zero" if r["excludes zero"] else "its interval includes zero"
        lines.append(f"- {r['step']}. {r['correction']} ({r['arch']}, {r['comparison']}), {metric_name}: "
                     f"{r['difference']} over {r['pairs']} pairs; {verdict}.")
    return lines


def split_leak(out_dir: Path, minority: str) -> str:
    """A sentence on how the original study's video splits in this study's frames.csv break the patient rule:
    patients whose videos sit in more than one part, all classes and the minority class, per repeat; "" without
    one."""
    path = OutLayout(Path(out_dir)).frames_csv
    if not path.is_file():
        return ""
    frames = pd.read_csv(path, dtype={"patient_id": str, "video_id": str}, keep_default_na=False)
    columns = sorted(c for c in split_columns(frames.columns) if c.startswith("seed_video_r"))
    parts = []
    for column in columns:
        straddling = splits.straddling_patients(frames, column)
        mine = splits.straddling_patients(frames[frames["label"] == minority], column)
        parts.append(f"repeat {column.rsplit('_r', 1)[1]}: {len(straddling)} of {frames['patient_id'].nunique()} "
                     f"patients, {len(mine)} {minority} ({', '.join(mine) or 'none'})")
    return ("The original study's video split puts a patient's videos in more than one part ("
            + "; ".join(parts) + ")." if parts else "")
