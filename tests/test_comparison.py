"""The final comparison: exact test, Holm and MDE by hand; pairing, primary family, leakage apart, the
per-patient view and the written outputs on a tiny cv study following CONTRACT.md."""
from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import rankdata

from lus_utils import records
from lus_utils.compare import comparison as C
from lus_utils.compare.labels import comparison_label
from lus_utils.compare import statistics as S
from lus_utils.config.classify import EvaluationParams
from lus_utils.config.compare import CompareParams, parse_primary
from lus_utils.config.schema import ParamError
from lus_utils.vocabulary import METADATA_REFERENCE, Condition, RunKey

CLASSES = ["covid", "pneumonia", "regular", "viral"]
PRIMARY = ["ddpm_3_mixed@1ratio vs none: minority_ap", "ddpm_3_mixed@1ratio vs oversampling@1ratio: minority_ap"]


# --- the exact signed-rank test, by hand -------------------------------------------------------------------
def test_wilcoxon_all_positive_reaches_its_floor():
    result = S.wilcoxon_exact([0.1, 0.2, 0.3, 0.4, 0.5])  # T+ = 15 of 15: P = 1/32 each tail
    assert result.p == pytest.approx(2 / 32) and result.statistic == 15 and result.n_used == 5
    assert "cannot go below" in result.note
    assert S.wilcoxon_exact(np.arange(1, 9) / 10).p == pytest.approx(2 / 256)  # 8 pairs: 0.0078


def test_wilcoxon_drops_zeros_and_uses_midranks():
    zeros = S.wilcoxon_exact([0.0, 1.0, 2.0, 3.0])  # zero dropped -> n = 3, T+ = 6: p = 2/8
    assert zeros.p == pytest.approx(0.25) and zeros.n_zero == 1 and "dropped" in zeros.note
    # |d| = 1, 1, 2, 3 -> mid-ranks 1.5, 1.5, 3, 4; T+ = 1.5 + 1.5 + 4 = 7. Doubled ranks {3, 3, 6, 8}: of the
    # 16 subset sums, 5 are >= 14 (14, 14, 17, 17, 20) -> p = 2 x 5/16
    ties = S.wilcoxon_exact([1.0, 1.0, -2.0, 3.0])
    assert ties.statistic == pytest.approx(7.0) and ties.p == pytest.approx(10 / 16)
    everything_zero = S.wilcoxon_exact([0.0, 0.0, 0.0])
    assert everything_zero.p == 1.0 and everything_zero.n_used == 0 and "zero" in everything_zero.note


def brute_force_p(d: np.ndarray) -> float:
    d = d[d != 0]
    ranks = rankdata(np.abs(d))
    observed = ranks[d > 0].sum()
    sums = [sum(r for r, s in zip(ranks, signs) if s) for signs in itertools.product([0, 1], repeat=len(d))]
    sums = np.asarray(sums)
    return min(1.0, 2 * min(np.mean(sums <= observed + 1e-9), np.mean(sums >= observed - 1e-9)))


@pytest.mark.parametrize("seed", range(4))
def test_wilcoxon_equals_enumeration_of_every_sign(seed):
    d = np.round(np.random.default_rng(seed).normal(0.1, 0.2, 9), 1)  # rounded: ties and zeros
    assert S.wilcoxon_exact(d).p == pytest.approx(brute_force_p(d))


def test_holm_by_hand():
    assert S.holm([0.01, 0.04, 0.03]).tolist() == pytest.approx([0.03, 0.06, 0.06])
    adjusted = S.holm([0.02, math.nan, 0.5])
    assert adjusted[0] == pytest.approx(0.04) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.5)


def test_smallest_p_and_minimum_detectable_effect_by_hand():
    assert S.smallest_p(8) == pytest.approx(0.0078125) and S.pairs_needed(0.05) == 6
    diffs = [0.01, 0.03, 0.02, 0.05, 0.04, 0.00, 0.02, 0.03]
    sd = np.std(diffs, ddof=1)
    # t tables: t(0.975, 7) = 2.364624, t(0.80, 7) = 0.896029
    assert S.minimum_detectable_effect(diffs, 0.05, 0.8) == pytest.approx((2.364624 + 0.896029) * sd / math.sqrt(8),
                                                                          rel=1e-5)
    assert S.minimum_detectable_effect(diffs[:4], 0.05, 0.8) == math.inf  # 4 pairs: p >= 0.125 always
    assert math.isnan(S.minimum_detectable_effect([0.1], 0.05, 0.8))


