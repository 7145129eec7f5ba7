"""Reading classifier runs back: one row per run (identity and metrics), its test predictions, results.csv.

A run is one papermill execution: (arch, condition, repeat, seed) covering every fold of that repeat under
the cv protocol (pooled out-of-fold predictions), or one hold-out split (repeat 0, fold -1). Its metrics are
recomputed here from its `predictions.csv` with `classify.metrics.endpoints` when the file is there, so the
point estimate and the bootstrap draws come from the same numbers; metrics.json is the fallback.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from lus_utils.classify import metrics as M
from lus_utils.params import SEED_VIDEO
from lus_utils.paths import OutLayout
from lus_utils.provenance import read_json

# What defines a condition (not matched between a run and its baseline) and what only says how a run was
# executed (never matched): every other parameter must be equal for two runs to be paired.
CONDITION_KEYS = ("strategy", "augment", "synthetic_set", "synthetic_amount", "synthetic_amount_unit")
EXECUTION_KEYS = ("seed", "fold", "folds", "repeat", "device", "num_threads", "n_boot", "frames_csv")
CONDITION_WORDS = ("oversampl", "metadata")  # parameter names of the controls (C1's keys), not of the setup
METRIC_LABELS = {
    "accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "macro_f1": "macro F1",
    "weighted_precision": "weighted precision", "weighted_recall": "weighted recall", "weighted_f1": "weighted F1",
    "minority_recall": "{m} recall (argmax)", "minority_precision": "{m} precision", "minority_f1": "{m} F1",
    "minority_specificity": "{m} specificity", "minority_auroc": "{m} AUROC", "minority_ap": "{m} AP",
    "minority_sens_at_spec": "{m} sensitivity at the fixed specificity",
    "video_accuracy": "video accuracy", "video_balanced_accuracy": "video balanced accuracy",
    "video_macro_f1": "video macro F1", "video_weighted_f1": "video weighted F1",
    "video_minority_recall": "video {m} recall", "video_minority_auroc": "video {m} AUROC",
    "video_minority_ap": "video {m} AP",
}
OLD_CLASS_KEYS = ("recall", "precision", "f1", "specificity", "auroc", "ap")
RESULT_COLUMNS = ["run_id", "condition", "arch", "strategy", "augment", "protocol", "repeat", "seed", "fold",
                  "synthetic_set", "synthetic_amount", "synthetic_amount_unit", "leakage_ablation", "seed_replica",
                  "reference", "control", "has_predictions"]
COUNT_COLUMNS = ["n_train", "n_train_minority", "n_synthetic", "n_val", "n_test", "n_minority_patients"]


def metric_column(metric: str, minority: str) -> str:
    """`minority_auroc` -> `viral_auroc`: the column name in runs tables and results.csv."""
    return metric.replace("minority", minority)


def metric_label(metric: str, minority: str) -> str:
    return METRIC_LABELS.get(metric, metric).format(m=minority)


def num(value: Any) -> float:
    """A number or NaN: null, missing, text and infinities are NaN, never 0."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out if math.isfinite(out) else math.nan


def interval(lo: float, hi: float, signed: bool = True) -> str:
    """`[lo, hi]` at three decimals (signed: with +/-), or "no interval" when either end is missing."""
    if not (math.isfinite(num(lo)) and math.isfinite(num(hi))):
        return "no interval"
    form = "{:+.3f}" if signed else "{:.3f}"
    return f"[{form.format(lo)}, {form.format(hi)}]"


def _total(value: Any) -> float:
    """n_train and friends: a number, a per-class dict of counts summed, or per-fold dicts summed."""
    if isinstance(value, dict):
        return float(sum(_total(v) for v in value.values()))
    return num(value)


def flat_params(record: dict[str, Any]) -> dict[str, Any]:
    """A run's parameters as one flat dict, whether metrics.json nests them ({run: .., train: ..}) or not."""
    raw = record.get("params") or {}
    flat: dict[str, Any] = {}
    nested = {k: v for k, v in raw.items() if isinstance(v, dict)}
    for block in ("train", *[k for k in nested if k not in ("train", "run")], "run"):
        flat.update(nested.get(block, {}))
    flat.update({k: v for k, v in raw.items() if not isinstance(v, dict)})
    return flat


def condition_of(params: dict[str, Any]) -> str:
    from lus_utils.classify.training import condition_name

    return condition_name(params)


