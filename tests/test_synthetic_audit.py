"""The synthetic-set audit: nearest training frames, memorization shares, FD/KID, histograms, files."""
from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lus_utils.generate import synthetic, synthetic_audit
from lus_utils.images import load_image
from lus_utils.params import AuditParams, build
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
    values = dict(audit_size=32, ssim_candidates=3, n_holdout_reference=4, n_closest_pairs=3, fd_subset=50,
                  kid_subset=4, kid_subsets=5, feature_extractor="classifier", feature_run_dir="")
    values.update(overrides)
    return build(AuditParams, values, "test")


def write_test_set(set_dir: Path, images: list[np.ndarray], training_frames: list[str],
                   leakage_ablation: bool = False) -> None:
    rows = [{"label": "viral", "generator": "test", "variant": "v", "sampler": "-", "steps": 0, "seed": i,
             **synthetic.gate(image)} for i, image in enumerate(images)]
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
    assert audit["realism"] == {"feature_space": synthetic_audit.NO_FEATURES, "fd": None, "kid": None}
    assert set(audit["intensity"]["density"]) == {"synthetic", "minority_train", "minority_holdout"}
    assert read_json(set_dir / "audit.json")["n_kept"] == 2
    assert not [p for p in set_dir.iterdir() if p.name.startswith(".")]  # written atomically
    table = synthetic_audit.summary_table(audit)
    assert "synthetic vs minority_train" in set(table.comparison)
    assert synthetic_audit.realism_table(audit)["feature space"][0] == synthetic_audit.NO_FEATURES
    text = synthetic_audit.interpretation(audit)
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
    assert "100% count as copies of test frames" in synthetic_audit.interpretation(audit)
    assert audit["generator_training_frame_parts"] == {"test": 1}


def test_gate_rejects_are_left_out_of_shares(frames, tmp_path):
    copied = frames[frames.video_id == "v1"].iloc[0]
    set_dir = tmp_path / "set"
    write_test_set(set_dir, [load_image(copied.abspath, grayscale=True), np.full((32, 32), 7, np.uint8)],
                   [copied.path])
    audit = synthetic_audit.audit_set(set_dir, frames, "split", audit_params())
    assert audit["n_kept"] == 1 and audit["rejection_rate"] == 0.5 and audit["population"] == "kept"
    assert audit["memorization"]["minority_train"]["correlation"]["share_above"] == 1.0


def test_frechet_distance():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 6))
    a -= a.mean(axis=0)
    assert synthetic_audit.frechet_distance(a, a) == pytest.approx(0, abs=1e-8)
    shift = np.array([1.0, 2.0, 0, 0, 0, 0])
    assert synthetic_audit.frechet_distance(a, a + shift) == pytest.approx(5.0, rel=1e-6)
    # Same mean, covariance scaled by 4 (std x 2): FD = tr(S) + tr(4S) - 2 tr(2S) = tr(S).
    assert synthetic_audit.frechet_distance(a, 2 * a) == pytest.approx(np.trace(np.cov(a, rowvar=False)), rel=1e-6)
    # Fewer samples than dimensions (singular covariances) still gives a finite, non-negative number.
    few = synthetic_audit.frechet_distance(rng.normal(size=(5, 50)), rng.normal(size=(6, 50)))
    assert np.isfinite(few) and few >= 0
    with pytest.raises(ValueError, match="at least 2"):
        synthetic_audit.frechet_distance(a[:1], a)


def test_kid_sanity():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(200, 8)), rng.normal(size=(200, 8))
    same = synthetic_audit.kernel_inception_distance(a, b, 50, 20, seed=0)
    far = synthetic_audit.kernel_inception_distance(a, b + 1.0, 50, 20, seed=0)
    assert abs(same["mean"]) < 3 * same["std"] + 1e-3
    assert far["mean"] > 10 * max(abs(same["mean"]), same["std"])
    assert synthetic_audit.kernel_inception_distance(a, b, 50, 20, seed=0) == same  # seeded
    assert synthetic_audit.kernel_inception_distance(a[:3], b, 50, 2, seed=0)["subset_size"] == 3


def test_pixel_feature_space_gives_numbers(frames, tmp_path):
    images = [load_image(p, grayscale=True) for p in frames[frames.video_id == "v1"].abspath]
    set_dir = tmp_path / "set"
    write_test_set(set_dir, images, [])
    audit = synthetic_audit.audit_set(set_dir, frames, "split", audit_params(feature_extractor="pixels"))
    fd = audit["realism"]["fd"]
    assert audit["realism"]["feature_space"].startswith("pixels") and audit["realism"]["feature_dim"] == 256
    assert all(np.isfinite(v) for v in fd.values())
    assert audit["realism"]["kid"]["synthetic_vs_minority_train"]["subset_size"] == 4


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
    assert audit["realism"]["fd"]["synthetic_vs_minority_train"] is not None


def test_unknown_feature_extractor_and_missing_set(tmp_path):
    with pytest.raises(ValueError, match="unknown feature_extractor"):
        synthetic_audit.feature_function("clip")
    with pytest.raises(synthetic.SyntheticSetError, match="no manifest.csv"):
        synthetic_audit.audit_set(tmp_path / "nothing", pd.DataFrame({"split": []}), "split", audit_params())
