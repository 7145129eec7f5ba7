"""The comparison's figures, written as PNG under <out>/comparison/figures and shown by notebook 06 and the report
(the same files): the answer (the primary effects beside their reference points, and the simulated design's
real-patient curve), the paired effects as a forest plot, the per-viral-patient panel. Every condition and metric
is named by its display label (`labels`)."""
from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.ticker import NullFormatter
import pandas as pd

from lus_utils.compare.conclusions import pair_words
from lus_utils.compare.labels import comparison_label, condition_label
from lus_utils.compare.patients import MEASURE_LABELS, MEASURES
from lus_utils.compare.real_patient_curve import is_curve_point
from lus_utils.compare.result import Comparison
from lus_utils.compare.text import num
from lus_utils.provenance import atomic_path
from lus_utils.vocabulary import Condition, metric_label

PALETTE = {"primary, significant": "#c0392b", "primary": "#2c3e50", "exploratory": "#7f8c8d",
           "leakage ablation": "#bdc3c7"}
REFERENCE_COLOURS = {"condition": "#2c3e50", "baseline": "#7f8c8d", "oversampling control": "#16a085",
                     "metadata reference": "#d35400"}


def save_figure(fig: Any, folder: Path, name: str) -> Path:
    target = Path(folder) / f"{name}.png"
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return target


def placeholder(text: str, folder: Path, name: str) -> Any:
    fig, ax = plt.subplots(figsize=(6, 1.3))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center")
    save_figure(fig, folder, name)
    return fig


def wrapped(label: str, width: int = 36) -> str:
    """A long display label on a few short lines, so an axis keeps its width."""
    return "\n".join(textwrap.wrap(label, width)) or label


def _kind(r: pd.Series) -> str:
    if r["leakage"]:
        return "leakage ablation"
    if r["primary"]:
        return "primary, significant" if r["significant"] else "primary"
    return "exploratory"


def _interval_row(ax: Any, y: float, mean: float, lo: float, hi: float, colour: str, marker: str = "o") -> None:
    if not math.isfinite(num(mean)):
        return
    has_ci = math.isfinite(num(lo)) and math.isfinite(num(hi))
    if has_ci:
        ax.plot([lo, hi], [y, y], color=colour, lw=2)
    ax.plot(mean, y, marker, color=colour, mfc=colour if has_ci else "white")


def _reference_panel(ax: Any, comp: Comparison, primary: pd.DataFrame) -> None:
    """Each primary comparison's condition, its baseline, the oversampling control and the metadata reference of
    its design: the primary metric's mean with its interval."""
    rows: list[tuple[str, str, pd.Series]] = []
    summary = comp.summary
    for _, p in primary.iterrows():
        block = summary[(summary["design"] == p["design"]) & (summary["target"] == p["target_class"])
                        & (summary["metric"] == p["metric"])]
        named = {"condition": p["condition"], "baseline": p["baseline"]}
        control = [c for c in block["condition"] if Condition.parse(c).oversample]
        if control:
            named["oversampling control"] = control[0]
        reference = block[block["reference"]]
        if len(reference):
            named["metadata reference"] = reference["condition"].iloc[0]
        for role, name in named.items():
            match = block[(block["condition"] == name) & ((block["arch"] == p["arch"]) | block["reference"])]
            if len(match) and not any(r[1] == name for r in rows):
                rows.append((role, name, match.iloc[0]))
    for y, (role, name, r) in enumerate(rows):
        _interval_row(ax, y, r["mean"], r["lo"], r["hi"], REFERENCE_COLOURS[role])
    ax.set_yticks(range(len(rows)), [wrapped(condition_label(name)) for _, name, _ in rows], fontsize=7)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    metric = primary["metric"].iloc[0]
    ax.set_xlabel(metric_label(metric, primary["target_class"].iloc[0]) + "\n(mean over units, 95% interval)",
                  fontsize=8)
    ax.set_title("the conditions beside their reference points", fontsize=10)
    handles = [plt.Line2D([], [], color=c, marker="o", lw=2, label=k) for k, c in REFERENCE_COLOURS.items()]
    ax.legend(handles=handles, fontsize=7, loc="lower right")