def _identity(record: dict[str, Any], p: dict[str, Any]) -> dict[str, Any]:
    from lus_utils.generate import synthetic

    protocol = str(record.get("protocol") or p.get("protocol") or "holdout")
    condition = record.get("condition") or condition_of(p)
    return {
        "run_id": record.get("run_id", ""), "condition": condition, "arch": p.get("arch", ""),
        "strategy": p.get("strategy", "none") or "none", "augment": bool(p.get("augment", False)),
        "protocol": protocol, "repeat": int(num(record.get("repeat", p.get("repeat", 0))) or 0),
        "seed": p.get("seed", record.get("seed", math.nan)),
        "fold": "cv" if protocol == "cv" else p.get("fold", -1),  # a single split is fold -1 (pairs must match)
        "synthetic_set": synthetic.set_name(p.get("synthetic_set", "")),
        "synthetic_amount": num(p.get("synthetic_amount")) if p.get("synthetic_set") else math.nan,
        "synthetic_amount_unit": p.get("synthetic_amount_unit", "") if p.get("synthetic_set") else "",
        "reference": "metadata" in condition, "control": condition.startswith("oversampl"),
        "seed_replica": protocol == SEED_VIDEO,  # the seed study's recipe: shown apart, never primary
    }


def _recorded_metrics(record: dict[str, Any], metrics: Iterable[str], minority: str) -> dict[str, float]:
    """Metric values as metrics.json holds them: flat keys, else today's nested per-class blocks."""
    out = {}
    per_class = (record.get("per_class") or {}).get(minority) or {}
    video = record.get("video") or {}
    for metric in metrics:
        if metric in record:
            out[metric] = num(record[metric])
        elif metric.startswith("minority_") and metric[9:] in OLD_CLASS_KEYS:
            out[metric] = num(per_class.get(metric[9:]))
        elif metric.startswith("video_minority_"):
            out[metric] = num(((video.get("per_class") or {}).get(minority) or {}).get(metric[15:]))
        elif metric.startswith("video_"):
            out[metric] = num(video.get(metric[6:]))
        else:
            out[metric] = math.nan
    return out


def run_row(record: dict[str, Any], minority: str) -> dict[str, Any]:
    """One run's identity, the metrics metrics.json records and its counts (NaN where it has nothing)."""
    p = flat_params(record)
    row = _identity(record, p)
    row.update(_recorded_metrics(record, M_KEYS, minority))
    for key in ("n_train", "n_val", "n_test"):
        row[key] = _total(record.get(key))
    n_train = record.get("n_train")
    row["n_train_minority"] = num(n_train.get(minority)) if isinstance(n_train, dict) else math.nan
    row["n_synthetic"] = _total(record.get("n_synthetic"))
    row["n_minority_patients"] = num(record.get("n_minority_patients"))
    skip = CONDITION_KEYS + EXECUTION_KEYS
    setup = {k: v for k, v in p.items() if k not in skip and not any(w in k for w in CONDITION_WORDS)}
    row["setup"] = repr(sorted((k, repr(v)) for k, v in setup.items()))
    return row


M_KEYS = ("accuracy", "balanced_accuracy", "macro_f1", "weighted_precision", "weighted_recall", "weighted_f1",
          "minority_recall", "minority_precision", "minority_f1", "minority_specificity", "minority_auroc",
          "minority_ap", "minority_sens_at_spec", "video_accuracy", "video_balanced_accuracy", "video_macro_f1",
          "video_weighted_f1", "video_minority_recall", "video_minority_auroc", "video_minority_ap")


def leakage_flags(out_dir: Path, names: Iterable[str]) -> dict[str, bool]:
    """Whether each synthetic set is the leakage ablation (see `SyntheticSet.leakage_ablation`)."""
    from lus_utils.generate import synthetic

    return {name: synthetic.SyntheticSet.resolve(name, out_dir).leakage_ablation for name in names if name}


def recorded_leakage(record: dict[str, Any]) -> bool | None:
    """The leakage flag a run recorded for the synthetic sets it read (a cv run reads one set per fold: any
    leakage-ablation set makes the run one); None when the run recorded none (then the set folder decides)."""
    synthetic = record.get("synthetic") or {}
    if "leakage_ablation" not in synthetic:
        return None
    per_fold = (synthetic.get("per_fold") or {}).values()
    return bool(synthetic["leakage_ablation"]) or any(bool(p.get("leakage_ablation")) for p in per_fold)


def read_predictions(run_dir: Path, classes: list[str]) -> pd.DataFrame | None:
    """A run's predictions.csv (None when absent); a table without the contract's columns is an error."""
    path = Path(run_dir) / "predictions.csv"
    if not path.is_file():
        return None
    table = pd.read_csv(path, keep_default_na=False, na_values=[""])
    needed = {"path", "patient_id", "video_id", "label", *(f"prob_{c}" for c in classes)}
    missing = sorted(needed - set(table.columns))
    if missing:
        raise ValueError(f"{path} lacks the columns {missing} (CONTRACT.md: path, video_id, patient_id, label, "
                         "probe, fold, repeat, seed, pred, prob_<class>, threshold)")
    return table