def test_a_point_interval_never_excludes_zero():
    assert not S.excludes_zero(0.02, 0.02) and S.degenerate(0.02, 0.02)
    assert S.excludes_zero(0.01, 0.03) and not S.excludes_zero(-0.01, 0.03)
    assert S.percentile_interval([0.9, 1.0, 1.0], 0.95, bounds=(0.0, 1.0))[1] <= 1.0


# --- the profile's primary comparisons ---------------------------------------------------------------------
def test_primary_parsing_and_clear_errors():
    parsed = parse_primary(PRIMARY)
    assert parsed[0].condition == "ddpm_3_mixed@1ratio" and parsed[0].baseline == "none"
    assert parsed[1].metric == "minority_ap" and str(parsed[1]) == PRIMARY[1]
    for bad, why in ((["ddpm vs none minority_ap"], "not of the form"), (["ddpm vs none: viral_ap"], "unknown"),
                     (["ddpm_3_mixed_any_split@1ratio vs none: minority_ap"], "leakage"),
                     ([f"s{i}@1ratio vs none: minority_ap" for i in range(5)], "at most 4"),
                     (["nonsense vs none: minority_ap"], "does not parse"),
                     (["pneumonia-k3/none+augment vs none: minority_ap"], "two designs"),
                     (["none vs none: minority_ap"], "itself")):
        with pytest.raises(ParamError, match=why):
            parse_primary(bad)
    with pytest.raises(ParamError, match="compare.primary"):
        CompareParams(primary=["oops"]).check()


# --- a tiny cv study ---------------------------------------------------------------------------------------
def frames() -> pd.DataFrame:
    """4 viral patients (one per fold) and 8 others, 2 videos x 4 frames each."""
    rows = []
    for patient in range(12):
        label = "viral" if patient < 4 else CLASSES[patient % 3]
        for video in range(2):
            for frame in range(4):
                rows.append({"path": f"{label}/p{patient}_v{video}/{frame}.png", "video_id": f"p{patient}v{video}",
                             "patient_id": f"p{patient}", "label": label,
                             "probe": "linear" if label == "viral" else "convex", "fold": patient % 4})
    return pd.DataFrame(rows)


def predictions(repeat: int, seed: int, boost: float) -> pd.DataFrame:
    """Pooled out-of-fold predictions of one run; `boost` raises the viral probability of viral frames."""
    table = frames()
    rng = np.random.default_rng([repeat, seed])
    logits = rng.normal(size=(len(table), 4)) + 1.0 * np.eye(4)[table["label"].map(CLASSES.index)]
    logits[:, 3] += boost * (table["label"] == "viral").to_numpy()
    prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    table["repeat"], table["seed"] = repeat, seed
    table["pred"] = [CLASSES[i] for i in prob.argmax(axis=1)]
    for i, c in enumerate(CLASSES):
        table[f"prob_{c}"] = prob[:, i]
    table["threshold"] = 0.3 + 0.02 * table["fold"]
    return table


def write_run(out: Path, condition: str, repeat: int, seed: int, boost: float = 0.0, arch: str = "resnet18",
              with_predictions: bool = True, protocol: str = "cv") -> RunKey:
    """A finished run as the classifier writes it (records.RUN_SCHEMA), with made-up predictions."""
    c = Condition.parse(condition, protocol=protocol)
    key = RunKey(METADATA_REFERENCE if c.reference else arch, c, repeat, seed)
    folder = out / "runs" / key.run_id
    folder.mkdir(parents=True, exist_ok=True)
    splits = ["seed_video_r0"] if c.original_replica else ["split"] if protocol == "holdout" else [
        f"cv_r{repeat}_f{f}" for f in range(4)]
    record = {**records.run_identity(key, CLASSES, splits), "fixed_specificity": 0.95,
              "synthetic": {"leakage_ablation": c.leaky} if c.synthetic else None,
              "params": {"train": {"image_size": 64, "epochs": 2}, "runtime": {"precision": "bf16"}}}
    (folder / "metrics.json").write_text(json.dumps(record))
    if with_predictions:
        table = predictions(repeat, seed, boost).assign(draw=-1)
        if protocol == "holdout":
            table = table.assign(fold=-1, threshold=math.nan)
        table[records.prediction_columns(CLASSES)].to_csv(folder / "predictions.csv", index=False)
    return key


