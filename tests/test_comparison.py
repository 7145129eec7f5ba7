"""The final comparison's statistics: intervals and tests against scipy, matching, Holm, conclusions."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lus_utils.compare import comparison as C
from lus_utils.params import CompareParams

CLASSES = ["covid", "pneumonia", "regular", "viral"]


# --- fake study output folders ------------------------------------------------------------------------------
def fake_record(run_id: str, arch: str = "resnet18", strategy: str = "none", seed: int = 0, fold: int = -1,
                synthetic_set: str = "", amount: float = 1.0, augment: bool = False, image_size: int = 64,
                score: float = 0.5, viral_auroc: float | None = 0.8, condition: str | None = None) -> dict:
    """A metrics.json shaped like training.run_classifier writes it (params nested as run/train)."""
    per_class = {c: {"precision": score, "recall": score, "f1": score, "specificity": 0.9, "auroc": 0.7,
                     "ap": 0.6, "support": 10} for c in CLASSES}
    per_class["viral"].update(recall=score, f1=score - 0.1, auroc=viral_auroc, ap=None if viral_auroc is None else score)
    if condition is None:
        condition = (f"{synthetic_set}@{amount:g}ratio" + (f"+{strategy}" if strategy != "none" else "")
                     if synthetic_set else strategy) + ("+augment" if augment else "")
    return {
        "run_id": run_id, "condition": condition, "classes": CLASSES,
        "accuracy": score + 0.1, "balanced_accuracy": score, "macro_f1": score, "weighted_f1": score + 0.05,
        "per_class": per_class,
        "video": {"accuracy": score + 0.2, "balanced_accuracy": score, "macro_f1": score,
                  "per_class": {"viral": {"recall": None}}},
        "n_train": {"covid": 100, "pneumonia": 80, "regular": 90, "viral": 19}, "n_val": {"viral": 5},
        "n_test": {"viral": 10}, "n_synthetic": 19 if synthetic_set else 0,
        "params": {"run": {"arch": arch, "strategy": strategy, "seed": seed, "fold": fold,
                           "synthetic_set": synthetic_set, "synthetic_amount": amount, "frames_csv": ""},
                   "train": {"image_size": image_size, "epochs": 2, "augment": augment, "num_threads": 2,
                             "synthetic_amount_unit": "ratio", "n_boot": 0, "device": "auto"}},
    }


def write_run(out: Path, record: dict) -> None:
    folder = out / "runs" / record["run_id"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(record))


def write_set(out: Path, name: str, leakage: bool = False, audit: dict | None = None, n: int = 3) -> None:
    """A synthetic set folder with tiny images, nearest training frames, provenance and an audit."""
    import cv2

    folder = out / "synthetic" / name
    (folder / "images").mkdir(parents=True, exist_ok=True)
    frames = out / "data" / "frames" / "viral"
    frames.mkdir(parents=True, exist_ok=True)
    rows = []
    rng = np.random.default_rng(len(name))
    for i in range(n):
        cv2.imwrite(str(folder / "images" / f"{i:05d}.png"), rng.integers(0, 255, (16, 16), dtype=np.uint8))
        cv2.imwrite(str(frames / f"{name}_{i}.png"), rng.integers(0, 255, (16, 16), dtype=np.uint8))
        rows.append({"path": f"images/{i:05d}.png", "label": "viral", "passed_gate": i != 0,
                     "nearest_train_path": f"frames/viral/{name}_{i}.png", "nearest_train_similarity": 0.5 + i / 10})
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    (folder / "provenance.json").write_text(json.dumps({"leakage_ablation": leakage, "training_frames": []}))
    if audit is not None:
        (folder / "audit.json").write_text(json.dumps(audit))


# Shaped like synthetic_audit.audit_set's audit.json (the parts the comparison reads, and some it must skip).
AUDIT = {"n_images": 3, "n_kept": 2, "rejection_rate": 1 / 3, "leakage_ablation": False,
         "memorization": {"all_train": {"n": 2, "share_memorized": 0.25, "values": {"correlation": [0.5, 0.6]},
                                        "correlation": {"median": 0.55, "share_above": 0.0}},
                          "generator_training_frames": {"n": 2, "share_memorized": 0.5}},
         "real_reference": {"holdout_minority_vs_minority_train": {"share_memorized": 0.9}},
         "realism": {"feature_space": "pixels", "fd": {"synthetic_vs_minority_holdout": 12.5},
                     "kid": {"synthetic_vs_minority_holdout": {"mean": 0.01, "std": 0.002, "n_subsets": 10,
                                                               "subset_size": 3}}},
         "params": {"audit_size": 64}, "note": "text is ignored"}


def study(tmp_path: Path, n_seeds: int = 6, effect: float = 0.1, noise: float = 0.01) -> Path:
    """Baselines and a DDPM condition (plus the leakage ablation) over n_seeds seeds."""
    out = tmp_path / "out"
    rng = np.random.default_rng(0)
    for seed in range(n_seeds):
        base = 0.5 + 0.02 * seed
        write_run(out, fake_record(f"none-s{seed}", seed=seed, score=base))
        write_run(out, fake_record(f"ddpm-s{seed}", seed=seed, synthetic_set="ddpm_3_mixed",
                                   score=base + effect + noise * rng.standard_normal()))
        write_run(out, fake_record(f"leak-s{seed}", seed=seed, synthetic_set="ddpm_3_mixed_any_split",
                                   score=base + 0.2))
    write_set(out, "ddpm_3_mixed", audit=AUDIT)
    write_set(out, "ddpm_3_mixed_any_split", leakage=True, audit={"memorization": {"all_train": {"share_memorized": 0.5}}})
    return out


def params(**kw) -> CompareParams:
    return CompareParams(**{"n_boot": 500, "n_example_pairs": 2, **kw})


# --- intervals and tests ------------------------------------------------------------------------------------
def test_t_interval_matches_scipy():
    x = [0.51, 0.62, 0.7, 0.66, 0.58]
    mean, lo, hi, n = C.mean_ci(x, 0.95, "t")
    expected = stats.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
    assert n == 5 and mean == pytest.approx(np.mean(x))
    assert (lo, hi) == pytest.approx(expected)
    assert C.mean_ci(x, 0.9, "t")[2] < hi  # a lower level gives a narrower interval


def test_interval_drops_nulls_and_needs_two_values():
    mean, lo, hi, n = C.mean_ci([0.4, None, float("nan"), 0.6], 0.95, "t")
    assert n == 2 and mean == pytest.approx(0.5) and lo < 0.5 < hi
    assert C.mean_ci([0.4], 0.95, "t")[1:] == (pytest.approx(math.nan, nan_ok=True),) * 2 + (1,)
    assert C.mean_ci([], 0.95, "t")[3] == 0


def test_bootstrap_interval_is_seeded_and_brackets_the_mean():
    x = [0.1, 0.3, 0.2, 0.5, 0.4, 0.35]
    a = C.mean_ci(x, 0.95, "bootstrap", n_boot=2000, seed=1)
    assert a == C.mean_ci(x, 0.95, "bootstrap", n_boot=2000, seed=1)
    assert a[1] < np.mean(x) < a[2] and min(x) <= a[1] and a[2] <= max(x)


def test_wilcoxon_matches_scipy_and_states_its_floor():
    d = [0.05, -0.02, 0.08, 0.11, 0.03, 0.07, -0.01, 0.09]
    p, note = C.paired_test(d, "wilcoxon")
    assert p == pytest.approx(stats.wilcoxon(d).pvalue) and note == ""
    p5, note5 = C.paired_test([0.1, 0.2, 0.3, 0.4, 0.5], "wilcoxon")
    assert p5 == pytest.approx(0.0625) and "cannot reach p < 0.05" in note5
    assert C.min_wilcoxon_p(6) == pytest.approx(0.03125)
    assert C.paired_test([0.0, 0.0, 0.0], "wilcoxon") == (1.0, "all differences are zero")
    assert math.isnan(C.paired_test([0.1], "wilcoxon")[0])


def test_paired_bootstrap_test():
    clear = [0.1, 0.12, 0.09, 0.11, 0.1, 0.13, 0.1, 0.12]
    p, _ = C.paired_test(clear, "bootstrap", n_boot=999, seed=0)
    assert p == pytest.approx(1 / 1000)
    p_null, _ = C.paired_test([0.1, -0.1, 0.05, -0.05, 0.02, -0.02], "bootstrap", n_boot=999, seed=0)
    assert p_null > 0.5
    assert "unreliable" in C.paired_test([0.1, 0.2, 0.3], "bootstrap", n_boot=200)[1]


def test_holm_by_hand():
    p = [0.01, 0.04, 0.03, 0.005, float("nan")]
    adjusted = C.holm(p)
    # m = 4 valid tests: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, max(0.04*1, 0.06) = 0.06
    assert adjusted[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert math.isnan(adjusted[4])
    assert C.adjust([0.3, 0.6], "holm") == pytest.approx([0.6, 0.6])
    assert C.adjust([0.3, 0.6], "bonferroni") == pytest.approx([0.6, 1.0])


# --- runs, matching ---------------------------------------------------------------------------------------
def test_run_rows_keep_nulls_as_nan(tmp_path):
    out = tmp_path / "out"
    write_run(out, fake_record("r0", viral_auroc=None))
    runs, problems = C.load_runs(out, "viral")
    row = runs.iloc[0]
    assert math.isnan(row["viral_auroc"]) and math.isnan(row["viral_ap"]) and math.isnan(row["video_viral_recall"])
    assert row["viral_recall"] == 0.5 and row["n_train"] == 289 and row["n_train_viral"] == 19
    (out / "runs" / "broken").mkdir()
    (out / "runs" / "broken" / "metrics.json").write_text("{not json")
    assert "unreadable" in C.load_runs(out, "viral")[1][0]


def test_matching_of_strategies_augmentation_and_synthetic_runs(tmp_path):
    out = tmp_path / "out"
    for seed in (0, 1):
        write_run(out, fake_record(f"none-{seed}", seed=seed))
        write_run(out, fake_record(f"wl-{seed}", strategy="weighted_loss", seed=seed))
        write_run(out, fake_record(f"ddpm-{seed}", synthetic_set="ddpm_3_mixed", seed=seed))
        write_run(out, fake_record(f"ddpm-wl-{seed}", strategy="weighted_loss", synthetic_set="ddpm_3_mixed", seed=seed))
    write_run(out, fake_record("aug-0", augment=True))
    write_run(out, fake_record("ddpm-aug-0", augment=True, synthetic_set="ddpm_3_mixed"))
    write_run(out, fake_record("ddpm-small-0", synthetic_set="ddpm_3_mixed", image_size=32))
    write_run(out, fake_record("wl-fold2", strategy="weighted_loss", fold=2))
    runs, _ = C.load_runs(out, "viral")
    pairs = C.match_baselines(runs).set_index("run_id")["baseline_run_id"].to_dict()
    assert pairs["wl-0"] == "none-0" and pairs["wl-1"] == "none-1"
    assert pairs["ddpm-1"] == "none-1"
    assert pairs["ddpm-wl-0"] == "wl-0"  # same strategy without the synthetic set
    assert pairs["aug-0"] == "none-0"  # augmentation against no augmentation
    assert pairs["ddpm-aug-0"] == "aug-0"  # synthetic images on top of the same augmentation
    assert pd.isna(pairs["ddpm-small-0"])  # a different setup (image size) is never paired
    assert pd.isna(pairs["wl-fold2"])
    assert "none-0" not in pairs  # baselines are not compared with themselves


# --- the whole comparison ---------------------------------------------------------------------------------
def test_clear_effect_is_reported_with_excluding_ci(tmp_path):
    out = study(tmp_path, n_seeds=6, effect=0.1)
    comp = C.compare(out, params(metrics=["macro_f1"]))
    valid = comp.effects[~comp.effects["leakage_ablation"]].iloc[0]
    assert valid["n_pairs"] == 6 and valid["mean_diff"] == pytest.approx(0.1, abs=0.02)
    assert valid["ci_excludes_zero"] and valid["lo"] > 0
    assert valid["p"] == pytest.approx(0.03125)  # exact Wilcoxon, all 6 differences positive
    assert valid["p_adj"] == pytest.approx(0.0625)  # Holm over the 2 tests shown (with the ablation)
    text = comp.conclusions
    assert "CI excludes zero**: 1 of 1 condition × metric comparisons (1 better" in text
    assert "`ddpm_3_mixed@1ratio` (6 pairs): macro F1 +0.1" in text
    assert "none of the 2 tests" in text  # after Holm nothing is significant, and the text says so
    assert "smallest Holm-adjusted p over 2 tests is 0.0625: no result can be significant" in text
    assert "Leakage ablation" in text and "all_train.share_memorized = 0.25" in text
    assert "fd.synthetic_vs_minority_holdout = 12.5" in text and "0.9" not in text  # real reference skipped


def test_null_effect_is_reported_as_undistinguishable(tmp_path):
    out = tmp_path / "out"
    for seed, delta in enumerate([0.05, -0.04, 0.03, -0.05, 0.02, -0.01]):
        write_run(out, fake_record(f"none-{seed}", seed=seed, score=0.5))
        write_run(out, fake_record(f"wl-{seed}", seed=seed, strategy="weighted_loss", score=0.5 + delta))
    comp = C.compare(out, params(metrics=["macro_f1", "minority_recall"]))
    assert not comp.effects["ci_excludes_zero"].any()
    assert "No effect's 95% CI excludes zero" in comp.conclusions
    assert comp.effects["p"].between(0.3, 1).all()


def test_few_pairs_are_flagged(tmp_path):
    out = study(tmp_path, n_seeds=3)
    comp = C.compare(out, params(metrics=["macro_f1"]))
    assert comp.effects["note"].str.contains("cannot reach p < 0.05").all()
    assert "fewer than 6 pairs" in comp.conclusions


def test_outputs_tables_and_figures(tmp_path):
    out = study(tmp_path, n_seeds=2)
    comp = C.compare(out, params())
    results = pd.read_csv(out / "results.csv")
    assert len(results) == 6 and {"run_id", "condition", "arch", "seed", "fold", "synthetic_set", "synthetic_amount",
                                  "macro_f1", "balanced_accuracy", "viral_recall", "viral_f1", "viral_auroc",
                                  "viral_ap", "video_accuracy"} <= set(results.columns)
    assert set(comp.tables) == {"resnet18", "resnet18 · leakage ablation"}
    main = comp.tables["resnet18"]
    assert list(main.index) == ["none", "ddpm_3_mixed@1ratio"]
    assert main.loc["none", "n runs"] == 2 and "[" in main.loc["none", "macro F1"]
    assert "ddpm_3_mixed_any_split@1ratio" in comp.tables["resnet18 · leakage ablation"].index
    row = comp.synthetic.set_index("condition").loc["ddpm_3_mixed@1ratio"]
    assert row["memorization.all_train.share_memorized"] == 0.25 and row["feature space"] == "pixels"
    assert C.memorization_columns(comp.audits) == ["memorization.all_train.share_memorized",
                                                   "memorization.generator_training_frames.share_memorized"]
    assert C.realism_columns(comp.audits) == ["realism.fd.synthetic_vs_minority_holdout",
                                              "realism.kid.synthetic_vs_minority_holdout.mean"]
    pairs = C.example_pairs(out, "ddpm_3_mixed", 2)
    assert [round(s, 2) for _, _, s in pairs] == [0.7, 0.6]  # closest first, the gate-rejected image left out
    C.forest_plot(comp)
    C.plot_example_pairs(comp)
    assert (comp.figures / "forest.png").stat().st_size > 1000
    assert (comp.figures / "example_pairs.png").stat().st_size > 1000
    for name in ("conclusions.md", "tables.html", "effects.html", "synthetic.html", "provenance.json", "effects.csv"):
        assert (comp.folder / name).is_file(), name


def test_no_runs_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="run notebooks 02 and 03 first"):
        C.compare(tmp_path, params())
