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


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match=r"\['probe'\]"):
        per_probe.per_probe_metrics(toy_predictions().drop(columns="probe"), "viral")


def write_toy_run(out, condition: str, shift: float, seed: int = 0) -> str:
    """A finished run (records.RUN_SCHEMA) whose predictions are the toy table, its viral scores shifted."""
    from lus_utils import records
    from lus_utils.vocabulary import Condition, RunKey

    key = RunKey("resnet18", Condition.parse(condition), 0, seed)
    folder = out / "runs" / key.run_id
    folder.mkdir(parents=True)
    classes = ["covid", "pneumonia", "regular", "viral"]
    toy = toy_predictions().assign(fold=0, draw=-1, repeat=0, seed=seed)
    toy["prob_viral"] = (toy["prob_viral"] + shift).clip(0, 1)
    for c in classes[:3]:
        toy[f"prob_{c}"] = (1 - toy["prob_viral"]) / 3
    toy[records.prediction_columns(classes)].to_csv(folder / "predictions.csv", index=False)
    (folder / "metrics.json").write_text(json.dumps(records.run_identity(key, classes, ["cv_r0_f0"])))
    return key.run_id


def test_per_probe_runs_reads_run_folders(tmp_path):
    ids = [write_toy_run(tmp_path, "none", 0.0), write_toy_run(tmp_path, "ddpm_3_mixed@1ratio", 0.05)]
    table = per_probe.per_probe_runs([tmp_path / "runs" / i for i in ids], minority="viral")
    assert len(table) == 6 and set(table.condition) == {"none", "ddpm_3_mixed@1ratio"}
    summary = per_probe.summarise_by_condition(table)
    assert summary.loc["none", ("minority_auroc", "linear")] == pytest.approx(1.0)
    assert np.isfinite(summary.loc["ddpm_3_mixed@1ratio", ("minority_auroc", "convex")])
    with pytest.raises(ValueError, match="re-run"):
        per_probe.per_probe_runs([tmp_path / "absent"])


def test_probe_filter_that_empties_a_class_is_a_clear_error(tiny_root, tmp_path, cache):
    from lus_utils.data import dataset
    from lus_utils.config.data import DataParams

    # The tiny data set records covid with the convex probe only.
    with pytest.raises(ValueError, match=r"\['covid'\] have no usable frames with probe 'linear'.*data.probe"):
        dataset.build_frames(tiny_root, tmp_path / "out", DataParams(n_workers=1, probe="linear"), cache_root=cache)


def test_convex_only_frames_keep_the_minority_class(tiny_root, tmp_path, cache):
    from lus_utils.data import dataset
    from lus_utils.config.data import DataParams

    frames = dataset.build_frames(tiny_root, tmp_path / "out", DataParams(n_workers=1, probe="convex", few_patients=3,
                                                                         classes=["covid", "pneumonia", "viral"]),
                                  cache_root=cache)
    assert set(frames.probe) == {"convex"} and (frames.label == "viral").any()
    table = per_probe.per_probe_metrics(frames.assign(prob_viral=frames.label.eq("viral").astype(float)), "viral")
    assert list(table.index) == ["all", "convex"] and table.loc["convex", "minority_auroc"] == 1.0


def test_study_table_reads_the_viral_runs_with_predictions(tmp_path):
    run_id = write_toy_run(tmp_path, "none", 0.0)
    runs = pd.DataFrame({"run_id": [run_id, "r2"], "has_predictions": [True, False], "design": ["viral", "viral"]})
    table = per_probe.study_table(tmp_path, runs, "viral")
    assert table.run_id.unique().tolist() == [run_id] and table.set_index("probe").loc["linear", "minority_auroc"] == 1.0


def test_study_table_without_predictions_is_empty_not_an_error(tmp_path, capsys):
    table = per_probe.study_table(tmp_path, pd.DataFrame({"run_id": ["r1"], "has_predictions": [False],
                                                         "design": ["viral"]}))
    assert table.empty and "no viral-design run with predictions" in capsys.readouterr().out
    assert per_probe.summarise_by_condition(table).empty
