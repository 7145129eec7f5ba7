"""The smoke profile end to end on the real data (LUS_DATA_ROOT), and the no-leakage invariants on its outputs.

Skipped, with the reason in the summary, when LUS_DATA_ROOT is not set; CI sets it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from lus_utils.data import splits
from lus_utils.data.dataset import read_frames
from lus_utils.paths import PROJECT_ROOT, OutLayout

DATA_ROOT = os.environ.get("LUS_DATA_ROOT", "")
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not DATA_ROOT, reason="LUS_DATA_ROOT is not set: no real data to run the smoke study on")]


@pytest.fixture(scope="module")
def smoke_out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("smoke")
    command = [sys.executable, "run_all.py", "--profile", "smoke", "--data-root", DATA_ROOT, "--out", str(out),
               "--jobs", "2"]
    # A guard against a hung study, not a budget check (per-fold generators make smoke slower on a busy CPU).
    result = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=3600)
    assert result.returncode == 0, f"smoke study failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return out


def test_frames_contract(smoke_out):
    layout = OutLayout(smoke_out)
    frames = read_frames(layout.frames_csv)
    for column in ["path", "video_id", "patient_id", "label", "probe", "frame_index", "width", "height", "split", "fold",
                   "cv_r0_f0"]:
        assert column in frames.columns
    assert set(frames.label) == {"covid", "pneumonia", "regular", "viral"}
    assert frames[frames.label == "viral"].video_id.nunique() == 5
    assert frames[frames.label == "viral"].patient_id.nunique() == 4
    assert splits.cv_repeats(frames) == {0: [0, 1, 2, 3]}  # smoke: one repeat, one fold per viral patient
    report = json.loads(layout.data_report.read_text())
    assert any("label_uncertain" in r["file"] for r in report["skipped"])


def test_no_patient_in_two_parts_and_each_minority_patient_tested_once_per_repeat(smoke_out):
    frames = read_frames(OutLayout(smoke_out).frames_csv)
    classes = sorted(frames.label.unique())
    columns = ["split"] + [c for c in frames.columns if c.startswith("cv_r")]
    for column in columns:
        splits.check(frames, column, classes)
    splits.check_cv(frames, classes, sorted(splits.cv_repeats(frames)))
    # the original study's video split, which only the original study's replica reads: by video, so patients may straddle its parts
    seed_columns = [c for c in frames.columns if c.startswith("seed_video_r")]
    assert seed_columns == ["seed_video_r0"]
    splits.check_original_video(frames, seed_columns[0], classes)


def _train_paths(frames: pd.DataFrame, column: str) -> set:
    return set(frames.loc[frames[column] == "train", "path"])


def test_generators_saw_their_own_folds_training_frames_only(smoke_out):
    layout = OutLayout(smoke_out)
    frames = read_frames(layout.frames_csv)
    sets = sorted(p.parent for p in layout.synthetic.glob("*/provenance.json"))
    assert sets, "the smoke study wrote no synthetic set"
    for set_dir in sets:
        record = json.loads((set_dir / "provenance.json").read_text())
        column = record["split_column"]  # the split the generator really trained on, as it recorded it
        assert column in frames.columns, f"{set_dir.name}: unknown split {column}"
        if column != "split":  # a fold's set is named for its fold
            assert set_dir.name.endswith(f"_fold{column.rsplit('_f', 1)[1]}"), (set_dir.name, column)
        seen = set(record["training_frames"])
        assert seen, f"{set_dir.name}: provenance lists no training frames"
        if record.get("leakage_ablation"):  # the labelled exceptions: the leakage ablation, the original study's replica's set
            assert "any_split" in set_dir.name or set_dir.name == "ddpm_seed_3_mixed", set_dir.name
        else:
            assert seen <= _train_paths(frames, column), f"{set_dir.name} saw non-training frames"
        assert (set_dir / "audit.json").is_file(), f"{set_dir.name} has no audit"


def test_every_run_tests_each_frame_once_and_synthetic_images_only_train(smoke_out):
    layout = OutLayout(smoke_out)
    frames = read_frames(layout.frames_csv)
    runs = sorted(p.parent for p in layout.runs.glob("*/metrics.json"))
    assert runs, "the smoke study wrote no classifier run"
    augmented = controls = seed_replica = 0
    for run_dir in runs:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        on_seed_split = any(c.startswith("seed_video_r") for c in metrics["split_column"].values())
        assert on_seed_split == metrics["condition"].startswith("seed_replica"), run_dir.name  # only it, labelled
        seed_replica += on_seed_split
        predictions = pd.read_csv(run_dir / "predictions.csv")
        validation = pd.read_csv(run_dir / "val_predictions.csv")
        for table in (predictions, validation):
            assert not table.path.astype(str).str.contains("synthetic").any(), f"{run_dir.name}: synthetic image"
        if metrics["protocol"] == "cv":
            assert sorted(predictions.path) == sorted(frames.path), f"{run_dir.name}: not every frame tested once"
            viral = predictions[predictions.label == "viral"]
            assert viral.groupby("patient_id").fold.nunique().eq(1).all() and viral.fold.nunique() == 4
        for fold in metrics["folds"]:
            key = str(fold)
            column = metrics["split_column"][key]
            real = frames.groupby([column, "label"]).size()
            for part in ("val", "test"):  # exactly the real frames of the part: nothing synthetic, nothing lost
                assert metrics[f"n_{part}"][key] == {c: int(real.get((part, c), 0)) for c in metrics["classes"]}
            assert metrics["n_train_real"][key] == {c: int(real.get(("train", c), 0)) for c in metrics["classes"]}
            assert set(predictions.loc[predictions.fold == fold, "path"]) == set(frames.loc[frames[column] == "test", "path"])
            chosen = (metrics.get("synthetic") or {}).get("per_fold", {}).get(key)
            if chosen:  # fold f read a set whose generator trained on fold f's training frames
                record = json.loads((Path(chosen["dir"]) / "provenance.json").read_text())
                if not record.get("leakage_ablation"):
                    assert set(record["training_frames"]) <= _train_paths(frames, column), run_dir.name
        if metrics["params"]["run"].get("synthetic_set"):
            augmented += 1
            assert all(n > 0 for n in metrics["n_synthetic"].values())
        controls += "oversampl" in metrics["condition"] or "metadata" in metrics["condition"]
    assert augmented, "no augmented classifier run in the smoke study"
    assert seed_replica == 2, "the original study's replica's two runs (without and with its set) are missing"
    assert controls, "no oversampling control or metadata reference in the smoke study"


def test_the_report_opens_on_the_answer_in_a_browser(smoke_out, tmp_path):
    """Headless Chromium at 1300 x 1000 px: the answer and its figure on the first screen, every image loaded, no
    raw condition or metric name in the page's prose outside the glossary."""
    from report_browser import check_first_screen, probe_report

    results = pd.read_csv(smoke_out / "results.csv")
    metrics = [c for c in results.columns if c.startswith("minority_")]
    measured = probe_report(smoke_out / "report.html", tmp_path)
    check_first_screen(measured, sorted(set(results["condition"])) + metrics)
    assert "Simulated pneumonia minority" in measured["prose"]


def test_report_and_results(smoke_out):
    assert (smoke_out / "report.html").is_file()
    results = pd.read_csv(smoke_out / "results.csv")
    assert {"run_id", "condition", "arch", "seed", "synthetic_set", "synthetic_amount"} <= set(results.columns)
    assert results.condition.str.contains("metadata").any() and results.condition.str.contains("oversampl").any()
