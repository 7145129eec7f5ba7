"""Patient-grouped splits: never a patient in two parts, every class in train, the seed rule, folds."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lus_utils.data import splits
from conftest import cv_data



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
    split = splits.holdout(frames, cv_data())
    assert (frames.assign(split=split).groupby("patient_id").split.nunique() == 1).all()
    for label in COUNTS:
        assert "train" in set(split[frames.label == label])


def test_few_patient_class_follows_seed_rule():
    frames = synthetic_frames(COUNTS)
    split = splits.holdout(frames, cv_data(few_patients=5))
    viral = frames.assign(split=split)[frames.label == "viral"].groupby("patient_id").split.first()
    assert sorted(viral.value_counts().items()) == [("test", 2), ("train", 1), ("val", 1)]


def test_split_is_seeded():
    frames = synthetic_frames(COUNTS)
    a = splits.holdout(frames, cv_data(split_seed=3))
    assert a.equals(splits.holdout(frames, cv_data(split_seed=3)))
    assert not a.equals(splits.holdout(frames, cv_data(split_seed=4)))


def test_patient_with_two_labels_stays_in_one_part():
    frames = synthetic_frames(COUNTS)
    mixed = frames[frames.patient_id == "regular-0"].assign(label="pneumonia", video_id="extra",
                                                            path=lambda d: "x" + d.path)
    frames = pd.concat([frames, mixed], ignore_index=True)
    out = splits.assign_all(frames, cv_data())
    assert out[out.patient_id == "regular-0"].split.nunique() == 1


def test_cv_tests_each_minority_patient_once_per_repeat_with_no_minority_validation():
    frames = synthetic_frames(COUNTS)
    out = splits.assign_all(frames, cv_data(repeats=3))
    assert splits.cv_repeats(out) == {r: [0, 1, 2, 3] for r in range(3)}  # one fold per viral patient
    splits.check_cv(out, list(COUNTS), [0, 1, 2])
    for r in range(3):
        columns = [splits.cv_column(r, f) for f in range(4)]
        assert (out[columns].eq("test").sum(axis=1) == 1).all()
        viral = out[out.label == "viral"]
        assert not viral[columns].eq("val").any().any()
        assert (viral[columns].eq("test").groupby(viral.patient_id).any().sum(axis=1) == 1).all()
        for column in columns:
            assert (out.groupby("patient_id")[column].nunique() == 1).all()
            for label in COUNTS:
                assert "train" in set(out.loc[out.label == label, column])
                if label != "viral":
                    assert "val" in set(out.loc[out.label == label, column])
    # the minority folds stay, the other classes' patients move between repeats
    fold_of = lambda r: out.groupby("patient_id")[[splits.cv_column(r, f) for f in range(4)]].first().eq("test").idxmax(axis=1).str[-1]  # noqa: E731
    viral = [p for p in fold_of(0).index if p.startswith("viral")]
    assert fold_of(0)[viral].equals(fold_of(1)[viral]) and not fold_of(0).equals(fold_of(1))
    assert out.equals(splits.assign_all(frames, cv_data(repeats=3)))  # seeded


def test_cv_needs_two_minority_patients_and_a_broken_fold_is_caught():
    with pytest.raises(splits.SplitError, match="at least 2 'viral' patients"):
        splits.assign_all(synthetic_frames({"covid": 6, "regular": 6, "viral": 1}),
                          cv_data(classes=["covid", "regular", "viral"]))
    assert "cv_r0_f0" not in splits.assign_all(synthetic_frames(COUNTS), cv_data(protocol="holdout"))
    out = splits.assign_all(synthetic_frames(COUNTS), cv_data(repeats=1))
    viral = out.index[(out.label == "viral") & (out.cv_r0_f0 == "test")]
    out.loc[viral, "cv_r0_f0"] = "train"  # now never tested
    with pytest.raises(splits.SplitError, match="tested exactly once"):
        splits.check_cv(out, list(COUNTS), [0])


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
    frames["split"] = splits.holdout(frames, cv_data())
    table = splits.summary_wide(frames)
    assert table.loc["viral", ("patients", "train")] == 1
    assert table[("frames", "train")].sum() + table[("frames", "val")].sum() + table[("frames", "test")].sum() == len(frames)


def test_original_video_split_follows_the_seed_rule_by_video():
    frames = synthetic_frames(COUNTS)
    out = splits.assign_all(frames, cv_data(repeats=2))
    for r in (0, 1):
        column = splits.original_video_column(r)
        assert (out.groupby("video_id")[column].nunique() == 1).all()  # a video sits in one part
        for label in COUNTS:
            per_video = out[out.label == label].groupby("video_id")[column].first().value_counts()
            n = out.loc[out.label == label, "video_id"].nunique()
            expected = ({"train": 1, "val": min(1, n - 1), "test": max(0, n - 2)} if n <= 3 else
                        {"train": int(0.7 * n), "val": int(0.15 * n), "test": n - int(0.7 * n) - int(0.15 * n)})
            assert {k: int(per_video.get(k, 0)) for k in expected} == expected, (label, r)
    assert not out[splits.original_video_column(0)].equals(out[splits.original_video_column(1)])
    assert out[splits.original_video_column(0)].equals(splits.assign_all(frames, cv_data(repeats=2))["seed_video_r0"])


def test_original_video_split_lets_patients_straddle_parts_and_says_so():
    # one patient with many videos: a video split spreads it over parts, which the patient check refuses
    rows = [{"path": f"v{v}_{f}.png", "video_id": f"v{v}", "patient_id": "p0" if v < 6 else f"p{v}",
             "label": label} for label in ("regular", "viral") for v in range(10) for f in range(2)]
    frames = pd.DataFrame(rows).assign(video_id=lambda d: d.label + d.video_id, path=lambda d: d.label + d.path,
                                       patient_id=lambda d: d.label + d.patient_id)
    params = cv_data(classes=["regular", "viral"])
    column = splits.original_video_split(frames, params, 0)
    with_split = frames.assign(seed_video_r0=column)
    assert splits.straddling_patients(with_split, "seed_video_r0")
    with pytest.raises(splits.SplitError, match="patients in more than one part"):
        splits.check(with_split, "seed_video_r0", params.classes)
    splits.check_original_video(with_split, "seed_video_r0", params.classes)
    broken = with_split.assign(seed_video_r0=np.where(with_split.label == "viral", "test", with_split.seed_video_r0))
    with pytest.raises(splits.SplitError, match="no frame in train"):
        splits.check_original_video(broken, "seed_video_r0", params.classes)
