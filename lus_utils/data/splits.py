"""Patient-grouped, class-stratified splits: a train/val/test hold-out and the cross-validation folds.

Rules (printable with `summary`):
- A patient's frames all go to one part. A patient whose videos carry several labels is stratified
  by the label of most of its frames.
- Hold-out: each class's patients are shuffled with the seed and allocated on their own (stratification):
  `test_fraction` and `val_fraction` of them (at least one each) to test and val, the rest to train.
  A class with fewer than `few_patients` patients gets one patient to train, one to val, the rest to
  test (with two patients: train and test; with one: train); the original study's rule, counted in videos
  (3 or fewer), did the same by video.
- Cross-validation (`data.protocol: cv`): one fold per minority-class patient, so each minority patient
  is in the test part of exactly one fold (the minority assignment is the same in every repeat). The other
  classes' patients are dealt over the folds class by class (fewest patients first, then fewest frames),
  in an order shuffled with `split_seed` and the repeat, so each of `data.repeats` repeats is another
  assignment. Fold f's validation part is `val_fraction` of each non-minority class's remaining patients
  (at least one); it holds NO minority patient: every minority patient outside the test fold trains.
  Model selection therefore never hangs on one minority patient (early stopping and the learning-rate
  schedule see the other classes' validation loss), and the minority threshold for a fixed specificity
  is chosen on the validation negatives, which exist in every fold.
- Column `cv_r<repeat>_f<fold>` holds train/val/test for every frame; `fold` is the fold in which a frame
  is tested in repeat 0 (-1 under the hold-out protocol).
- The original study's split (`seed_video_r<repeat>`, used by the original study's replica alone): by VIDEO, per class, the
  videos shuffled (seeded here with `split_seed` and the repeat; unseeded in the seed): a class with 3 videos or
  fewer puts one in train, one in val and the rest in test, any other class int(0.7 n) in train, int(0.15 n)
  in val and the rest in test (classifier/create_data_df.py:38-72). It breaks the patient rule on purpose (a
  patient's videos may straddle parts, which is the leak the original study's replica carries); its check asks only that
  every frame has a part and every class trains, and `straddling_patients` counts the breach.
- After every split a check runs: no patient in two parts, every class present in train; under cv also
  every frame tested exactly once per repeat (so every minority patient once).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from lus_utils.config.data import DataParams
from lus_utils.vocabulary import CV, ORIGINAL_VIDEO, VIRAL as MINORITY_CLASS, Split, split_columns

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


def minority_of(classes: list[str]) -> str:
    """The class whose patients define the folds: the study's minority class."""
    if MINORITY_CLASS not in classes:
        raise SplitError(f"the cv protocol deals one fold per '{MINORITY_CLASS}' patient, but data.classes "
                         f"{classes} lacks it; add it or use data.protocol: holdout")
    return MINORITY_CLASS


def n_folds(frames: pd.DataFrame, classes: list[str]) -> int:
    """Folds of the cv protocol: one per minority patient (at least 2)."""
    table = patient_table(frames, classes)
    n = int((table.label == minority_of(classes)).sum())
    if n < 2:
        raise SplitError(f"the cv protocol needs at least 2 '{MINORITY_CLASS}' patients (one test fold each); "
                         f"the frames have {n}. Use data.protocol: holdout, or data with more such patients.")
    return n


def cv_column(repeat: int, fold: int) -> str:
    return Split(CV, repeat, fold).column


def cv_folds(frames: pd.DataFrame, params: DataParams, repeat: int) -> pd.DataFrame:
    """The `cv_r<repeat>_f<f>` columns (train/val/test) of one repeat, each checked."""
    table = patient_table(frames, params.classes)
    minority = minority_of(params.classes)
    k = n_folds(frames, params.classes)
    fold_of: dict[str, int] = {}
    mine = _shuffled(sorted(table.loc[table.label == minority, "patient_id"]), np.random.default_rng(params.split_seed))
    fold_of.update({patient: i for i, patient in enumerate(mine)})
    for c, label in enumerate(params.classes):
        if label == minority:
            continue
        sub = table[table.label == label].set_index("patient_id")
        rng = np.random.default_rng([params.split_seed, repeat, c])
        load, members = np.zeros(k), np.zeros(k)
        for patient in _shuffled(sorted(sub.index), rng):
            target = int(np.lexsort((rng.permutation(k), load, members))[0])
            fold_of[patient] = target
            load[target] += sub.loc[patient, "n_frames"]
            members[target] += 1
    test_fold = frames["patient_id"].map(fold_of)
    columns = {}
    for f in range(k):
        part_of: dict[str, str] = {}
        for c, label in enumerate(params.classes):
            rest = [p for p in sorted(table.loc[table.label == label, "patient_id"]) if fold_of[p] != f]
            if label == minority:
                part_of.update({p: "train" for p in rest})
                continue
            rest = _shuffled(rest, np.random.default_rng([params.split_seed, repeat, f, c, 1]))
            n_val = max(1, round(params.val_fraction * len(rest))) if len(rest) >= 2 else 0
            part_of.update({p: "val" if i < n_val else "train" for i, p in enumerate(rest)})
        part = frames["patient_id"].map(part_of)
        part[test_fold == f] = "test"
        name = cv_column(repeat, f)
        columns[name] = part
        check(frames.assign(**{name: part}), name, params.classes)
    out = pd.DataFrame(columns, index=frames.index)
    check_cv(pd.concat([frames, out], axis=1), params.classes, [repeat])
    return out


