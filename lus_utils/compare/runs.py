"""Reading classifier runs back: one row per paired unit (identity, metrics, counts), its test predictions,
results.csv.

A run is one papermill execution, (arch, condition, repeat, seed), covering every split of its protocol. Under
the viral design's cv protocol its unit is the run itself: its pooled out-of-fold predictions (every frame once).
Under the simulated-minority design its units are its draws, one model each, tested on the draw's own patients:
one row per draw (`unit_id` `<run_id>#d<draw>`). Identities are read from metrics.json as the vocabulary's types
(`records.read_run_record`); metrics are recomputed from predictions.csv with `classify.metrics.endpoints`, so
the point estimate and the bootstrap draws come from the same numbers.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from lus_utils import records
from lus_utils.classify import metrics as M
from lus_utils.compare.text import num
from lus_utils.paths import OutLayout
from lus_utils.provenance import read_json
from lus_utils.vocabulary import METRICS, SIMULATED, RunKey, Split

RESULT_COLUMNS = ["run_id", "unit_id", "condition", "design", "minority", "arch", "strategy", "augment", "protocol",
                  "repeat", "seed", "fold", "draw", "target", "k", "synthetic_set", "synthetic_amount", "amount_unit",
                  "leakage_ablation", "original_replica", "reference", "control", "has_predictions"]
COUNT_COLUMNS = ["n_train", "n_train_minority", "n_synthetic", "n_val", "n_test", "n_minority_patients"]
SETUP_SECTIONS = ("train",)  # the training recipe two paired runs must share (with precision and specificity)


def _total(value: Any) -> float:
    """n_train and friends: a number, a per-class dict of counts summed, or per-split dicts summed."""
    if isinstance(value, dict):
        return float(sum(_total(v) for v in value.values()))
    return num(value)


def identity_row(key: RunKey, record: dict[str, Any]) -> dict[str, Any]:
    """A run's identity as columns (the condition's fields, never parsed from its name)."""
    c = key.condition
    synthetic = record.get("synthetic") or {}
    params = record.get("params") or {}
    setup = {section: params.get(section) for section in SETUP_SECTIONS}
    setup.update(precision=(params.get("runtime") or {}).get("precision"),
                 fixed_specificity=record.get("fixed_specificity"))
    return {"run_id": key.run_id, "unit_id": key.run_id, "condition": c.name, "design": c.design,
            "minority": c.minority, "arch": key.arch, "strategy": c.strategy, "augment": c.augment,
            "protocol": c.protocol, "repeat": key.repeat, "seed": key.seed,
            "fold": "cv" if c.protocol == "cv" else -1, "draw": -1, "target": c.target, "k": c.k,
            "synthetic_set": c.synthetic, "synthetic_amount": c.amount if c.synthetic else math.nan,
            "amount_unit": c.unit if (c.synthetic or c.oversample) else "",
            "leakage_ablation": bool(synthetic.get("leakage_ablation", False)) or c.leaky,
            "original_replica": c.original_replica, "reference": c.reference, "control": c.control,
            "has_synthetic": bool(c.synthetic), "setup": repr(sorted((k, repr(v)) for k, v in setup.items()))}


def count_columns(record: dict[str, Any], minority: str, splits: list[str]) -> dict[str, float]:
    """Frame counts of a unit's splits (metrics.json keeps them per split column)."""
    def of(name: str) -> dict[str, Any]:
        return {c: v for c, v in (record.get(name) or {}).items() if c in splits}

    return {"n_train": _total(of("n_train")), "n_val": _total(of("n_val")), "n_test": _total(of("n_test")),
            "n_train_minority": float(sum(num((v or {}).get(minority)) for v in of("n_train").values())),
            "n_synthetic": _total(of("n_synthetic"))}


def unit_metrics(table: pd.DataFrame, classes: list[str], minority: str) -> dict[str, float]:
    """The endpoints of one unit's predictions (the same numbers the bootstrap resamples)."""
    y_true, y_pred, prob = M._arrays(table, classes)
    video = pd.factorize(table["video_id"])[0]
    values = M.endpoints(y_true, y_pred, prob, M.thresholds_of(table), video, classes, minority)
    values["n_minority_patients"] = float(sum(M.patient_strata(table, minority).values()))
    return {m: num(values.get(m)) for m in (*METRICS, "n_minority_patients")}


