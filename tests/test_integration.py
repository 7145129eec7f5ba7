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
    result = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"smoke study failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return out


def test_frames_contract(smoke_out):
    layout = OutLayout(smoke_out)
    frames = read_frames(layout.frames_csv)
    for column in ["path", "video_id", "patient_id", "label", "probe", "frame_index", "width", "height", "split", "fold"]:
        assert column in frames.columns
    assert set(frames.label) == {"covid", "pneumonia", "regular", "viral"}
    assert frames[frames.label == "viral"].video_id.nunique() == 5
    assert frames[frames.label == "viral"].patient_id.nunique() == 4
    report = json.loads(layout.data_report.read_text())
    assert any("label_uncertain" in r["file"] for r in report["skipped"])


def test_no_patient_in_two_parts(smoke_out):
    frames = read_frames(OutLayout(smoke_out).frames_csv)
    columns = ["split"] + [c for c in frames.columns if c.startswith("split_fold")]
    for column in columns:
        splits.check(frames, column, sorted(frames.label.unique()))


def test_generators_saw_training_frames_only(smoke_out):
    layout = OutLayout(smoke_out)
    frames = read_frames(layout.frames_csv)
    sets = sorted(p.parent for p in layout.synthetic.glob("*/provenance.json"))
    assert sets, "the smoke study wrote no synthetic set"
    for set_dir in sets:
        record = json.loads((set_dir / "provenance.json").read_text())
        fold = int(record.get("params", {}).get("fold", -1))
        train = set(frames.loc[frames[splits.split_column(fold)] == "train", "path"])
        seen = set(record["training_frames"])
        assert seen, f"{set_dir.name}: provenance lists no training frames"
        if record.get("leakage_ablation"):
            assert "any_split" in set_dir.name
        else:
            assert seen <= train, f"{set_dir.name} saw non-training frames: {sorted(seen - train)[:3]}"
        assert (set_dir / "audit.json").is_file(), f"{set_dir.name} has no audit"


def test_synthetic_images_never_in_validation_or_test(smoke_out):
    layout = OutLayout(smoke_out)
    frames = read_frames(layout.frames_csv)
    runs = sorted(p.parent for p in layout.runs.glob("*/metrics.json"))
    assert runs, "the smoke study wrote no classifier run"
    augmented = 0
    for run_dir in runs:
        predictions = pd.read_csv(run_dir / "predictions.csv")
        assert not predictions.path.astype(str).str.contains("synthetic").any(), f"{run_dir.name}: synthetic image in test"
        metrics = json.loads((run_dir / "metrics.json").read_text())
        real = frames.groupby([metrics["split_column"], "label"]).size()
        for part in ("val", "test"):  # exactly the real frames of the part: nothing synthetic, nothing lost
            assert metrics[f"n_{part}"] == {c: int(real.get((part, c), 0)) for c in metrics["classes"]}, run_dir.name
        assert metrics["n_train_real"] == {c: int(real.get(("train", c), 0)) for c in metrics["classes"]}
        if metrics["params"]["run"].get("synthetic_set"):
            augmented += 1
            assert metrics["n_synthetic"] > 0 and sum(metrics["n_train"].values()) == (
                sum(metrics["n_train_real"].values()) + metrics["n_synthetic"])
    assert augmented, "no augmented classifier run in the smoke study"


def test_report_and_results(smoke_out):
    assert (smoke_out / "report.html").is_file()
    results = pd.read_csv(smoke_out / "results.csv")
    assert {"run_id", "condition", "arch", "seed", "fold", "synthetic_set", "synthetic_amount"} <= set(results.columns)
