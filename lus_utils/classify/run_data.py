"""A classifier run's data: which frames each of its models trains, validates and tests on, the synthetic images
or oversampled copies that join a training part, and the class weights of `weighted_loss`.

- The patient-grouped parts come from frames.csv as they are, one column per split (`vocabulary.Split`: a cv
  fold `cv_r<repeat>_f<fold>`, the hold-out `split`, the original study's video split, or a simulated-minority
  draw `sim_<target>_d<draw>`). Under cv, a fold's validation part holds no viral patient, and a draw's holds no
  target patient (see `data.splits`), so only the other classes must have validation frames.
- A simulated draw covers the convex frames of the three well-populated classes; its target class's training
  patients are ranked (`<column>_rank`), and a run with `real_patients` k trains on the first k of them: the
  others are left out, never moved to test, so every condition of a draw is tested on the same frames.
- A synthetic set only ever joins the training part, checked by `synthetic_sets.load_for_training` (missing
  files, foreign labels, a generator that saw frames outside this training part are refused); each split reads
  its own set folder.
- The oversampling control repeats the real minority training frames, each as evenly as the count allows,
  to the count the synthetic condition of the same amount adds (the same augmentation applies to both).
- Class weights (`weighted_loss`) are counted on the REAL training frames only (no synthetic image, no
  oversampled copy), so a synthetic or oversampling run and its weighted-loss baseline use identical weights.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lus_utils import synthetic_sets
from lus_utils.config.classify import ClassifierRunParams, TrainParams
from lus_utils.config.schema import ParamError
from lus_utils.data import simulated_minority, splits
from lus_utils.data.dataset import build_frames, read_frames
from lus_utils.paths import resolve_out_dir
from lus_utils.provenance import sha256_file, sha256_text
from lus_utils.vocabulary import (CLASSES, CV, HOLDOUT, ORIGINAL_VIDEO, SIMULATED, Condition, Split, set_family_of,
                                  split_columns)

TABLE_COLUMNS = ["path", "abspath", "video_id", "patient_id", "label", "probe", "width", "height", "part",
                 "synthetic", "oversampled"]


def class_order(labels: Any) -> list[str]:
    """The run's classes: the study's classes present in the data, in the study's order (others after)."""
    present = set(labels)
    return [c for c in CLASSES if c in present] + sorted(present - set(CLASSES))


def data_fingerprint(frames: pd.DataFrame) -> dict[str, Any]:
    """sha256 of frames.csv when the frames came from a file (with the number of frames used, in case they
    were filtered), else of the frames' own CSV text."""
    path = frames.attrs.get("frames_csv")
    if path and Path(path).is_file():
        return {"frames_csv": Path(path).name, "sha256": sha256_file(Path(path)), "n_frames": len(frames)}
    text = frames.drop(columns=["abspath"], errors="ignore").to_csv(index=False)
    return {"frames_csv": "(in-memory frames)", "sha256": sha256_text(text), "n_frames": len(frames)}


def run_splits(frames: pd.DataFrame, run: ClassifierRunParams) -> list[Split]:
    """The splits a run covers, one model each: every fold of its repeat (cv), every draw of its target
    (simulated), or its one split (the hold-out, the original study's video split)."""
    if run.protocol in (HOLDOUT, ORIGINAL_VIDEO):
        return [Split(run.protocol, run.repeat)]
    present = [Split.from_column(c) for c in split_columns(frames.columns)]
    if run.protocol == SIMULATED:
        draws = sorted((s for s in present if s.protocol == SIMULATED and s.target == run.target_class),
                       key=lambda s: s.draw)
        if not draws:
            raise ParamError(f"frames.csv has no simulated-minority draw of '{run.target_class}' (columns "
                             f"sim_{run.target_class}_d<d>); rebuild it (notebook 01) with simulated_minority.targets "
                             f"including {run.target_class}")
        return draws
    folds = sorted((s for s in present if s.protocol == CV and s.repeat == run.repeat), key=lambda s: s.fold)
    if not folds:
        raise ParamError(f"repeat {run.repeat}: frames.csv has cv folds for repeats {sorted(splits.cv_repeats(frames))} "
                         "only; rebuild it (notebook 01) with data.protocol cv and enough data.repeats, or use "
                         "protocol holdout")
    return folds


