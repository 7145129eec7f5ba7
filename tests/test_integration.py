"""The smoke profile end to end on the real data (LUS_DATA_ROOT), and the no-leakage invariants on its outputs.

Skipped, with the reason in the summary, when LUS_DATA_ROOT is not set; CI sets it. The study starts in the
background before the tests are collected (conftest.py) and these tests, run last, wait for it.
LUS_SMOKE_OUT=<folder> checks a finished smoke study there instead of running one.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from lus_utils import records
from lus_utils.data import simulated_minority, splits
from lus_utils.data.dataset import read_frames
from lus_utils.paths import OutLayout
from lus_utils.vocabulary import (DDPM_VARIANTS, ORIGINAL_VIDEO, SIMULATED, SetRef, Split, ddpm_family, is_leaky_family,
                                  split_columns)

DATA_ROOT = os.environ.get("LUS_DATA_ROOT", "")
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not DATA_ROOT, reason="LUS_DATA_ROOT is not set: no real data to run the smoke study on")]


def test_frames_contract(smoke_out):
    layout = OutLayout(smoke_out)
    frames = read_frames(layout.frames_csv)
    for column in ["path", "video_id", "patient_id", "label", "probe", "frame_index", "width", "height", "split",
                   "seed_video_r0", "sim_pneumonia_d0", "sim_pneumonia_d0_rank"]:
        assert column in frames.columns
    assert set(frames.label) == {"covid", "pneumonia", "regular", "viral"}
    assert frames[frames.label == "viral"].video_id.nunique() == 5
    assert frames[frames.label == "viral"].patient_id.nunique() == 4
    report = json.loads(layout.data_report.read_text())
    assert any("label_uncertain" in r["file"] for r in report["skipped"])


def test_no_patient_in_two_parts_of_any_split(smoke_out):
    frames = read_frames(OutLayout(smoke_out).frames_csv)
    classes = sorted(frames.label.unique())
    columns = split_columns(frames.columns)
    assert "split" in columns and any(c.startswith("sim_") for c in columns)
    for column in columns:
        split = Split.from_column(column)
        if split.protocol == SIMULATED:
            simulated_minority.check_draw(frames, split)
        elif split.protocol == ORIGINAL_VIDEO:  # the original study's video split: patients may straddle its parts
            splits.check_original_video(frames, column, classes)
        else:
            splits.check(frames, column, classes)
    if any(c.startswith("cv_r") for c in columns):
        splits.check_cv(frames, classes, sorted(splits.cv_repeats(frames)))


def allowed_training_frames(frames: pd.DataFrame, column: str, k: int = 0) -> set:
    """What a generator or classifier on `column` may learn from: its training part (a simulated draw's target
    frames only from the first k patients of its pool)."""
    visible = simulated_minority.within_real_patients(frames, column, k)
    return set(visible.loc[visible[column] == "train", "path"])


def test_generators_saw_their_own_splits_training_frames_only(smoke_out):
    layout = OutLayout(smoke_out)
    frames = read_frames(layout.frames_csv)
    sets = sorted(p.parent for p in layout.synthetic.glob("*/provenance.json"))
    assert sets, "the smoke study wrote no synthetic set"
    families = set()
    for set_dir in sets:
        record = json.loads((set_dir / "provenance.json").read_text())
        ref = SetRef.parse(set_dir.name)
        families.add(ref.family)
        column = record["split_column"]  # the split the generator really trained on, as it recorded it
        assert column in frames.columns, f"{set_dir.name}: unknown split {column}"
        if ref.draw >= 0:  # a draw's set is named for its draw
            assert column == Split(SIMULATED, target=ref.target, draw=ref.draw).column, (set_dir.name, column)
        elif ref.fold >= 0:  # a fold's set is named for its fold
            assert Split.from_column(column).fold == ref.fold, (set_dir.name, column)
        seen = set(record["training_frames"])
        assert seen, f"{set_dir.name}: provenance lists no training frames"
        if record.get("leakage_ablation"):  # the labelled exceptions: the leakage ablation, the original study's set
            assert is_leaky_family(ref.family), set_dir.name
        else:
            assert seen <= allowed_training_frames(frames, column, ref.k), f"{set_dir.name} saw frames it may not"
        assert (set_dir / "audit.json").is_file(), f"{set_dir.name} has no audit"
    variants = {ddpm_family(v) for v in DDPM_VARIANTS}
    assert variants <= families, f"smoke trains every DDPM variant; missing {sorted(variants - families)}"


def test_every_run_tests_each_frame_once_and_synthetic_images_only_train(smoke_out):
    layout = OutLayout(smoke_out)
    frames = read_frames(layout.frames_csv)
    runs = sorted(p.parent for p in layout.runs.glob("*/metrics.json"))
    assert runs, "the smoke study wrote no classifier run"
    augmented = controls = seed_replica = simulated = 0
    for run_dir in runs:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        key, _ = records.read_run_record(run_dir / "metrics.json")
        on_seed_split = any(c.startswith("seed_video_r") for c in metrics["splits"])
        assert on_seed_split == key.condition.original_replica, run_dir.name  # only it, labelled
        seed_replica += on_seed_split
        simulated += key.condition.protocol == SIMULATED
        predictions = pd.read_csv(run_dir / "predictions.csv")
        validation = pd.read_csv(run_dir / "val_predictions.csv")
        for table in (predictions, validation):
            assert not table.path.astype(str).str.contains("synthetic").any(), f"{run_dir.name}: synthetic image"
        if key.condition.protocol == "cv":
            assert sorted(predictions.path) == sorted(frames.path), f"{run_dir.name}: not every frame tested once"
        for column in metrics["splits"]:
            split = Split.from_column(column)
            real = frames.groupby([column, "label"]).size()
            for part in ("val", "test"):  # exactly the real frames of the part: nothing synthetic, nothing lost
                assert metrics[f"n_{part}"][column] == {c: int(real.get((part, c), 0)) for c in metrics["classes"]}
            tested = predictions[(predictions.draw == split.draw) if split.protocol == SIMULATED
                                 else (predictions.fold == split.fold)]
            assert set(tested.path) == set(frames.loc[frames[column] == "test", "path"]), (run_dir.name, column)
            chosen = (metrics.get("synthetic") or {}).get("per_split", {}).get(column)
            if chosen and not chosen.get("leakage_ablation"):  # read a set made from this split's training frames
                record = json.loads((layout.synthetic / chosen["name"] / "provenance.json").read_text())
                assert chosen["split_column"] == record["split_column"] == column, run_dir.name
                assert set(record["training_frames"]) <= allowed_training_frames(frames, column, key.condition.k), \
                    run_dir.name
        if key.condition.synthetic:
            augmented += 1
            assert all(n > 0 for n in metrics["n_synthetic"].values())
        controls += key.condition.oversample or key.condition.reference
    assert augmented, "no classifier run with synthetic images in the smoke study"
    assert seed_replica == 2, "the original study's replica's two runs (without and with its set) are missing"
    assert controls, "no oversampling control or metadata reference in the smoke study"
    assert simulated, "no simulated-minority run in the smoke study"


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
