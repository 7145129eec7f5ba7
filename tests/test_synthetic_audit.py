"""The synthetic-set audit and the realism module: memorization shares, KID, C2ST, the gate, histograms, files."""
from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lus_utils import synthetic_sets as synthetic
from lus_utils.config.generate import AuditParams
from lus_utils.config.schema import build
from lus_utils.generate import realism, synthetic_audit, synthetic_audit_features, synthetic_audit_summary
from lus_utils.images import load_image
from lus_utils.provenance import read_json

VIDEOS = [("v1", "viral", "train", 4), ("v2", "viral", "train", 3), ("v3", "viral", "val", 3),
          ("v4", "viral", "test", 3), ("c1", "covid", "train", 4), ("c2", "covid", "test", 2)]


def make_frames(root: Path, size: int = 32) -> pd.DataFrame:
    """A minimal frames table: one smooth random texture per video, shifted by a pixel per frame."""
    import cv2

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for video, label, part, n in VIDEOS:
        # Smooth texture (so that neighbouring frames of a video correlate), stretched to the full range.
        base = cv2.GaussianBlur(rng.normal(size=(size, size)), (0, 0), 2.0)
        base = np.uint8(255 * (base - base.min()) / (base.max() - base.min()))
        for k in range(n):
            path = root / f"{video}_{k}.png"
            cv2.imwrite(str(path), np.roll(base, k, axis=1))
            rows.append({"path": path.name, "abspath": str(path), "video_id": video, "patient_id": f"p_{video}",
                         "label": label, "split": part})
    return pd.DataFrame(rows)


def audit_params(**overrides) -> AuditParams:
    values = dict(audit_size=32, ssim_candidates=3, n_holdout_reference=4, n_closest_pairs=3,
                  kid_subset=4, kid_subsets=5, c2st_folds=2, feature_extractor="classifier", feature_run_dir="")
    values.update(overrides)
    return build(AuditParams, values, "test")


def write_test_set(set_dir: Path, images: list[np.ndarray], training_frames: list[str],
                   leakage_ablation: bool = False) -> None:
    rows = [{"label": "viral", "generator": "test", "variant": "v", "sampler": "-", "steps": 0, "seed": i,
             **synthetic.original_gate(image)} for i, image in enumerate(images)]
    synthetic.write_set(set_dir, images, rows, {"training_frames": training_frames,
                                                "leakage_ablation": leakage_ablation})


@pytest.fixture
def frames(tmp_path) -> pd.DataFrame:
    return make_frames(tmp_path / "frames")


def test_exact_copy_of_a_training_frame_counts_as_memorized(frames, tmp_path):
    copied = frames[(frames.video_id == "v2")].iloc[1]
    noise = np.random.default_rng(5).integers(0, 256, (32, 32), dtype=np.uint8)
    set_dir = tmp_path / "set"
    write_test_set(set_dir, [load_image(copied.abspath, grayscale=True), noise], [copied.path])
    audit = synthetic_audit.audit_set(set_dir, frames, "split", audit_params())

    manifest = pd.read_csv(set_dir / "manifest.csv", keep_default_na=False)
    assert manifest.nearest_train_path[0] == copied.path
    assert manifest.nearest_train_similarity[0] > 0.999 and manifest.nearest_train_ssim[0] > 0.999
    assert manifest.nearest_minority_train_path[0] == copied.path
    assert abs(manifest.nearest_train_similarity[1]) < 0.5
    mem = audit["memorization"]
    assert mem["minority_train"]["correlation"]["share_above"] == 0.5
    assert mem["all_train"]["share_memorized"] == 0.5 and mem["all_train"]["pool_size"] == 11
    assert mem["generator_training_frames"]["correlation"]["max"] > 0.999
    assert "minority_test" not in mem and not audit["leakage_ablation"]
    assert audit["closest_pairs"]["all_train"][0]["real"] == copied.path
    # Real references: held-out frames are far from training frames; neighbours in one video are close.
    ref = audit["real_reference"]
    assert ref["holdout_minority_vs_all_train"]["n"] == 4
    assert ref["minority_train_vs_other_minority_train"]["correlation"]["median"] > \
        ref["holdout_minority_vs_minority_train"]["correlation"]["median"]
    assert audit["realism"]["feature_space"] == synthetic_audit_features.NO_FEATURES
    assert audit["realism"]["reached_realism"] is None and audit["reached_realism"] is None
    assert set(audit["intensity"]["density"]) == {"synthetic", "minority_train", "minority_holdout"}
    assert read_json(set_dir / "audit.json")["n_kept"] == 2
    assert not [p for p in set_dir.iterdir() if p.name.startswith(".")]  # written atomically
    table = synthetic_audit_summary.summary_table(audit)
    assert "synthetic vs minority_train" in set(table.comparison)
    realism_rows = synthetic_audit_summary.realism_table(audit)
    assert list(realism_rows["feature space"]) == ["", synthetic_audit_features.NO_FEATURES]
    assert "too few images" in audit["realism"]["structure"]["not_measured"]  # 2 synthetic images
    text = synthetic_audit_summary.interpretation(audit)
    assert "2 of 2 images passed" in text and "50% of the images count as memorized" in text
    assert "not measured" in text
    pairs = synthetic_audit.closest_pair_images(audit, set_dir, frames)
    assert np.array_equal(pairs[0]["synthetic_image"], pairs[0]["real_image"])