CONDITIONS = {"none": 0.0, "weighted_loss": 0.0, "oversampling@1ratio": 0.0, "ddpm_3_mixed@1ratio": 1.5,
              "ddpm_3_mixed_any_split@1ratio": 3.0, "metadata_reference": 0.5, "seed_replica": 0.0,
              "seed_replica_ddpm_seed_3_mixed@1fraction": 2.0, "ddpm_seed_3_mixed@1fraction": 0.5}


def study(tmp_path: Path, repeats: int = 2, seeds: int = 4) -> Path:
    """Every condition x repeat x seed (`weighted_loss` gets the baseline's predictions: zero differences)."""
    out = tmp_path / "out"
    for r, s in itertools.product(range(repeats), range(seeds)):
        for condition, boost in CONDITIONS.items():
            write_run(out, condition, r, s, boost=boost)
    for name, leak in (("ddpm_3_mixed_fold0", False), ("ddpm_3_mixed_any_split", True), ("ddpm_seed_3_mixed", True)):
        (out / "synthetic" / name).mkdir(parents=True)
        (out / "synthetic" / name / "provenance.json").write_text(json.dumps({"leakage_ablation": leak}))
    return out


def params(**kw) -> CompareParams:
    return CompareParams(**{"n_example_pairs": 0, "primary": PRIMARY,
                            "metrics": ["minority_auroc", "minority_ap", "minority_sens_at_spec", "balanced_accuracy"],
                            **kw})


EVALUATION = EvaluationParams(n_boot=200)


@pytest.fixture(scope="module")
def comp(tmp_path_factory) -> C.Comparison:
    return C.compare(study(tmp_path_factory.mktemp("cv")), params(), EVALUATION)


def key_of(condition: str, repeat: int, seed: int) -> str:
    c = Condition.parse(condition)
    return RunKey(METADATA_REFERENCE if c.reference else "resnet18", c, repeat, seed).run_id


def test_results_csv_one_row_per_run_with_identity(comp):
    results = pd.read_csv(comp.out_dir / "results.csv")
    assert len(results) == 9 * 8 and results["run_id"].is_unique
    wanted = {"repeat", "fold", "seed", "protocol", "design", "minority", "minority_auroc", "minority_ap",
              "minority_sens_at_spec"}
    assert wanted <= set(results.columns) and set(results["minority"]) == {"viral"}
    assert set(results["fold"].astype(str)) == {"cv", "-1"} and set(results["protocol"]) == {"cv", "seed_video"}
    assert results.loc[results["protocol"] == "seed_video", "original_replica"].all()
    assert results.loc[results["condition"] == "metadata_reference", "reference"].all()
    assert results.loc[results["condition"] == "oversampling@1ratio", "control"].all()


def test_primary_family_exact_p_and_holm(comp):
    effects = pd.read_csv(comp.folder / "effects.csv")
    assert {"design", "target_class", "condition", "baseline", "metric", "n_pairs", "mean_diff", "ci_low", "ci_high",
            "p", "p_adj", "primary", "leakage"} <= set(effects.columns)
    assert set(effects["design"]) == {"viral"} and set(effects["target_class"]) == {"viral"}
    primary = effects[effects["primary"]]
    assert len(primary) == 2 and (primary["n_pairs"] == 8).all()
    # the boost raises every pair's AP: 8 positive differences -> exact p = 2/2^8; Holm over the 2 primary
    assert primary["p"].tolist() == pytest.approx([2 / 256] * 2)
    assert primary["p_adj"].tolist() == pytest.approx([4 / 256] * 2)
    assert (primary["mean_diff"] > 0).all() and (primary["ci_low"] > 0).all() and (primary["ci_high"] <= 1).all()
    exploratory = effects[~effects["primary"]]
    assert exploratory["p"].isna().all() and exploratory["p_adj"].isna().all()  # no p-values outside the family


