"""The records runs leave behind and the one reader of each: a classifier run's `metrics.json` (its identity as
the vocabulary's types, its endpoints, its counts) and `predictions.csv` (one row per test frame), a synthetic
set's `audit.json`. Each record carries a schema version; a record of another version is refused with the
fix (re-run it), never half-read.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from lus_utils.provenance import read_json
from lus_utils.vocabulary import Condition, RunKey, SetRef

RUN_SCHEMA = 2  # metrics.json: `identity` holds the RunKey (condition fields, arch, repeat, seed)
AUDIT_SCHEMA = 3  # audit.json: `set` holds the SetRef; `reached_realism` is the ultrasound encoder's verdict
# predictions.csv: the frame's keys, which model predicted it (fold under cv, draw in the simulated design,
# -1 for a single split), the argmax class, one probability per class and the model's minority threshold.
PREDICTION_KEYS = ["path", "video_id", "patient_id", "label", "probe", "fold", "draw", "repeat", "seed"]
TEXT_COLUMNS = {"path": str, "video_id": str, "patient_id": str, "label": str, "probe": str, "pred": str}


class RecordError(ValueError):
    """A record that is missing, unreadable, of another schema version or lacking its contract's columns."""


def prediction_columns(classes: Iterable[str]) -> list[str]:
    return [*PREDICTION_KEYS, "pred", *(f"prob_{c}" for c in classes), "threshold"]


def read_predictions(path: Path, classes: Iterable[str] | None = None,
                     frames: pd.DataFrame | None = None) -> pd.DataFrame:
    """A run's predictions.csv (or val_predictions.csv): ids as text, an empty threshold as NaN; with `classes`
    the contract's columns are checked, with `frames` each frame's `abspath` is joined."""
    path = Path(path)
    if not path.is_file():
        raise RecordError(f"{path} does not exist: the run did not finish (re-run it)")
    table = pd.read_csv(path, dtype=TEXT_COLUMNS, keep_default_na=False, na_values={"threshold": [""]})
    if classes is not None:
        missing = [c for c in prediction_columns(classes) if c not in table.columns]
        if missing:
            raise RecordError(f"{path} lacks the columns {missing}; it was written by another version of the "
                              "study: re-run the run")
    if frames is not None:
        table = table.merge(frames[["path", "abspath"]].drop_duplicates("path"), on="path", how="left")
    return table


def run_identity(key: RunKey, classes: list[str], split_columns: list[str]) -> dict[str, Any]:
    """What metrics.json says a run is (its first keys)."""
    return {"schema": RUN_SCHEMA, "run_id": key.run_id, "identity": key.to_dict(), "condition": key.condition.name,
            "design": key.condition.design, "minority": key.condition.minority, "classes": classes,
            "protocol": key.condition.protocol, "repeat": key.repeat, "seed": key.seed, "splits": split_columns}


def read_run_record(path: Path) -> tuple[RunKey, dict[str, Any]]:
    """A run's metrics.json and its identity; another schema version is a RecordError naming the fix."""
    path = Path(path)
    try:
        record = read_json(path)
    except (OSError, ValueError) as err:
        raise RecordError(f"{path}: unreadable ({err}); re-run the run") from None
    if not isinstance(record, dict) or record.get("schema") != RUN_SCHEMA:
        found = record.get("schema", "none") if isinstance(record, dict) else "none"
        raise RecordError(f"{path}: written by another version of the study (record schema {found}, this version "
                          f"reads {RUN_SCHEMA}); re-run it (python run_all.py ... --force, or delete its folder)")
    identity = record["identity"]
    key = RunKey(identity["arch"], Condition.from_dict(identity["condition"]), int(identity["repeat"]),
                 int(identity["seed"]))
    if key.run_id != record.get("run_id"):
        raise RecordError(f"{path}: its identity gives run id {key.run_id}, not {record.get('run_id')}: edited by hand?")
    return key, record


def audit_identity(ref: SetRef) -> dict[str, Any]:
    return {"schema": AUDIT_SCHEMA, "set": ref.to_dict()}


def read_audit(path: Path) -> dict[str, Any] | None:
    """A set's audit.json (None when absent or of another version: the set counts as not audited)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        record = read_json(path)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("schema") == AUDIT_SCHEMA else None