def test_leakage_ablation_reports_test_frames(frames, tmp_path):
    test_frame = frames[(frames.video_id == "v4")].iloc[0]
    set_dir = tmp_path / "ablation"
    write_test_set(set_dir, [load_image(test_frame.abspath, grayscale=True)], [test_frame.path],
                   leakage_ablation=True)
    audit = synthetic_audit.audit_set(set_dir, frames, "split", audit_params())
    assert audit["leakage_ablation"]
    assert audit["memorization"]["minority_test"]["correlation"]["max"] > 0.999
    assert audit["memorization"]["all_train"]["correlation"]["max"] < 0.9
    assert audit["closest_pairs"]["minority_test"][0]["real"] == test_frame.path
    assert "100% count as copies of test frames" in synthetic_audit_summary.interpretation(audit)
    assert audit["generator_training_frame_parts"] == {"test": 1}


def test_gate_rejects_are_left_out_of_shares(frames, tmp_path):
    copied = frames[frames.video_id == "v1"].iloc[0]
    set_dir = tmp_path / "set"
    write_test_set(set_dir, [load_image(copied.abspath, grayscale=True), np.full((32, 32), 7, np.uint8)],
                   [copied.path])
    audit = synthetic_audit.audit_set(set_dir, frames, "split", audit_params())
    assert audit["n_kept"] == 1 and audit["rejection_rate"] == 0.5 and audit["population"] == "kept"
    assert audit["memorization"]["minority_train"]["correlation"]["share_above"] == 1.0


def ultrasound_like(n: int, size: int, seed: int) -> np.ndarray:
    """Frames with what the gate looks for: a dark background outside a sector, smooth speckle inside it and
    a bright horizontal line (a pleural-line stand-in)."""
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    angle = np.abs(np.arctan2(xx - size / 2, yy + size / 4))
    sector = (angle < 0.6) & (yy > 2)
    out = []
    for _ in range(n):
        texture = cv2.GaussianBlur(rng.normal(size=(size, size)), (0, 0), 1.5)
        image = 70 + 40 * texture / texture.std()
        line = int(rng.integers(size // 4, size // 2))
        image[line:line + 2] += 80
        out.append(np.clip(np.where(sector, image, 3), 0, 255).astype(np.uint8))
    return np.stack(out)


def test_kid_is_zero_for_one_distribution_and_large_for_two():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(200, 8)), rng.normal(size=(200, 8))
    same = realism.kid(a, b, 50, 50, seed=0)
    far = realism.kid(a, b + 1.0, 50, 50, seed=0)
    assert same["ci_low"] < 0 < same["ci_high"] and abs(same["mean"]) < 0.02
    assert far["ci_low"] > 10 * same["ci_high"]
    assert realism.kid(a, b, 50, 50, seed=0) == same  # seeded
    assert realism.kid(a[:3], b, 50, 2, seed=0)["subset_size"] == 3
    with pytest.raises(ValueError, match="at least 2"):
        realism.kid(a[:1], b, 50, 2, seed=0)


def test_c2st_reads_half_for_one_distribution_and_one_for_two():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(150, 16)), rng.normal(size=(150, 16))
    same = realism.c2st(a, b, seed=0)
    assert abs(same["auroc"] - 0.5) < 0.1 and same["ci_low"] < 0.5 < same["ci_high"]
    far = realism.c2st(a, b + 1.5, seed=0)
    assert far["auroc"] > 0.95 and far["ci_low"] > same["ci_high"]
    assert realism.c2st(a, b, seed=0) == same  # seeded
    assert realism.c2st(a[:40], b, seed=0)["n_per_side"] == 40  # both sides cut to the same size