def test_leakage_is_never_in_the_family(comp):
    leak = comp.effects[comp.effects["leakage"]]
    assert len(leak) and not leak["primary"].any() and leak["p_adj"].isna().all()
    assert "Leakage ablation" in comp.conclusions


def test_zero_differences_give_a_point_not_an_effect(comp):
    wl = comp.effects[(comp.effects["condition"] == "weighted_loss")]
    assert len(wl) and (wl["mean_diff"] == 0).all() and wl["degenerate"].all() and not wl["ci_excludes_zero"].any()


def test_pairs_name_their_units(comp):
    pairs = pd.read_csv(comp.folder / "pairs.csv")
    assert {"condition", "baseline", "repeat", "seed", "unit_id", "baseline_unit_id"} <= set(pairs.columns)
    ddpm = pairs[(pairs["condition"] == "ddpm_3_mixed@1ratio") & (pairs["baseline"] == "none")]
    assert len(ddpm) == 8
    for _, r in ddpm.iterrows():
        assert r["unit_id"] == key_of("ddpm_3_mixed@1ratio", r["repeat"], r["seed"])
        assert r["baseline_unit_id"] == key_of("none", r["repeat"], r["seed"])
    baselines = set(pairs[pairs["condition"] == "ddpm_3_mixed@1ratio"]["baseline"])
    assert baselines == {"none", "oversampling@1ratio"}  # none+augment is a baseline of the rule, but never ran
    assert "metadata_reference" not in set(pairs["condition"])  # a reference point, paired with nothing


def test_condition_intervals_stay_in_range_and_reference_points(comp):
    s = comp.summary
    finite = s[np.isfinite(s["lo"])]
    assert len(finite) and (finite["lo"] >= 0).all() and (finite["hi"] <= 1).all()
    assert (finite["lo"] <= finite["hi"]).all()
    refs = comp.references.reset_index()
    row = refs[(refs["condition"] == "ddpm_3_mixed@1ratio") & (refs["metric"] == "viral average precision")].iloc[0]
    assert row["metadata reference"] != "n/a" and "oversampling@1ratio" in row["oversampling control"]
    assert row["baseline"].count("[") == 1 and row["baseline"].endswith("(none)")
    assert comp.n_minority_patients == 4 and "4 viral patients" in comp.conclusions


def test_per_patient_view(comp):
    patients = pd.read_csv(comp.folder / "patients.csv")
    ddpm = patients[patients["condition"] == "ddpm_3_mixed@1ratio"]
    assert sorted(ddpm["patient_id"]) == ["p0", "p1", "p2", "p3"] and (ddpm["probe"] == "linear").all()
    assert ((ddpm["median_rank_pct"] >= 0) & (ddpm["median_rank_pct"] <= 100)).all()
    signs = comp.patient_signs
    up = signs[(signs["condition"] == "ddpm_3_mixed@1ratio") & (signs["baseline"] == "none")
               & signs["measure"].str.startswith("mean")]
    assert up["same_sign_all_patients"].all() and (up["up"] == 4).all()  # the boost lifts every patient
    assert "the same sign for every patient" in comp.conclusions


def test_conclusions_read_primary_first_then_exploratory(comp):
    text = comp.conclusions
    assert text.index("Primary comparisons") < text.index("Exploratory effects") < text.index("Leakage ablation")
    assert comparison_label("ddpm_3_mixed@1ratio", "none") in text and "Holm-adjusted p = 0.0156" in text
    assert "ddpm_3_mixed@1ratio" not in text.split("**What was compared")[0]  # the prose uses display labels
    assert "no p-values" in text and "minimum detectable effect" in text
    assert "fd." not in text and "(real reference) =" not in text  # no raw audit keys


