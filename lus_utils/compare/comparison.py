"""The final comparison: every classifier run against its matching baseline runs, with honest statistics.

Why its own module: notebook 06 only narrates; the numbers it shows are computed here, from what the other
notebooks wrote (`runs/*/metrics.json`, `synthetic/*/audit.json`, the sets' manifests). Nothing is
trained again.

Statistics (all stated beside the numbers they produce):
- Per condition: the mean over its runs (seeds x folds) with a confidence interval, Student t on the run
  values (`ci_method="t"`) or percentile bootstrap of the mean (`"bootstrap"`); with one run there is no
  interval (NaN, never 0).
- Effects: paired differences run minus its matching baseline run. The baseline of a run has the same
  architecture, seed, fold and training setup and no synthetic set; for a synthetic run it also has the
  same imbalance strategy and augmentation (so only the synthetic images differ); for a strategy run it
  has strategy `none`; for an augmented run without synthetic images it has no augmentation either.
  The mean difference gets an interval as above and a paired test: Wilcoxon signed-rank (two-sided,
  exact for small n; with n pairs its smallest possible p is 2^(1-n), so fewer than 6 pairs can never
  reach p < 0.05) or a paired bootstrap test (mean difference re-centred to zero under the null).
- Multiplicity: Holm (or Bonferroni) over every condition x metric test shown, raw and adjusted p side
  by side. Intervals are not adjusted.
- Conclusions are sentences generated from these numbers (`conclusions`), never typed in.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from lus_utils.generate import synthetic
from lus_utils.params import CompareParams, as_dict
from lus_utils.paths import OutLayout
from lus_utils.provenance import (fingerprint_files, provenance, read_json, write_csv_atomic, write_json_atomic,
                         write_text_atomic)

# What defines a condition (not matched between a run and its baseline) and what only says how a run was
# executed (never matched): every other parameter must be equal for two runs to be paired.
CONDITION_KEYS = ("strategy", "augment", "synthetic_set", "synthetic_amount", "synthetic_amount_unit")
EXECUTION_KEYS = ("seed", "fold", "device", "num_threads", "n_boot", "frames_csv")
TOP_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1")
CLASS_METRICS = ("recall", "precision", "f1", "specificity", "auroc", "ap")
VIDEO_METRICS = ("accuracy", "balanced_accuracy", "macro_f1")
METRIC_LABELS = {
    "accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "macro_f1": "macro F1",
    "weighted_f1": "weighted F1", "minority_recall": "{m} recall", "minority_precision": "{m} precision",
    "minority_f1": "{m} F1", "minority_specificity": "{m} specificity", "minority_auroc": "{m} AUROC",
    "minority_ap": "{m} AP", "video_accuracy": "video accuracy",
    "video_balanced_accuracy": "video balanced accuracy", "video_macro_f1": "video macro F1",
    "video_minority_recall": "video {m} recall",
}
LEAKAGE_NOTE = ("leakage ablation: its generator also saw validation/test frames, so it is not a valid "
                "condition; shown only to see what leakage does")


def metric_column(metric: str, minority: str) -> str:
    """`minority_recall` -> `viral_recall`: the column name in runs tables and results.csv."""
    return metric.replace("minority", minority)


def metric_label(metric: str, minority: str) -> str:
    return METRIC_LABELS.get(metric, metric).format(m=minority)


def _num(value: Any) -> float:
    """A number or NaN: null, missing, text and infinities are NaN, never 0."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out if math.isfinite(out) else math.nan


def _total(value: Any) -> float:
    """n_train and friends: a number, or a per-class dict of counts summed."""
    if isinstance(value, dict):
        return float(sum(_num(v) for v in value.values()))
    return _num(value)


# --- reading runs ------------------------------------------------------------------------------------------
def flat_params(record: dict[str, Any]) -> dict[str, Any]:
    """A run's parameters as one flat dict, whether metrics.json nests them ({run: .., train: ..}) or not."""
    raw = record.get("params") or {}
    flat: dict[str, Any] = {}
    nested = {k: v for k, v in raw.items() if isinstance(v, dict)}
    for block in ("train", *[k for k in nested if k not in ("train", "run")], "run"):
        flat.update(nested.get(block, {}))
    flat.update({k: v for k, v in raw.items() if not isinstance(v, dict)})
    return flat


def _condition(params: dict[str, Any]) -> str:
    from lus_utils.classify.training import condition_name

    return condition_name(params)


def run_row(record: dict[str, Any], minority: str) -> dict[str, Any]:
    """One run's identity and metrics as a flat row (NaN wherever metrics.json has null or nothing)."""
    p = flat_params(record)
    row: dict[str, Any] = {
        "run_id": record.get("run_id", ""),
        "condition": record.get("condition") or _condition(p),
        "arch": p.get("arch", ""),
        "strategy": p.get("strategy", "none") or "none",
        "augment": bool(p.get("augment", False)),
        "seed": p.get("seed", math.nan),
        "fold": p.get("fold", math.nan),
        "synthetic_set": synthetic.set_name(p.get("synthetic_set", "")),
        "synthetic_amount": _num(p.get("synthetic_amount")) if p.get("synthetic_set") else math.nan,
        "synthetic_amount_unit": p.get("synthetic_amount_unit", "") if p.get("synthetic_set") else "",
    }
    for key in TOP_METRICS:
        row[key] = _num(record.get(key))
    per_class = (record.get("per_class") or {}).get(minority) or {}
    for key in CLASS_METRICS:
        row[f"{minority}_{key}"] = _num(per_class.get(key))
    video = record.get("video") or {}
    for key in VIDEO_METRICS:
        row[f"video_{key}"] = _num(video.get(key))
    row[f"video_{minority}_recall"] = _num(((video.get("per_class") or {}).get(minority) or {}).get("recall"))
    for key in ("n_train", "n_val", "n_test"):
        row[key] = _total(record.get(key))
    n_train = record.get("n_train")
    row[f"n_train_{minority}"] = _num(n_train.get(minority)) if isinstance(n_train, dict) else math.nan
    row["n_synthetic"] = _num(record.get("n_synthetic"))
    setup = {k: v for k, v in p.items() if k not in CONDITION_KEYS + EXECUTION_KEYS}
    row["setup"] = repr(sorted((k, repr(v)) for k, v in setup.items()))
    return row


