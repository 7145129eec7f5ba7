"""Notebook 01's views of the frame dataset: tables and figures, computed from frames.csv."""
from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import pyplot as plt

from lus_utils.data import splits
from lus_utils.images import intensity_stats, load_image
from lus_utils.params import MINORITY_CLASS
from lus_utils.plots import image_grid

GATE_STD, GATE_ENTROPY = 30.0, 4.7  # the seed study's thresholds for synthetic images, drawn for reference


def videos_table(frames: pd.DataFrame) -> pd.DataFrame:
    """One row per video (or still image): label, probe, patient, split, fold, frames kept."""
    return (frames.groupby("video_id")
            .agg(label=("label", "first"), probe=("probe", "first"), kind=("kind", "first"),
                 patient_id=("patient_id", "first"), split=("split", "first"), fold=("fold", "first"),
                 n_frames=("path", "size"), width=("width", "first"), height=("height", "first"))
            .reset_index().sort_values(["label", "video_id"]).reset_index(drop=True))


def plot_frames_per_video(frames: pd.DataFrame) -> plt.Figure:
    videos = videos_table(frames)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    sns.histplot(data=videos[videos.kind == "video"], x="n_frames", hue="label", multiple="stack",
                 bins=range(0, int(videos.n_frames.max()) + 2), ax=ax)
    ax.set(xlabel="frames kept per video", ylabel="videos", title="Frames per video (still images: 1 each)")
    fig.tight_layout()
    return fig


def plot_resolutions(frames: pd.DataFrame) -> plt.Figure:
    videos = videos_table(frames)
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.scatterplot(data=videos, x="width", y="height", hue="label", style="probe", ax=ax)
    ax.set(title="Resolution of each video / image (pixels)")
    fig.tight_layout()
    return fig


def sample_frames(frames: pd.DataFrame, per_group: int, seed: int) -> pd.DataFrame:
    """`per_group` frames per class and probe, from distinct videos where possible."""
    rng = np.random.default_rng(seed)
    picks = []
    for _, group in frames.groupby(["label", "probe"]):
        one_per_video = group.groupby("video_id").head(1)
        pool = one_per_video if len(one_per_video) >= per_group else group
        picks.append(pool.iloc[rng.permutation(len(pool))[:per_group]])
    return pd.concat(picks).reset_index(drop=True)


def plot_sample_grid(frames: pd.DataFrame, per_group: int, seed: int, size: int = 160) -> plt.Figure:
    picked = sample_frames(frames, per_group, seed)
    images = [load_image(p, size) for p in picked.abspath]
    titles = [f"{r.label} / {r.probe}\n{r.video_id[:22]}" for r in picked.itertuples()]
    return image_grid(images, titles, ncols=per_group * 2)


def intensity_table(frames: pd.DataFrame, per_class: int, seed: int) -> pd.DataFrame:
    """Grey-level mean, std and histogram entropy (nats) of up to `per_class` frames per class (0 = all)."""
    rng = np.random.default_rng(seed)
    rows = []
    for label, group in frames.groupby("label"):
        if per_class and len(group) > per_class:
            group = group.iloc[np.sort(rng.permutation(len(group))[:per_class])]
        for record in group.itertuples():
            rows.append({"label": label, "video_id": record.video_id,
                         **intensity_stats(load_image(record.abspath))})
    return pd.DataFrame(rows)


def plot_intensity(stats: pd.DataFrame) -> plt.Figure:
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, column in zip(axes, ("mean", "std", "entropy")):
        sns.boxplot(data=stats, x="label", y=column, ax=ax, color="0.85")
        sns.stripplot(data=stats, x="label", y=column, ax=ax, size=2, alpha=0.5)
        ax.set(xlabel="", title=f"grey-level {column}" + (" (nats)" if column == "entropy" else ""))
    axes[1].axhline(GATE_STD, color="crimson", ls="--", lw=1, label="seed gate")
    axes[2].axhline(GATE_ENTROPY, color="crimson", ls="--", lw=1, label="seed gate")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def gate_pass_rates(stats: pd.DataFrame) -> pd.DataFrame:
    """Share of real frames per class that would pass the seed's synthetic-image gate."""
    passed = (stats["std"] > GATE_STD) & (stats["entropy"] > GATE_ENTROPY)
    return passed.groupby(stats["label"]).mean().rename("share passing seed gate").to_frame()


def minority_table(frames: pd.DataFrame) -> pd.DataFrame:
    videos = videos_table(frames)
    return videos[videos.label == MINORITY_CLASS].reset_index(drop=True)


def plot_minority_frames(frames: pd.DataFrame, size: int = 96) -> plt.Figure:
    """Every minority frame, one row per video, titled with patient and split."""
    minority = frames[frames.label == MINORITY_CLASS].sort_values(["video_id", "frame_index"])
    images = [load_image(p, size) for p in minority.abspath]
    titles = [f"{r.video_id[:16]} #{r.frame_index}\n{r.patient_id} {r.split}" for r in minority.itertuples()]
    return image_grid(images, titles, ncols=10, cell_inches=1.3)


def split_tables(frames: pd.DataFrame, n_folds: int) -> dict[str, pd.DataFrame]:
    """The printable class x part table of the hold-out split and of every fold."""
    tables = {"hold-out": splits.summary_wide(frames, "split")}
    for fold in range(n_folds):
        tables[f"fold {fold}"] = splits.summary_wide(frames, splits.split_column(fold))
    return tables


def skipped_table(report: dict) -> pd.DataFrame:
    """The input files that were skipped or excluded, with why."""
    rows = ([{**r, "status": "skipped"} for r in report["skipped"]]
            + [{**r, "status": "excluded by parameters"} for r in report["excluded"]])
    return pd.DataFrame(rows, columns=["file", "reason", "status"])


def folds_overview(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Patients per class and part for every fold, side by side."""
    per_fold = {name: table["patients"] for name, table in tables.items() if name.startswith("fold")}
    return pd.concat(per_fold, axis=1)