def test_missing_primary_and_failed_runs_are_listed(tmp_path):
    out = study(tmp_path, repeats=1, seeds=2)
    (out / "logs").mkdir()
    (out / "logs" / "runner_summary.json").write_text(json.dumps({"runs": [
        {"run_id": "02_resnet18-none-x", "stage": "02", "status": "failed", "message": "CUDA out of memory"},
        {"run_id": "03_resnet18-ti-x", "stage": "03", "status": "blocked", "message": "needs 04"},
        *({"run_id": f"02_{key_of(c, 0, s)}", "stage": "02", "status": "ran"} for c in CONDITIONS for s in (0, 1))]}))
    comp = C.compare(out, params(primary=[*PRIMARY, "ti_txt2img@1ratio vs none: minority_auroc"]), EVALUATION)
    assert len(comp.missing) == 2 and "CUDA out of memory" in comp.conclusions
    assert any("ti_txt2img@1ratio" in m and "no finished run" in m for m in comp.missing_primary)
    assert (comp.effects[comp.effects["primary"]]["n_pairs"] == 2).all()
    assert "p cannot go below" in comp.conclusions or "no result could reach" in comp.conclusions


def test_the_comparison_reads_only_the_current_plan_s_runs(tmp_path):
    """A run left over from an earlier plan (a condition switched off) or made by hand is not compared."""
    out = study(tmp_path, repeats=1, seeds=2)
    planned = [f"02_{key_of(c, 0, s)}" for c in ("none", "ddpm_3_mixed@1ratio") for s in (0, 1)]
    (out / "logs").mkdir()
    (out / "logs" / "runner_summary.json").write_text(json.dumps({"runs": [
        {"run_id": r, "stage": "02", "status": "cached"} for r in planned]}))
    comp = C.compare(out, params(primary=[]), EVALUATION)
    assert set(comp.runs["condition"]) == {"none", "ddpm_3_mixed@1ratio"} and len(comp.runs) == 4


def test_a_run_of_another_record_version_or_without_predictions_is_left_out_and_listed(tmp_path):
    out = tmp_path / "out"
    kept = write_run(out, "none", 0, 0)
    lost = write_run(out, "none", 0, 1, with_predictions=False)
    old = write_run(out, "none", 0, 2)
    record = json.loads((out / "runs" / old.run_id / "metrics.json").read_text())
    record.pop("schema")
    (out / "runs" / old.run_id / "metrics.json").write_text(json.dumps(record))
    comp = C.compare(out, params(primary=[]), EVALUATION)
    assert comp.runs["run_id"].tolist() == [kept.run_id]
    assert any(lost.run_id in p and "did not finish" in p for p in comp.problems)
    assert any(old.run_id in p and "another version" in p for p in comp.problems)


def test_no_finished_run_still_writes_conclusions(tmp_path):
    comp = C.compare(tmp_path / "empty", params(), EVALUATION)
    assert "No classifier run finished" in (comp.folder / "conclusions.md").read_text()


def test_figures_are_written(comp):
    from lus_utils.compare import figures

    figures.forest_plot(comp.effects, 0.95, comp.figures)
    figures.patient_plot(comp.patients, "viral", comp.figures)
    figures.answer_plot(comp)
    assert (comp.figures / "forest.png").stat().st_size > 5000 and (comp.figures / "patients.png").is_file()
    assert (comp.figures / "answer.png").stat().st_size > 5000


def test_holdout_runs_compare(tmp_path):
    """Hold-out runs: one split (fold -1), no validation threshold (NaN sensitivity, never 0)."""
    out = tmp_path / "out"
    for seed in range(3):
        write_run(out, "none", 0, seed, protocol="holdout")
        write_run(out, "weighted_loss", 0, seed, boost=1.0, protocol="holdout")
    comp = C.compare(out, params(primary=["weighted_loss vs none: minority_auroc"]), EVALUATION)
    assert set(comp.runs["protocol"]) == {"holdout"} and set(comp.runs["fold"]) == {-1}
    assert comp.runs["minority_sens_at_spec"].isna().all()
    primary = comp.effects[comp.effects["primary"]].iloc[0]
    assert primary["n_pairs"] == 3 and primary["p"] == pytest.approx(0.25)  # 3 positive pairs: 2/2^3
    assert primary["mde"] == math.inf and "no result could reach" in comp.conclusions


