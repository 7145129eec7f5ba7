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
from lus_utils.compare.real_patient_curve import is_curve_point
from lus_utils.vocabulary import Condition, metric_label

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


def real_patient_curve_plot(curve: pd.DataFrame, exchange: pd.DataFrame, folder: Path,
                            metric: str = "minority_ap") -> Any:
    """Per target: the metric against real target patients (the curve, mean over draws with its band), and each
    other condition at its k (a point with its interval), labelled with what it is worth in real patients."""
    import matplotlib.pyplot as plt

    block = curve[curve["metric"] == metric] if not curve.empty else curve
    if block.empty:
        return _placeholder("no simulated-minority run finished: no real-patient curve", folder, "real_patient_curve")
    targets = list(dict.fromkeys(block["target"]))
    fig, axes = plt.subplots(1, len(targets), figsize=(6.2 * len(targets), 4.2), squeeze=False)
    for ax, target in zip(axes[0], targets):
        rows = block[block["target"] == target]
        points = rows[rows["condition"].map(lambda c: is_curve_point(Condition.parse(c)))].sort_values("k")
        ax.fill_between(points["k"], points["lower"], points["upper"], color="#95a5a6", alpha=0.35,
                        label="interval over draws")
        ax.plot(points["k"], points["estimate"], "o-", color="#2c3e50", label="real patients (the curve)")
        others = rows[~rows.index.isin(points.index)]
        worth = exchange[(exchange["target"] == target) & (exchange["metric"] == metric)].set_index("condition") \
            if not exchange.empty else pd.DataFrame()
        for i, (_, r) in enumerate(others.iterrows()):
            x = r["k"] * (1 + 0.06 * (i + 1))  # side by side at k
            ax.errorbar(x, r["estimate"], yerr=[[r["estimate"] - r["lower"]], [r["upper"] - r["estimate"]]],
                        fmt="s", capsize=3, label=r["condition"].split("/", 1)[1] + (
                            f" (worth {worth.loc[r['condition'], 'patients']:+.1f} patients)"
                            if r["condition"] in worth.index else ""))
        ax.set_xscale("log")
        ax.set_xticks(points["k"], [str(k) for k in points["k"]])
        ax.set_xlabel(f"real {target} patients in training (k)")
        ax.set_ylabel(metric_label(metric, target))
        ax.set_title(f"simulated minority: {target} ({int(points['n_draws'].max()) if len(points) else 0} draws)",
                     fontsize=10)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    save_figure(fig, folder, "real_patient_curve")
    return fig
