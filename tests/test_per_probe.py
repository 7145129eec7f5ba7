"""Minority metrics within each probe, on tiny hand-made prediction tables with known answers."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from lus_utils.compare import per_probe


def toy_predictions() -> pd.DataFrame:
    """Linear: viral scored high, others low (perfect); convex: one viral frame ranked in the middle."""
    rows = [
        # path, patient, label, probe, prob_viral, pred
        ("a", "p1", "viral", "linear", 0.9, "viral"), ("b", "p1", "viral", "linear", 0.8, "viral"),
        ("c", "p2", "covid", "linear", 0.1, "covid"), ("d", "p3", "regular", "linear", 0.2, "regular"),
        ("e", "p4", "viral", "convex", 0.5, "covid"),
        ("f", "p5", "covid", "convex", 0.7, "viral"), ("g", "p6", "regular", "convex", 0.3, "regular"),
        ("h", "p6", "pneumonia", "convex", 0.2, "pneumonia"),
    ]
    table = pd.DataFrame(rows, columns=["path", "patient_id", "label", "probe", "prob_viral", "pred"])
    table["video_id"] = table["path"]
    table["threshold"] = 0.45
    return table


def test_within_probe_metrics_have_known_values():
    table = per_probe.per_probe_metrics(toy_predictions(), "viral")
    assert list(table.index) == ["all", "convex", "linear"]
    assert table.loc["linear", "minority_auroc"] == pytest.approx(1.0)
    assert table.loc["linear", "minority_ap"] == pytest.approx(1.0)
    # Convex: the viral frame (0.5) beats two of three others (0.3, 0.2) and loses to 0.7.
    assert table.loc["convex", "minority_auroc"] == pytest.approx(2 / 3)
    assert table.loc["convex", "minority_ap"] == pytest.approx(0.5)  # ranked second
    assert table.loc["convex", "minority_recall"] == 0.0
    assert table.loc["convex", "minority_sens_at_threshold"] == 1.0  # 0.5 >= 0.45
    assert table.loc["convex", "minority_spec_at_threshold"] == pytest.approx(2 / 3)  # 0.7 is called
    toy = toy_predictions()
    assert table.loc["all", "minority_auroc"] == pytest.approx(roc_auc_score(toy.label == "viral", toy.prob_viral))
    assert table.loc["linear", "n_minority_patients"] == 1 and table.loc["convex", "n"] == 4
    assert (table["status"] == "ok").all()


def test_probe_without_minority_gets_nan_and_a_status():
    toy = toy_predictions()
    toy = toy[~((toy.probe == "convex") & (toy.label == "viral"))]
    table = per_probe.per_probe_metrics(toy, "viral")
    assert table.loc["convex", "status"] == "no viral frames"
    assert math.isnan(table.loc["convex", "minority_auroc"]) and math.isnan(table.loc["convex", "minority_ap"])
    only = toy_predictions()
    only = only[~((only.probe == "linear") & (only.label != "viral"))]
    assert per_probe.per_probe_metrics(only, "viral").loc["linear", "status"] == "only viral frames"


def test_bootstrap_interval_brackets_estimate_and_repeats():
    toy = pd.concat([toy_predictions().assign(patient_id=lambda t, k=k: t.patient_id + f"-{k}",
                                               prob_viral=lambda t, k=k: (t.prob_viral + 0.01 * k).clip(0, 1))
                     for k in range(5)], ignore_index=True)
    a = per_probe.per_probe_metrics(toy, "viral", n_boot=50, seed=3)
    b = per_probe.per_probe_metrics(toy, "viral", n_boot=50, seed=3)
    pd.testing.assert_frame_equal(a, b)
    row = a.loc["all"]
    assert row.minority_auroc_ci_low <= row.minority_auroc <= row.minority_auroc_ci_high
    assert row.minority_auroc_ci_low < row.minority_auroc_ci_high


def test_attach_probe_and_missing_columns():
    toy = toy_predictions()
    frames = toy[["path", "probe"]].copy()
    bare = toy.drop(columns="probe")
    with pytest.raises(ValueError, match="attach_probe"):
        per_probe.per_probe_metrics(bare, "viral")
    assert per_probe.attach_probe(bare, frames)["probe"].tolist() == toy["probe"].tolist()
    with pytest.raises(ValueError, match="not in the frames table"):
        per_probe.attach_probe(bare, frames.iloc[1:])


def test_per_probe_runs_reads_run_folders(tmp_path):
    for run_id, condition, shift in (("r_base", "none", 0.0), ("r_syn", "ddpm_3_mixed@1ratio", 0.05)):
        folder = tmp_path / run_id
        folder.mkdir()
        toy = toy_predictions()
        toy["prob_viral"] = (toy["prob_viral"] + shift).clip(0, 1)
        toy.to_csv(folder / "predictions.csv", index=False)
        (folder / "metrics.json").write_text(json.dumps({"condition": condition}))
    table = per_probe.per_probe_runs([tmp_path / "r_base", tmp_path / "r_syn"], minority="viral")
    assert len(table) == 6 and set(table.condition) == {"none", "ddpm_3_mixed@1ratio"}
    summary = per_probe.summarise_by_condition(table)
    assert summary.loc["none", ("minority_auroc", "linear")] == pytest.approx(1.0)
    assert np.isfinite(summary.loc["ddpm_3_mixed@1ratio", ("minority_auroc", "convex")])
    with pytest.raises(FileNotFoundError, match="has not finished"):
        per_probe.per_probe_runs([tmp_path / "absent"])


def test_probe_filter_that_empties_a_class_is_a_clear_error(tiny_root, tmp_path, cache):
    from lus_utils.data import dataset
    from lus_utils.params import DataParams

    # The tiny data set records covid with the convex probe only.
    with pytest.raises(ValueError, match=r"\['covid'\] have no usable frames with probe 'linear'.*data.probe"):
        dataset.build_frames(tiny_root, tmp_path / "out", DataParams(n_workers=1, probe="linear"), cache_root=cache)


def test_convex_only_frames_keep_the_minority_class(tiny_root, tmp_path, cache):
    from lus_utils.data import dataset
    from lus_utils.params import DataParams

    frames = dataset.build_frames(tiny_root, tmp_path / "out", DataParams(n_workers=1, probe="convex", few_patients=3,
                                                                         classes=["covid", "pneumonia", "viral"]),
                                  cache_root=cache)
    assert set(frames.probe) == {"convex"} and (frames.label == "viral").any()
    table = per_probe.per_probe_metrics(frames.assign(prob_viral=frames.label.eq("viral").astype(float)), "viral")
    assert list(table.index) == ["all", "convex"] and table.loc["convex", "minority_auroc"] == 1.0


def test_study_table_reads_the_runs_with_predictions(tmp_path):
    from lus_utils.paths import OutLayout

    layout = OutLayout(tmp_path)
    toy = toy_predictions()
    layout.data.mkdir(parents=True)
    toy[["path", "video_id", "patient_id", "label", "probe"]].to_csv(layout.frames_csv, index=False)
    layout.run_dir("r1").mkdir(parents=True)
    toy.drop(columns="probe").to_csv(layout.run_dir("r1") / "predictions.csv", index=False)
    runs = pd.DataFrame({"run_id": ["r1", "r2"], "has_predictions": [True, False]})
    table = per_probe.study_table(tmp_path, runs, "viral")
    assert table.run_id.unique().tolist() == ["r1"] and table.set_index("probe").loc["linear", "minority_auroc"] == 1.0


def test_study_table_without_predictions_is_empty_not_an_error(tmp_path, capsys):
    table = per_probe.study_table(tmp_path, pd.DataFrame({"run_id": ["r1"], "has_predictions": [False]}))
    assert table.empty and "no run with predictions" in capsys.readouterr().out
    assert per_probe.summarise_by_condition(table).empty