def write_audit(out: Path, name: str, reached, extra: dict | None = None) -> None:
    from lus_utils.vocabulary import SetRef

    folder = out / "synthetic" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "audit.json").write_text(json.dumps({**records.audit_identity(SetRef.parse(name)),
                                                   "reached_realism": reached, **(extra or {})}))


def test_realism_note_reads_each_folds_audit(tmp_path):
    from lus_utils.compare.audit_tables import load_audits
    from lus_utils.compare.conclusions import realism_note
    from types import SimpleNamespace

    for name, reached in (("ddpm_3_mixed_fold0", True), ("ddpm_3_mixed_fold1", False), ("ddpm_3_mixed_fold2", None),
                          ("ddpm_train_all_fold0", True)):
        write_audit(tmp_path, name, reached)
    comp = SimpleNamespace(audits=load_audits(tmp_path), out_dir=tmp_path)
    assert realism_note(comp, "none") == ""
    note = realism_note(comp, "ddpm_3_mixed@1ratio")
    assert "only 1 of 2 folds" in note and "1 fold not measured" in note
    assert "reached realism in 1 of 1 fold " in realism_note(comp, "ddpm_train_all@1ratio")


def test_the_audit_of_every_fold_joins_its_condition(tmp_path):
    """Under cv a family is one set per fold: the table beside each condition aggregates them (it used to join
    the family name with the fold folders' names and find nothing)."""
    out = study(tmp_path, repeats=1, seeds=2)
    for fold in range(4):
        write_audit(out, f"ddpm_3_mixed_fold{fold}", fold != 3,
                    {"realism": {"kid": {"synthetic_vs_holdout": {"mean": 0.01 * fold}}}})
    comp = C.compare(out, params(primary=[]), EVALUATION)
    family = comp.synthetic[comp.synthetic["family"] == "ddpm_3_mixed"]
    assert family["condition"].tolist() == ["ddpm_3_mixed@1ratio"]  # not "(no classifier run)"
    row = family.iloc[0]
    assert row["sets"] == 4 and row["audited"] == 4 and row["reached realism"] == "3 of 4"
    assert row["realism.kid.synthetic_vs_holdout.mean"] == pytest.approx(0.015)
    assert "3 of 4" in comp.conclusions


def test_missing_runs_match_run_folders_without_the_stage_prefix(tmp_path):
    from lus_utils.compare.runs import RUNNER_SUMMARY, missing_runs

    summary = tmp_path / RUNNER_SUMMARY
    summary.parent.mkdir(parents=True, exist_ok=True)
    summary.write_text(json.dumps({"runs": [
        {"run_id": "02_resnet18-none-seed0-cv-r0", "stage": "02", "status": "ran"},
        {"run_id": "02_resnet18-none-seed1-cv-r0", "stage": "02", "status": "cached"},
        {"run_id": "03_resnet18-weighted_loss-seed0-cv-r0", "stage": "03", "status": "failed", "message": "boom"}]}))
    runs = pd.DataFrame({"run_id": ["resnet18-none-seed0-cv-r0"]})  # runs/<id> folders carry no stage prefix
    missing = missing_runs(tmp_path, runs)
    assert missing.set_index("run_id")["status"].to_dict() == {
        "02_resnet18-none-seed1-cv-r0": "no metrics.json", "03_resnet18-weighted_loss-seed0-cv-r0": "failed"}