def _leakage_flags(out_dir: Path, names: Iterable[str]) -> dict[str, bool]:
    """Whether each synthetic set is the leakage ablation (see `SyntheticSet.leakage_ablation`)."""
    return {name: synthetic.SyntheticSet.resolve(name, out_dir).leakage_ablation for name in names if name}


def load_runs(out_dir: Path, minority: str) -> tuple[pd.DataFrame, list[str]]:
    """Every `<out>/runs/*/metrics.json` as one row per run; unreadable files are listed, not hidden."""
    layout = OutLayout(Path(out_dir))
    rows, problems = [], []
    for path in sorted(layout.runs.glob("*/metrics.json")):
        try:
            record = read_json(path)
        except (OSError, ValueError) as err:
            problems.append(f"{path}: unreadable ({err}); left out")
            continue
        row = run_row(record, minority)
        row["run_id"] = row["run_id"] or path.parent.name
        rows.append(row)
    runs = pd.DataFrame(rows)
    if runs.empty:
        return runs, problems
    flags = _leakage_flags(layout.root, runs["synthetic_set"].unique())
    runs["leakage_ablation"] = [flags.get(s, False) for s in runs["synthetic_set"]]
    runs["has_synthetic"] = runs["synthetic_set"] != ""
    order = runs.apply(_condition_order, axis=1)
    runs = runs.assign(_order=order).sort_values(["arch", "_order", "seed", "fold"]).drop(columns="_order")
    return runs.reset_index(drop=True), problems


def _condition_order(row: pd.Series) -> tuple:
    strategies = {"none": 0, "weighted_loss": 1, "balanced_sampler": 2}
    return (bool(row["has_synthetic"]), bool(row["leakage_ablation"]), row["synthetic_set"],
            _num(row["synthetic_amount"]) if row["has_synthetic"] else 0.0, bool(row["augment"]),
            strategies.get(row["strategy"], 9), row["condition"])


RESULT_COLUMNS = ["run_id", "condition", "arch", "strategy", "augment", "seed", "fold", "synthetic_set",
                  "synthetic_amount", "synthetic_amount_unit", "leakage_ablation"]


def results_table(runs: pd.DataFrame, minority: str) -> pd.DataFrame:
    """What results.csv holds: one row per classifier run, identity then every metric and the counts."""
    metrics = [*TOP_METRICS, *(f"{minority}_{k}" for k in CLASS_METRICS),
               *(f"video_{k}" for k in VIDEO_METRICS), f"video_{minority}_recall"]
    counts = ["n_train", f"n_train_{minority}", "n_synthetic", "n_val", "n_test"]
    return runs[[c for c in RESULT_COLUMNS + metrics + counts if c in runs.columns]]


# --- statistics --------------------------------------------------------------------------------------------
def mean_ci(values: Sequence[float], level: float = 0.95, method: str = "t", n_boot: int = 2000,
            seed: int = 0) -> tuple[float, float, float, int]:
    """(mean, low, high, n) of the finite values; the interval is NaN with fewer than two values."""
    x = np.asarray([v for v in values if math.isfinite(_num(v))], dtype=np.float64)
    n = len(x)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float(x.mean())
    if n < 2:
        return mean, math.nan, math.nan, n
    if method == "t":
        sem = float(x.std(ddof=1)) / math.sqrt(n)
        if sem == 0:
            return mean, mean, mean, n
        lo, hi = stats.t.interval(level, n - 1, loc=mean, scale=sem)
        return mean, float(lo), float(hi), n
    if method == "bootstrap":
        rng = np.random.default_rng(seed)
        means = x[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)
        tail = (1 - level) / 2
        return mean, float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail)), n
    raise ValueError(f"ci_method '{method}' unknown; use 't' or 'bootstrap'")


def min_wilcoxon_p(n: int) -> float:
    """The smallest two-sided p the exact Wilcoxon signed-rank test can give with n non-zero pairs."""
    return 2.0 ** (1 - n) if n >= 1 else math.nan


