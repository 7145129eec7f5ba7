"""The simulated-minority design in the comparison: the draw as the paired unit, the real-patient curve, the
exchange rate (what a condition is worth in real patients), the positive control, the answer in words, the labels
and the README findings generated from a finished study."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lus_utils import records
from lus_utils.compare import comparison as C
from lus_utils.compare import findings
from lus_utils.compare.labels import condition_label, glossary
from lus_utils.compare.real_patient_curve import invert
from lus_utils.config.classify import EvaluationParams
from lus_utils.config.compare import CompareParams
from lus_utils.vocabulary import SIMULATED, Condition, RunKey, Split

CLASSES = ["covid", "pneumonia", "regular"]
DRAWS = 8
EVALUATION = EvaluationParams(n_boot=200)
BOOST = {1: 0.0, 3: 1.0, 6: 2.0}  # the curve: each real patient count's lift of the target's logit


def draw_predictions(draw: int, boost: float) -> pd.DataFrame:
    """One draw's test frames (6 target patients, 6 others) with the same noise whatever the condition, so a
    condition's per-draw figures move with its `boost` alone."""
    rows = []
    for patient in range(12):
        label = "pneumonia" if patient < 6 else CLASSES[(patient % 2) * 2]
        for frame in range(4):
            rows.append({"path": f"d{draw}/p{patient}/{frame}.png", "video_id": f"d{draw}p{patient}",
                         "patient_id": f"d{draw}p{patient}", "label": label, "probe": "convex", "fold": -1,
                         "draw": draw})
    table = pd.DataFrame(rows)
    rng = np.random.default_rng([draw, 7])
    logits = rng.normal(size=(len(table), 3)) * 1.5
    logits[:, 1] += boost * (table["label"] == "pneumonia").to_numpy()
    prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    table["repeat"], table["seed"] = 0, 0
    table["pred"] = [CLASSES[i] for i in prob.argmax(axis=1)]
    for i, c in enumerate(CLASSES):
        table[f"prob_{c}"] = prob[:, i]
    table["threshold"] = 0.4
    return table


def write_simulated_run(out: Path, condition: Condition, boost: float) -> RunKey:
    key = RunKey("metadata_reference" if condition.reference else "resnet18", condition, 0, 0)
    folder = out / "runs" / key.run_id
    folder.mkdir(parents=True, exist_ok=True)
    splits = [Split(SIMULATED, target="pneumonia", draw=d).column for d in range(DRAWS)]
    record = {**records.run_identity(key, CLASSES, splits), "fixed_specificity": 0.95,
              "synthetic": {"leakage_ablation": False} if condition.synthetic else None, "params": {}}
    (folder / "metrics.json").write_text(json.dumps(record))
    table = pd.concat([draw_predictions(d, boost) for d in range(DRAWS)], ignore_index=True)
    table[records.prediction_columns(CLASSES)].to_csv(folder / "predictions.csv", index=False)
    return key


def sim(**kw) -> Condition:
    return Condition(**{"protocol": SIMULATED, "target": "pneumonia", "k": 3, "augment": True, **kw})


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    out = tmp_path_factory.mktemp("simulated") / "out"
    for k, boost in BOOST.items():
        write_simulated_run(out, sim(k=k), boost)
    write_simulated_run(out, sim(synthetic="ddpm_3_mixed", amount=1.0), BOOST[6])  # as good as 6 patients
    write_simulated_run(out, sim(oversample=True, amount=1.0), BOOST[1])  # as good as 1 patient
    write_simulated_run(out, sim(augment=False), BOOST[3])
    write_simulated_run(out, sim(reference=True, augment=False), 0.5)
    primary = [f"{sim(synthetic='ddpm_3_mixed', amount=1.0).name} vs {sim().name}: minority_ap"]
    params = CompareParams(primary=primary, n_example_pairs=0, metrics=["minority_auroc", "minority_ap"])
    return C.compare(out, params, EVALUATION)


def test_invert_reads_the_curve_on_log_k_and_marks_what_it_cannot_place():
    ks, values = np.array([1, 3, 6]), np.array([0.5, 0.6, 0.7])
    assert invert(values, ks, 0.6) == (pytest.approx(3.0), "")
    assert invert(values, ks, 0.65)[0] == pytest.approx(math.sqrt(18))  # halfway between 3 and 6 on log k
    assert invert(values, ks, 0.4) == (1.0, "below") and invert(values, ks, 0.9) == (6.0, "above")
    bumpy = np.array([0.25, 0.75, 0.5])  # made monotone first: 0.25, 0.625, 0.625 (exact in binary)
    assert invert(bumpy, ks, 0.625) == (pytest.approx(3.0), "")  # a plateau: the fewest patients reaching it
    assert invert(bumpy, ks, 0.4375)[0] == pytest.approx(math.sqrt(3))