def _effects_panel(ax: Any, primary: pd.DataFrame) -> None:
    """The primary paired differences with their intervals and the smallest effect each design could detect."""
    for y, (_, r) in enumerate(primary.iterrows()):
        _interval_row(ax, y, r["mean_diff"], r["ci_low"], r["ci_high"], PALETTE[_kind(r)])
        mde = num(r["mde"])
        if math.isfinite(mde):
            ax.plot([-mde, mde], [y + 0.25, y + 0.25], color="#bdc3c7", lw=4, solid_capstyle="butt")
    ax.axvline(0, color="black", lw=1)
    labels = [wrapped(f"{pair_words(r['condition'], r['baseline'])} ({metric_label(r['metric'], r['target_class'])})")
              for _, r in primary.iterrows()]
    ax.set_yticks(range(len(primary)), labels, fontsize=7)
    ax.set_ylim(len(primary) - 0.5, -0.6)
    ax.set_xlabel("paired difference, 95% interval\n(grey: the smallest change the design could detect)", fontsize=8)
    ax.set_title("primary comparisons (Holm over these)", fontsize=10)


def answer_plot(comp: Comparison) -> Any:
    """The report's first figure: the primary effects, their conditions beside the reference points, and (with the
    simulated design) its real-patient curve; `answer.png`."""
    eff = comp.effects
    primary = eff[eff["primary"]] if not eff.empty else eff
    if primary.empty:
        return placeholder("no declared primary comparison could be computed", comp.figures, "answer")
    panels = 3 if not comp.curve.empty else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 0.45 * len(primary) + 3.4), squeeze=False)
    _effects_panel(axes[0][0], primary)
    _reference_panel(axes[0][1], comp, primary)
    if panels == 3:
        _curve_panel(axes[0][2], comp.curve, comp.exchange, str(comp.curve["target"].iloc[0]), "minority_ap")
    fig.tight_layout()
    save_figure(fig, comp.figures, "answer")
    return fig


def forest_plot(effects: pd.DataFrame, level: float, folder: Path) -> Any:
    """Mean paired difference with its interval per comparison (rows) and metric (panels); `forest.png`."""
    if effects.empty:
        return placeholder("no paired comparisons (no run matched a baseline run)", folder, "forest")
    eff = effects.assign(row=[f"{'★ ' if r['primary'] else ''}{comparison_label(r['condition'], r['baseline'])}"
                              f"{' [leakage]' if r['leakage'] else ''} · {r['arch']}" for _, r in effects.iterrows()])
    rows = list(dict.fromkeys(eff["row"]))
    metrics = list(dict.fromkeys(zip(eff["metric"], eff["target_class"])))
    ncols = min(4, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.8 * ncols + 7, nrows * (0.33 * len(rows) + 1.2) + 0.8),
                             sharey=True, squeeze=False)
    for ax in axes.ravel()[len(metrics):]:
        ax.axis("off")
    for ax, (metric, target) in zip(axes.ravel(), metrics):
        block = eff[(eff["metric"] == metric) & (eff["target_class"] == target)].set_index("row").reindex(rows)
        for y, (_, r) in enumerate(block.iterrows()):
            if isinstance(r["primary"], bool):
                _interval_row(ax, y, r["mean_diff"], r["ci_low"], r["ci_high"], PALETTE[_kind(r)])
        ax.axvline(0, color="black", lw=1)
        ax.set_title(metric_label(metric, target), fontsize=9)
        ax.tick_params(labelsize=8)
    axes[0][0].set_yticks(range(len(rows)), rows, fontsize=7)
    axes[0][0].set_ylim(len(rows) - 0.5, -0.5)
    handles = [plt.Line2D([], [], color=c, marker="o", lw=2, label=k) for k, c in PALETTE.items()]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, -0.02))
    fig.suptitle(f"Paired differences to the baseline with their {level:.0%} intervals (★ declared primary)",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 0.96))
    save_figure(fig, folder, "forest")
    return fig