@dataclass
class RunData:
    """Which frames one model of a run trains, validates and tests on (synthetic images and copies train)."""

    classes: list[str]
    split: Split
    minority: str  # the class whose threshold and figures the run is about (viral, or a simulated target)
    table: pd.DataFrame  # TABLE_COLUMNS
    synthetic: dict[str, Any] | None = None  # the synthetic set's summary, when one joined
    oversampling: dict[str, Any] | None = None  # the oversampling control's counts, when it ran

    @property
    def split_column(self) -> str:
        return self.split.column

    @property
    def unit(self) -> int:
        """The fold or draw this model is (-1 for a single split)."""
        return self.split.unit

    def part(self, name: str) -> pd.DataFrame:
        return self.table[self.table["part"] == name]

    def counts(self, part: str) -> dict[str, int]:
        labels = self.part(part)["label"]
        return {c: int((labels == c).sum()) for c in self.classes}

    def real_train_labels(self) -> pd.Series:
        rows = self.table[(self.table.part == "train") & ~self.table.synthetic & ~self.table.oversampled]
        return rows["label"]


def part_counts(data: RunData) -> pd.DataFrame:
    """Class x part frame counts, training part as real + synthetic + copies (what the fold actually used)."""
    table = data.table
    train = table[table.part == "train"]
    columns = {
        "train (real)": train[~train.synthetic & ~train.oversampled],
        "train (synthetic)": train[train.synthetic],
        "train (oversampled copies)": train[train.oversampled],
        "val": data.part("val"), "test": data.part("test"),
    }
    counts = pd.DataFrame({name: rows["label"].value_counts() for name, rows in columns.items()})
    counts = counts.reindex(index=data.classes, columns=list(columns)).fillna(0).astype(int)
    counts["train (total)"] = counts[["train (real)", "train (synthetic)", "train (oversampled copies)"]].sum(axis=1)
    videos = pd.DataFrame({f"{p} videos": data.part(p).groupby("label")["video_id"].nunique() for p in ("val", "test")})
    return counts.join(videos.reindex(data.classes).fillna(0).astype(int))


def check_parts(table: pd.DataFrame, classes: list[str], column: str, exempt: tuple[str, ...] = ()) -> None:
    """Before training: every class but `exempt` needs validation frames (early stopping sees them)."""
    counts = pd.crosstab(table["label"], table["part"]).reindex(index=classes, columns=list(splits.PARTS),
                                                                 fill_value=0)
    lacking = [c for c in classes if counts.loc[c, "val"] == 0 and c not in exempt]
    if lacking:
        raise splits.SplitError(f"{column}: class(es) {lacking} have no frame in validation, so the checkpoint "
                                f"and early stopping could not see them. Frames per class and part:\n{counts}\n"
                                "Use another split_seed, or fewer classes.")
    if (counts["test"] == 0).any():
        absent = [c for c in classes if counts.loc[c, "test"] == 0]
        print(f"note: {column} has no test frame of {absent}")