def test_the_draw_is_the_paired_unit_and_effects_name_their_design(simulated):
    primary = simulated.effects[simulated.effects["primary"]]
    assert len(primary) == 1 and primary["n_pairs"].iloc[0] == DRAWS
    assert primary["design"].iloc[0] == "simulated_minority" and primary["target_class"].iloc[0] == "pneumonia"
    assert primary["mean_diff"].iloc[0] > 0 and primary["p"].iloc[0] == pytest.approx(2 / 2 ** DRAWS)
    units = simulated.runs[simulated.runs["condition"] == sim().name]
    assert sorted(units["draw"]) == list(range(DRAWS))


def test_exchange_rates_and_the_positive_control(simulated):
    rates = simulated.exchange[simulated.exchange["metric"] == "minority_ap"].set_index("condition")
    assert rates.loc[sim(synthetic="ddpm_3_mixed", amount=1.0).name, "patients"] == pytest.approx(3.0)
    assert rates.loc[sim(oversample=True, amount=1.0).name, "patients"] == pytest.approx(-2.0)
    assert rates.loc[sim(augment=False).name, "patients"] == pytest.approx(0.0, abs=1e-9)
    assert (rates["n_draws"] == DRAWS).all() and (rates["lower"] <= rates["patients"] + 1e-9).all()
    control = simulated.control[simulated.control["metric"] == "minority_ap"].iloc[0]
    assert (control["k_low"], control["k_high"]) == (1, 6) and bool(control["rises"]) and control["lower"] > 0
    curve = simulated.curve[(simulated.curve["metric"] == "minority_ap")]
    points = curve[curve["condition"].isin([sim(k=k).name for k in BOOST])].sort_values("k")
    assert points["estimate"].is_monotonic_increasing and (points["n_draws"] == DRAWS).all()
    for name in ("real_patient_curve.csv", "exchange_rate.csv", "positive_control.csv", "answer.md"):
        assert (simulated.folder / name).is_file()


def test_the_answer_says_what_real_patients_and_the_synthetic_set_are_worth(simulated):
    answer = simulated.answer
    assert answer.startswith("**Question.**") and "**Answer.**" in answer
    assert f"Simulated pneumonia minority ({DRAWS} draws): real patients raise pneumonia average precision" in answer
    assert "DDPM, 3 frames, 1x (augmented) is worth +3.0" in answer
    assert f"{DRAWS} paired draws" in answer and "after Holm" in answer
    assert "pneumonia-k3/" not in answer and "minority_ap" not in answer  # labels, not raw names
    assert "DDPM, 3 frames, 1x (augmented): whether its generators reached realism was not measured" in answer  # no audit here


def test_a_flat_curve_says_the_classifier_is_the_limit(tmp_path):
    out = tmp_path / "out"
    for k in BOOST:
        write_simulated_run(out, sim(k=k), 1.0)
    comp = C.compare(out, CompareParams(primary=[], n_example_pairs=0, metrics=["minority_ap"]), EVALUATION)
    assert not comp.control["rises"].any()
    assert "No declared primary comparison" in comp.answer
    assert "real patients do not raise pneumonia average precision detectably either" in comp.answer
    assert "the classifier, not the data, is the limit" in comp.answer


def test_labels_and_glossary():
    assert condition_label(sim().name) == "pneumonia, 3 real patients: baseline (augmented)"
    assert condition_label("ddpm_3_mixed@1ratio") == "DDPM, 3 frames, 1x (unaugmented)"
    assert condition_label("metadata_reference") == "metadata reference (probe and frame size only)"
    assert condition_label("not a condition!") == "not a condition!"
    table = glossary(["none+augment"], ["minority_ap"], "viral")
    assert table.to_dict("records") == [
        {"kind": "condition", "name": "none+augment", "label": "baseline (augmented)"},
        {"kind": "metric", "name": "minority_ap", "label": "viral average precision"}]


def test_findings_are_written_between_the_markers_from_a_finished_study(simulated, tmp_path):
    out = simulated.out_dir
    (out / "logs").mkdir(exist_ok=True)
    (out / "logs" / "runner_summary.json").write_text(json.dumps(
        {"profile": "quick", "seconds": 3000, "runs": [{"run_id": "02_x", "stage": "02", "status": "ran"}]}))
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\n{findings.START}\nold typed text\n{findings.END}\n\nrest\n")
    findings.update_readme(out, readme)
    text = readme.read_text()
    assert "old typed text" not in text and text.endswith("rest\n") and "## What the quick profile found" in text
    assert simulated.answer.strip() in text and "50 min" in text and "cores)" in text
    readme.write_text("# no markers\n")
    with pytest.raises(ValueError, match="findings markers"):
        findings.update_readme(out, readme)
    assert findings.main([str(tmp_path / "nowhere"), "--readme", str(readme)]) == 2


def test_an_interval_bound_that_rounds_to_zero_has_no_minus_sign():
    from lus_utils.compare.text import interval
    assert interval(-2.0, -0.0438, digits=1) == "[-2.0, +0.0]"
    assert interval(-0.088, -0.005) == "[-0.088, -0.005]"
    assert interval(0.1, 0.2, signed=False) == "[0.100, 0.200]"
