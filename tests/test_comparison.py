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

from lus_utils.compare import comparison as C
from lus_utils.compare import statistics as S
from lus_utils.params import CompareParams, ParamError, parse_primary

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
                     ([f"c{i} vs none: minority_ap" for i in range(5)], "at most 4"),
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


def write_run(out: Path, run_id: str, condition: str, repeat: int, seed: int, boost: float = 0.0,
              synthetic_set: str = "", arch: str = "resnet18", with_predictions: bool = True,
              protocol: str = "cv") -> None:
    folder = out / "runs" / run_id
    folder.mkdir(parents=True, exist_ok=True)
    seed_replica = protocol == "seed_video"
    record = {"run_id": run_id, "condition": condition, "classes": CLASSES, "protocol": protocol, "repeat": repeat,
              "seed": seed, "folds": [-1] if seed_replica else [0, 1, 2, 3],
              "params": {"run": {"arch": arch, "strategy": "weighted_loss" if condition == "weighted_loss" else "none",
                                 "seed": seed, "repeat": repeat, "synthetic_set": synthetic_set,
                                 "synthetic_amount": 1.0, "protocol": protocol,
                                 "checkpoint": "last" if seed_replica else "best",
                                 "oversample_amount": 1.0 if "oversampl" in condition else 0},
                         "train": {"image_size": 64, "epochs": 2, "augment": False,
                                   "synthetic_amount_unit": "fraction" if seed_replica else "ratio"}}}
    (folder / "metrics.json").write_text(json.dumps(record))
    if with_predictions:
        predictions(repeat, seed, boost).to_csv(folder / "predictions.csv", index=False)


def study(tmp_path: Path, repeats: int = 2, seeds: int = 4) -> Path:
    out = tmp_path / "out"
    for r, s in itertools.product(range(repeats), range(seeds)):
        unit = f"r{r}-s{s}"
        write_run(out, f"none-{unit}", "none", r, s)
        write_run(out, f"wl-{unit}", "weighted_loss", r, s)  # same predictions as the baseline: zero differences
        write_run(out, f"over-{unit}", "oversampling@1ratio", r, s)
        write_run(out, f"ddpm-{unit}", "ddpm_3_mixed@1ratio", r, s, boost=1.5, synthetic_set="ddpm_3_mixed")
        write_run(out, f"leak-{unit}", "ddpm_3_mixed_any_split@1ratio", r, s, boost=3.0,
                  synthetic_set="ddpm_3_mixed_any_split")
        write_run(out, f"meta-{unit}", "metadata_reference", r, s, boost=0.5, arch="metadata")
        write_run(out, f"seed-{unit}", "seed_replica", r, s, protocol="seed_video")
        write_run(out, f"seedsyn-{unit}", "seed_replica_ddpm_seed_3_mixed@1fraction", r, s, boost=2.0,
                  synthetic_set="ddpm_seed_3_mixed", protocol="seed_video")
        write_run(out, f"seedcv-{unit}", "ddpm_seed_3_mixed@1fraction", r, s, boost=0.5, synthetic_set="ddpm_seed_3_mixed")
    for name, leak in (("ddpm_3_mixed", False), ("ddpm_3_mixed_any_split", True), ("ddpm_seed_3_mixed", True)):
        (out / "synthetic" / name).mkdir(parents=True)
        (out / "synthetic" / name / "provenance.json").write_text(json.dumps({"leakage_ablation": leak}))
    return out


def params(**kw) -> CompareParams:
    return CompareParams(**{"n_boot": 200, "n_example_pairs": 0, "primary": PRIMARY,
                            "metrics": ["minority_auroc", "minority_ap", "minority_sens_at_spec", "balanced_accuracy"],
                            **kw})


@pytest.fixture(scope="module")
def comp(tmp_path_factory) -> C.Comparison:
    return C.compare(study(tmp_path_factory.mktemp("cv")), params())


def test_results_csv_one_row_per_run_with_identity(comp):
    results = pd.read_csv(comp.out_dir / "results.csv")
    assert len(results) == 9 * 8 and results["run_id"].is_unique
    wanted = {"repeat", "fold", "seed", "protocol", "viral_auroc", "viral_ap", "viral_sens_at_spec"}
    assert wanted <= set(results.columns)
    assert set(results["fold"].astype(str)) == {"cv", "-1"} and set(results["protocol"]) == {"cv", "seed_video"}
    assert results.loc[results["protocol"] == "seed_video", "seed_replica"].all()
    assert results.loc[results["condition"] == "metadata_reference", "reference"].all()
    assert results.loc[results["condition"] == "oversampling@1ratio", "control"].all()


