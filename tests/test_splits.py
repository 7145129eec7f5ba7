"""Patient-grouped splits: never a patient in two parts, every class in train, the seed rule, folds."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lus_utils.data import splits
from lus_utils.params import DataParams


def synthetic_frames(patients_per_class: dict[str, int], seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for label, n in patients_per_class.items():
        for p in range(n):
            for v in range(int(rng.integers(1, 3))):
                for f in range(int(rng.integers(2, 6))):
                    rows.append({"path": f"{label}{p}_{v}_{f}.png", "video_id": f"{label}{p}_{v}",
                                 "patient_id": f"{label}-{p}", "label": label})
    return pd.DataFrame(rows)


COUNTS = {"covid": 12, "pneumonia": 20, "regular": 15, "viral": 4}


def test_holdout_groups_patients_and_keeps_classes_in_train():
    frames = synthetic_frames(COUNTS)
    split = splits.holdout(frames, DataParams())
    assert (frames.assign(split=split).groupby("patient_id").split.nunique() == 1).all()
    for label in COUNTS:
        assert "train" in set(split[frames.label == label])


def test_few_patient_class_follows_seed_rule():
    frames = synthetic_frames(COUNTS)
    split = splits.holdout(frames, DataParams(few_patients=5))
    viral = frames.assign(split=split)[frames.label == "viral"].groupby("patient_id").split.first()
    assert sorted(viral.value_counts().items()) == [("test", 2), ("train", 1), ("val", 1)]


def test_split_is_seeded():
    frames = synthetic_frames(COUNTS)
    a = splits.holdout(frames, DataParams(split_seed=3))
    assert a.equals(splits.holdout(frames, DataParams(split_seed=3)))
    assert not a.equals(splits.holdout(frames, DataParams(split_seed=4)))


def test_patient_with_two_labels_stays_in_one_part():
    frames = synthetic_frames(COUNTS)
    mixed = frames[frames.patient_id == "regular-0"].assign(label="pneumonia", video_id="extra",
                                                            path=lambda d: "x" + d.path)
    frames = pd.concat([frames, mixed], ignore_index=True)
    out = splits.assign_all(frames, DataParams())
    assert out[out.patient_id == "regular-0"].split.nunique() == 1


def test_folds_cover_every_patient_once_as_test():
    frames = synthetic_frames(COUNTS)
    params = DataParams(n_folds=4)
    out = splits.folds(frames, params)
    frames = pd.concat([frames, out], axis=1)
    assert (frames.groupby("patient_id").fold.nunique() == 1).all()
    for f in range(4):
        column = splits.split_column(f)
        assert set(frames.loc[frames[column] == "test", "patient_id"]) == set(frames.loc[frames.fold == f, "patient_id"])
        assert (frames.groupby("patient_id")[column].nunique() == 1).all()
        assert "val" in set(frames[column])
    per_fold = frames.groupby("fold").patient_id.nunique()
    assert per_fold.max() - per_fold.min() <= 4


def test_class_left_empty_in_train_is_a_clear_error():
    frames = synthetic_frames({"covid": 6, "pneumonia": 6, "viral": 1})
    frames["split"] = np.where(frames.label == "viral", "test", "train")
    with pytest.raises(splits.SplitError, match="viral"):
        splits.check(frames, "split", ["covid", "pneumonia", "viral"])


def test_straddling_patient_is_refused():
    frames = synthetic_frames({"covid": 3, "viral": 3})
    frames["split"] = "train"
    patient = frames.patient_id.value_counts().index[0]  # a patient with several frames
    frames.loc[frames.index[frames.patient_id == patient][0], "split"] = "test"
    with pytest.raises(splits.SplitError, match="more than one part"):
        splits.check(frames, "split", ["covid", "viral"])


def test_summary_is_printable():
    frames = synthetic_frames(COUNTS)
    frames["split"] = splits.holdout(frames, DataParams())
    table = splits.summary_wide(frames)
    assert table.loc["viral", ("patients", "train")] == 1
    assert table[("frames", "train")].sum() + table[("frames", "val")].sum() + table[("frames", "test")].sum() == len(frames)