def test_the_original_replica_pairs_with_itself_stands_apart_and_leads_the_ladder(comp):
    replica = comp.pairs["condition"].map(lambda c: Condition.parse(c).original_replica)
    pairs = comp.pairs[comp.pairs["condition"] == "seed_replica_ddpm_seed_3_mixed@1fraction"]
    assert set(pairs["baseline"]) == {"seed_replica"}
    assert all(u == key_of("seed_replica", r, s) for u, r, s in zip(pairs["baseline_unit_id"], pairs["repeat"],
                                                                   pairs["seed"]))
    assert not comp.pairs.loc[replica, "baseline"].eq("none").any()
    rows = comp.effects[comp.effects["condition"].map(lambda c: Condition.parse(c).original_replica)]
    assert len(rows) and not rows["primary"].any()
    assert any("replica" in name for name in comp.tables)
    valid = next(t for name, t in comp.tables.items() if name == "resnet18")
    assert not any(str(c).startswith("seed_replica") for c in valid.index)
    ladder = comp.original_claim
    ap = ladder[ladder["metric"] == "viral average precision"]
    assert ap["step"].tolist() == [1, 2, 2, 3]  # its recipe, two leakage ablations, the primary comparison vs none
    auroc = ladder[ladder["metric"] == "viral AUROC"]
    assert auroc["step"].tolist() == [1, 2, 2, 3]  # every headline metric of the primary pair, not only its metric
    assert ap.iloc[0]["difference"].startswith("+")
    assert comparison_label("ddpm_seed_3_mixed@1fraction", "none") in set(ap["comparison"])
    assert ap.iloc[0]["comparison"] == comparison_label("seed_replica_ddpm_seed_3_mixed@1fraction", "seed_replica")
    assert bool(ap.iloc[0]["excludes zero"])  # the boost written into this fixture is found
    assert "correction by correction" in comp.conclusions
    assert "Leakage ablation" in comp.conclusions and "seed_replica_ddpm" not in comp.conclusions.split(
        "**Leakage ablation**")[1]
    refs = comp.references.reset_index()
    replica_ref = refs[refs["condition"] == "seed_replica_ddpm_seed_3_mixed@1fraction"].iloc[0]
    assert replica_ref["baseline"].endswith("(seed_replica)")
    assert "original study ran none" in replica_ref["oversampling control"]
    assert (comp.folder / "original_claim.csv").is_file()
    assert not comp.study_runs["original_replica"].any() and len(comp.study_runs) == len(comp.runs) - 16


def test_the_original_replica_is_never_primary():
    with pytest.raises(ParamError, match="replica is never a primary"):
        parse_primary(["seed_replica_ddpm_seed_3_mixed@1fraction vs seed_replica: minority_ap"])


def test_the_original_split_leak_is_counted_from_frames_csv(tmp_path):
    from lus_utils.compare import original_claim

    assert original_claim.split_leak(tmp_path, "viral") == ""
    table = frames().assign(seed_video_r0=lambda d: ["train" if v.endswith("v0") else "test" for v in d.video_id])
    (tmp_path / "data").mkdir()
    table.to_csv(tmp_path / "data" / "frames.csv", index=False)
    sentence = original_claim.split_leak(tmp_path, "viral")
    assert "repeat 0: 12 of 12 patients, 4 viral (p0, p1, p2, p3)" in sentence


def test_the_audit_table_shows_each_family_s_structure_verdict_beside_the_second_opinion(tmp_path):
    from lus_utils.compare.audit_tables import audit_display, load_audits

    def structure(p: float, density: float) -> dict:
        pair = {"kid": {"mean": 1.0}, "density": {"mean": density}, "coverage": {"mean": 0.5}}
        return {"realism": {"synthetic_vs_holdout": {"kid": {"mean": 0.01}},
                            "structure": {"farther_than_reference": {"p_value": p}, "synthetic_vs_holdout": pair,
                                          "real_train_vs_holdout": {**pair, "density": {"mean": 1.0}}}}}

    for name, reached, second, p, density in (("ddpm_class_conditional_r0_fold0", True, True, 0.5, 0.8),
                                              ("ddpm_class_conditional_r0_fold1", False, True, 0.01, 0.4),
                                              ("ddpm_class_conditional_r0_fold2", True, False, 0.3, 0.6),
                                              ("ddpm_3_mixed_fold0", False, True, 0.001, 0.1)):
        write_audit(tmp_path, name, reached, {"second_opinion_reached_realism": second, **structure(p, density)})
    table = audit_display(load_audits(tmp_path)).set_index("family")
    conditional = table.loc["class-conditional DDPM"]
    assert (conditional["sets"], conditional["reached realism"], conditional["second opinion"]) == (3, "2 of 3", "2 of 3")
    assert conditional["structure p"] == 0.3  # the median over its sets
    assert conditional["density"] == pytest.approx(0.6) and conditional["density real"] == 1.0
    assert table.loc["DDPM, 3 frames", "reached realism"] == "0 of 1"
    assert {"kept share", "coverage", "coverage real", "leakage ablation"} <= set(table.columns)
