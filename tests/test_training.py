"""Classifier runs on a tiny generated dataset: determinism, strategies, the synthetic hook, bad input."""
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

from lus_utils.classify import models, training
from lus_utils import params
from lus_utils.data import splits
from lus_utils.generate import synthetic
from lus_utils.data.dataset import read_frames
from lus_utils.params import ClassifierRunParams, ParamError, TrainParams
from lus_utils.provenance import read_json

CLASSES = ["covid", "pneumonia", "regular", "viral"]
PARTS = ("train", "val", "test")
FAST = {"image_size": 32, "epochs": 2, "batch_size": 8, "n_boot": 10, "num_threads": 1, "patience": 2}


def make_frames(root: Path, frames_per_video: int = 3, size: int = 24) -> Path:
    """frames.csv over tiny PNGs: per class 4 patients (2 train, 1 val, 1 test), one video each; fold 0
    swaps train and test patients; class brightness differs so a model can learn something."""
    import cv2

    rng = np.random.default_rng(0)
    rows = []
    for c, label in enumerate(CLASSES):
        for p, part in enumerate(("train", "train", "val", "test")):
            patient = f"p{c}{p}"
            video = f"{label[:3]}_{patient}"
            folder = root / "frames" / video
            folder.mkdir(parents=True)
            for f in range(frames_per_video):
                image = np.clip(rng.normal(40 + 50 * c, 25, (size, size, 3)), 0, 255).astype(np.uint8)
                cv2.imwrite(str(folder / f"{f}.png"), image)
                fold_part = {"train": "test", "test": "train"}.get(part, part) if p in (0, 3) else part
                rows.append({"path": f"../frames/{video}/{f}.png", "video_id": video, "patient_id": patient,
                             "label": label, "probe": "convex", "kind": "video", "frame_index": f, "split": part,
                             "fold": 0, "split_fold0": fold_part})
    frames_csv = root / "data" / "frames.csv"
    frames_csv.parent.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(frames_csv, index=False)
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
    return training.frames_for_run(str(study / "data" / "frames.csv"), "", study)


def comparable(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in ("timing",)}


# --- identity and parameters ---------------------------------------------------------------------------------
def test_run_ids_and_conditions_are_readable_and_distinct() -> None:
    base = {"arch": "resnet18", "strategy": "none", "seed": 0, "fold": -1, "synthetic_set": "", "synthetic_amount": 1.0,
            "synthetic_amount_unit": "ratio", "augment": False}
    assert training.run_id_for(base) == "resnet18-none-seed0-holdout"
    syn = {**base, "synthetic_set": "/x/synthetic/ddpm_viral/", "synthetic_amount": 5.0, "strategy": "weighted_loss",
           "fold": 2, "augment": True}
    assert training.run_id_for(syn) == "resnet18-weighted_loss-seed0-fold2-ddpm_viral@5ratio-aug"
    assert training.condition_name(base) == "none"
    assert training.condition_name(syn) == "ddpm_viral@5ratio+weighted_loss+augment"
    assert training.condition_name({**syn, "strategy": "none", "augment": False}) == "ddpm_viral@5ratio"
    assert training.baseline_run_ids(syn) == ["resnet18-none-seed0-fold2-ddpm_viral@5ratio-aug",
                                              "resnet18-none-seed0-fold2-aug"]
    ids = {training.run_id_for({**base, "seed": s, "strategy": st}) for s in (0, 1) for st in params.STRATEGIES}
    assert len(ids) == 6


def test_unknown_arch_and_strategy_name_allowed_values() -> None:
    with pytest.raises(ParamError, match="resnet18"):
        params.build(ClassifierRunParams, {"arch": "resnet999"}, "test")
    with pytest.raises(ParamError, match="balanced_sampler"):
        params.build(ClassifierRunParams, {"strategy": "smote"}, "test")
    with pytest.raises(ValueError, match="allowed"):
        models.build_model("resnet999", 4, 32)
    with pytest.raises(ValueError, match="multiple of 16"):
        models.check_arch("vit_tiny_patch16_224", 40)
    with pytest.raises(ValueError, match="allowed"):
        training.epoch_batches("smote", np.array([0, 1]), 2, torch.Generator())


def test_notebook_03_defaults_to_weighted_loss() -> None:
    assert params.notebook_defaults("03_weighted_loss")["strategy"] == "weighted_loss"
    assert params.notebook_defaults("02_baseline")["strategy"] == "none"
    assert params.SYNTHETIC_AMOUNT_UNITS == synthetic.AMOUNT_UNITS


# --- strategies -------------------------------------------------------------------------------------------
def test_class_weights_are_inverse_frequency_from_training_counts() -> None:
    labels = np.array([0] * 50 + [1] * 30 + [2] * 15 + [3] * 5)
    weights = training.class_weights(labels, 4)
    assert np.allclose(weights, compute_class_weight("balanced", classes=np.arange(4), y=labels))
    assert np.isclose(weights[labels].mean(), 1.0)
    assert weights[3] > weights[2] > weights[1] > weights[0]
    with pytest.raises(ValueError, match="training frames"):
        training.class_weights(np.array([0, 1, 1]), 4)


