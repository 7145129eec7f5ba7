"""Notebook 01's confound views: class x probe counts, native sizes, and metadata-only separability."""
from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest

from lus_utils.config.data import DataParams
from lus_utils.data import exploration, figures

matplotlib.use("Agg")


def toy_frames() -> pd.DataFrame:
    """Two viral videos (one linear, one convex; small frames) and three others (large, one linear)."""
    rows = []
    videos = [("v1", "viral", "linear", "p1", 200, 3), ("v2", "viral", "convex", "p2", 250, 1),
              ("c1", "covid", "convex", "p3", 400, 2), ("c2", "covid", "linear", "p3", 300, 2),
              ("r1", "regular", "convex", "p4", 500, 4)]
    for video, label, probe, patient, size, n in videos:
        for i in range(n):
            rows.append({"path": f"{video}/{i}.png", "video_id": video, "label": label, "probe": probe,
                         "patient_id": patient, "width": size, "height": size + 10})
    return pd.DataFrame(rows)


def test_probe_table_counts_frames_videos_patients():
    table = exploration.probe_table(toy_frames())
    assert table.loc["viral", "frames linear"] == 3 and table.loc["viral", "frames convex"] == 1
    assert table.loc["covid", "videos convex"] == 1 and table.loc["covid", "patients linear"] == 1
    assert table.loc["regular", "frames linear"] == 0
    assert table.loc["viral", "share of frames linear"] == pytest.approx(0.75)
    assert table.loc["covid", "share of frames linear"] == pytest.approx(0.5)


def test_native_size_table():
    table = exploration.native_size_table(toy_frames())
    assert table.loc["viral", "native width median"] == 200  # three frames at 200, one at 250
    assert table.loc["viral", "native width min"] == 200 and table.loc["viral", "native width max"] == 250
    assert table.loc["viral", "native height max"] == 260
    assert table.loc["covid", "distinct sizes (videos)"] == 2 and table.loc["regular", "distinct sizes (videos)"] == 1


def test_separability_known_values():
    table = exploration.shortcut_separability(toy_frames(), "viral")
    frames = table.loc["frames"]
    # Every viral frame is smaller than every other frame: size alone separates perfectly.
    assert frames.loc["native size alone (pixel count)", "auroc"] == pytest.approx(1.0)
    assert frames.loc["native width alone", "ap"] == pytest.approx(1.0)
    # Probe: viral frames 3 linear + 1 convex; others 2 linear + 6 convex.
    # AUROC = P(linear viral > convex other) + ties/2 = (3*6 + 0.5*(3*2 + 1*6)) / 32.
    assert frames.loc["probe alone (linear = 1)", "auroc"] == pytest.approx((18 + 6) / 32)
    assert frames.loc["probe alone (linear = 1)", "prevalence"] == pytest.approx(4 / 12)
    videos = table.loc["videos"]
    assert videos.loc["probe alone (linear = 1)", "n"] == 5 and videos.loc["probe alone (linear = 1)", "n_minority"] == 2
    # Videos: viral (1 linear, 1 convex), others (1 linear, 2 convex): (1*2 + 0.5*(1*1 + 1*2)) / 6.
    assert videos.loc["probe alone (linear = 1)", "auroc"] == pytest.approx(3.5 / 6)


def test_separability_flips_when_minority_is_large():
    frames = toy_frames()
    frames.loc[frames.label == "viral", ["width", "height"]] = 900
    table = exploration.shortcut_separability(frames, "viral")
    assert table.loc[("frames", "native width alone"), "auroc"] == pytest.approx(0.0)


def test_separability_without_minority_is_a_clear_error():
    frames = toy_frames()
    with pytest.raises(ValueError, match="class 'viral' has no frames"):
        exploration.shortcut_separability(frames[frames.label != "viral"], "viral")


def test_native_size_plot_draws_both_axes():
    fig = figures.plot_native_sizes(toy_frames())
    assert len(fig.axes) == 2 and all(np.isfinite(ax.get_ylim()).all() for ax in fig.axes)


def test_split_overview_without_folds_shows_the_holdout():
    from lus_utils.data import splits

    rows = [{"path": f"{c}{p}_{f}.png", "video_id": f"{c}{p}", "patient_id": f"{c}{p}", "label": c}
            for c in ("covid", "pneumonia", "regular", "viral") for p in range(6) for f in range(2)]
    frames = splits.assign_all(pd.DataFrame(rows), DataParams(protocol="holdout"))
    tables = exploration.split_tables(frames, 0)
    assert set(tables) == {"hold-out", "seed video split (repeat 0)"}
    overview = exploration.folds_overview(tables)
    assert list(overview.columns.get_level_values(0).unique()) == ["hold-out"]