def test_primary_family_exact_p_and_holm(comp):
    effects = pd.read_csv(comp.folder / "effects.csv")
    assert {"condition", "baseline", "metric", "n_pairs", "mean_diff", "ci_low", "ci_high", "p", "p_adj", "primary",
            "leakage"} <= set(effects.columns)
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
    assert {"condition", "baseline", "repeat", "seed", "run_id", "baseline_run_id"} <= set(pairs.columns)
    ddpm = pairs[(pairs["condition"] == "ddpm_3_mixed@1ratio") & (pairs["baseline"] == "none")]
    assert len(ddpm) == 8
    for _, r in ddpm.iterrows():
        unit = f"r{r['repeat']}-s{r['seed']}"
        assert r["run_id"] == f"ddpm-{unit}" and r["baseline_run_id"] == f"none-{unit}"
    baselines = set(pairs[pairs["condition"] == "ddpm_3_mixed@1ratio"]["baseline"])
    assert {"none", "oversampling@1ratio", "none+augment"} <= baselines
    assert "metadata_reference" not in set(pairs["condition"])  # a reference point, paired with nothing


def test_condition_intervals_stay_in_range_and_reference_points(comp):
    s = comp.summary
    finite = s[np.isfinite(s["lo"])]
    assert len(finite) and (finite["lo"] >= 0).all() and (finite["hi"] <= 1).all()
    assert (finite["lo"] <= finite["hi"]).all()
    refs = comp.references.reset_index()
    row = refs[(refs["condition"] == "ddpm_3_mixed@1ratio") & refs["metric"].str.contains("AP")].iloc[0]
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
    assert "ddpm_3_mixed@1ratio vs none" in text and "Holm-adjusted p = 0.0156" in text
    assert "no p-values" in text and "minimum detectable effect" in text
    assert "fd." not in text and "(real reference) =" not in text  # no raw audit keys


def test_missing_primary_and_failed_runs_are_listed(tmp_path):
    out = study(tmp_path, repeats=1, seeds=2)
    (out / "logs").mkdir()
    (out / "logs" / "runner_summary.json").write_text(json.dumps({"runs": [
        {"run_id": "resnet18-none-x", "stage": "02", "status": "failed", "message": "CUDA out of memory"},
        {"run_id": "resnet18-ti-x", "stage": "03", "status": "blocked", "message": "needs 04"}]}))
    comp = C.compare(out, params(primary=[*PRIMARY, "ti_txt2img@1ratio vs none: minority_auroc"]))
    assert len(comp.missing) == 2 and "CUDA out of memory" in comp.conclusions
    assert any("ti_txt2img@1ratio" in m and "no finished run" in m for m in comp.missing_primary)
    assert (comp.effects[comp.effects["primary"]]["n_pairs"] == 2).all()
    assert "p cannot go below" in comp.conclusions or "no result could reach" in comp.conclusions


def test_runs_without_predictions_fall_back_to_metrics_json(tmp_path):
    out = tmp_path / "out"
    write_run(out, "none-a", "none", 0, 0, with_predictions=False)
    record = json.loads((out / "runs" / "none-a" / "metrics.json").read_text())
    record.update(minority_ap=0.4, per_class={"viral": {"auroc": 0.7}})
    (out / "runs" / "none-a" / "metrics.json").write_text(json.dumps(record))
    comp = C.compare(out, params(primary=[]))
    row = comp.runs.iloc[0]
    assert row["minority_ap"] == 0.4 and row["minority_auroc"] == 0.7 and not row["has_predictions"]
    assert math.isnan(comp.summary[comp.summary["metric"] == "minority_ap"]["lo"].iloc[0])


def test_no_finished_run_still_writes_conclusions(tmp_path):
    comp = C.compare(tmp_path / "empty", params())
    assert "No classifier run finished" in (comp.folder / "conclusions.md").read_text()


def test_figures_are_written(comp):
    from lus_utils.compare import figures

    figures.forest_plot(comp.effects, "viral", 0.95, comp.figures)
    figures.patient_plot(comp.patients, "viral", comp.figures)
    assert (comp.figures / "forest.png").stat().st_size > 5000 and (comp.figures / "patients.png").is_file()


def test_holdout_runs_still_compare(tmp_path):
    """Today's hold-out runs: no protocol/repeat keys, fold -1, predictions without a threshold column."""
    out = tmp_path / "out"
    for seed in range(3):
        for run_id, condition, boost in ((f"none-{seed}", "none", 0.0), (f"wl-{seed}", "weighted_loss", 1.0)):
            write_run(out, run_id, condition, 0, seed, boost=boost)
            record = json.loads((out / "runs" / run_id / "metrics.json").read_text())
            for key in ("protocol", "repeat", "folds"):
                record.pop(key)
            record["params"]["run"].update(fold=-1)
            record["params"]["run"].pop("protocol")
            (out / "runs" / run_id / "metrics.json").write_text(json.dumps(record))
            table = pd.read_csv(out / "runs" / run_id / "predictions.csv").drop(columns=["threshold"])
            table.to_csv(out / "runs" / run_id / "predictions.csv", index=False)
    comp = C.compare(out, params(primary=["weighted_loss vs none: minority_auroc"]))
    assert set(comp.runs["protocol"]) == {"holdout"} and set(comp.runs["fold"]) == {-1}
    assert comp.runs["minority_sens_at_spec"].isna().all()  # no validation threshold: NaN, never 0
    primary = comp.effects[comp.effects["primary"]].iloc[0]
    assert primary["n_pairs"] == 3 and primary["p"] == pytest.approx(0.25)  # 3 positive pairs: 2/2^3
    assert primary["mde"] == math.inf and "no result could reach" in comp.conclusions


