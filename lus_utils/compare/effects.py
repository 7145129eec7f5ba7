"""Paired effects: which units pair with which, the paired differences, and the primary family.

A pair is a condition's unit and a baseline condition's unit with the same architecture, protocol, repeat
(hence the same folds), draw, seed and training setup (common random numbers); under cv its paired unit is the
(repeat, seed) pooled out-of-fold metric, in the simulated-minority design the draw. Each condition is paired
with the baselines that isolate what it changes (`vocabulary.Condition.baselines`, the one rule): a synthetic
set against the same recipe without it, against the oversampling control of the same amount and, unaugmented,
against classical augmentation; a strategy against `none`; augmentation against none; the oversampling
control against the recipe without it. The original study's synthetic condition is paired with `seed_replica`
alone (it ran no control), on the same video split. The metadata reference is a reference point, not a
condition: it is shown beside the others and paired with nothing; so are the simulated design's real-patient
curve points (their baselines were never run: only baselines present among the runs are wanted).

Primary comparisons are the ones the profile declares (`compare.primary`); they get the exact Wilcoxon test,
Holm over those alone, the smallest attainable p and the minimum detectable effect. Every other row is
exploratory: a difference with its interval and no p-value. The leakage ablation is never primary (the
profile refuses it) and never enters the family.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from lus_utils.compare import statistics as S
from lus_utils.config.classify import EvaluationParams
from lus_utils.config.compare import CompareParams, PrimaryComparison
from lus_utils.vocabulary import Condition

PAIR_KEYS = ("arch", "protocol", "repeat", "draw", "seed", "fold", "setup")
PAIR_COLUMNS = ["design", "target", "arch", "condition", "baseline", "protocol", "repeat", "draw", "seed", "fold",
                "unit_id", "baseline_unit_id", "leakage_ablation", "note"]
EFFECT_COLUMNS = ["design", "target_class", "arch", "condition", "baseline", "metric", "primary", "leakage",
                  "n_pairs", "mean_diff", "ci_low", "ci_high", "degenerate", "ci_excludes_zero", "same_sign_pairs",
                  "p", "p_adj", "smallest_p", "mde", "significant", "note"]


def wanted_comparisons(runs: pd.DataFrame, primary: Sequence[PrimaryComparison]) -> list[tuple[str, str]]:
    """(condition, baseline) of every comparison to make: the declared primary ones, then the rule's, for every
    baseline condition present among the runs."""
    wanted = [(p.condition, p.baseline) for p in primary]
    present = set(runs["condition"])
    for _, row in runs.drop_duplicates("condition").iterrows():
        condition = Condition.parse(row["condition"], protocol=row["protocol"])
        wanted += [(row["condition"], b.name) for b in condition.baselines() if b.name in present]
    return list(dict.fromkeys(wanted))


def match_pairs(runs: pd.DataFrame, wanted: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """For every wanted comparison, each unit of the condition and its baseline unit (same PAIR_KEYS)."""
    index: dict[tuple, list[str]] = {}
    for _, r in runs.iterrows():
        index.setdefault((r["condition"], *(r[k] for k in PAIR_KEYS)), []).append(r["unit_id"])
    rows = []
    for condition, baseline in wanted:
        for _, r in runs[runs["condition"] == condition].iterrows():
            found = sorted(index.get((baseline, *(r[k] for k in PAIR_KEYS)), []))
            note = "" if len(found) == 1 else (f"{len(found)} candidate baselines; took {found[0]}" if found
                                               else "no matching baseline run")
            rows.append({"design": r["design"], "target": r["minority"], "arch": r["arch"], "condition": condition,
                         "baseline": baseline, "protocol": r["protocol"], "repeat": r["repeat"], "draw": r["draw"],
                         "seed": r["seed"], "fold": r["fold"], "unit_id": r["unit_id"],
                         "baseline_unit_id": found[0] if found else None,
                         "leakage_ablation": bool(r["leakage_ablation"]), "note": note})
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


DIFF_KEYS = ("design", "target", "arch", "condition", "baseline", "repeat", "draw", "seed", "unit_id",
             "baseline_unit_id", "leakage_ablation")


def paired_differences(runs: pd.DataFrame, pairs: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """One row per matched pair and metric: unit value, baseline value, difference (NaN if either is)."""
    by_id = runs.set_index("unit_id")
    rows = []
    for _, pair in pairs.dropna(subset=["baseline_unit_id"]).iterrows():
        unit, base = by_id.loc[pair["unit_id"]], by_id.loc[pair["baseline_unit_id"]]
        for metric in metrics:
            value, baseline = float(unit.get(metric, math.nan)), float(base.get(metric, math.nan))
            rows.append({**{k: pair[k] for k in DIFF_KEYS}, "metric": metric, "value": value,
                         "baseline_value": baseline, "diff": value - baseline})
    return pd.DataFrame(rows, columns=[*DIFF_KEYS, "metric", "value", "baseline_value", "diff"])


def _bootstrap_diff(group: pd.DataFrame, draws: dict[str, dict[str, np.ndarray]], metric: str,
                    level: float, n_boot: int, seed: int) -> tuple[float, float]:
    """Percentile interval of the mean paired difference. Viral design: over the shared patient resamples (every
    unit tested on the same few viral patients). Simulated design: over resamples of the paired draws, each a new
    split and new test patients, so the interval carries both patient and split variation."""
    if (group["design"] == "simulated_minority").all():
        diffs = S.finite(group["diff"])
        return S.unit_bootstrap_interval(diffs, level, n_boot, seed, bounds=(-1.0, 1.0))
    usable = [(r, b) for r, b in zip(group["unit_id"], group["baseline_unit_id"]) if r in draws and b in draws]
    if not usable or len(usable) < len(group):
        return math.nan, math.nan
    stacked = np.vstack([draws[r][metric] - draws[b][metric] for r, b in usable])
    with np.errstate(invalid="ignore"):
        means = np.where(np.isfinite(stacked).all(axis=0), stacked.mean(axis=0), np.nan)
    return S.percentile_interval(means, level, bounds=(-1.0, 1.0))


GROUP_KEYS = ["design", "target", "arch", "condition", "baseline", "metric"]


def _effect_row(key: tuple, group: pd.DataFrame, primary: bool, draws: dict, params: CompareParams,
                evaluation: EvaluationParams) -> dict:
    design, target, arch, condition, baseline, metric = key
    diffs = S.finite(group["diff"])
    lo, hi = _bootstrap_diff(group, draws, metric, evaluation.ci_level, evaluation.n_boot, params.compare_seed)
    signs = np.sign(diffs)
    row = {"design": design, "target_class": target, "arch": arch, "condition": condition, "baseline": baseline,
           "metric": metric, "primary": primary, "leakage": bool(group["leakage_ablation"].any()),
           "n_pairs": len(diffs), "mean_diff": float(diffs.mean()) if len(diffs) else math.nan,
           "ci_low": lo, "ci_high": hi,
           "degenerate": S.degenerate(lo, hi) or (len(diffs) > 1 and np.ptp(diffs) == 0),
           "same_sign_pairs": bool(len(diffs) and (signs == signs[0]).all() and signs[0] != 0),
           "p": math.nan, "smallest_p": math.nan, "mde": math.nan, "note": ""}
    row["ci_excludes_zero"] = S.excludes_zero(lo, hi) and not row["degenerate"]
    if not math.isfinite(lo):
        row["note"] = "no interval (a unit without predictions, or the metric undefined)"
    if primary:
        test = S.wilcoxon_exact(diffs)
        alpha = 1 - evaluation.ci_level
        row.update(p=test.p, smallest_p=S.smallest_p(test.n_used) if test.n_used else math.nan,
                   mde=S.minimum_detectable_effect(diffs, alpha, params.mde_power),
                   note="; ".join(filter(None, [row["note"], test.note])))
    return row


def effects(diffs: pd.DataFrame, draws: dict[str, dict[str, np.ndarray]], params: CompareParams,
            evaluation: EvaluationParams) -> pd.DataFrame:
    """Per design x target x arch x condition x baseline x metric: mean paired difference and its interval; for
    the declared primary comparisons also the exact test, Holm over them alone (both designs in one family),
    smallest p and MDE."""
    declared = {(p.condition, p.baseline, p.metric) for p in params.primary_comparisons()}
    rows = []
    for key, group in diffs.groupby(GROUP_KEYS, sort=False):
        primary = key[3:] in declared and not bool(group["leakage_ablation"].any())
        if primary or key[5] in params.metrics:
            rows.append(_effect_row(key, group, primary, draws, params, evaluation))
    table = pd.DataFrame(rows, columns=EFFECT_COLUMNS)
    family = table["primary"].to_numpy(dtype=bool) if len(table) else np.zeros(0, dtype=bool)
    table["p_adj"] = math.nan
    if family.any():
        table.loc[family, "p_adj"] = S.holm(table.loc[family, "p"].to_numpy(dtype=np.float64))
    alpha = 1 - evaluation.ci_level
    table["significant"] = [bool(f and math.isfinite(p) and p < alpha) for f, p in zip(family, table["p_adj"])]
    order = np.argsort(~family, kind="stable")
    return table.iloc[order].reset_index(drop=True)


def missing_primary(effects_table: pd.DataFrame, runs: pd.DataFrame, params: CompareParams) -> list[str]:
    """A sentence for each declared primary comparison that has no pair, saying what is missing."""
    present = set(runs["condition"]) if not runs.empty else set()
    found = set()
    if not effects_table.empty:
        rows = effects_table[effects_table["primary"]]
        found = {(r["condition"], r["baseline"], r["metric"]) for _, r in rows.iterrows()}
    out = []
    for p in params.primary_comparisons():
        if (p.condition, p.baseline, p.metric) in found:
            continue
        lacking = [c for c in (p.condition, p.baseline) if c not in present]
        why = (f"no finished run of {', '.join(lacking)}" if lacking
               else "no unit of the condition has a baseline unit with the same repeat, draw, seed and setup")
        out.append(f"`{p}`: not computed ({why}); conditions present: {sorted(present)}")
    return out
