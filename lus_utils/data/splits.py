"""Patient-grouped, class-stratified splits: a train/val/test hold-out and k folds.

Rules (printable with `summary`):
- A patient's frames all go to one part. A patient whose videos carry several labels is stratified
  by the label of most of its frames.
- Each class's patients are shuffled with the seed and allocated on their own (stratification):
  `test_fraction` and `val_fraction` of them (at least one each) to test and val, the rest to train.
- A class with fewer than `few_patients` patients follows the seed study's rule: one patient to
  train, one to val, the rest to test (with two patients: train and test; with one: train).
- Folds: each class's patients are dealt to `n_folds` folds, balancing frames; for fold f the test part
  is fold f, and a validation part (`val_fraction` of each class's remaining patients, at least one
  where two or more remain) is carved from the other folds.
- After every split a check runs: no patient in two parts, every class present in train.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from lus_utils.params import DataParams

PARTS = ("train", "val", "test")


class SplitError(ValueError):
    """A split that breaks a rule: a patient in two parts, or a class missing from train."""


def patient_table(frames: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """One row per patient: its stratification label, frames and videos."""
    rank = {c: i for i, c in enumerate(classes)}
    counts = frames.groupby(["patient_id", "label"]).size().rename("n").reset_index()
    # Most frames wins; on a tie the rarer class (later in the class order) wins, so minorities keep patients.
    counts["order"] = counts["label"].map(rank)
    counts = counts.sort_values(["patient_id", "n", "order"], ascending=[True, False, False])
    primary = counts.drop_duplicates("patient_id").set_index("patient_id")["label"]
    table = frames.groupby("patient_id").agg(n_frames=("path", "size"), n_videos=("video_id", "nunique"))
    table["label"] = primary
    return table.reset_index().sort_values("patient_id").reset_index(drop=True)


def _shuffled(patients: list[str], rng: np.random.Generator) -> list[str]:
    return [patients[i] for i in rng.permutation(len(patients))]


def holdout(frames: pd.DataFrame, params: DataParams) -> pd.Series:
    """The `split` column (train/val/test) for every frame."""
    table = patient_table(frames, params.classes)
    rng = np.random.default_rng(params.split_seed)
    part_of: dict[str, str] = {}
    for label in params.classes:
        patients = _shuffled(sorted(table.loc[table.label == label, "patient_id"]), rng)
        n = len(patients)
        if n < params.few_patients:
            parts = {1: ["train"], 2: ["train", "test"]}.get(n, ["train", "val"] + ["test"] * (n - 2))
        else:
            n_test = max(1, round(params.test_fraction * n))
            n_val = max(1, round(params.val_fraction * n))
            parts = ["test"] * n_test + ["val"] * n_val + ["train"] * (n - n_test - n_val)
        part_of.update(zip(patients, parts))
    split = frames["patient_id"].map(part_of)
    check(frames.assign(split=split), "split", params.classes)
    return split


def folds(frames: pd.DataFrame, params: DataParams) -> pd.DataFrame:
    """`fold` (the fold in which a frame is test) and `split_fold<f>` (train/val/test) columns."""
    table = patient_table(frames, params.classes)
    rng = np.random.default_rng(params.split_seed + 1)
    k = params.n_folds
    fold_of: dict[str, int] = {}
    for label in params.classes:
        sub = table[table.label == label]
        patients = _shuffled(sorted(sub.patient_id), rng)
        size = sub.set_index("patient_id")["n_frames"]
        # Largest patients first, each to the fold with fewest frames (then fewest patients) of this class.
        patients = sorted(patients, key=lambda p: -size[p])
        load = np.zeros(k)
        members = np.zeros(k)
        for patient in patients:
            target = int(np.lexsort((np.arange(k), members, load))[0])
            fold_of[patient] = target
            load[target] += size[patient]
            members[target] += 1
    columns = {"fold": frames["patient_id"].map(fold_of).astype(int)}
    for f in range(k):
        part_of: dict[str, str] = {}
        for label in params.classes:
            rest = [p for p in sorted(table.loc[table.label == label, "patient_id"]) if fold_of[p] != f]
            rest = _shuffled(rest, np.random.default_rng([params.split_seed, f, params.classes.index(label)]))
            n_val = max(1, round(params.val_fraction * len(rest))) if len(rest) >= 2 else 0
            for i, patient in enumerate(rest):
                part_of[patient] = "val" if i < n_val else "train"
        part = frames["patient_id"].map(part_of).fillna("test")
        part[columns["fold"] == f] = "test"
        columns[f"split_fold{f}"] = part
        check(frames.assign(**{f"split_fold{f}": part}), f"split_fold{f}", params.classes)
    return pd.DataFrame(columns, index=frames.index)


def assign_all(frames: pd.DataFrame, params: DataParams) -> pd.DataFrame:
    """frames with `split`, `fold` and `split_fold<f>` columns, every split checked."""
    frames = frames.copy()
    frames["split"] = holdout(frames, params)
    return pd.concat([frames, folds(frames, params)], axis=1)


def split_column(fold: int) -> str:
    """The column that holds the parts for a run: the hold-out split (fold -1) or one fold's."""
    return "split" if fold < 0 else f"split_fold{fold}"