def test_balanced_sampler_draws_classes_evenly_and_is_seeded() -> None:
    labels = np.array([0] * 400 + [1] * 80 + [2] * 16 + [3] * 4)
    draw = lambda seed: torch.cat(training.epoch_batches("balanced_sampler", labels, 32,  # noqa: E731
                                                         torch.Generator().manual_seed(seed)))
    first = draw(0)
    assert torch.equal(first, draw(0)) and not torch.equal(first, draw(1))
    shares = np.bincount(labels[first.numpy()], minlength=4) / len(first)
    assert np.all(np.abs(shares - 0.25) < 0.07), shares
    plain = torch.cat(training.epoch_batches("none", labels, 32, torch.Generator().manual_seed(0)))
    assert sorted(plain.tolist()) == list(range(len(labels)))  # a shuffle: every frame once


def test_augmentation_is_seeded_uint8_and_identity_when_switched_off() -> None:
    batch = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    augment = training.Augmentation()
    a = augment(batch, torch.Generator().manual_seed(0))
    b = augment(batch, torch.Generator().manual_seed(0))
    assert a.dtype == torch.uint8 and a.shape == batch.shape and torch.equal(a, b)
    assert not torch.equal(a, batch)
    still = training.Augmentation(max_rotation=0, max_shift=0, scale=(1, 1), brightness=0, contrast=0, hflip=False)
    assert torch.equal(still(batch, torch.Generator().manual_seed(0)), batch)


# --- whole runs --------------------------------------------------------------------------------------------
def test_same_params_same_metrics_and_run_folder(study: Path, tmp_path: Path) -> None:
    frames = frames_of(study)
    run = {"arch": "resnet18", "strategy": "balanced_sampler", "seed": 3}
    train = {**FAST, "augment": True}
    first = training.run_classifier(frames, run, train, tmp_path / "a")
    second = training.run_classifier(frames, run, train, tmp_path / "b")
    assert comparable(first) == comparable(second)
    run_dir = tmp_path / "a" / "runs" / first["run_id"]
    assert comparable(read_json(run_dir / "metrics.json")) == comparable(first)
    for name in training.RUN_FILES:
        assert (run_dir / name).is_file(), name
    histories = [pd.read_csv(tmp_path / out / "runs" / first["run_id"] / "history.csv").drop(columns="seconds")
                 for out in ("a", "b")]
    assert histories[0].equals(histories[1]) and len(histories[0]) == 2
    other = training.run_classifier(frames, {**run, "seed": 4}, train, tmp_path / "c")
    assert [v["auroc"] for v in other["per_class"].values()] != [v["auroc"] for v in first["per_class"].values()]
    for key in ("classes", "confusion_matrix", "accuracy", "balanced_accuracy", "macro_f1", "weighted_f1",
                "per_class", "video", "ci", "params", "condition", "run_id", "n_train", "n_val", "n_test",
                "code_version", "environment", "data_fingerprint"):
        assert key in first, key
    assert first["environment"]["packages"]["torch"] and first["environment"]["device"].startswith(("cpu", "cuda:"))
    assert set(first["per_class"]["viral"]) >= {"precision", "recall", "f1", "specificity", "auroc", "ap"}
    assert first["condition"] == "balanced_sampler+augment"
    assert first["n_train"] == {c: 6 for c in CLASSES} and first["n_test"] == {c: 3 for c in CLASSES}
    predictions = pd.read_csv(run_dir / "predictions.csv")
    prob_columns = [f"prob_{c}" for c in CLASSES]
    assert list(predictions.columns) == ["path", "video_id", "patient_id", "label", "pred"] + prob_columns
    assert len(predictions) == 12 and set(predictions["path"]) == set(frames.loc[frames.split == "test", "path"])
    # The checkpoint reproduces the test probabilities.
    model, classes, size = training.load_run_model(run_dir)
    test_images = training.load_images(frames.loc[frames.split == "test", "abspath"].tolist(), size, cache=False)
    prob = models.predict_proba(model, test_images, 8)
    assert classes == CLASSES and np.allclose(prob, predictions[[f"prob_{c}" for c in CLASSES]].to_numpy(), atol=1e-6)
    features = models.extract_features(model, test_images, batch_size=5)
    assert features.shape == (12, model.num_features) and features.dtype == np.float32


def test_weighted_loss_run_records_weights_and_fold(study: Path, tmp_path: Path) -> None:
    frames = frames_of(study)
    record = training.run_classifier(frames, {"arch": "vit_tiny_patch16_224", "strategy": "weighted_loss",
                                              "fold": 0}, {**FAST, "epochs": 1}, tmp_path)
    assert record["split_column"] == "split_fold0" and record["run_id"].endswith("fold0")
    counts = np.array([record["n_train"][c] for c in CLASSES])
    expected = counts.sum() / (len(CLASSES) * counts)
    assert np.allclose(record["training"]["class_weights"], expected, atol=1e-6)