def paired_test(diffs: Sequence[float], test: str = "wilcoxon", n_boot: int = 2000,
                seed: int = 0) -> tuple[float, str]:
    """Two-sided p of 'the mean paired difference is zero', and a note when the test is powerless."""
    d = np.asarray([v for v in diffs if math.isfinite(_num(v))], dtype=np.float64)
    n = len(d)
    if n < 2:
        return math.nan, f"{n} pair(s): no test"
    if test == "wilcoxon":
        nonzero = d[d != 0]  # zero differences carry no sign (Wilcoxon's original treatment)
        if len(nonzero) == 0:
            return 1.0, "all differences are zero"
        p = float(stats.wilcoxon(nonzero, alternative="two-sided").pvalue)
        floor = min_wilcoxon_p(len(nonzero))
        note = (f"{len(nonzero)} non-zero pairs: Wilcoxon cannot reach p < 0.05 (smallest p {floor:.3g})"
                if floor >= 0.05 else "")
        return p, note
    if test == "bootstrap":
        rng = np.random.default_rng(seed)
        observed = abs(float(d.mean()))
        centred = d - d.mean()
        means = centred[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)
        p = float((1 + np.count_nonzero(np.abs(means) >= observed - 1e-12)) / (n_boot + 1))
        return p, (f"{n} pairs: bootstrap p-values are unreliable with fewer than 6 pairs" if n < 6 else "")
    raise ValueError(f"paired_test '{test}' unknown; use 'wilcoxon' or 'bootstrap'")


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm step-down adjusted p-values; NaN stays NaN and does not count as a test."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, math.nan)
    valid = np.flatnonzero(np.isfinite(p))
    m = len(valid)
    if m == 0:
        return out
    order = valid[np.argsort(p[valid], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        out[index] = running
    return out


def adjust(pvalues: Sequence[float], method: str) -> np.ndarray:
    p = np.asarray(pvalues, dtype=np.float64)
    if method == "holm":
        return holm(p)
    if method == "bonferroni":
        return np.minimum(1.0, p * np.count_nonzero(np.isfinite(p)))
    if method == "none":
        return p.copy()
    raise ValueError(f"multiple_comparisons '{method}' unknown; use holm, bonferroni or none")


# --- per-condition summaries -------------------------------------------------------------------------------
def summarize(runs: pd.DataFrame, params: CompareParams) -> pd.DataFrame:
    """Long table: arch, condition, metric, n (finite values), mean, lo, hi."""
    rows = []
    for (arch, condition), group in runs.groupby(["arch", "condition"], sort=False):
        for metric in params.metrics:
            column = metric_column(metric, params.minority_class)
            values = group[column] if column in group else []
            mean, lo, hi, n = mean_ci(list(values), params.ci_level, params.ci_method, params.n_boot,
                                      params.compare_seed)
            rows.append({"arch": arch, "condition": condition, "leakage_ablation": bool(group["leakage_ablation"].any()),
                         "n_runs": len(group), "metric": metric, "n": n, "mean": mean, "lo": lo, "hi": hi})
    return pd.DataFrame(rows)


def _cell(mean: float, lo: float, hi: float, n: int) -> str:
    if n == 0 or not math.isfinite(mean):
        return "n/a"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{mean:.3f} (n={n}, no CI)"
    return f"{mean:.3f} [{lo:.3f}, {hi:.3f}]"


def condition_tables(summary: pd.DataFrame, params: CompareParams) -> dict[str, pd.DataFrame]:
    """One display table per architecture (and one per architecture for the leakage ablation, apart)."""
    tables: dict[str, pd.DataFrame] = {}
    if summary.empty:
        return tables
    for (arch, leakage), block in summary.groupby(["arch", "leakage_ablation"], sort=False):
        rows = []
        for condition, group in block.groupby("condition", sort=False):
            row = {"condition": condition, "n runs": int(group["n_runs"].iloc[0])}
            for _, r in group.iterrows():
                row[metric_label(r["metric"], params.minority_class)] = _cell(r["mean"], r["lo"], r["hi"], r["n"])
            rows.append(row)
        name = f"{arch} · leakage ablation" if leakage else arch
        tables[name] = pd.DataFrame(rows).set_index("condition")
    return dict(sorted(tables.items(), key=lambda kv: ("leakage" in kv[0], kv[0])))


# --- matching and effects ----------------------------------------------------------------------------------
def baseline_definition(row: pd.Series) -> dict[str, Any] | None:
    """What the matching baseline run of `row` looks like (None: `row` is itself a baseline)."""
    if row["has_synthetic"]:
        return {"strategy": row["strategy"], "augment": bool(row["augment"])}
    if row["strategy"] != "none":
        return {"strategy": "none", "augment": bool(row["augment"])}
    if row["augment"]:
        return {"strategy": "none", "augment": False}
    return None


def match_baselines(runs: pd.DataFrame) -> pd.DataFrame:
    """For every non-baseline run: its baseline run (same arch, seed, fold, setup; see the module doc)."""
    pool = runs[~runs["has_synthetic"]]
    index: dict[tuple, list[str]] = {}
    for _, r in pool.iterrows():
        key = (r["arch"], r["seed"], r["fold"], r["setup"], r["strategy"], bool(r["augment"]))
        index.setdefault(key, []).append(r["run_id"])
    rows = []
    for _, r in runs.iterrows():
        wanted = baseline_definition(r)
        if wanted is None:
            continue
        key = (r["arch"], r["seed"], r["fold"], r["setup"], wanted["strategy"], wanted["augment"])
        found = sorted(index.get(key, []))
        description = f"strategy {wanted['strategy']}, {'with' if wanted['augment'] else 'no'} augmentation, no synthetic set"
        rows.append({"run_id": r["run_id"], "arch": r["arch"], "condition": r["condition"], "seed": r["seed"],
                     "fold": r["fold"], "leakage_ablation": bool(r["leakage_ablation"]),
                     "baseline_run_id": found[0] if found else None, "baseline": description,
                     "note": ("" if len(found) == 1 else f"{len(found)} candidate baselines; took {found[0]}"
                              if found else "no matching baseline run")})
    return pd.DataFrame(rows, columns=["run_id", "arch", "condition", "seed", "fold", "leakage_ablation",
                                       "baseline_run_id", "baseline", "note"])


def paired_differences(runs: pd.DataFrame, pairs: pd.DataFrame, params: CompareParams) -> pd.DataFrame:
    """One row per matched pair and metric: run value, baseline value, difference (NaN if either is)."""
    by_id = runs.set_index("run_id")
    rows = []
    for _, pair in pairs.dropna(subset=["baseline_run_id"]).iterrows():
        run, base = by_id.loc[pair["run_id"]], by_id.loc[pair["baseline_run_id"]]
        for metric in params.metrics:
            column = metric_column(metric, params.minority_class)
            value, baseline = _num(run.get(column)), _num(base.get(column))
            rows.append({"arch": pair["arch"], "condition": pair["condition"], "metric": metric,
                         "leakage_ablation": pair["leakage_ablation"], "run_id": pair["run_id"],
                         "baseline_run_id": pair["baseline_run_id"], "value": value, "baseline_value": baseline,
                         "diff": value - baseline})
    return pd.DataFrame(rows, columns=["arch", "condition", "metric", "leakage_ablation", "run_id",
                                       "baseline_run_id", "value", "baseline_value", "diff"])


def effects(diffs: pd.DataFrame, params: CompareParams) -> pd.DataFrame:
    """Per arch x condition x metric: mean paired difference, its CI, raw and adjusted p, notes."""
    columns = ["arch", "condition", "metric", "leakage_ablation", "n_pairs", "mean_diff", "lo", "hi",
               "ci_excludes_zero", "test", "p", "p_adj", "significant", "note"]
    rows = []
    for (arch, condition, metric), group in diffs.groupby(["arch", "condition", "metric"], sort=False):
        mean, lo, hi, n = mean_ci(list(group["diff"]), params.ci_level, params.ci_method, params.n_boot,
                                  params.compare_seed)
        p, note = paired_test(list(group["diff"]), params.paired_test, params.n_boot, params.compare_seed)
        excludes = bool(math.isfinite(lo) and math.isfinite(hi) and (lo > 0 or hi < 0))
        rows.append({"arch": arch, "condition": condition, "metric": metric,
                     "leakage_ablation": bool(group["leakage_ablation"].any()), "n_pairs": n, "mean_diff": mean,
                     "lo": lo, "hi": hi, "ci_excludes_zero": excludes, "test": params.paired_test, "p": p,
                     "note": note})
    table = pd.DataFrame(rows, columns=columns)
    if table.empty:
        return table
    table["p_adj"] = adjust(table["p"].to_numpy(dtype=np.float64), params.multiple_comparisons)
    alpha = 1 - params.ci_level
    table["significant"] = [bool(math.isfinite(p) and p < alpha) for p in table["p_adj"]]
    return table


def effects_display(table: pd.DataFrame, params: CompareParams) -> pd.DataFrame:
    """The effects as read in the report: difference [CI], raw and adjusted p, and why a test is weak."""
    level = f"{params.ci_level:.0%}"
    adjusted = f"p ({params.multiple_comparisons})"
    rows = []
    for _, r in table.iterrows():
        rows.append({"arch": r["arch"], "condition": r["condition"] + (" [leakage ablation]" if r["leakage_ablation"] else ""),
                     "metric": metric_label(r["metric"], params.minority_class), "pairs": r["n_pairs"],
                     f"difference [{level} CI]": _cell(r["mean_diff"], r["lo"], r["hi"], r["n_pairs"]),
                     f"p ({r['test']})": _fmt_p(r["p"]), adjusted: _fmt_p(r["p_adj"]), "note": r["note"]})
    frame = pd.DataFrame(rows)
    return frame.set_index(["arch", "condition", "metric"]) if len(frame) else frame


def _fmt_p(p: float) -> str:
    return "n/a" if not math.isfinite(_num(p)) else f"{p:.3g}"


# --- synthetic sets ----------------------------------------------------------------------------------------
# Parts of audit.json that are not figures about the set itself (raw values, parameters, real-data scale).
AUDIT_SKIP = ("params", "code_version", "values", "thresholds", "closest_pairs", "real_reference", "intensity")


def _numeric_items(obj: dict[str, Any], prefix: str = "", depth: int = 4) -> dict[str, float]:
    """Numeric leaves of audit.json as dotted keys (`memorization.all_train.share_memorized`); null is NaN."""
    out: dict[str, float] = {}
    for key, value in obj.items():
        if key in AUDIT_SKIP or isinstance(value, bool):
            continue
        if isinstance(value, (int, float)) or value is None:
            out[f"{prefix}{key}"] = _num(value)
        elif isinstance(value, dict) and depth > 1:
            out.update(_numeric_items(value, f"{prefix}{key}.", depth - 1))
    return out


def _audit_priority(key: str) -> tuple:
    lowered = key.lower()
    for rank, word in enumerate(("memoriz", "fd", "kid", "fid", "reject", "kept")):
        if word in lowered:
            return rank, key
    return 9, key


def load_audits(out_dir: Path) -> pd.DataFrame:
    """One row per synthetic set: the numeric figures its audit.json holds (dotted keys), gate counts."""
    layout = OutLayout(Path(out_dir))
    rows = []
    for set_dir in sorted(p for p in layout.synthetic.glob("*") if p.is_dir() and not p.name.startswith(".")):
        row: dict[str, Any] = {"synthetic_set": set_dir.name}
        audit_path = set_dir / "audit.json"
        try:
            audit = read_json(audit_path) if audit_path.is_file() else {}
        except (OSError, ValueError):
            audit = {}
        row["audited"] = bool(audit)
        row["leakage_ablation"] = synthetic.SyntheticSet(set_dir.name, set_dir).leakage_ablation
        realism = audit.get("realism") if isinstance(audit.get("realism"), dict) else {}
        row["feature space"] = realism.get("feature_space", "")
        manifest = set_dir / "manifest.csv"
        if manifest.is_file():
            table = pd.read_csv(manifest, keep_default_na=False)
            row["n_images"] = len(table)
            if "passed_gate" in table:
                row["n_passed_gate"] = int(synthetic.passed_gate(table).sum())
        figures = {k: v for k, v in _numeric_items(audit).items() if k not in row}
        row.update({k: figures[k] for k in sorted(figures, key=_audit_priority)})
        rows.append(row)
    return pd.DataFrame(rows)


def memorization_columns(audits: pd.DataFrame) -> list[str]:
    """Shares of memorized images: keys whose last part names memorization (share_memorized, memorized_share)."""
    return [c for c in audits.columns if "memori" in c.rsplit(".", 1)[-1].lower()]


def realism_columns(audits: pd.DataFrame) -> list[str]:
    """Fréchet distance and KID figures, whatever the audit calls them (fd, fid, kid.<pair>.mean, ...)."""
    def realism(column: str) -> bool:
        last = column.rsplit(".", 1)[-1].lower()
        counts = last in ("std", "n", "subset_size", "feature_dim") or last.startswith(("n_", "subset"))
        return not counts and any(t.startswith(("fd", "fid", "kid")) for t in re.split(r"[^a-z0-9]+", column.lower()))

    return [c for c in audits.columns if realism(c)]


def synthetic_table(runs: pd.DataFrame, summary: pd.DataFrame, audits: pd.DataFrame,
                    params: CompareParams) -> pd.DataFrame:
    """Every synthetic set's audit figures beside the mean metrics of each condition that trained on it
    (a set no classifier run used still gets its row, with the condition '(no classifier run)')."""
    synthetic = runs[runs["has_synthetic"]][["arch", "condition", "synthetic_set"]].drop_duplicates()
    if not summary.empty and not synthetic.empty:
        means = summary.pivot_table(index=["arch", "condition"], columns="metric", values="mean", aggfunc="first")
        means = means[[m for m in params.metrics if m in means.columns]]
        means.columns = [metric_label(c, params.minority_class) for c in means.columns]
        synthetic = synthetic.merge(means.reset_index(), on=["arch", "condition"], how="left")
    if audits.empty:
        return synthetic.reset_index(drop=True)
    keep = ["synthetic_set", "leakage_ablation", "n_images", "n_passed_gate",
            *memorization_columns(audits), "feature space", *realism_columns(audits)]
    figures = audits[[c for c in dict.fromkeys(keep) if c in audits.columns]]
    table = figures.merge(synthetic, on="synthetic_set", how="outer")
    table["condition"] = table["condition"].fillna("(no classifier run)")
    first = ["synthetic_set", "arch", "condition"]
    return table[first + [c for c in table.columns if c not in first]].reset_index(drop=True)


def example_pairs(out_dir: Path, synthetic_set: str, n: int) -> list[tuple[Path, Path, float]]:
    """The n gated synthetic images closest to a training frame, with that frame: (synthetic, train, sim)."""
    layout = OutLayout(Path(out_dir))
    set_dir = layout.synthetic / synthetic_set
    path = set_dir / "manifest.csv"
    if n <= 0 or not path.is_file():
        return []
    table = pd.read_csv(path, keep_default_na=False)
    if "nearest_train_path" not in table:
        return []
    table = table[table["nearest_train_path"].astype(str) != ""]
    if "passed_gate" in table:
        passed = synthetic.passed_gate(table)
        table = table[passed] if passed.any() else table
    table = table.assign(_sim=pd.to_numeric(table.get("nearest_train_similarity"), errors="coerce"))
    table = table.sort_values("_sim", ascending=False, na_position="last").head(n)
    pairs = []
    for _, r in table.iterrows():
        image, train = set_dir / r["path"], layout.data / r["nearest_train_path"]
        if image.is_file() and train.is_file():
            pairs.append((image, train, _num(r["_sim"])))
    return pairs


# --- the whole comparison ----------------------------------------------------------------------------------
@dataclass
class Comparison:
    """Everything notebook 06 shows, computed once by `compare` and written under <out>/comparison."""

    out_dir: Path
    params: CompareParams
    runs: pd.DataFrame
    summary: pd.DataFrame
    tables: dict[str, pd.DataFrame]
    pairs: pd.DataFrame
    diffs: pd.DataFrame
    effects: pd.DataFrame
    audits: pd.DataFrame
    synthetic: pd.DataFrame
    problems: list[str] = field(default_factory=list)
    conclusions: str = ""

    @property
    def folder(self) -> Path:
        return comparison_dir(self.out_dir)

    @property
    def figures(self) -> Path:
        return self.folder / "figures"


def comparison_dir(out_dir: Path) -> Path:
    return Path(out_dir) / "comparison"


def compare(out_dir: Path, params: CompareParams) -> Comparison:
    """Read every run and audit, compute tables, pairs, effects and conclusions, write them (atomically)."""
    out_dir = Path(out_dir)
    runs, problems = load_runs(out_dir, params.minority_class)
    if runs.empty:
        raise FileNotFoundError(f"no classifier runs in {OutLayout(out_dir).runs}/*/metrics.json: run notebooks "
                                "02 and 03 first (python run_all.py --profile <name> --only 02 03), or point "
                                "out_dir at a study output folder")
    summary = summarize(runs, params)
    pairs = match_baselines(runs)
    diffs = paired_differences(runs, pairs, params)
    table = effects(diffs, params)
    audits = load_audits(out_dir)
    comp = Comparison(out_dir=out_dir, params=params, runs=runs, summary=summary,
                      tables=condition_tables(summary, params), pairs=pairs, diffs=diffs, effects=table,
                      audits=audits, synthetic=synthetic_table(runs, summary, audits, params), problems=problems)
    comp.conclusions = conclusions(comp)
    write(comp)
    return comp


def write(comp: Comparison) -> None:
    """results.csv at the top of the output folder; tables, effects, conclusions and provenance beside."""
    folder = comp.folder
    write_csv_atomic(comp.out_dir / "results.csv", results_table(comp.runs, comp.params.minority_class))
    write_csv_atomic(folder / "summary.csv", comp.summary)
    write_csv_atomic(folder / "pairs.csv", comp.pairs)
    write_csv_atomic(folder / "effects.csv", comp.effects)
    write_csv_atomic(folder / "audits.csv", comp.audits)
    write_text_atomic(folder / "conclusions.md", comp.conclusions)
    write_text_atomic(folder / "tables.html", tables_html(comp))
    write_text_atomic(folder / "effects.html", _html_table(effects_display(comp.effects, comp.params)))
    write_text_atomic(folder / "synthetic.html", _html_table(comp.synthetic, index=False, floats="{:.3f}"))
    sources = sorted(OutLayout(comp.out_dir).runs.glob("*/metrics.json")) + sorted(
        OutLayout(comp.out_dir).synthetic.glob("*/audit.json"))
    write_json_atomic(folder / "provenance.json", provenance(
        as_dict(comp.params), inputs_fingerprint=fingerprint_files(sources, root=comp.out_dir) if sources else "",
        n_runs=len(comp.runs), n_audits=int(comp.audits.get("audited", pd.Series(dtype=bool)).sum())))


def _html_table(frame: pd.DataFrame, index: bool = True, floats: str = "{:.3f}") -> str:
    if frame is None or frame.empty:
        return "<p><em>nothing to show</em></p>"
    return frame.to_html(index=index, na_rep="n/a", float_format=floats.format, classes="table", border=0,
                         escape=True)


def tables_html(comp: Comparison) -> str:
    """The per-architecture tables as one HTML fragment, with how the intervals were made."""
    method = ("Student-t interval over runs" if comp.params.ci_method == "t"
              else f"percentile bootstrap of the mean ({comp.params.n_boot} resamples)")
    parts = [f"<p>Each cell: mean over the condition's runs (seeds × folds) with its "
             f"{comp.params.ci_level:.0%} CI ({method}); 'no CI' with a single run.</p>"]
    for name, table in comp.tables.items():
        parts.append(f"<h3>{name}</h3>")
        if "leakage" in name:
            parts.append(f"<p><strong>{LEAKAGE_NOTE}.</strong></p>")
        parts.append(_html_table(table))
    return "\n".join(parts)


def overview(comp: Comparison) -> str:
    runs = comp.runs
    matched = int(comp.pairs["baseline_run_id"].notna().sum()) if not comp.pairs.empty else 0
    lines = [f"{len(runs)} classifier runs: {runs['arch'].nunique()} architecture(s), "
             f"{runs['condition'].nunique()} condition(s), seeds {sorted(runs['seed'].unique().tolist())}, "
             f"folds {sorted(runs['fold'].unique().tolist())}",
             f"{matched} of {len(comp.pairs)} non-baseline runs matched to a baseline run",
             f"{len(comp.audits)} synthetic set(s), {int(comp.audits.get('audited', pd.Series(dtype=bool)).sum())} audited"]
    lines += [f"warning: {p}" for p in comp.problems]
    return "\n".join(lines)


def matching_summary(comp: Comparison) -> pd.DataFrame:
    """Per architecture and condition: runs, runs paired with a baseline, what the baseline is, unmatched runs."""
    if comp.pairs.empty:
        return pd.DataFrame()
    rows = []
    for (arch, condition), group in comp.pairs.groupby(["arch", "condition"], sort=False):
        unmatched = group[group["baseline_run_id"].isna()]["run_id"].tolist()
        notes = sorted({n for n in group["note"] if n and n != "no matching baseline run"})
        rows.append({"arch": arch, "condition": condition, "runs": len(group),
                     "paired": int(group["baseline_run_id"].notna().sum()), "baseline": group["baseline"].iloc[0],
                     "unmatched runs": ", ".join(unmatched), "notes": "; ".join(notes)})
    return pd.DataFrame(rows).set_index(["arch", "condition"])


def run_counts(comp: Comparison) -> pd.DataFrame:
    """Runs per condition and architecture (seeds x folds): where the n of every interval comes from."""
    return comp.runs.pivot_table(index="condition", columns="arch", values="run_id", aggfunc="count",
                                 sort=False).fillna(0).astype(int)


# --- conclusions -------------------------------------------------------------------------------------------
def _signed(x: float) -> str:
    return f"{x:+.3f}"


CORRECTION_NAMES = {"holm": "Holm", "bonferroni": "Bonferroni", "none": "no"}


def _effect_bullets(block: pd.DataFrame, minority: str, correction: str) -> list[str]:
    """One bullet per architecture and condition: each metric's difference [CI] (p, adjusted p)."""
    lines = []
    for (arch, condition), group in block.groupby(["arch", "condition"], sort=False):
        parts = []
        for _, r in group.iterrows():
            interval = f" [{r['lo']:+.3f}, {r['hi']:+.3f}]" if math.isfinite(_num(r["lo"])) else ""
            parts.append(f"{metric_label(r['metric'], minority)} {_signed(r['mean_diff'])}{interval} "
                         f"(p {_fmt_p(r['p'])}, {correction} {_fmt_p(r['p_adj'])})")
        lines.append(f"- {arch} · `{condition}` ({int(group['n_pairs'].max())} pairs): " + "; ".join(parts) + ".")
    return lines


def conclusions(comp: Comparison) -> str:
    """Markdown sentences computed from the effects and audits (what the CIs and tests say, and do not)."""
    p = comp.params
    level = f"{p.ci_level:.0%}"
    alpha = 1 - p.ci_level
    eff = comp.effects
    correction = CORRECTION_NAMES[p.multiple_comparisons]
    method = "Student-t" if p.ci_method == "t" else "percentile-bootstrap"
    test = "two-sided Wilcoxon signed-rank" if p.paired_test == "wilcoxon" else "paired bootstrap"
    n_tests = int(np.isfinite(eff["p"].astype(float)).sum()) if not eff.empty else 0
    n_paired = int(comp.pairs["baseline_run_id"].notna().sum()) if not comp.pairs.empty else 0
    lines = [f"**What was compared.** {_n(len(comp.runs), 'classifier run')} in "
             f"{_n(comp.runs['condition'].nunique(), 'condition')}; {n_paired} of them paired with a baseline run "
             "of the same architecture, seed, fold "
             "and setup. Effects are mean paired differences (condition minus baseline; positive is better) with "
             f"{level} {method} intervals and a {test} test; {correction} correction over all {n_tests} tests "
             "shown. Intervals are not adjusted for multiplicity.", ""]
    if eff.empty:
        lines.append("**No paired comparison was possible**: no run had a matching baseline run, so nothing "
                     "can be said about any condition's effect.")
    else:
        valid = eff[~eff["leakage_ablation"]]
        excl = valid[valid["ci_excludes_zero"]]
        if len(excl):
            up, down = int((excl["mean_diff"] > 0).sum()), int((excl["mean_diff"] < 0).sum())
            lines.append(f"**Effects whose {level} CI excludes zero**: {len(excl)} of {len(valid)} condition × "
                         f"metric comparisons ({up} better than the baseline, {down} worse):")
            lines += _effect_bullets(excl, p.minority_class, correction)
        else:
            lines.append(f"**No effect's {level} CI excludes zero**: at this number of runs no condition is "
                         "distinguishable from its baseline on any metric shown.")
        no_ci = valid[~np.isfinite(valid["lo"].astype(float))]
        if len(no_ci):
            lines.append(f"- {len(no_ci)} of {len(valid)} comparisons have no interval (a single pair, or the "
                         "metric undefined): their differences are single observations, not estimates.")
        sig = valid[valid["significant"]]
        lines.append("")
        if len(sig):
            lines.append(f"**After {correction} correction** {len(sig)} of {n_tests} tests have adjusted "
                         f"p < {alpha:.2g}:")
            lines += _effect_bullets(sig, p.minority_class, correction)
        else:
            lines.append(f"**After {correction} correction** none of the {n_tests} tests has adjusted "
                         f"p < {alpha:.2g}.")
        if p.paired_test == "wilcoxon" and n_tests:
            most = int(eff["n_pairs"].max())
            floor = min_wilcoxon_p(most) * (n_tests if p.multiple_comparisons != "none" else 1)
            lines.append(f"- With at most {most} pairs the smallest Wilcoxon p is {min_wilcoxon_p(most):.3g}, "
                         f"and the smallest {correction}-adjusted p over {n_tests} tests is {min(1.0, floor):.3g}"
                         + (": no result can be significant at this size, whatever the effect."
                            if floor >= alpha else "."))
        weak = eff[eff["note"].str.contains("cannot reach|unreliable", regex=True)]
        if len(weak):
            lines.append(f"- {len(weak)} tests rest on fewer than 6 pairs: "
                         + ("the exact Wilcoxon test cannot give p < 0.05 there (its smallest p with n pairs is "
                            "2^(1-n), 0.0625 at n = 5), so a non-significant result says nothing about the effect."
                            if p.paired_test == "wilcoxon" else "bootstrap p-values are unreliable there."))
    lines += ["", *_synthetic_sentences(comp)]
    leak = eff[eff["leakage_ablation"]] if not eff.empty else eff
    if len(leak):
        lines += ["", "**Leakage ablation** (shown apart; not a valid condition: its generator also saw "
                  "validation and test frames, so any gain may come from having seen the test patients):"]
        lines += _effect_bullets(leak, p.minority_class, correction)
    if comp.problems:
        lines += ["", "**Left out:** " + "; ".join(comp.problems)]
    return "\n".join(lines).strip() + "\n"


def _short_key(column: str) -> str:
    for prefix in ("memorization.", "realism."):
        if column.startswith(prefix):
            return column[len(prefix):]
    return column


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _synthetic_sentences(comp: Comparison) -> list[str]:
    audits = comp.audits
    if audits.empty:
        return ["**Synthetic sets:** none found in this output folder."]
    lines = ["**Synthetic sets** (audit figures as written by the audit):"]
    mem, real = memorization_columns(audits), realism_columns(audits)
    for _, r in audits.iterrows():
        if not r.get("audited", False):
            lines.append(f"- `{r['synthetic_set']}`: no audit.json, so its memorization is unknown.")
            continue
        parts = [f"{_short_key(c)} = {r[c]:.3g}" for c in mem + real if c in r and math.isfinite(_num(r[c]))]
        if not any(math.isfinite(_num(r.get(c))) for c in real) and r.get("feature space"):
            parts.append(f"no Fréchet distance or KID (feature space: {r['feature space']})")
        gate = (f"{int(r['n_passed_gate'])} of {int(r['n_images'])} images passed the quality gate; "
                if math.isfinite(_num(r.get("n_passed_gate"))) and math.isfinite(_num(r.get("n_images"))) else "")
        flag = " (leakage ablation)" if r.get("leakage_ablation") else ""
        lines.append(f"- `{r['synthetic_set']}`{flag}: {gate}" + (", ".join(parts) if parts else
                                                                  "no memorization or realism figure found") + ".")
    return lines


# --- figures -----------------------------------------------------------------------------------------------
def save_figure(fig: Any, comp: Comparison, name: str) -> Path:
    from lus_utils.provenance import atomic_path

    target = comp.figures / f"{name}.png"
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return target


def forest_plot(comp: Comparison) -> Any:
    """Mean paired difference with its CI per condition (rows) and metric (panels); zero marked."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    eff = comp.effects
    p = comp.params
    sns.set_theme(style="whitegrid", context="notebook")
    if eff.empty:
        fig, ax = plt.subplots(figsize=(6, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, "no paired comparisons (no run matched a baseline run)", ha="center", va="center")
        save_figure(fig, comp, "forest")
        return fig
    eff = eff.assign(row=[f"{c}{' [leakage]' if leak else ''} · {a}"
                          for a, c, leak in zip(eff["arch"], eff["condition"], eff["leakage_ablation"])])
    rows = list(dict.fromkeys(eff["row"]))
    metrics = list(dict.fromkeys(eff["metric"]))
    ncols = min(4, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.8 * ncols + 3, nrows * (0.4 * len(rows) + 1.2) + 0.8),
                             sharey=True, squeeze=False)
    for ax in axes.ravel()[len(metrics):]:
        ax.axis("off")
    palette = {"significant": "#c0392b", "ci excludes 0": "#e67e22", "ci includes 0": "#34495e",
               "leakage ablation": "#95a5a6"}
    for ax, metric in zip(axes.ravel(), metrics):
        block = eff[eff["metric"] == metric].set_index("row").reindex(rows)
        for y, (row, r) in enumerate(block.iterrows()):
            if not math.isfinite(_num(r["mean_diff"])):
                continue
            kind = ("leakage ablation" if r["leakage_ablation"] else "significant" if r["significant"]
                    else "ci excludes 0" if r["ci_excludes_zero"] else "ci includes 0")
            has_ci = math.isfinite(_num(r["lo"]))
            if has_ci:
                ax.plot([r["lo"], r["hi"]], [y, y], color=palette[kind], lw=2)
            ax.plot(r["mean_diff"], y, "o", color=palette[kind], mfc=palette[kind] if has_ci else "white")
        ax.axvline(0, color="black", lw=1)
        ax.set_title(metric_label(metric, p.minority_class), fontsize=10)
        ax.set_xlabel("difference to baseline", fontsize=8)
        ax.tick_params(labelsize=8)
    axes[0][0].set_yticks(range(len(rows)))
    axes[0][0].set_yticklabels(rows, fontsize=8)
    axes[0][0].set_ylim(len(rows) - 0.5, -0.5)
    handles = [plt.Line2D([], [], color=c, marker="o", lw=2, label=k) for k, c in palette.items()]
    handles.append(plt.Line2D([], [], color="#34495e", marker="o", mfc="white", lw=0, label="single pair (no CI)"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, -0.02))
    fig.suptitle(f"Paired differences to the baseline runs, mean and {p.ci_level:.0%} CI "
                 f"(significant: {p.multiple_comparisons}-adjusted p < {1 - p.ci_level:.2g})", fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 0.96))
    save_figure(fig, comp, "forest")
    return fig


def plot_example_pairs(comp: Comparison) -> Any:
    """Per synthetic set, its images closest to a training frame, each beside that frame (what memorizes)."""
    import matplotlib.pyplot as plt

    from lus_utils.images import load_image

    n = comp.params.n_example_pairs
    sets = comp.audits["synthetic_set"].tolist() if not comp.audits.empty else []
    found = {s: example_pairs(comp.out_dir, s, n) for s in sets}
    found = {s: pairs for s, pairs in found.items() if pairs}
    if not found:
        fig, ax = plt.subplots(figsize=(6, 1.2))
        ax.axis("off")
        ax.text(0.5, 0.5, "no synthetic images with a recorded nearest training frame", ha="center", va="center")
        save_figure(fig, comp, "example_pairs")
        return fig
    ncols = 2 * max(len(p) for p in found.values())
    fig, axes = plt.subplots(len(found), ncols, figsize=(1.6 * ncols, 1.9 * len(found) + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for row, (name, pairs) in enumerate(found.items()):
        for i, (synthetic, train, similarity) in enumerate(pairs):
            for j, (path, title) in enumerate(((synthetic, f"synthetic\nsim {similarity:.2f}"),
                                               (train, "nearest train"))):
                ax = axes[row][2 * i + j]
                ax.imshow(load_image(path, grayscale=True), cmap="gray", vmin=0, vmax=255)
                ax.set_title(title, fontsize=7)
        axes[row][0].text(-0.1, 0.5, name, transform=axes[row][0].transAxes, rotation=90, ha="right",
                          va="center", fontsize=8)
    fig.suptitle("Synthetic images closest to a training frame (left) and that frame (right)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, comp, "example_pairs")
    return fig