def test_c2st_auroc_is_sklearns_ties_included():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(4)
    positive, negative = rng.integers(0, 6, 23).astype(float), rng.integers(0, 5, 17).astype(float)  # many ties
    expected = roc_auc_score(np.r_[np.ones(23), np.zeros(17)], np.r_[positive, negative])
    assert realism._auroc(positive, negative) == pytest.approx(expected, abs=1e-12)
    assert realism._auroc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0


def test_real_reference_uses_the_same_sizes():
    rng = np.random.default_rng(3)
    synthetic_f, train_f, holdout_f = rng.normal(size=(90, 6)), rng.normal(size=(40, 6)), rng.normal(size=(30, 6))
    result = realism.compare_sets(synthetic_f + 2.0, train_f, holdout_f, 50, 20, seed=0)
    assert result["n_per_side"] == 30
    for key in ("synthetic_vs_holdout", "real_train_vs_holdout"):
        assert result[key]["c2st"]["n_per_side"] == 30 and result[key]["kid"]["subset_size"] == 15
    assert not realism.REALISM_CRITERION(result)
    close = realism.compare_sets(rng.normal(size=(90, 6)), train_f, holdout_f, 50, 20, seed=0)
    assert realism.REALISM_CRITERION(close)


def test_random_cnn_is_fixed_by_its_seed():
    images = ultrasound_like(4, 40, seed=0)
    features = realism.RandomCNN()(images)
    assert features.shape == (4, 2 * sum(realism.CNN_WIDTHS)) and np.isfinite(features).all()
    np.testing.assert_array_equal(features, realism.RandomCNN()(images))
    assert not np.allclose(features, realism.RandomCNN(seed=1)(images))
    rgb = np.repeat(images[..., None], 3, axis=-1)
    np.testing.assert_allclose(realism.RandomCNN()(rgb), features)


def test_random_cnn_features_separate_noise_from_structure():
    structured = realism.RandomCNN()(ultrasound_like(60, 64, seed=0))
    again = realism.RandomCNN()(ultrasound_like(60, 64, seed=1))
    noise = realism.RandomCNN()(realism.noise_images(60, 64, seed=0)["gaussian"])
    same = realism.kid(structured, again, 30, 20, seed=0)
    far = realism.kid(noise, again, 30, 20, seed=0)
    assert far["ci_low"] > 10 * max(same["ci_high"], 1e-6)
    assert realism.c2st(noise, again, seed=0)["auroc"] > 0.95


def test_real_range_gate_keeps_structure_and_rejects_noise():
    calibration = realism.calibrate_gate(ultrasound_like(80, 64, seed=0), quantile=0.005, margin=0.25)
    held_out = realism.apply_gate(ultrasound_like(40, 64, seed=1), calibration)
    assert np.mean([v["passed_gate"] for v in held_out]) >= 0.95
    for kind, images in realism.noise_images(20, 64, seed=0).items():
        assert not any(v["passed_gate"] for v in realism.apply_gate(images, calibration)), kind
    with pytest.raises(ValueError, match="at least 3 real frames"):
        realism.calibrate_gate(ultrasound_like(2, 64, seed=0), 0.01, 0.1)


def test_original_gate_stays_available_and_is_recorded_beside_the_new_one():
    images = np.concatenate([ultrasound_like(3, 64, seed=0), realism.noise_images(3, 64, seed=0)["uniform"]])
    seed_params = audit_params(gate="seed")
    seed_verdicts = [synthetic.original_gate(i, seed_params.min_std, seed_params.min_entropy)["passed_gate"] for i in images]
    verdicts, record = realism.quality_gate(images, seed_params, None)
    assert record["gate"] == "seed"
    assert [v["passed_gate"] for v in verdicts] == seed_verdicts
    verdicts, record = realism.quality_gate(images, audit_params(), ultrasound_like(30, 64, seed=1))
    assert record["gate"] == "real_range" and record["seed_gate"]["min_std"] == AuditParams().min_std
    assert [v["passed_gate"] for v in verdicts] == [True] * 3 + [False] * 3
    assert [v["passed_seed_gate"] for v in verdicts] == seed_verdicts
    with pytest.raises(ValueError, match="real_range gate needs real training frames"):
        realism.quality_gate(images, audit_params(), None)


