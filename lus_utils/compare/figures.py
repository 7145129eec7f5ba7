"""The comparison's figures, written as PNG under <out>/comparison/figures: the forest plot of paired
effects (primary comparisons first), the per-minority-patient panel, and synthetic images beside their
nearest training frames."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from lus_utils.compare.audit_tables import example_pairs
from lus_utils.compare.patients import MEASURE_LABELS, MEASURES
from lus_utils.compare.text import num
from lus_utils.vocabulary import metric_label

PALETTE = {"primary, significant": "#c0392b", "primary": "#2c3e50", "exploratory": "#7f8c8d",
           "leakage ablation": "#bdc3c7"}


def save_figure(fig: Any, folder: Path, name: str) -> Path:
    from lus_utils.provenance import atomic_path

    target = Path(folder) / f"{name}.png"
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return target


def _placeholder(text: str, folder: Path, name: str) -> Any:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 1.3))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center")
    save_figure(fig, folder, name)
    return fig


def _kind(r: pd.Series) -> str:
    if r["leakage"]:
        return "leakage ablation"
    if r["primary"]:
        return "primary, significant" if r["significant"] else "primary"
    return "exploratory"


def _forest_panel(ax: Any, block: pd.DataFrame, rows: list[str], title: str) -> None:
    block = block.set_index("row").reindex(rows)
    for y, (_, r) in enumerate(block.iterrows()):
        if not math.isfinite(num(r["mean_diff"])):
            continue
        colour = PALETTE[_kind(r)]
        has_ci = math.isfinite(num(r["ci_low"]))
        if has_ci:
            ax.plot([r["ci_low"], r["ci_high"]], [y, y], color=colour, lw=2)
        ax.plot(r["mean_diff"], y, "o", color=colour, mfc=colour if has_ci else "white")
    ax.axvline(0, color="black", lw=1)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("difference to baseline", fontsize=8)
    ax.tick_params(labelsize=8)


def forest_plot(effects: pd.DataFrame, minority: str, level: float, folder: Path) -> Any:
    """Mean paired difference with its patient-bootstrap interval per comparison (rows) and metric (panels)."""
    import matplotlib.pyplot as plt

    if effects.empty:
        return _placeholder("no paired comparisons (no run matched a baseline run)", folder, "forest")
    eff = effects.assign(row=[f"{'★ ' if p else ''}{c} vs {b}{' [leakage]' if leak else ''} · {a}" for a, c, b, p, leak
                              in zip(effects["arch"], effects["condition"], effects["baseline"], effects["primary"],
                                     effects["leakage"])])
    rows = list(dict.fromkeys(eff["row"]))
    metrics = list(dict.fromkeys(eff["metric"]))
    ncols = min(4, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.8 * ncols + 4, nrows * (0.35 * len(rows) + 1.2) + 0.8),
                             sharey=True, squeeze=False)
    for ax in axes.ravel()[len(metrics):]:
        ax.axis("off")
    for ax, metric in zip(axes.ravel(), metrics):
        _forest_panel(ax, eff[eff["metric"] == metric], rows, metric_label(metric, minority))
    axes[0][0].set_yticks(range(len(rows)))
    axes[0][0].set_yticklabels(rows, fontsize=8)
    axes[0][0].set_ylim(len(rows) - 0.5, -0.5)
    handles = [plt.Line2D([], [], color=c, marker="o", lw=2, label=k) for k, c in PALETTE.items()]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, -0.02))
    fig.suptitle(f"Paired differences to the baseline, mean over (repeat, seed) pairs and {level:.0%} "
                 "patient-bootstrap interval (★ declared primary)", fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 0.96))
    save_figure(fig, folder, "forest")
    return fig


def patient_plot(patients: pd.DataFrame, minority: str, folder: Path) -> Any:
    """Per minority patient (columns of dots), each condition's mean of every measure (panels)."""
    import matplotlib.pyplot as plt

    if patients.empty:
        return _placeholder("no minority patient in any run's predictions", folder, "patients")
    height = 0.3 * patients["condition"].nunique() + 2.5
    fig, axes = plt.subplots(1, len(MEASURES), figsize=(4.2 * len(MEASURES), height), squeeze=False)
    conditions = list(dict.fromkeys(patients["condition"]))
    for ax, measure in zip(axes[0], MEASURES):
        for patient, block in patients.groupby("patient_id", sort=True):
            block = block.groupby("condition", sort=False)[measure].mean().reindex(conditions)
            ax.plot(block.to_numpy(), range(len(conditions)), "o-", lw=0.8, ms=4, label=str(patient))
        ax.set_title(MEASURE_LABELS[measure].format(m=minority), fontsize=10)
        ax.set_yticks(range(len(conditions)))
        ax.set_yticklabels(conditions if ax is axes[0][0] else [], fontsize=8)
        ax.set_ylim(len(conditions) - 0.5, -0.5)
    axes[0][-1].legend(title=f"{minority} patient", fontsize=7, loc="best")
    fig.suptitle(f"Each {minority} patient's test frames under every condition (mean over runs)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, folder, "patients")
    return fig


def example_pairs_plot(out_dir: Path, audits: pd.DataFrame, n: int, folder: Path) -> Any:
    """Per synthetic set, its images closest to a training frame, each beside that frame (what memorizes)."""
    import matplotlib.pyplot as plt

    from lus_utils.images import load_image

    sets = audits["synthetic_set"].tolist() if not audits.empty else []
    found = {s: pairs for s in sets if (pairs := example_pairs(out_dir, s, n))}
    if not found:
        return _placeholder("no synthetic images with a recorded nearest training frame", folder, "example_pairs")
    ncols = 2 * max(len(p) for p in found.values())
    fig, axes = plt.subplots(len(found), ncols, figsize=(1.6 * ncols, 1.9 * len(found) + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for row, (name, pairs) in enumerate(found.items()):
        for i, (synthetic, train, similarity) in enumerate(pairs):
            for j, (path, title) in enumerate(((synthetic, f"synthetic\nsim {similarity:.2f}"),
                                               (train, "nearest train"))):
                ax = axes[row][2 * i + j]
                ax.imshow(load_image(path, grayscale=True), cmap="gray", vmin=0, vmax=255)
                ax.set_title(title, fontsize=7)
        axes[row][0].text(-0.1, 0.5, name, transform=axes[row][0].transAxes, rotation=90, ha="right",
                          va="center", fontsize=8)
    fig.suptitle("Synthetic images closest to a training frame (left) and that frame (right)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, folder, "example_pairs")
    return fig