def recomputed_metrics(table: pd.DataFrame, classes: list[str], minority: str) -> dict[str, float]:
    """The endpoints of a run from its pooled predictions (the same numbers the bootstrap resamples)."""
    y_true, y_pred, prob = M._arrays(table, classes)
    video = pd.factorize(table["video_id"])[0]
    values = M.endpoints(y_true, y_pred, prob, M.thresholds_of(table), video, classes, minority)
    values["n_minority_patients"] = float(sum(M.patient_strata(table, minority).values()))
    return values


def _classes(record: dict[str, Any], minority: str) -> list[str]:
    from lus_utils.params import CLASSES

    classes = list(record.get("classes") or CLASSES)
    if minority not in classes:
        raise ValueError(f"compare.minority_class '{minority}' is not among the run's classes {classes}")
    return classes


def load_runs(out_dir: Path, minority: str) -> tuple[pd.DataFrame, dict[str, pd.DataFrame], list[str]]:
    """Every `<out>/runs/*/metrics.json` as one row per run, their predictions, and what was left out (listed,
    not hidden). Metrics come from predictions.csv where it exists (module doc)."""
    layout = OutLayout(Path(out_dir))
    rows, predictions, problems = [], {}, []
    for path in sorted(layout.runs.glob("*/metrics.json")):
        try:
            record = read_json(path)
            row = run_row(record, minority)
            row["run_id"] = row["run_id"] or path.parent.name
            classes = _classes(record, minority)
            table = read_predictions(path.parent, classes)
        except (OSError, ValueError) as err:
            problems.append(f"run {path.parent.name}: unreadable ({err}); left out")
            continue
        row["recorded_leakage"] = recorded_leakage(record)
        row["has_predictions"] = table is not None
        if table is not None:
            row.update(recomputed_metrics(table, classes, minority))
            table.attrs["classes"] = classes
            predictions[row["run_id"]] = table
        rows.append(row)
    runs = pd.DataFrame(rows)
    if runs.empty:
        return runs, predictions, problems
    unrecorded = runs.loc[runs["recorded_leakage"].isna(), "synthetic_set"].unique()
    flags = leakage_flags(layout.root, unrecorded)
    runs["leakage_ablation"] = [bool(r) if r is not None and r == r else flags.get(s, False)
                                for r, s in zip(runs.pop("recorded_leakage"), runs["synthetic_set"])]
    runs["has_synthetic"] = runs["synthetic_set"] != ""
    order = runs.apply(_condition_order, axis=1)
    runs = runs.assign(_order=order).sort_values(["arch", "_order", "repeat", "seed"], kind="stable")
    return runs.drop(columns="_order").reset_index(drop=True), predictions, problems


def _condition_order(row: pd.Series) -> tuple:
    strategies = {"none": 0, "weighted_loss": 1, "balanced_sampler": 2}
    return (bool(row["seed_replica"]), bool(row["reference"]), bool(row["has_synthetic"]), bool(row["control"]),
            bool(row["leakage_ablation"]), row["synthetic_set"],
            num(row["synthetic_amount"]) if row["has_synthetic"] else 0.0, bool(row["augment"]),
            strategies.get(row["strategy"], 9), row["condition"])


def results_table(runs: pd.DataFrame, minority: str) -> pd.DataFrame:
    """What results.csv holds: one row per classifier run, identity then every metric and the counts."""
    table = runs.rename(columns={c: metric_column(c, minority) for c in (*M_KEYS, *COUNT_COLUMNS)})
    metrics = [metric_column(m, minority) for m in M_KEYS]
    counts = [metric_column(c, minority) for c in COUNT_COLUMNS]
    return table[[c for c in RESULT_COLUMNS + metrics + counts if c in table.columns]]


RUNNER_SUMMARY = Path("logs") / "runner_summary.json"  # written by run.study (StudyResult.write)


def missing_runs(out_dir: Path, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Runs the runner's summary lists as failed, blocked or interrupted, and (given the runs read) classifier
    runs it lists that left no metrics.json; empty when there is no summary (06 run by hand)."""
    path = Path(out_dir) / RUNNER_SUMMARY
    present = set(runs["run_id"]) if runs is not None and not runs.empty else set()
    rows = []
    try:
        entries = read_json(path).get("runs", []) if path.is_file() else []
    except (OSError, ValueError):
        entries = []
    for entry in entries:
        run_id, stage, status = str(entry.get("run_id", "")), str(entry.get("stage", "")), str(entry.get("status", ""))
        folder = run_id[len(stage) + 1:] if run_id.startswith(f"{stage}_") else run_id  # runs/<id> drops the stage
        lost = (runs is not None and stage in ("02", "03") and run_id not in present and folder not in present
                and status in ("ran", "cached"))
        if status in ("failed", "blocked", "interrupted") or lost:
            rows.append({"run_id": run_id, "stage": stage, "status": status if not lost else "no metrics.json",
                         "message": str(entry.get("message", ""))[:200]})
    return pd.DataFrame(rows, columns=["run_id", "stage", "status", "message"])