def units_of(key: RunKey, record: dict[str, Any], predictions: pd.DataFrame) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """A run's paired units: itself (its pooled predictions), or each draw of a simulated run."""
    c, base = key.condition, identity_row(key, record)
    if c.protocol != SIMULATED:
        return [({**base, **count_columns(record, c.minority, list(record.get("splits", [])))}, predictions)]
    out = []
    for draw, table in predictions.groupby("draw", sort=True):
        column = Split(SIMULATED, target=c.target, draw=int(draw)).column
        out.append(({**base, **count_columns(record, c.minority, [column]), "unit_id": f"{key.run_id}#d{int(draw)}",
                     "draw": int(draw)}, table.reset_index(drop=True)))
    return out


def load_runs(out_dir: Path, run_ids: Iterable[str] | None = None
              ) -> tuple[pd.DataFrame, dict[str, pd.DataFrame], list[str]]:
    """Every finished run (those of `run_ids` when given: the runs the current plan made) as one row per paired
    unit, their predictions, and what was left out (listed, not hidden)."""
    layout = OutLayout(Path(out_dir))
    paths = (sorted(layout.runs.glob("*/metrics.json")) if run_ids is None
             else [layout.runs / r / "metrics.json" for r in run_ids if (layout.runs / r / "metrics.json").is_file()])
    rows, predictions, problems = [], {}, []
    for path in paths:
        try:
            key, record = records.read_run_record(path)
            classes = list(record["classes"])
            table = records.read_predictions(path.parent / "predictions.csv", classes)
        except (records.RecordError, KeyError, OSError) as err:
            problems.append(f"run {path.parent.name}: left out ({err})")
            continue
        for row, unit_table in units_of(key, record, table):
            row.update(unit_metrics(unit_table, classes, key.condition.minority), has_predictions=True)
            unit_table.attrs.update(classes=classes, minority=key.condition.minority)
            predictions[row["unit_id"]] = unit_table
            rows.append(row)
    runs = pd.DataFrame(rows)
    if runs.empty:
        return runs, predictions, problems
    order = runs.apply(_condition_order, axis=1)
    runs = runs.assign(_order=order).sort_values(["design", "arch", "_order", "repeat", "seed", "draw"], kind="stable")
    return runs.drop(columns="_order").reset_index(drop=True), predictions, problems


def _condition_order(row: pd.Series) -> tuple:
    strategies = {"none": 0, "weighted_loss": 1, "balanced_sampler": 2}
    return (bool(row["original_replica"]), str(row["target"]), int(row["k"]), bool(row["reference"]),
            bool(row["has_synthetic"]), bool(row["control"]), bool(row["leakage_ablation"]), row["synthetic_set"],
            num(row["synthetic_amount"]) if row["has_synthetic"] else 0.0, bool(row["augment"]),
            strategies.get(row["strategy"], 9), row["condition"])


def results_table(runs: pd.DataFrame) -> pd.DataFrame:
    """What results.csv holds: one row per paired unit, identity then every metric (named for the unit's minority
    class where the two designs' minorities differ: `minority_ap`, with the `minority` column) and the counts."""
    return runs[[c for c in RESULT_COLUMNS + list(METRICS) + COUNT_COLUMNS if c in runs.columns]]


RUNNER_SUMMARY = Path("logs") / "runner_summary.json"  # written by run.study (StudyResult.write)


FINISHED = ("ran", "cached")  # a run's status in the summary when its outputs are the current plan's


def planned_runs(out_dir: Path) -> list[str] | None:
    """The classifier runs of the runner's last plan that finished (ran or cached; their run folders' names): a
    run that failed, was blocked or interrupted, or that the plan no longer has, is never read, whatever its folder
    holds. None without a summary (06 run by hand: every run folder is read)."""
    path = Path(out_dir) / RUNNER_SUMMARY
    try:
        entries = read_json(path).get("runs", []) if path.is_file() else None
    except (OSError, ValueError):
        entries = None
    if entries is None:
        return None
    return [str(e["run_id"])[3:] for e in entries if str(e.get("stage")) in ("02", "03")
            and str(e.get("status")) in FINISHED]


def missing_runs(out_dir: Path, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Runs the runner's summary lists as failed, blocked, interrupted or not run (left out by `--only` and not
    current), and (given the runs read) classifier runs it lists that left no readable metrics.json; empty when
    there is no summary (06 run by hand)."""
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
        lost = (runs is not None and stage in ("02", "03") and folder not in present and status in FINISHED)
        if status in ("failed", "blocked", "interrupted", "not run") or lost:
            rows.append({"run_id": run_id, "stage": stage, "status": status if not lost else "no metrics.json",
                         "message": str(entry.get("message", ""))[:200]})
    return pd.DataFrame(rows, columns=["run_id", "stage", "status", "message"])