def test_realism_note_reads_each_folds_audit(tmp_path):
    from types import SimpleNamespace

    from lus_utils.compare.conclusions import realism_note

    for name, reached in (("ddpm_3_mixed_fold0", True), ("ddpm_3_mixed_fold1", False), ("ddpm_3_mixed_fold2", None),
                          ("ddpm_train_all_fold0", True)):
        (tmp_path / "synthetic" / name).mkdir(parents=True)
        (tmp_path / "synthetic" / name / "audit.json").write_text(json.dumps({"reached_realism": reached}))
    runs = pd.DataFrame({"condition": ["ddpm_3_mixed@1ratio", "none", "ddpm_train_all@1ratio"],
                         "synthetic_set": ["ddpm_3_mixed", "", "ddpm_train_all"]})
    comp = SimpleNamespace(runs=runs, out_dir=tmp_path)
    assert realism_note(comp, "none") == ""
    note = realism_note(comp, "ddpm_3_mixed@1ratio")
    assert "only 1 of 2 folds" in note and "1 fold not measured" in note
    assert "reached realism in 1 of 1 fold " in realism_note(comp, "ddpm_train_all@1ratio")


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


def test_seed_replica_pairs_with_itself_stands_apart_and_leads_the_ladder(comp):
    pairs = comp.pairs[comp.pairs["condition"] == "seed_replica_ddpm_seed_3_mixed@1fraction"]
    assert set(pairs["baseline"]) == {"seed_replica"} and pairs["baseline_run_id"].str.startswith("seed-").all()
    assert not comp.pairs["baseline"].eq("none").loc[comp.pairs["condition"].str.startswith("seed_replica")].any()
    seed_rows = comp.effects[comp.effects["condition"].str.startswith("seed_replica")]
    assert len(seed_rows) and not seed_rows["primary"].any()
    assert any("seed replica" in name for name in comp.tables)
    valid = next(t for name, t in comp.tables.items() if name == "resnet18")
    assert not any(str(c).startswith("seed_replica") for c in valid.index)
    ladder = comp.seed_claim
    ap = ladder[ladder["metric"] == "viral AP"]
    assert ap["step"].tolist() == [1, 2, 2, 3]  # seed recipe, two leakage ablations, the primary comparison vs none
    auroc = ladder[ladder["metric"] == "viral AUROC"]
    assert auroc["step"].tolist() == [1, 2, 2, 3]  # every headline metric of the primary pair, not only its metric
    assert ap.iloc[0]["difference"].startswith("+")
    assert "ddpm_seed_3_mixed@1fraction vs none" in set(ap["comparison"])
    assert ap.iloc[0]["comparison"] == "seed_replica_ddpm_seed_3_mixed@1fraction vs seed_replica"
    assert bool(ap.iloc[0]["excludes zero"])  # the boost written into this fixture is found
    assert "correction by correction" in comp.conclusions
    assert "Leakage ablation" in comp.conclusions and "seed_replica_ddpm" not in comp.conclusions.split(
        "**Leakage ablation**")[1]
    refs = comp.references.reset_index()
    seed_ref = refs[refs["condition"] == "seed_replica_ddpm_seed_3_mixed@1fraction"].iloc[0]
    assert seed_ref["baseline"].endswith("(seed_replica)") and "seed ran none" in seed_ref["oversampling control"]
    assert (comp.folder / "seed_claim.csv").is_file()
    assert not comp.study_runs["seed_replica"].any() and len(comp.study_runs) == len(comp.runs) - 16


def test_seed_replica_is_never_primary():
    with pytest.raises(ParamError, match="seed replica"):
        parse_primary(["seed_replica_ddpm_seed_3_mixed@1fraction vs seed_replica: minority_ap"])


def test_seed_split_leak_is_counted_from_frames_csv(tmp_path):
    from lus_utils.compare import seed_claim

    assert seed_claim.split_leak(tmp_path, "viral") == ""
    table = frames().assign(seed_video_r0=lambda d: ["train" if v.endswith("v0") else "test" for v in d.video_id])
    (tmp_path / "data").mkdir()
    table.to_csv(tmp_path / "data" / "frames.csv", index=False)
    sentence = seed_claim.split_leak(tmp_path, "viral")
    assert "repeat 0: 12 of 12 patients, 4 viral (p0, p1, p2, p3)" in sentence