def patient_plot(patients: pd.DataFrame, minority: str, folder: Path) -> Any:
    """Per viral patient (lines), each condition's mean of every measure (panels); `patients.png`."""
    if patients.empty:
        return placeholder("no minority patient in any run's predictions", folder, "patients")
    conditions = list(dict.fromkeys(patients["condition"]))
    fig, axes = plt.subplots(1, len(MEASURES), figsize=(4.4 * len(MEASURES), 0.3 * len(conditions) + 2.5),
                             squeeze=False)
    for ax, measure in zip(axes[0], MEASURES):
        for patient, block in patients.groupby("patient_id", sort=True):
            block = block.groupby("condition", sort=False)[measure].mean().reindex(conditions)
            ax.plot(block.to_numpy(), range(len(conditions)), "o-", lw=0.8, ms=4, label=str(patient))
        ax.set_title(MEASURE_LABELS[measure].format(m=minority), fontsize=10)
        ax.set_yticks(range(len(conditions)), [condition_label(c) for c in conditions] if ax is axes[0][0] else [],
                      fontsize=7)
        ax.set_ylim(len(conditions) - 0.5, -0.5)
    axes[0][-1].legend(title=f"{minority} patient", fontsize=7, loc="best")
    fig.suptitle(f"Each {minority} patient's test frames under every condition (mean over runs)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, folder, "patients")
    return fig


def _curve_panel(ax: Any, curve: pd.DataFrame, exchange: pd.DataFrame, target: str, metric: str) -> None:
    rows = curve[(curve["target"] == target) & (curve["metric"] == metric)]
    points = rows[rows["condition"].map(lambda c: is_curve_point(Condition.parse(c)))].sort_values("k")
    ax.fill_between(points["k"], points["lower"], points["upper"], color="#95a5a6", alpha=0.35,
                    label="interval over draws")
    ax.plot(points["k"], points["estimate"], "o-", color="#2c3e50", label="real patients only (the curve)")
    worth = exchange[(exchange["target"] == target) & (exchange["metric"] == metric)].set_index("condition") \
        if not exchange.empty else pd.DataFrame()
    others = rows[~rows.index.isin(points.index) & ~rows["condition"].map(lambda c: Condition.parse(c).reference)]
    for i, (_, r) in enumerate(others.iterrows()):
        label = condition_label(r["condition"]).split(": ", 1)[-1]
        if r["condition"] in worth.index:
            label += f" (worth {worth.loc[r['condition'], 'patients']:+.1f} patients)"
        ax.errorbar(r["k"] * (1 + 0.07 * (i + 1)), r["estimate"],
                    yerr=[[r["estimate"] - r["lower"]], [r["upper"] - r["estimate"]]], fmt="s", capsize=3,
                    label=label)
    ax.set_xscale("log")
    ax.set_xticks(points["k"], [str(int(k)) for k in points["k"]])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"real {target} patients in training (k)", fontsize=8)
    ax.set_ylabel(metric_label(metric, target), fontsize=8)
    ax.set_title(f"simulated {target} minority ({int(points['n_draws'].max()) if len(points) else 0} draws)",
                 fontsize=10)
    ax.legend(fontsize=6, loc="best", framealpha=0.8)


def real_patient_curve_plot(curve: pd.DataFrame, exchange: pd.DataFrame, folder: Path,
                            metric: str = "minority_ap") -> Any:
    """Per target: the metric against real target patients (the curve, its band over draws), and each other
    condition at its k, labelled with what it is worth in real patients; `real_patient_curve.png`."""
    block = curve[curve["metric"] == metric] if not curve.empty else curve
    if block.empty:
        return placeholder("no simulated-minority run finished: no real-patient curve", folder, "real_patient_curve")
    targets = list(dict.fromkeys(block["target"]))
    fig, axes = plt.subplots(1, len(targets), figsize=(6.5 * len(targets), 4.4), squeeze=False)
    for ax, target in zip(axes[0], targets):
        _curve_panel(ax, curve, exchange, target, metric)
    fig.tight_layout()
    save_figure(fig, folder, "real_patient_curve")
    return fig
