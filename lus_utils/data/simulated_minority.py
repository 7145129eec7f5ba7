"""Simulated minorities: a well-populated class cut down to a few training patients, tested on many others.

The viral class has 4 patients, so its answer cannot be powered. Three classes of the convex probe have many
(pneumonia 47, regular 41, covid 12 on the real data): the dataset owners' own 3-class task on convex frames, so
the probe cannot give a class away (the native frame size and the source still differ by class; notebook 01
shows how much). A DRAW of target class T is, with its own seed:
- a patient-grouped, class-stratified split of the three classes' convex frames: T's patients go to test
  (`target_test_fraction` of them) or to T's training POOL, never to validation (as viral patients under cv, so
  model selection never hangs on a few target patients); the other classes' patients go to test and validation
  (`data.test_fraction`, `data.val_fraction`) or train;
- an order of T's pool: a classifier with k real target patients trains on the first k (`<column>_rank` < k); the
  rest of the pool is left out of that classifier, never moved to test, so every condition of a draw is tested on
  the same frames, and the real-patient curve (k = 1, 2, 3, 6, 12...) is nested within a draw.
Column `sim_<T>_d<d>` holds train/val/test for the frames it covers (empty for the others: other probe, viral),
`sim_<T>_d<d>_rank` the pool rank of each training frame of T. Draws differ in the split and the pool order.
A patient whose convex frames carry two of the three classes is left out of every draw.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from lus_utils.config.data import DataParams, SimulatedMinorityParams
from lus_utils.data.splits import SplitError, check, patient_table
from lus_utils.vocabulary import CONVEX_CLASSES, SIMULATED, Split

PROBE = "convex"


def scope(frames: pd.DataFrame) -> pd.Series:
    """Which frames a draw covers: convex frames of the three well-populated classes, of patients whose frames
    there carry one class (a patient with two, one on the real data, would make "k patients of T" ambiguous)."""
    inside = (frames["probe"] == PROBE) & frames["label"].isin(CONVEX_CLASSES)
    labels = frames[inside].groupby("patient_id")["label"].nunique()
    return inside & ~frames["patient_id"].isin(labels[labels > 1].index)


def pool_size(frames: pd.DataFrame, sim: SimulatedMinorityParams, target: str) -> int:
    """How many training patients a draw's pool of `target` holds (the same in every draw)."""
    n = int((patient_table(frames[scope(frames)], list(CONVEX_CLASSES))["label"] == target).sum())
    return n - n_target_test(n, sim)


def n_target_test(n_patients: int, sim: SimulatedMinorityParams) -> int:
    return max(1, round(sim.target_test_fraction * n_patients))


def curve_points(pool: int, sim: SimulatedMinorityParams) -> list[int]:
    """The real-patient counts of the curve a pool of `pool` patients can give (larger ones are dropped)."""
    return sorted({k for k in [*sim.curve, sim.real_patients] if k <= pool})


def draw(frames: pd.DataFrame, data: DataParams, sim: SimulatedMinorityParams, target: str,
         index: int) -> tuple[pd.Series, pd.Series]:
    """One draw's part and pool-rank columns (module doc), checked."""
    split = Split(SIMULATED, target=target, draw=index)
    inside = scope(frames)
    table = patient_table(frames[inside], list(CONVEX_CLASSES))
    part_of: dict[str, str] = {}
    rank_of: dict[str, int] = {}
    for c, label in enumerate(CONVEX_CLASSES):
        patients = sorted(table.loc[table["label"] == label, "patient_id"])
        rng = np.random.default_rng([data.split_seed, CONVEX_CLASSES.index(target), index, c, 11])
        order = [patients[i] for i in rng.permutation(len(patients))]
        if label == target:
            n_test = n_target_test(len(order), sim)
            part_of.update({p: "test" for p in order[:n_test]})
            part_of.update({p: "train" for p in order[n_test:]})
            rank_of.update({p: r for r, p in enumerate(order[n_test:])})
            continue
        n_test = max(1, round(data.test_fraction * len(order)))
        n_val = max(1, round(data.val_fraction * len(order)))
        if len(order) < n_test + n_val + 1:
            raise SplitError(f"{split.column}: class '{label}' has {len(order)} convex patients, too few for a test, "
                             "a validation and a training patient; lower data.test_fraction/val_fraction")
        part_of.update({p: "test" if i < n_test else "val" if i < n_test + n_val else "train"
                        for i, p in enumerate(order)})
    part = frames["patient_id"].map(part_of).where(inside)
    rank = frames["patient_id"].map(rank_of).where(inside & (frames["label"] == target))
    check_draw(frames.assign(**{split.column: part, split.rank_column: rank}), split)
    return part.rename(split.column), rank.rename(split.rank_column)


def within_real_patients(frames: pd.DataFrame, split_column: str, real_patients: int) -> pd.DataFrame:
    """`frames` without a simulated draw's left-out target patients: its target's training frames beyond the first
    `real_patients` of the pool (unchanged for another split, or k = 0)."""
    if real_patients <= 0 or not split_column.startswith("sim_"):
        return frames
    split = Split.from_column(split_column)
    rank = pd.to_numeric(frames[split.rank_column], errors="coerce")
    left_out = (frames["label"] == split.target) & (frames[split_column] == "train") & ~(rank < real_patients)
    return frames[~left_out]


def check_draw(frames: pd.DataFrame, split: Split) -> None:
    """A draw's rules: the patient rule within its scope, nothing outside it, no target patient in validation,
    every training target frame ranked, every class trained, validated (but the target) and tested."""
    inside = scope(frames)
    covered = frames[inside]
    if frames.loc[~inside, split.column].fillna("").astype(str).ne("").any():  # frames.csv reads "no part" as ""
        raise SplitError(f"{split.column}: frames outside the convex three-class scope have a part")
    check(covered, split.column, list(CONVEX_CLASSES))
    target = covered[covered["label"] == split.target]
    if (target[split.column] == "val").any():
        raise SplitError(f"{split.column}: a target patient sits in validation")
    if target.loc[target[split.column] == "train", split.rank_column].isna().any():
        raise SplitError(f"{split.column}: a training frame of the target has no pool rank")
    for label in CONVEX_CLASSES:
        parts = set(covered.loc[covered["label"] == label, split.column])
        needed = {"train", "test"} | ({"val"} if label != split.target else set())
        if not needed <= parts:
            raise SplitError(f"{split.column}: class '{label}' lacks part(s) {sorted(needed - parts)}")


def assign_draws(frames: pd.DataFrame, data: DataParams, sim: SimulatedMinorityParams) -> pd.DataFrame:
    """frames with every target's draws (part and pool-rank columns); unchanged without targets."""
    columns = {}
    for target in sim.targets:
        pool = pool_size(frames, sim, target)
        if pool < sim.real_patients:
            raise SplitError(f"simulated minority '{target}': a draw's training pool holds {pool} patients, fewer "
                             f"than simulated_minority.real_patients ({sim.real_patients}); lower it, or lower "
                             "target_test_fraction")
        for index in range(sim.draws):
            part, rank = draw(frames, data, sim, target, index)
            columns[part.name], columns[rank.name] = part, rank
    return pd.concat([frames, pd.DataFrame(columns, index=frames.index)], axis=1) if columns else frames
