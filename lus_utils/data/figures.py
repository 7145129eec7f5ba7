"""Notebook 01's figures of the frame dataset, drawn from frames.csv and `exploration`'s tables. Each function returns
its matplotlib Figure and draws nothing else."""
from __future__ import annotations

import pandas as pd
import seaborn as sns
from matplotlib import pyplot as plt

from lus_utils.data.exploration import GATE_ENTROPY, GATE_STD, SIZE_FEATURES, sample_frames, videos_table
from lus_utils.images import load_image
from lus_utils.vocabulary import VIRAL as MINORITY_CLASS
from lus_utils.plots import image_grid


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


def plot_sample_grid(frames: pd.DataFrame, per_group: int, seed: int, size: int = 160) -> plt.Figure:
    picked = sample_frames(frames, per_group, seed)
    images = [load_image(p, size) for p in picked.abspath]
    titles = [f"{r.label} / {r.probe}\n{r.video_id[:22]}" for r in picked.itertuples()]
    return image_grid(images, titles, ncols=per_group * 2)


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


def plot_minority_frames(frames: pd.DataFrame, size: int = 96) -> plt.Figure:
    """Every minority frame, one row per video, titled with patient and split."""
    minority = frames[frames.label == MINORITY_CLASS].sort_values(["video_id", "frame_index"])
    images = [load_image(p, size) for p in minority.abspath]
    titles = [f"{r.video_id[:16]} #{r.frame_index}\n{r.patient_id} {r.split}" for r in minority.itertuples()]
    return image_grid(images, titles, ncols=10, cell_inches=1.3)


def plot_native_sizes(frames: pd.DataFrame) -> plt.Figure:
    """Distribution of native width and height per class (one point per frame), log scale."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    order = sorted(frames["label"].unique())
    for ax, (name, column) in zip(axes, SIZE_FEATURES.items()):
        sns.boxplot(data=frames, x="label", y=column, order=order, ax=ax, color="0.85", showfliers=False)
        sns.stripplot(data=frames, x="label", y=column, hue="probe", order=order, ax=ax, size=2.5, alpha=0.5,
                      dodge=True)
        ax.set(yscale="log", xlabel="", ylabel=f"{name} (px, log scale)", title=f"{name} per frame")
    fig.tight_layout()
    return fig