def add_synthetic(table: pd.DataFrame, set_dir: Path, classes: list[str], amount: float, unit: str,
                  seed: int, split: Split) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The training table plus `amount` images of a synthetic set, picked with the seed; and its summary."""
    real_train = table[(table.part == "train") & ~table.synthetic]
    record = synthetic_sets.read_provenance(set_dir)
    made_for = record.get("split_column")
    if made_for and made_for != split.column and not record.get("leakage_ablation", False) \
            and Split.from_column(made_for).unit != split.unit:
        raise synthetic_sets.SyntheticSetError(f"{set_dir}: made for split '{made_for}', but this model's split is "
                                               f"'{split.column}'; a fold or draw reads only its own set")
    manifest = synthetic_sets.load_for_training(set_dir, classes, real_train["path"])
    set_labels = sorted(set(manifest["label"]))
    n_real = int(real_train["label"].isin(set_labels).sum())
    n_requested, n = synthetic_sets.amount_to_count(amount, unit, n_real, len(manifest), set_dir.name)
    rng = np.random.default_rng([seed, 31337])
    chosen = manifest.iloc[np.sort(rng.choice(len(manifest), size=n, replace=False))]
    name = set_dir.name
    rows = pd.DataFrame({
        "path": [f"synthetic/{name}/{p}" for p in chosen["path"]],
        "abspath": chosen["abspath"].tolist(),
        "video_id": [f"synthetic:{name}:{p}" for p in chosen["path"]],
        "patient_id": f"synthetic:{name}",
        "label": chosen["label"].tolist(),
        "probe": "", "width": np.nan, "height": np.nan,
        "part": "train", "synthetic": True, "oversampled": False,
    })
    summary = {k: v for k, v in record.items() if k != "training_frames"}
    summary.update({"name": name, "family": set_family_of(name) if "set" not in record else record["set"]["family"],
                    "n_training_frames": len(record.get("training_frames", [])),
                    "leakage_ablation": bool(record.get("leakage_ablation", False)), "n_passed_gate": len(manifest),
                    "n_requested": n_requested, "n_used": n, "amount": amount, "unit": unit, "labels": set_labels})
    return pd.concat([table, rows], ignore_index=True), summary


def oversampling_count(amount: float, unit: str, n_real_minority: int) -> int:
    """How many copies the control adds: what a synthetic set of the same amount adds (ratio or count)."""
    if unit == "ratio":
        return round(amount * n_real_minority)
    if unit == "count":
        return int(amount)
    raise ParamError(f"oversample_amount in unit '{unit}': a share of a synthetic set has no real-frame "
                     "equivalent; use train.synthetic_amount_unit ratio or count for the oversampling control")


def add_oversampling(table: pd.DataFrame, minority: str, amount: float, unit: str,
                     seed: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The training table plus copies of its real minority frames: whole seeded passes over them, then a
    seeded share of one more pass, so each frame is repeated as evenly as the count allows."""
    pool = table[(table.part == "train") & (table.label == minority) & ~table.synthetic]
    if pool.empty:
        raise splits.SplitError(f"the oversampling control has no real '{minority}' training frame to repeat")
    n = oversampling_count(amount, unit, len(pool))
    rng = np.random.default_rng([seed, 4242])
    order = np.concatenate([rng.permutation(len(pool)) for _ in range(-(-n // len(pool)))])[:n]
    copies = pool.iloc[order].assign(oversampled=True)
    summary = {"amount": amount, "unit": unit, "n_real_minority": len(pool), "n_copies": n}
    return pd.concat([table, copies], ignore_index=True), summary


def split_table(frames: pd.DataFrame, split: Split, real_patients: int = 0) -> pd.DataFrame:
    """The frames one split covers, with their part: a simulated draw's frames only (convex, its three classes),
    its target's training patients cut to the first `real_patients` of its pool."""
    column = split.column
    if column not in frames.columns:
        raise ParamError(f"frames.csv has no column '{column}'; its splits: {split_columns(frames.columns)}; "
                         "rebuild it (notebook 01) with this version and the profile's data settings")
    table = simulated_minority.within_real_patients(frames, column, real_patients).assign(
        part=lambda t: t[column])
    if split.protocol == SIMULATED:
        table = table[table["part"].isin(splits.PARTS)]
    return table


def prepare_data(frames: pd.DataFrame, run: ClassifierRunParams, train: TrainParams, out_dir: str | Path,
                 split: Split) -> RunData:
    """Check one split and assemble its table (real frames by part, plus synthetic images or copies)."""
    condition = Condition.from_params({**vars(run)})
    table = split_table(frames, split, run.real_patients)
    classes = class_order(table["label"])
    column = split.column
    if split.protocol == ORIGINAL_VIDEO:  # the original study's split: by video, so patients may straddle parts
        splits.check_original_video(table, column, classes)
        print(f"{column}: the original study's video split; patients in more than one part: "
              f"{splits.straddling_patients(table, column)}")
    else:
        splits.check(table, column, classes)
    table = table.assign(synthetic=False, oversampled=False)
    for name in ("probe", "width", "height"):
        if name not in table.columns:
            table[name] = "" if name == "probe" else np.nan
    table = table[TABLE_COLUMNS].reset_index(drop=True)
    # Under cv no viral patient validates, nor a target patient in a draw (data.splits); the original study's
    # rule gives the 5 viral videos none.
    exempt = (condition.minority,) if split.protocol in (CV, SIMULATED, ORIGINAL_VIDEO) else ()
    check_parts(table, classes, column, exempt)
    summary = oversampled = None
    if run.synthetic_set:
        set_dir = synthetic_sets.resolve(run.synthetic_set, resolve_out_dir(out_dir), split, run.real_patients)
        table, summary = add_synthetic(table, set_dir, classes, run.synthetic_amount, run.amount_unit, run.seed,
                                       split)
    elif run.oversample_amount > 0:
        table, oversampled = add_oversampling(table, condition.minority, run.oversample_amount, run.amount_unit,
                                              run.seed)
    return RunData(classes=classes, split=split, minority=condition.minority, table=table, synthetic=summary,
                   oversampling=oversampled)


def class_weights(train_labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Inverse class frequency, normalised so the mean weight per training frame is 1 (sklearn 'balanced')."""
    counts = np.bincount(np.asarray(train_labels, dtype=np.int64), minlength=n_classes).astype(np.float64)
    if (counts == 0).any():
        raise ValueError(f"every class needs training frames to weight the loss; counts: {counts.astype(int).tolist()}")
    return counts.sum() / (n_classes * counts)