def check(frames: pd.DataFrame, column: str, classes: list[str]) -> None:
    """No patient in two parts; every class present in train. Raises SplitError naming the fix."""
    parts_per_patient = frames.groupby("patient_id")[column].nunique()
    straddling = sorted(parts_per_patient[parts_per_patient > 1].index)
    if straddling:
        raise SplitError(f"{column}: patients in more than one part: {straddling[:10]}")
    if frames[column].isna().any():
        raise SplitError(f"{column}: {int(frames[column].isna().sum())} frames belong to no part")
    present = set(frames.loc[frames[column] == "train", "label"])
    empty = [c for c in classes if c not in present]
    if empty:
        raise SplitError(f"{column}: class(es) {empty} have no frame in train; they have too few patients "
                         "for this split. Lower val_fraction/test_fraction or n_folds, raise few_patients, "
                         "or drop the class from `classes`.")


def summary(frames: pd.DataFrame, column: str = "split") -> pd.DataFrame:
    """Class x part table of frames, videos and patients (long form)."""
    grouped = frames.groupby(["label", column])
    table = grouped.agg(frames=("path", "size"), videos=("video_id", "nunique"),
                        patients=("patient_id", "nunique")).reset_index()
    return table.rename(columns={column: "part"})


def summary_wide(frames: pd.DataFrame, column: str = "split") -> pd.DataFrame:
    """Class x part table, frames/videos/patients side by side: the printable view of a split."""
    table = summary(frames, column).pivot(index="label", columns="part")
    table = table.reindex(columns=[c for c in table.columns if c[1] in PARTS])
    table = table.sort_index(axis=1, level=1, key=lambda idx: idx.map({p: i for i, p in enumerate(PARTS)}))
    return table.fillna(0).astype(int)


def spread_over_videos(pool: pd.DataFrame, n: int, rng: np.random.Generator) -> list:
    """Index labels of `n` frames of `pool` spread over as many videos as it holds: a round robin over the
    videos in a seeded order, each video's frames in a seeded order (the seed study's "mixed" frames)."""
    videos = sorted(pool["video_id"].unique())
    queues = []
    for video in [videos[i] for i in rng.permutation(len(videos))]:
        index = pool.index[pool["video_id"] == video]
        queues.append([index[i] for i in rng.permutation(len(index))])
    picks: list = []
    depth = 0
    while len(picks) < n:
        picks += [q[depth] for q in queues if depth < len(q)][: n - len(picks)]
        depth += 1
    return picks


class TooFewFramesError(ValueError):
    """Fewer minority training frames (or videos) than a generator needs."""


def minority_training_pool(minority: pd.DataFrame, split_column: str, needed: int, what: str,
                           remedy: str) -> pd.DataFrame:
    """The training-split rows of `minority` (one class's frames); stops with the counts when fewer than `needed`."""
    pool = minority[minority[split_column] == "train"]
    if len(pool) < needed:
        label = minority["label"].iloc[0] if len(minority) else "minority"
        raise TooFewFramesError(
            f"{what} needs at least {needed} '{label}' frames in the training split ({split_column}); it has "
            f"{len(pool)} from {pool['video_id'].nunique()} video(s) (frames per part: "
            f"{minority.groupby(split_column).size().to_dict()}). {remedy}")
    return pool