def assign_all(frames: pd.DataFrame, params: DataParams) -> pd.DataFrame:
    """frames with the hold-out `split`, the `fold` column and, under cv, every repeat's fold columns."""
    frames = frames.copy()
    frames["split"] = holdout(frames, params)
    for r in range(params.repeats if params.protocol == "cv" else 1):
        frames[original_video_column(r)] = original_video_split(frames, params, r)
    if params.protocol != "cv":
        return frames.assign(fold=-1)
    parts = [cv_folds(frames, params, r) for r in range(params.repeats)]
    frames = pd.concat([frames, *parts], axis=1)
    tested = frames[[c for c in frames.columns if c.startswith("cv_r0_f")]].eq("test").to_numpy()
    return frames.assign(fold=tested.argmax(axis=1))


ORIGINAL_TRAIN, ORIGINAL_VAL, ORIGINAL_FEW_VIDEOS = 0.7, 0.15, 3  # the original study's shares and its small-class rule (in videos)


def original_video_column(repeat: int) -> str:
    return Split(ORIGINAL_VIDEO, repeat).column


def original_video_split(frames: pd.DataFrame, params: DataParams, repeat: int) -> pd.Series:
    """The original study's video split of one repeat (module doc), checked with `check_original_video`."""
    part_of: dict[str, str] = {}
    for c, label in enumerate(params.classes):
        videos = sorted(frames.loc[frames["label"] == label, "video_id"].unique())
        order = [videos[i] for i in np.random.default_rng([params.split_seed, repeat, c, 7]).permutation(len(videos))]
        n = len(order)
        if n <= ORIGINAL_FEW_VIDEOS:
            n_train, n_val = min(1, n), min(1, max(0, n - 1))
        else:
            n_train, n_val = int(n * ORIGINAL_TRAIN), int(n * ORIGINAL_VAL)
        part_of.update({v: "train" if i < n_train else "val" if i < n_train + n_val else "test"
                        for i, v in enumerate(order)})
    split = frames["video_id"].map(part_of).rename(original_video_column(repeat))
    check_original_video(frames.assign(**{split.name: split}), split.name, params.classes)
    return split


def check_original_video(frames: pd.DataFrame, column: str, classes: list[str]) -> None:
    """The original study's video split: every frame in one part, no video in two, every class in train (patients may
    straddle parts: that is the original study's split)."""
    if frames[column].isna().any():
        raise SplitError(f"{column}: {int(frames[column].isna().sum())} frames belong to no part")
    parts_per_video = frames.groupby("video_id")[column].nunique()
    if (parts_per_video > 1).any():
        raise SplitError(f"{column}: videos in more than one part: {sorted(parts_per_video[parts_per_video > 1].index)[:10]}")
    empty = [c for c in classes if c not in set(frames.loc[frames[column] == "train", "label"])]
    if empty:
        raise SplitError(f"{column}: class(es) {empty} have no frame in train")


def straddling_patients(frames: pd.DataFrame, column: str) -> list[str]:
    """Patients whose frames sit in more than one part of `column` (none in a patient-grouped split)."""
    per_patient = frames.groupby("patient_id")[column].nunique()
    return sorted(per_patient[per_patient > 1].index)


def cv_repeats(frames: pd.DataFrame) -> dict[int, list[int]]:
    """{repeat: [folds]} of the cv columns in frames.csv."""
    found: dict[int, list[int]] = {}
    for split in map(Split.from_column, split_columns(frames.columns)):
        if split.protocol == CV:
            found.setdefault(split.repeat, []).append(split.fold)
    return {r: sorted(fs) for r, fs in sorted(found.items())}


def check_cv(frames: pd.DataFrame, classes: list[str], repeats: list[int]) -> None:
    """Per repeat: every frame (so every minority patient) tested in exactly one fold, no minority patient in
    validation, each fold's split valid. Raises SplitError."""
    minority = minority_of(classes)
    folds_of = cv_repeats(frames)
    for r in repeats:
        if r not in folds_of:
            raise SplitError(f"frames have no cv columns for repeat {r} (repeats present: {sorted(folds_of)}); "
                             "rebuild frames.csv (notebook 01) with data.repeats large enough")
        columns = [cv_column(r, f) for f in folds_of[r]]
        for column in columns:
            check(frames, column, classes)
        times = frames[columns].eq("test").sum(axis=1)
        if not (times == 1).all():
            raise SplitError(f"repeat {r}: {int((times != 1).sum())} frames are not tested exactly once")
        mine = frames["label"] == minority
        if frames.loc[mine, columns].eq("val").any().any():
            raise SplitError(f"repeat {r}: a '{minority}' patient sits in a validation part")
        per_patient = frames[mine].groupby("patient_id")[columns].agg(lambda s: (s == "test").any()).sum(axis=1)
        if not (per_patient == 1).all():
            raise SplitError(f"repeat {r}: minority patients not tested exactly once: "
                             f"{per_patient[per_patient != 1].to_dict()}")


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
                         "for this split. Lower val_fraction/test_fraction, raise few_patients, use another split_seed, "
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
    videos in a seeded order, each video's frames in a seeded order (the original study's "mixed" frames)."""
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
