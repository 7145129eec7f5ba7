"""Classifier runs on a tiny generated dataset: the cv protocol, determinism, strategies, the controls, the
synthetic hook, bad input."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.utils.class_weight import compute_class_weight

from lus_utils import records, synthetic_sets
from lus_utils.classify import frame_tensors, loop, models, run_data, training
from lus_utils.config.classify import ClassifierRunParams, EvaluationParams, TrainParams
from conftest import cv_data

from lus_utils.config.notebooks import notebook_defaults
from lus_utils.config.runtime import RuntimeParams
from lus_utils.config.schema import ParamError, build
from lus_utils.data import dataset, splits
from lus_utils.provenance import read_json
from lus_utils.vocabulary import CV, HOLDOUT as HOLDOUT_PROTOCOL, Split

CLASSES = ["covid", "pneumonia", "regular", "viral"]
FAST = {"image_size": 32, "epochs": 1, "batch_size": 8, "patience": 2}
EVALUATION = EvaluationParams(n_boot=100)
RUNTIME = RuntimeParams(threads=1)
FOLDS = [f"cv_r0_f{f}" for f in range(4)]


def run_classifier(frames, run, out, train=None, evaluation=EVALUATION):
    return training.run_classifier(frames, run, {**FAST, **(train or {})}, evaluation, RUNTIME, out)


def make_frames(root: Path, frames_per_video: int = 3, size: int = 24, patients: int = 4) -> Path:
    """frames.csv over tiny PNGs: per class 4 patients, one video each, split by `splits.assign_all` (hold-out
    and one cv repeat: 4 folds, one per viral patient); class brightness differs so a model can learn, and
    viral frames are linear-probe and smaller, as in the real data."""
    import cv2

    rng = np.random.default_rng(0)
    rows = []
    for c, label in enumerate(CLASSES):
        for p in range(patients):
            patient = f"p{c}{p}"
            video = f"{label[:3]}_{patient}"
            folder = root / "frames" / video
            folder.mkdir(parents=True)
            for f in range(frames_per_video):
                image = np.clip(rng.normal(40 + 50 * c, 25, (size, size, 3)), 0, 255).astype(np.uint8)
                cv2.imwrite(str(folder / f"{f}.png"), image)
                rows.append({"path": f"../frames/{video}/{f}.png", "video_id": video, "patient_id": patient,
                             "label": label, "probe": "linear" if label == "viral" else "convex", "kind": "video",
                             "frame_index": f, "width": 300 if label == "viral" else 600 + 10 * p, "height": 400})
    frames = splits.assign_all(pd.DataFrame(rows), cv_data(repeats=1))
    frames_csv = root / "data" / "frames.csv"
    frames_csv.parent.mkdir(parents=True)
    frames.to_csv(frames_csv, index=False)
    return frames_csv


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("study")
    make_frames(root)
    return root


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUS_CACHE_DIR", str(tmp_path / "cache"))


def frames_of(study: Path) -> pd.DataFrame:
    return dataset.study_frames(str(study / "data" / "frames.csv"), "", study)


def comparable(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in ("timing", "training")}


HOLDOUT = {"protocol": "holdout"}


# --- identity and parameters ---------------------------------------------------------------------------------
def test_the_vocabulary_config_and_records_import_no_torch() -> None:
    code = ("import sys, lus_utils.vocabulary, lus_utils.records, lus_utils.config.profiles, "
            "lus_utils.config.notebooks; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr[-2000:]


def test_minority_threshold_by_hand() -> None:
    negatives = np.array([0.1, 0.4, 0.2, 0.3, 0.9])
    t = training.minority_threshold(negatives, 0.8)  # 4 of 5 below t: just above 0.4
    assert 0.4 < t < 0.4000001 and (negatives < t).mean() == 0.8
    t = training.minority_threshold(np.array([0.5, 0.5, 0.5, 0.5]), 0.6)  # ties: all four must sit below
    assert t > 0.5 and (np.array([0.5] * 4) < t).all()
    assert np.isnan(training.minority_threshold(np.array([]), 0.95))


def test_unknown_arch_and_strategy_name_allowed_values() -> None:
    with pytest.raises(ParamError, match="resnet18"):
        build(ClassifierRunParams, {"arch": "resnet999"}, "test")
    with pytest.raises(ParamError, match="balanced_sampler"):
        build(ClassifierRunParams, {"strategy": "smote"}, "test")
    with pytest.raises(ValueError, match="allowed"):
        models.build_model("resnet999", 4, 32)
    with pytest.raises(ValueError, match="multiple of 16"):
        models.check_arch("vit_tiny_patch16_224", 40)
    with pytest.raises(ValueError, match="allowed"):
        loop.epoch_batches("smote", np.array([0, 1]), 2, torch.Generator())


def test_notebook_03_defaults_to_weighted_loss() -> None:
    assert notebook_defaults("03_weighted_loss")["strategy"] == "weighted_loss"
    assert notebook_defaults("02_baseline")["strategy"] == "none"


# --- strategies -------------------------------------------------------------------------------------------
def test_class_weights_are_inverse_frequency_from_training_counts() -> None:
    labels = np.array([0] * 50 + [1] * 30 + [2] * 15 + [3] * 5)
    weights = run_data.class_weights(labels, 4)
    assert np.allclose(weights, compute_class_weight("balanced", classes=np.arange(4), y=labels))
    assert np.isclose(weights[labels].mean(), 1.0)
    assert weights[3] > weights[2] > weights[1] > weights[0]
    with pytest.raises(ValueError, match="training frames"):
        run_data.class_weights(np.array([0, 1, 1]), 4)


def test_balanced_sampler_draws_classes_evenly_and_is_seeded() -> None:
    labels = np.array([0] * 400 + [1] * 80 + [2] * 16 + [3] * 4)
    draw = lambda seed: torch.cat(loop.epoch_batches("balanced_sampler", labels, 32,  # noqa: E731
                                                         torch.Generator().manual_seed(seed)))
    first = draw(0)
    assert torch.equal(first, draw(0)) and not torch.equal(first, draw(1))
    shares = np.bincount(labels[first.numpy()], minlength=4) / len(first)
    assert np.all(np.abs(shares - 0.25) < 0.07), shares
    plain = torch.cat(loop.epoch_batches("none", labels, 32, torch.Generator().manual_seed(0)))
    assert sorted(plain.tolist()) == list(range(len(labels)))  # a shuffle: every frame once


def test_augmentation_is_seeded_uint8_and_identity_when_switched_off() -> None:
    batch = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    augment = loop.Augmentation()
    a = augment(batch, torch.Generator().manual_seed(0))
    b = augment(batch, torch.Generator().manual_seed(0))
    assert a.dtype == torch.uint8 and a.shape == batch.shape and torch.equal(a, b)
    assert not torch.equal(a, batch)
    still = loop.Augmentation(max_rotation=0, max_shift=0, scale=(1, 1), brightness=0, contrast=0, hflip=False)
    assert torch.equal(still(batch, torch.Generator().manual_seed(0)), batch)


# --- whole runs --------------------------------------------------------------------------------------------
def test_cv_run_pools_every_frame_once_with_validation_thresholds(study: Path, tmp_path: Path) -> None:
    frames = frames_of(study)
    run = {"arch": "resnet18", "strategy": "balanced_sampler", "seed": 3, "augment": True}
    evaluation = EvaluationParams(fixed_specificity=0.8, n_boot=100)
    first = run_classifier(frames, run, tmp_path / "a", evaluation=evaluation)
    second = run_classifier(frames, run, tmp_path / "b", evaluation=evaluation)
    assert comparable(first) == comparable(second)
    run_dir = tmp_path / "a" / "runs" / first["run_id"]
    assert comparable(read_json(run_dir / "metrics.json")) == comparable(first)
    for name in training.RUN_FILES + tuple(f"best_fold{f}.pt" for f in range(4)):
        assert (run_dir / name).is_file(), name
    assert first["protocol"] == "cv" and first["splits"] == FOLDS and first["repeat"] == 0
    assert first["schema"] == records.RUN_SCHEMA and first["identity"]["condition"]["augment"] is True
    assert first["environment"]["packages"]["torch"] and first["environment"]["device"].startswith(("cpu", "cuda:"))
    assert first["condition"] == "balanced_sampler+augment"
    predictions = records.read_predictions(run_dir / "predictions.csv", CLASSES)
    assert list(predictions.columns) == records.prediction_columns(CLASSES)
    assert sorted(predictions["path"]) == sorted(frames["path"])  # every frame tested exactly once
    viral = predictions[predictions.label == "viral"]
    assert viral.groupby("patient_id").fold.nunique().eq(1).all() and viral.fold.nunique() == 4
    val = records.read_predictions(run_dir / "val_predictions.csv", CLASSES)
    assert not (val.label == "viral").any()  # no minority patient in any validation part
    for f in range(4):
        negatives = val.loc[val.fold == f, "prob_viral"].to_numpy()
        expected = training.minority_threshold(negatives, 0.8)
        assert np.isclose(first["thresholds"][FOLDS[f]], expected)
        assert np.allclose(predictions.loc[predictions.fold == f, "threshold"], expected)
        test_paths = set(predictions.loc[predictions.fold == f, "path"])
        assert test_paths == set(frames.loc[frames["cv_r0_f" + str(f)] == "test", "path"])
    # fold 2's checkpoint reproduces fold 2's test probabilities
    model, classes, size = training.load_run_model(run_dir, split="cv_r0_f2")
    rows = predictions[predictions.fold == 2]
    abspaths = frames.set_index("path").loc[rows["path"], "abspath"].tolist()
    precision = first["training"]["cv_r0_f2"]["precision"]  # runtime.precision auto: this machine's choice
    prob = models.predict_proba(model, frame_tensors.load_images(abspaths, size, cache=False), 8, precision=precision)
    assert classes == CLASSES and np.allclose(prob, rows[[f"prob_{c}" for c in CLASSES]].to_numpy(), atol=1e-6)
    other = run_classifier(frames, {**run, "seed": 4}, tmp_path / "c", evaluation=evaluation)
    assert other["per_class"] != first["per_class"]


def test_weighted_loss_counts_real_frames_only(study: Path, tmp_path: Path) -> None:
    frames = frames_of(study)
    viral_train = frames.loc[(frames.split == "train") & (frames.label == "viral"), "path"].tolist()
    write_synthetic_set(tmp_path / "synthetic" / "toy", viral_train)
    plain = run_classifier(frames, {"strategy": "weighted_loss", **HOLDOUT}, tmp_path)
    with_set = run_classifier(frames, {"strategy": "weighted_loss", "synthetic_set": "toy", **HOLDOUT}, tmp_path)
    copies = run_classifier(frames, {"strategy": "weighted_loss", "oversample_amount": 2.0, **HOLDOUT}, tmp_path)
    weights = [r["training"]["split"]["class_weights"] for r in (plain, with_set, copies)]
    counts = np.array([plain["n_train"]["split"][c] for c in CLASSES])
    assert np.allclose(weights[0], counts.sum() / (len(CLASSES) * counts), atol=1e-6)
    assert weights[0] == weights[1] == weights[2]
    assert with_set["n_synthetic"]["split"] > 0 and copies["n_oversampled"]["split"] == 2 * counts[-1]


def test_oversampling_repeats_real_minority_training_frames_evenly(study: Path, tmp_path: Path) -> None:
    frames = frames_of(study)
    data = run_data.prepare_data(frames, ClassifierRunParams(oversample_amount=2.5), TrainParams(), tmp_path,
                                 Split(CV, 0, 0))
    copies = data.table[data.table.oversampled]
    real = data.table[(data.table.part == "train") & (data.table.label == "viral") & ~data.table.oversampled]
    assert len(copies) == round(2.5 * len(real)) and set(copies.part) == {"train"}
    assert set(copies.path) <= set(real.path)
    times = copies.path.value_counts()
    assert times.max() - times.min() <= 1 and len(times) == len(real)
    assert run_data.part_counts(data).loc["viral", "train (oversampled copies)"] == len(copies)
    with pytest.raises(ParamError, match="ratio or count"):
        build(ClassifierRunParams, {"oversample_amount": 0.5, "amount_unit": "fraction"}, "test")


def test_metadata_reference_run_writes_the_same_predictions(study: Path, tmp_path: Path) -> None:
    frames = frames_of(study)
    record = run_classifier(frames, {"arch": "metadata_reference"}, tmp_path)
    run_dir = tmp_path / "runs" / record["run_id"]
    predictions = pd.read_csv(run_dir / "predictions.csv")
    assert record["condition"] == "metadata_reference" and sorted(predictions.path) == sorted(frames.path)
    assert not list(run_dir.glob("*.pt"))
    assert np.allclose(predictions[[f"prob_{c}" for c in CLASSES]].sum(axis=1), 1)
    # viral frames here are the only linear and small ones: the shortcut ranks them perfectly
    assert record["per_class"]["viral"]["auroc"] == 1.0


def test_split_without_a_class_in_validation_stops_before_training(study: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    frames = frames_of(study)
    frames.loc[(frames.label == "viral") & (frames.split == "val"), "split"] = "test"
    monkeypatch.setattr(models, "build_model", lambda *a, **k: pytest.fail("trained despite a bad split"))
    with pytest.raises(splits.SplitError, match=r"\['viral'\] have no frame in validation") as err:
        run_classifier(frames, {"arch": "resnet18", **HOLDOUT}, tmp_path)
    assert "test" in str(err.value) and "covid" in str(err.value)  # the counts table is in the message
    with pytest.raises(ParamError, match="repeats"):
        run_classifier(frames, {"arch": "resnet18", "repeat": 3}, tmp_path)


def test_pretrained_without_weights_says_so(tmp_path: Path) -> None:
    code = ("from lus_utils.classify import models\n"
            "try:\n    models.build_model('resnet18', 4, 32, pretrained=True)\n"
            "except models.PretrainedWeightsUnavailable as err:\n    print('REFUSED', err)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "TORCH_HOME": str(tmp_path / "t")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert "REFUSED" in out.stdout, out.stderr[-2000:]
    assert "resnet18" in out.stdout and "offline" in out.stdout


# --- the synthetic hook ----------------------------------------------------------------------------------------
def write_synthetic_set(set_dir: Path, training_frames: list[str], n: int = 10, label: str = "viral",
                        leakage_ablation: bool = False, split_column: str = "") -> Path:
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, (24, 24, 3), dtype=np.uint8) for _ in range(n)]
    rows = [{"label": label, "generator": "test", "passed_gate": i != 0} for i in range(n)]
    record = {"training_frames": training_frames, "generator": "test", "leakage_ablation": leakage_ablation}
    synthetic_sets.write_set(set_dir, images, rows,
                             {**record, **({"split_column": split_column} if split_column else {})})
    return set_dir


def test_synthetic_images_join_training_only_and_each_fold_reads_its_own_set(study: Path, tmp_path: Path) -> None:
    frames = frames_of(study)
    for f in range(4):
        column = f"cv_r0_f{f}"
        viral_train = frames.loc[(frames[column] == "train") & (frames.label == "viral"), "path"].tolist()
        write_synthetic_set(tmp_path / "synthetic" / f"toy_fold{f}", viral_train, n=20, split_column=column)
    run = ClassifierRunParams(synthetic_set="toy", synthetic_amount=1.5)
    data = run_data.prepare_data(frames, run, TrainParams(), tmp_path, Split(CV, 0, 1))
    rows = data.table[data.table.synthetic]
    n_viral_train = {c: int(((frames[c] == "train") & (frames.label == "viral")).sum()) for c in FOLDS}
    assert len(rows) == round(1.5 * n_viral_train["cv_r0_f1"]) and set(rows.part) == {"train"}  # 1.5 x the real ones
    assert data.synthetic["name"] == "toy_fold1"
    assert run_data.prepare_data(frames, run, TrainParams(), tmp_path, Split(CV, 0, 1)).table.equals(data.table)
    record = run_classifier(frames, run, tmp_path)
    assert record["condition"] == "toy@1.5ratio" and record["synthetic"]["leakage_ablation"] is False
    assert record["n_synthetic"] == {c: round(1.5 * n) for c, n in n_viral_train.items()}  # all asked, none capped
    predictions = records.read_predictions(tmp_path / "runs" / record["run_id"] / "predictions.csv", CLASSES)
    assert not predictions["path"].str.startswith("synthetic").any()
    wrong = write_synthetic_set(tmp_path / "wrong", [], split_column="cv_r0_f2")
    with pytest.raises(synthetic_sets.SyntheticSetError, match="reads only its own set"):
        run_data.prepare_data(frames, ClassifierRunParams(synthetic_set=str(wrong)), TrainParams(), tmp_path,
                              Split(CV, 0, 1))
    with pytest.raises(synthetic_sets.SyntheticSetError, match="toy_missing"):
        run_data.prepare_data(frames, ClassifierRunParams(synthetic_set="toy_missing"), TrainParams(), tmp_path,
                              Split(CV, 0, 0))


def test_synthetic_set_that_saw_non_training_frames_is_refused_unless_ablation(study: Path, tmp_path: Path) -> None:
    frames = frames_of(study)
    seen = frames.loc[frames.label == "viral", "path"].tolist()  # includes test frames of every fold
    leaky = write_synthetic_set(tmp_path / "leaky", seen)
    fold0 = Split(CV, 0, 0)
    with pytest.raises(synthetic_sets.SyntheticSetError, match="not in this run's training part"):
        run_data.prepare_data(frames, ClassifierRunParams(synthetic_set=str(leaky)), TrainParams(), tmp_path, fold0)
    ablation = write_synthetic_set(tmp_path / "ablation", seen, leakage_ablation=True)
    data = run_data.prepare_data(frames, ClassifierRunParams(synthetic_set=str(ablation)), TrainParams(), tmp_path,
                                 fold0)
    assert data.synthetic["leakage_ablation"] is True
    assert set(data.table.loc[data.table.synthetic, "part"]) == {"train"}
    # one leaky set (made for the hold-out split) serves every fold, as the original study's set does
    write_synthetic_set(tmp_path / "synthetic" / "ddpm_seed_3_mixed", seen, leakage_ablation=True, split_column="split")
    for fold in (0, 3):
        data = run_data.prepare_data(frames, ClassifierRunParams(synthetic_set="ddpm_seed_3_mixed"), TrainParams(),
                                     tmp_path, Split(CV, 0, fold))
        assert data.synthetic["name"] == "ddpm_seed_3_mixed" and data.synthetic["leakage_ablation"] is True
    write_synthetic_set(tmp_path / "synthetic" / "plainset", seen, split_column="split")  # not leaky: never read
    with pytest.raises(synthetic_sets.SyntheticSetError, match="none of .'plainset_r0_fold0', 'plainset_fold0'."):
        run_data.prepare_data(frames, ClassifierRunParams(synthetic_set="plainset"), TrainParams(), tmp_path, fold0)


def test_three_class_data_is_supported_under_holdout(study: Path, tmp_path: Path) -> None:
    frames = frames_of(study)
    three = frames[frames.label != "viral"].copy()
    data = run_data.prepare_data(three, ClassifierRunParams(**HOLDOUT), TrainParams(), tmp_path,
                                 Split(HOLDOUT_PROTOCOL))
    assert data.classes == ["covid", "pneumonia", "regular"]


def test_max_steps_per_epoch_cuts_every_epoch(study: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    real = loop.train_one_epoch

    def counting(model, images, labels, batches, *args, **kwargs):
        seen.append(len(batches))
        return real(model, images, labels, batches, *args, **kwargs)

    monkeypatch.setattr(loop, "train_one_epoch", counting)
    small = {"batch_size": 2, "epochs": 2, "patience": 5}
    run_classifier(frames_of(study), HOLDOUT, tmp_path / "all", small)
    run_classifier(frames_of(study), HOLDOUT, tmp_path / "cut", {**small, "max_steps_per_epoch": 1})
    assert len(seen) == 4 and min(seen[:2]) > 1 and seen[2:] == [1, 1]
    with pytest.raises(ParamError, match="max_steps_per_epoch"):
        build(TrainParams, {"max_steps_per_epoch": -1}, "test")


def test_original_replica_run_uses_the_seed_video_split_and_its_last_epoch(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # 7 videos per class: the original study's rule gives 4 train / 1 val / 2 test videos (the minority has no val part)
    frames_csv = make_frames(tmp_path / "study", frames_per_video=2, patients=7)
    frames = dataset.study_frames(str(frames_csv), "", tmp_path / "study")
    run = {"protocol": "seed_video", "checkpoint": "last", "seed": 1}
    train = {"epochs": 3, "patience": 1}
    real_pass = loop.validation_pass
    calls = []

    def worsening(*args, **kwargs):  # the validation loss rises every epoch: best epoch 1, stop after epoch 2
        loss, prob = real_pass(*args, **kwargs)
        calls.append(1)
        return loss + 10.0 * len(calls), prob

    monkeypatch.setattr(loop, "validation_pass", worsening)
    record = run_classifier(frames, run, tmp_path / "out", train)
    assert record["condition"] == "seed_replica" and record["run_id"].endswith("seedvideo-r0-lastepoch")
    assert record["splits"] == ["seed_video_r0"]
    fold = record["training"]["seed_video_r0"]
    assert fold["checkpoint"] == "last" and fold["tested_epoch"] == fold["epochs_run"] == 2
    assert fold["best_epoch"] == 1
    run_dir = tmp_path / "out" / "runs" / record["run_id"]
    assert (run_dir / "last.pt").is_file() and not (run_dir / "best.pt").exists()
    checkpoint = torch.load(run_dir / "last.pt", weights_only=True)
    assert checkpoint["epoch"] == fold["epochs_run"] and checkpoint["checkpoint"] == "last"
    predictions = pd.read_csv(run_dir / "predictions.csv")
    assert set(predictions["path"]) == set(frames.loc[frames["seed_video_r0"] == "test", "path"])
    calls.clear()
    best = run_classifier(frames, {**run, "checkpoint": "best"}, tmp_path / "out", train)
    best_fold = best["training"]["seed_video_r0"]
    assert best_fold["tested_epoch"] == best_fold["best_epoch"] == 1
    assert (tmp_path / "out" / "runs" / best["run_id"] / "best.pt").is_file()
    assert not predictions.equals(pd.read_csv(tmp_path / "out" / "runs" / best["run_id"] / "predictions.csv"))