def test_split_without_a_class_in_validation_stops_before_training(study: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    frames = frames_of(study)
    frames.loc[(frames.label == "viral") & (frames.split == "val"), "split"] = "test"
    monkeypatch.setattr(models, "build_model", lambda *a, **k: pytest.fail("trained despite a bad split"))
    with pytest.raises(splits.SplitError, match=r"\['viral'\] have no frame in validation") as err:
        training.run_classifier(frames, {"arch": "resnet18"}, FAST, tmp_path)
    assert "test" in str(err.value) and "covid" in str(err.value)  # the counts table is in the message
    with pytest.raises(ParamError, match="folds available"):
        training.prepare_data(frames, ClassifierRunParams(fold=3), TrainParams(), tmp_path)


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
                        leakage_ablation: bool = False) -> Path:
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, (24, 24, 3), dtype=np.uint8) for _ in range(n)]
    rows = [{"label": label, "generator": "test", "passed_gate": i != 0} for i in range(n)]
    synthetic.write_set(set_dir, images, rows, {"training_frames": training_frames, "generator": "test",
                                                "leakage_ablation": leakage_ablation})
    return set_dir


def test_synthetic_images_join_training_only(study: Path, tmp_path: Path) -> None:
    frames = frames_of(study)
    viral_train = frames.loc[(frames.split == "train") & (frames.label == "viral"), "path"].tolist()
    write_synthetic_set(tmp_path / "synthetic" / "toy", viral_train)
    run = ClassifierRunParams(synthetic_set="toy", synthetic_amount=1.5)
    data = training.prepare_data(frames, run, TrainParams(), tmp_path)
    synthetic_rows = data.table[data.table.synthetic]
    assert len(synthetic_rows) == 9 and set(synthetic_rows.part) == {"train"}  # 1.5 x 6 real viral frames
    assert data.counts("train")["viral"] == 15 and data.counts("val") == {c: 3 for c in CLASSES}
    assert training.part_counts(data).loc["viral", "train (synthetic)"] == 9
    again = training.prepare_data(frames, run, TrainParams(), tmp_path)
    assert again.table.equals(data.table)  # seeded pick
    record = training.run_classifier(frames, run, {**FAST, "epochs": 1}, tmp_path)
    assert record["n_synthetic"] == 9 and record["n_train"]["viral"] == 15 and record["n_train_real"]["viral"] == 6
    assert record["synthetic"]["n_training_frames"] == 6 and record["synthetic"]["leakage_ablation"] is False
    assert record["condition"] == "toy@1.5ratio"
    predictions = training.read_predictions(tmp_path / "runs" / record["run_id"])
    assert not predictions["path"].str.startswith("synthetic").any()
    short = training.prepare_data(frames, ClassifierRunParams(synthetic_set="toy", synthetic_amount=2.0),
                                  TrainParams(), tmp_path)
    assert short.table.synthetic.sum() == 9  # 12 asked for, 9 in the set: all used, the shortfall recorded
    assert (short.synthetic["n_requested"], short.synthetic["n_used"]) == (12, 9)


def test_synthetic_set_that_saw_non_training_frames_is_refused_unless_ablation(study: Path, tmp_path: Path) -> None:
    frames = frames_of(study)
    seen = frames.loc[frames.label == "viral", "path"].tolist()  # includes validation and test frames
    leaky = write_synthetic_set(tmp_path / "leaky", seen)
    with pytest.raises(synthetic.SyntheticSetError, match="not in this run's training split"):
        training.prepare_data(frames, ClassifierRunParams(synthetic_set=str(leaky)), TrainParams(), tmp_path)
    ablation = write_synthetic_set(tmp_path / "ablation", seen, leakage_ablation=True)
    data = training.prepare_data(frames, ClassifierRunParams(synthetic_set=str(ablation)), TrainParams(), tmp_path)
    assert data.synthetic["leakage_ablation"] is True
    assert set(data.table.loc[data.table.synthetic, "part"]) == {"train"}


def test_synthetic_set_with_missing_files_or_foreign_labels_is_refused(study: Path, tmp_path: Path) -> None:
    frames = frames_of(study)
    train_paths = frames.loc[frames.split == "train", "path"].tolist()
    broken = write_synthetic_set(tmp_path / "broken", train_paths)
    (broken / "images" / "00003.png").unlink()
    with pytest.raises(synthetic.SyntheticSetError, match="00003.png"):
        training.prepare_data(frames, ClassifierRunParams(synthetic_set=str(broken)), TrainParams(), tmp_path)
    foreign = write_synthetic_set(tmp_path / "foreign", train_paths, label="influenza")
    with pytest.raises(synthetic.SyntheticSetError, match="influenza"):
        training.prepare_data(frames, ClassifierRunParams(synthetic_set=str(foreign)), TrainParams(), tmp_path)


def test_three_class_data_is_supported(study: Path, tmp_path: Path) -> None:
    frames = frames_of(study)
    three = frames[frames.label != "viral"].copy()
    three.attrs = frames.attrs
    data = training.prepare_data(three, ClassifierRunParams(fold=0), TrainParams(), tmp_path)
    assert data.classes == ["covid", "pneumonia", "regular"]
    assert read_frames(study / "data" / "frames.csv")["label"].nunique() == 4
