"""Grad-CAM and the inside-sector share: a synthetic frame and a tiny model whose answer is known, then a run folder."""
from __future__ import annotations

import json
import math
import shutil

import cv2
import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch

from lus_utils import records
from lus_utils.classify import models, saliency
from lus_utils.vocabulary import Condition, RunKey

matplotlib.use("Agg")


def fan_frame(height: int = 96, width: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A convex-probe-like fan of speckle on black, a dark pool touching its far edge, a text mark in a corner.

    Returns the RGB frame and the true sector (the fan).
    """
    rng = np.random.default_rng(seed)
    truth = np.zeros((height, width), np.uint8)
    cv2.ellipse(truth, (width // 2, 0), (80, 80), 0, 55, 125, 1, thickness=-1)
    cv2.circle(truth, (width // 2, 0), 12, 0, thickness=-1)  # the probe's footprint: the fan starts below it
    grey = np.where(truth > 0, rng.integers(40, 200, truth.shape), 0).astype(np.uint8)
    dark = np.zeros_like(truth)
    cv2.circle(dark, (width // 2, 78), 6, 1, thickness=-1)
    grey[(dark > 0) & (truth > 0)] = 3  # anechoic pool at the sector's far edge
    grey[4:8, 2:10] = 255  # a marker in the black surround
    return np.repeat(grey[..., None], 3, axis=2), truth.astype(bool)


def test_sector_mask_finds_the_fan():
    image, truth = fan_frame()
    mask = saliency.sector_mask(image)
    assert not mask[4:8, 2:10].any()  # the marker is another component
    assert mask[truth].mean() > 0.97  # the dark pool and the speckle count as sector
    outside = mask[~truth].sum() / truth.sum()
    assert outside < 0.08  # the hull adds little beyond the fan


def test_sector_mask_rejects_a_black_frame():
    with pytest.raises(ValueError, match="no ultrasound sector"):
        saliency.sector_mask(np.zeros((16, 16, 3), np.uint8))


def test_inside_share():
    mask = np.zeros((4, 4), bool)
    mask[:2] = True
    cam = np.zeros((4, 4))
    cam[0, 0], cam[3, 3] = 3.0, 1.0
    assert saliency.inside_share(cam, mask) == pytest.approx(0.75)
    assert math.isnan(saliency.inside_share(np.zeros((4, 4)), mask))
    with pytest.raises(ValueError, match="non-negative"):
        saliency.inside_share(-cam, mask)
    with pytest.raises(ValueError, match="differ in shape"):
        saliency.inside_share(cam[:3], mask)


class BrightSpot(torch.nn.Module):
    """Class 0's score is the mean of a feature that is positive only on near-white pixels; class 1 is minus it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 1, 1)
        self.feature = torch.nn.ReLU()
        self.head = torch.nn.Linear(1, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
            self.conv.bias.fill_(-6.5)  # a white pixel sums to about 7.3 after ImageNet normalisation, grey to < 2
            self.head.weight.copy_(torch.tensor([[1.0], [-1.0]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.feature(self.conv(x)).mean(dim=(2, 3)))


@pytest.mark.parametrize("spot_inside", [True, False])
def test_grad_cam_share_is_known_for_a_model_that_looks_at_one_spot(spot_inside):
    image, truth = fan_frame()
    image[4:8, 2:10] = 0
    rows, cols = (slice(40, 46), slice(45, 51)) if spot_inside else (slice(80, 90), slice(2, 10))
    image[rows, cols] = 255  # what the model sees: inside the fan, or a bright mark at the frame's edge
    model = BrightSpot().eval()
    batch = torch.from_numpy(image.transpose(2, 0, 1)[None].copy())
    cam = saliency.grad_cam(model, batch, [0], model.feature)[0]
    assert cam.shape == truth.shape and cam.max() == pytest.approx(1.0)
    assert (cam[rows, cols] > 0).all() and cam.sum() == pytest.approx(cam[rows, cols].sum())
    share = saliency.inside_share(cam, saliency.sector_mask(image))
    assert share == pytest.approx(1.0 if spot_inside else 0.0)
    # Nothing raises class 1 (its gradient is negative everywhere): the map points nowhere.
    assert math.isnan(saliency.inside_share(saliency.grad_cam(model, batch, [1], model.feature)[0], truth))


@pytest.mark.parametrize("arch,size,layer", [("resnet18", 32, "layer2"), ("resnet18", 48, "layer3"),
                                              ("resnet18", 96, "layer4"), ("vit_tiny_patch16_224", 32, "blocks")])
def test_cam_layer_and_maps_for_timm_models(arch, size, layer):
    torch.manual_seed(0)
    model = models.build_model(arch, 4, size).eval()
    chosen, reshape = saliency.cam_layer(model, size)
    assert chosen is (model.blocks[-1].norm1 if layer == "blocks" else getattr(model, layer)[-1])
    assert (reshape is not None) == arch.startswith("vit")
    images = torch.randint(0, 255, (3, 3, size, size), dtype=torch.uint8)
    cams = saliency.grad_cam(model, images, [0, 1, 3], chosen, reshape, batch_size=2)
    assert cams.shape == (3, size, size) and np.isfinite(cams).all() and (cams >= 0).all()


def test_sample_is_seeded_per_class_and_prefers_distinct_videos():
    table = pd.DataFrame({"path": [f"f{i:02d}" for i in range(20)],
                          "video_id": [f"v{i // 4}" for i in range(20)],
                          "label": ["a"] * 12 + ["b"] * 8})
    one = saliency.sample_frames(table, ["a", "b", "c"], 3, seed=1)
    two = saliency.sample_frames(table.iloc[::-1], ["a", "b", "c"], 3, seed=1)
    pd.testing.assert_frame_equal(one, two)  # row order of the table does not matter
    assert one.label.tolist() == ["a"] * 3 + ["b"] * 3  # class order; absent class c skipped
    assert one[one.label == "a"].video_id.nunique() == 3  # three videos of class a: one frame each
    assert len(one[one.label == "b"]) == 3 and one[one.label == "b"].video_id.nunique() == 2
    assert not one.equals(saliency.sample_frames(table, ["a", "b"], 3, seed=2))


def make_run(tmp_path, folds: list[int], size: int = 32) -> tuple:
    """A run folder like the classifier's (best.pt per fold model, predictions.csv) on fan frames."""
    classes = ["covid", "viral"]
    run_dir = tmp_path / "runs" / "run_x"
    rows = []
    for i in range(8):
        image, _ = fan_frame(seed=i)
        path = tmp_path / "frames" / f"frame{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), image)
        label = classes[i % 2]
        rows.append({"path": f"frames/frame{i}.png", "abspath": str(path), "video_id": f"v{i}", "patient_id": f"p{i}",
                     "label": label, "probe": "convex", "fold": folds[i % len(folds)], "draw": -1, "repeat": 0,
                     "seed": 0, "pred": "covid", "prob_covid": 0.6, "prob_viral": 0.4, "threshold": 0.5})
    table = pd.DataFrame(rows)
    key = RunKey("resnet18", Condition(protocol="holdout" if folds == [-1] else "cv"), 0, 0)
    splits = ["split"] if folds == [-1] else [f"cv_r0_f{f}" for f in sorted(set(folds))]
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").write_text(json.dumps({**records.run_identity(key, classes, splits), "run_id": key.run_id}))
    for fold in sorted(set(folds)):
        torch.manual_seed(fold + 1)
        model = models.build_model("resnet18", len(classes), size)
        run_dir.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": model.state_dict(), "arch": "resnet18", "classes": classes, "image_size": size},
                   run_dir / ("best.pt" if fold < 0 else f"best_fold{fold}.pt"))
    table.drop(columns="abspath").to_csv(run_dir / "predictions.csv", index=False)
    return run_dir, table


def test_run_saliency_writes_cam_files_and_uses_each_folds_model(tmp_path):
    run_dir, frames = make_run(tmp_path, folds=[0, 1])
    result = saliency.run_saliency(run_dir, frames, per_class=2, seed=0)
    assert len(result.table) == 4 and result.table.label.tolist() == ["covid", "covid", "viral", "viral"]
    assert result.table.share_inside.between(0, 1).all() and result.table.sector_fraction.between(0.2, 0.7).all()
    again = saliency.run_saliency(run_dir, frames, per_class=2, seed=0)
    pd.testing.assert_frame_equal(result.table, again.table)  # same seed, same numbers
    # Each frame's map comes from its own fold's model: with fold 1's weights swapped the fold-1 maps change.
    torch.manual_seed(99)
    swapped = models.build_model("resnet18", 2, 32)
    checkpoint = torch.load(run_dir / "best_fold1.pt", weights_only=True)
    torch.save({**checkpoint, "state_dict": swapped.state_dict()}, run_dir / "best_fold1.pt")
    changed = saliency.run_saliency(run_dir, frames, per_class=2, seed=0).table
    moved = ~np.isclose(changed.share_inside, result.table.share_inside)
    assert (changed.split[moved] == "cv_r0_f1").all() and moved.any()
    folder = saliency.save_run(result, run_dir)
    names = sorted(p.name for p in folder.iterdir())
    assert "cam_panel.png" in names and "cam_saliency.csv" in names
    assert sum(n.startswith("cam_") and n.endswith(".png") for n in names) == 5
    summary = saliency.class_summary(result.table)
    assert summary.loc["viral", "frames"] == 2 and "share_inside" in summary.columns


def test_missing_fold_checkpoint_and_unknown_frames_are_clear(tmp_path):
    run_dir, frames = make_run(tmp_path, folds=[0, 1])
    (run_dir / "best_fold1.pt").unlink()
    with pytest.raises(FileNotFoundError, match="best_fold1.pt does not exist"):
        saliency.run_saliency(run_dir, frames, per_class=2)
    with pytest.raises(ValueError, match="not in the frames table"):
        saliency.run_saliency(run_dir, frames.iloc[:3], per_class=2)


def test_condition_panel_needs_the_same_frames(tmp_path):
    run_dir, frames = make_run(tmp_path, folds=[-1])
    a = saliency.run_saliency(run_dir, frames, per_class=1, seed=0)
    b = saliency.run_saliency(run_dir, frames, per_class=1, seed=0, target="pred")
    fig = saliency.condition_panel({"none": a, "pred target": b})
    assert len([ax for ax in fig.axes if ax.images]) == 4
    summary = saliency.condition_summary({"none": a, "pred target": b})
    assert list(summary.index) == ["none", "pred target"] and list(summary.columns) == ["covid", "viral"]
    more = saliency.run_saliency(run_dir, frames, per_class=2, seed=0)
    with pytest.raises(ValueError, match="other frames"):
        saliency.condition_panel({"none": a, "two per class": more})
    for shown, drawn in ((1, 4), (2, 8)):
        fig = saliency.condition_panel({"x": more, "y": more}, shown_per_class=shown)
        assert len([ax for ax in fig.axes if ax.images]) == drawn


def test_pick_runs_takes_the_first_seed_per_condition_and_skips_metadata(tmp_path):
    results = pd.DataFrame({"run_id": ["b1", "b0", "s0", "m0", "v0"], "arch": ["resnet18"] * 4 + ["vit_tiny_patch16_224"],
                            "condition": ["none", "none", "ddpm_3_mixed@1ratio", "metadata_reference", "none"],
                            "seed": [1, 0, 0, 0, 0]})
    runs = saliency.pick_runs(results, tmp_path, "resnet18")
    assert runs == {"none": tmp_path / "b0", "ddpm_3_mixed@1ratio": tmp_path / "s0"}
    assert saliency.pick_runs(results, tmp_path) == runs  # the first architecture listed
    with_predictions = results.assign(has_predictions=[True, False, True, True, True])  # b0 left none
    assert saliency.pick_runs(with_predictions, tmp_path)["none"] == tmp_path / "b1"
    with pytest.raises(ValueError, match="no classifier run of 'resnet50'"):
        saliency.pick_runs(results, tmp_path, "resnet50")


def test_explain_run_writes_files_and_skips_a_run_without_network(tmp_path, capsys):
    run_dir, frames = make_run(tmp_path, folds=[-1])
    result = saliency.explain_run(run_dir, frames)
    assert result is not None and (run_dir / "cam" / "cam_panel.png").is_file()
    assert saliency.saved_panel(run_dir).data.startswith(b"\x89PNG")  # the notebook shows the saved panel
    bare = tmp_path / "runs" / "metadata"
    bare.mkdir()  # a run without a checkpoint: nothing to explain
    assert saliency.explain_run(bare, frames) is None
    assert "trained no network" in capsys.readouterr().out


def test_saved_maps_are_read_back_only_while_they_match_the_runs_weights_and_sample(tmp_path, monkeypatch):
    run_dir, frames = make_run(tmp_path, folds=[0, 1])
    assert saliency.saved_run(run_dir) is None  # nothing written yet
    computed = saliency.explain_run(run_dir, frames)
    saved = saliency.saved_run(run_dir)
    pd.testing.assert_frame_equal(saved.table, computed.table)
    assert saved.arch == computed.arch and all(np.array_equal(a, b) for a, b in zip(saved.overlays, computed.overlays))
    assert saliency.saved_run(run_dir, per_class=1) is None and saliency.saved_run(run_dir, target="pred") is None

    def no_grad_cam(*args, **kwargs):
        raise AssertionError("the maps were computed again")

    monkeypatch.setattr(saliency, "run_saliency", no_grad_cam)
    assert list(saliency.runs_saliency({"none": run_dir}, frames)) == ["none"]  # read back, not recomputed
    with open(run_dir / "metrics.json", "a") as handle:  # the run was retrained: other weights, other maps
        handle.write(" ")
    assert saliency.saved_run(run_dir) is None
    with pytest.raises(AssertionError, match="computed again"):
        saliency.runs_saliency({"none": run_dir}, frames)


def test_study_panel_saves_the_panel_and_returns_shares(tmp_path, capsys):
    from lus_utils.paths import OutLayout

    run_dir, frames = make_run(tmp_path, folds=[0, 1])
    layout = OutLayout(tmp_path)
    shutil.copytree(tmp_path / "frames", layout.data / "frames")  # frames.csv paths are relative to its folder
    frames.drop(columns="abspath").to_csv(layout.frames_csv, index=False)
    runs = pd.DataFrame({"run_id": ["run_x"], "condition": ["none"], "arch": ["resnet18"], "repeat": [0], "seed": [0]})
    summary = saliency.study_panel(tmp_path, runs, tmp_path / "figs" / "cam_conditions.png")
    assert (tmp_path / "figs" / "cam_conditions.png").is_file()
    assert list(summary.index) == ["none"] and summary.loc["none"].between(0, 1).all()
    assert saliency.study_panel(tmp_path, runs.iloc[:0], tmp_path / "none.png").empty
    assert "no Grad-CAM panel" in capsys.readouterr().out and not (tmp_path / "none.png").exists()
