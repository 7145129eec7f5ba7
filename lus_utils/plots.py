"""Figures shared by the notebooks. Each function returns its matplotlib Figure and draws nothing else."""
from __future__ import annotations

from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def image_grid(images: Sequence[np.ndarray], titles: Sequence[str] | None = None, ncols: int = 6,
               cell_inches: float = 1.8, suptitle: str | None = None) -> plt.Figure:
    """A grid of uint8 images (grey or RGB) with optional small titles."""
    n = max(1, len(images))
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * cell_inches, nrows * cell_inches + 0.3),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, image in enumerate(images):
        ax = axes.ravel()[i]
        ax.imshow(image, cmap="gray" if np.asarray(image).ndim == 2 else None, vmin=0, vmax=255)
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=7)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig


# --- classifier runs (notebooks 02 and 03) ----------------------------------------------------------------
def training_curves(history: pd.DataFrame) -> plt.Figure:
    """Training and validation loss, validation balanced accuracy and learning rate per epoch."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.4))
    epochs = history["epoch"]
    ax_loss.plot(epochs, history["train_loss"], marker="o", label="train loss")
    ax_loss.plot(epochs, history["val_loss"], marker="o", label="validation loss")
    best = history.loc[history["val_loss"].idxmin()] if history["val_loss"].notna().any() else None
    if best is not None:
        ax_loss.axvline(best["epoch"], color="grey", linestyle=":", label=f"kept: epoch {int(best['epoch'])}")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross entropy")
    ax_loss.legend(fontsize=8)
    ax_acc.plot(epochs, history["val_balanced_accuracy"], marker="o", color="tab:green",
                label="validation balanced accuracy")
    ax_acc.set_ylim(0, 1)
    ax_acc.set_xlabel("epoch")
    ax_lr = ax_acc.twinx()
    ax_lr.step(epochs, history["lr"], where="mid", color="tab:grey", alpha=0.6, label="learning rate")
    ax_lr.set_yscale("log")
    ax_lr.set_ylabel("learning rate", fontsize=8)
    ax_acc.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def confusion_matrices(metrics: dict) -> plt.Figure:
    """Test confusion matrices, frame and video level (rows: true class, columns: predicted), row-normalised
    colours with counts written in."""
    import seaborn as sns

    classes = metrics["classes"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, (title, block) in zip(axes, (("frames", metrics), ("videos", metrics["video"]))):
        counts = np.asarray(block["confusion_matrix"], dtype=float)
        rows = counts.sum(axis=1, keepdims=True)
        share = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
        sns.heatmap(share, annot=counts.astype(int), fmt="d", cmap="Blues", vmin=0, vmax=1, cbar=False, ax=ax,
                    xticklabels=classes, yticklabels=classes)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{title}: balanced accuracy {block['balanced_accuracy']:.3f}", fontsize=10)
    fig.tight_layout()
    return fig


def roc_pr_curves(predictions: pd.DataFrame, classes: Sequence[str]) -> plt.Figure:
    """One-vs-rest ROC and precision-recall curves per class on the test frames."""
    from sklearn.metrics import auc, precision_recall_curve, roc_curve

    fig, (ax_roc, ax_pr) = plt.subplots(1, 2, figsize=(10, 4))
    for label in classes:
        positive = (predictions["label"] == label).to_numpy()
        score = predictions[f"prob_{label}"].to_numpy()
        if not positive.any() or positive.all():
            ax_roc.plot([], [], label=f"{label}: absent from test")
            continue
        fpr, tpr, _ = roc_curve(positive, score)
        precision, recall, _ = precision_recall_curve(positive, score)
        ax_roc.plot(fpr, tpr, label=f"{label} (AUROC {auc(fpr, tpr):.2f})")
        ax_pr.plot(recall, precision, label=f"{label} (prevalence {positive.mean():.2f})")
    ax_roc.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, one vs rest")
    ax_pr.set(xlabel="recall", ylabel="precision", title="precision-recall, one vs rest", ylim=(0, 1.02))
    ax_roc.legend(fontsize=8)
    ax_pr.legend(fontsize=8)
    fig.tight_layout()
    return fig


def misclassified_grid(predictions: pd.DataFrame, n: int = 24, size: int = 96, seed: int = 0,
                       ncols: int = 8) -> plt.Figure:
    """Misclassified test frames (needs an `abspath` column), minority classes first, as true -> predicted."""
    from lus_utils.images import load_image

    wrong = predictions[predictions["label"] != predictions["pred"]]
    if wrong.empty:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.axis("off")
        ax.text(0.5, 0.5, "no misclassified test frame", ha="center", va="center")
        return fig
    rarity = wrong["label"].map(predictions["label"].value_counts())
    shuffled = wrong.assign(rarity=rarity).sample(frac=1.0, random_state=seed)
    chosen = shuffled.sort_values("rarity", kind="stable").head(n)
    images = [load_image(p, size) for p in chosen["abspath"]]
    titles = [f"{t} -> {p} ({row[f'prob_{p}']:.2f})" for t, p, (_, row) in
              zip(chosen["label"], chosen["pred"], chosen.iterrows())]
    return image_grid(images, titles, ncols=ncols,
                      suptitle=f"{len(chosen)} of {len(wrong)} misclassified test frames (true -> predicted)")


def compare_runs(table: pd.DataFrame, metrics: Sequence[str] | None = None) -> plt.Figure:
    """Grouped bars of headline test figures for runs side by side (rows of `training.compare_runs`)."""
    done = table[table["condition"] != "(not run)"]
    if metrics is None:
        metrics = ["balanced_accuracy", "macro_f1"] + [c for c in done.columns if c.startswith("recall_")]
    values = done[list(metrics)].astype(float)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(metrics) * max(1, len(done)) / 2), 3.6))
    width = 0.8 / max(1, len(done))
    x = np.arange(len(metrics))
    for i, (run_id, row) in enumerate(values.iterrows()):
        ax.bar(x + i * width - 0.4 + width / 2, row.to_numpy(), width, label=done.loc[run_id, "condition"])
    ax.set_xticks(x)
    ax.set_xticklabels(metrics, rotation=20, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title("test figures (frame level)", fontsize=10)
    fig.tight_layout()
    return fig


# --- DDPM generators and synthetic-set audits (notebooks 04 and 05) ------------------------------------------
def loss_and_sample_grids(losses: pd.DataFrame, grids: Sequence[tuple[str, Any]], max_grids: int = 6,
                          empty_note: str = "no training log") -> plt.Figure:
    """A generator's training loss (log scale, with a running mean), then the sample grids saved while it
    trained, evenly chosen; `grids` holds (title, PNG path) pairs."""
    import matplotlib.image as mpimg

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
    grids = [(f"EMA samples after epoch {int(str(path).rsplit('_', 1)[-1].split('.')[0])}", path)
             for path in grid_paths]
    return loss_and_sample_grids(log, grids, max_grids, "no training log (pipeline reused from the cache)")


def gate_examples(set_dir, manifest: pd.DataFrame, n: int = 12, ncols: int = 6) -> plt.Figure:
    """Kept and rejected images of a synthetic set side by side, with their grey std and entropy."""
    from pathlib import Path

    from lus_utils.images import load_image

    from lus_utils.generate.synthetic import passed_gate

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


# --- textual inversion (notebook 04) ----------------------------------------------------------------------------
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
