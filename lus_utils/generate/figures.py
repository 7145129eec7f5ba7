"""Figures of the generators and their synthetic-set audits (notebooks 04 and 05). Each function returns its
matplotlib Figure and draws nothing else."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lus_utils.synthetic_sets import passed_gate
from lus_utils.images import load_image
from lus_utils.plots import image_grid


def loss_and_sample_grids(losses: pd.DataFrame, grids: Sequence[tuple[str, Any]], max_grids: int = 6,
                          empty_note: str = "no training log") -> plt.Figure:
    """A generator's training loss (log scale, with a running mean), then the sample grids saved while it
    trained, evenly chosen; `grids` holds (title, PNG path) pairs."""
    chosen = list(grids)
    if len(chosen) > max_grids:
        chosen = [chosen[i] for i in np.linspace(0, len(chosen) - 1, max_grids).round().astype(int)]
    fig = plt.figure(figsize=(9, 2.4 + 1.1 * len(chosen)))
    spec = fig.add_gridspec(1 + len(chosen), 1, height_ratios=[2.2] + [1.1] * len(chosen))
    ax = fig.add_subplot(spec[0])
    if len(losses):
        ax.plot(losses["step"], losses["loss"], lw=0.6, alpha=0.4, label="loss")
        window = max(1, len(losses) // 25)
        ax.plot(losses["step"], losses["loss"].rolling(window, min_periods=1).mean(), lw=1.5,
                label=f"running mean ({window} steps)")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, empty_note, ha="center", transform=ax.transAxes)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("noise-prediction MSE")
    for i, (title, path) in enumerate(chosen):
        sub = fig.add_subplot(spec[1 + i])
        sub.imshow(mpimg.imread(str(path)), cmap="gray", vmin=0, vmax=1)
        sub.set_axis_off()
        sub.set_title(title, fontsize=8)
    fig.tight_layout()
    return fig


def ddpm_training_progress(log: pd.DataFrame, grid_paths: Sequence, max_grids: int = 6) -> plt.Figure:
    """Training loss over optimizer steps, and the sample grids saved during training (same noise each time)."""
    grids = [(f"EMA samples after {Path(path).stem.split('_')[0]} {int(Path(path).stem.rsplit('_', 1)[-1])}", path)
             for path in grid_paths]  # epoch_<n>.png, or step_<n>.png for the class-conditional variant
    return loss_and_sample_grids(log, grids, max_grids, "no training log (pipeline reused from the cache)")


def gate_examples(set_dir, manifest: pd.DataFrame, n: int = 12, ncols: int = 6) -> plt.Figure:
    """Kept and rejected images of a synthetic set side by side, with their grey std and entropy."""
    passed = passed_gate(manifest)
    half = max(1, n // 2)
    rows = pd.concat([manifest[passed].head(half), manifest[~passed].head(n - min(half, int(passed.sum())))])
    images = [load_image(Path(set_dir) / p, grayscale=True) for p in rows["path"]]
    titles = [f"{'kept' if ok else 'REJECTED'} std {s:.0f} H {e:.2f}"
              for ok, s, e in zip(passed[rows.index], rows["std"].astype(float), rows["entropy"].astype(float).abs())]
    return image_grid(images, titles, ncols=ncols, suptitle=f"quality gate: {int(passed.sum())} of {len(manifest)} kept")


def closest_pairs(pairs: Sequence[dict], ncols_pairs: int = 3, title: str = "") -> plt.Figure:
    """Each synthetic image beside its nearest real frame (from `synthetic_audit.closest_pair_images`)."""
    images, titles = [], []
    for pair in pairs:
        images += [pair["synthetic_image"], pair["real_image"]]
        titles += [f"synthetic {pair['synthetic'].split('/')[-1]}",
                   f"{pair['real_label']} r {pair['correlation']:.3f} SSIM {pair['ssim_of_best_candidate']:.2f}"]
    if not images:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.axis("off")
        ax.text(0.5, 0.5, "no pairs (no image)", ha="center")
        return fig
    return image_grid(images, titles, ncols=2 * ncols_pairs, cell_inches=1.6,
                      suptitle=title or "closest pairs: synthetic (left) and its nearest real frame (right)")


def similarity_distributions(audit: dict) -> plt.Figure:
    """Nearest-frame correlation and SSIM of synthetic images against what real frames reach (audit.json)."""
    groups = {f"synthetic vs {k}": v for k, v in audit["memorization"].items() if v.get("n")}
    groups.update({f"real {k}".replace("_vs_", " vs "): v for k, v in audit["real_reference"].items()
                   if isinstance(v, dict) and v.get("n")})
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.45 * len(groups) + 1.6), sharey=True)
    for ax, metric, threshold in zip(axes, ("correlation", "ssim"),
                                     (audit["thresholds"]["correlation"], audit["thresholds"]["ssim"])):
        values = [v["values"][metric] for v in groups.values()]
        ax.boxplot(values, vert=False, widths=0.6)
        for i, v in enumerate(values):
            ax.scatter(v, np.full(len(v), i + 1) + np.random.default_rng(i).uniform(-0.15, 0.15, len(v)), s=6,
                       alpha=0.5)
        ax.axvline(threshold, color="red", ls="--", lw=1, label=f"memorized above {threshold}")
        ax.set_xlabel(f"nearest-frame {'pixel correlation' if metric == 'correlation' else 'SSIM'}")
        ax.legend(fontsize=7, loc="lower left")
    axes[0].set_yticks(range(1, len(groups) + 1), list(groups), fontsize=8)
    fig.tight_layout()
    return fig


def intensity_histograms(audit: dict) -> plt.Figure:
    """Grey-level histograms of synthetic and real minority frames (audit.json `intensity`)."""
    info = audit["intensity"]
    edges = np.asarray(info["bin_edges"])
    centers = (edges[:-1] + edges[1:]) / 2
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    for name, density in info["density"].items():
        w = info["wasserstein_to_minority_train"].get(name)
        ax.plot(centers, density, marker=".", label=name + (f" (W1 to train {w:.1f})" if w is not None else ""))
    ax.set_xlabel("grey level")
    ax.set_ylabel("share of pixels")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def ti_token_learning(losses: pd.DataFrame, grids: Sequence, max_grids: int = 6) -> plt.Figure:
    """Textual-inversion loss, and the sample grids saved at checkpoints (same prompt and seeds each time).

    `grids` holds (step, PNG path) pairs; step 0 shows the initializer token's embedding.
    """
    titled = [("step 0: the initializer token" if step == 0 else f"after step {step}", path) for step, path in grids]
    return loss_and_sample_grids(losses, titled, max_grids)


def source_output_pairs(sources: Sequence[np.ndarray], outputs: Sequence[np.ndarray], ncols_pairs: int = 4,
                        suptitle: str = "") -> plt.Figure:
    """Image-to-image: each real source frame (left) beside the image generated from it (right)."""
    images, titles = [], []
    for i, (source, output) in enumerate(zip(sources, outputs)):
        images += [source, output]
        titles += [f"source {i}", f"generated {i}"]
    return image_grid(images, titles, ncols=2 * ncols_pairs, cell_inches=1.6,
                      suptitle=suptitle or "image-to-image: real training frame (left), generated (right)")
