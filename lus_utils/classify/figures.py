"""Figures of a classifier run (notebooks 02 and 03). Each function returns its matplotlib Figure and draws nothing
else."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from sklearn.metrics import auc, precision_recall_curve, roc_curve

from lus_utils.images import load_image
from lus_utils.plots import image_grid


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