def test_pixel_feature_space_gives_numbers(frames, tmp_path):
    images = [load_image(p, grayscale=True) for p in frames[frames.video_id == "v1"].abspath]
    set_dir = tmp_path / "set"
    write_test_set(set_dir, images, [])
    audit = synthetic_audit.audit_set(set_dir, frames, "split", audit_params(feature_extractor="pixels"))
    info = audit["realism"]
    assert info["feature_space"].startswith("pixels") and info["feature_dim"] == 256
    assert info["n_per_side"] == 4 and info["synthetic_vs_holdout"]["kid"]["subset_size"] == 2
    assert np.isfinite(info["real_train_vs_holdout"]["c2st"]["auroc"])
    assert audit["second_opinion_reached_realism"] is info["reached_realism"]
    assert "KID" in audit["second_opinion_criterion"] and "permutation" in audit["reached_realism_criterion"]
    assert audit["reached_realism"] is None  # no ultrasound encoder: one class besides the minority
    table = synthetic_audit_summary.realism_table(audit)
    assert list(table.comparison) == ["- (ultrasound encoder, decides)", "synthetic vs held-out real (second opinion)",
                                      "real training vs held-out real (reference) (second opinion)"]
    gate = audit["gate_on_real"]  # the test set has no quality_gate record: it was gated by the original study's gate
    assert gate["noise_uniform"]["pass_rate"] == 1.0 and gate["minority_train"]["n"] == 7
    real_range = synthetic_audit.gate_on_real({"minority_train": frames[frames.label == "viral"]}, frames, "split",
                                              audit_params())
    assert real_range["noise_gaussian"]["pass_rate"] == 0.0 and real_range["noise_uniform"]["pass_rate"] == 0.0
    assert "reach" in synthetic_audit_summary.interpretation(audit)


def test_random_cnn_is_the_default_feature_space(frames, tmp_path):
    images = [load_image(p, grayscale=True) for p in frames[frames.label == "viral"].abspath]
    set_dir = tmp_path / "set"
    write_test_set(set_dir, images, [])
    audit = synthetic_audit.audit_set(set_dir, frames, "split", build(AuditParams, {"c2st_folds": 2}, "test"))
    assert audit["realism"]["feature_space"].startswith("random CNN")
    assert audit["realism"]["n_per_side"] == 6  # the held-out minority frames: v3 and v4


def test_classifier_feature_space_is_a_thin_call(frames, tmp_path, monkeypatch):
    """The classifier path: load_run_model(run_dir) then extract_features(model, uint8 NCHW, batch)."""
    calls = []

    def load_run_model(run_dir):
        calls.append(("load", Path(run_dir).name))
        return "model", ["covid", "viral"], 24

    def extract_features(model, images, batch_size):
        calls.append(("extract", images.shape, images.dtype))
        return images.reshape(len(images), 3, -1).mean(axis=2).astype(np.float64)

    monkeypatch.setitem(sys.modules, "lus_utils.classify.training", types.SimpleNamespace(load_run_model=load_run_model))
    monkeypatch.setitem(sys.modules, "lus_utils.classify.models", types.SimpleNamespace(extract_features=extract_features))
    images = [load_image(p, grayscale=True) for p in frames[frames.video_id == "v2"].abspath]
    set_dir = tmp_path / "set"
    write_test_set(set_dir, images, [])
    audit = synthetic_audit.audit_set(set_dir, frames, "split", audit_params(), feature_run_dir=str(tmp_path / "run7"))
    assert calls[0] == ("load", "run7")
    assert calls[1][1][1:] == (3, 24, 24) and calls[1][2] == np.uint8
    assert "run7" in audit["realism"]["feature_space"] and audit["realism"]["feature_dim"] == 3
    assert audit["realism"]["synthetic_vs_holdout"]["c2st"]["n_per_side"] == 3


def test_unknown_feature_extractor_and_missing_set(tmp_path):
    with pytest.raises(ValueError, match="unknown feature_extractor"):
        synthetic_audit_features.feature_function("clip")
    with pytest.raises(synthetic.SyntheticSetError, match="no manifest.csv"):
        synthetic_audit.audit_set(tmp_path / "nothing", pd.DataFrame({"split": []}), "split", audit_params())
