"""What notebook 06 and the report show of a comparison: its tables as the reader sees them (display labels for
conditions, families and metrics; the raw names stay in the CSVs and the glossary maps them), as HTML fragments
written beside the CSVs, and the one-line overview."""
from __future__ import annotations

import numpy as np
import pandas as pd

from lus_utils.compare import conditions as K
from lus_utils.compare import patients as PT
from lus_utils.compare.audit_tables import audit_display
from lus_utils.compare.conclusions import LEAKAGE_NOTE, ORIGINAL_REPLICA_NOTE
from lus_utils.compare.labels import arch_label, comparison_label, condition_label, design_label, glossary
from lus_utils.compare.result import Comparison
from lus_utils.compare.text import fmt_p, interval
from lus_utils.config.classify import EvaluationParams
from lus_utils.vocabulary import Condition, metric_label


def html_table(frame: pd.DataFrame, index: bool = True, floats: str = "{:.3f}") -> str:
    if frame is None or frame.empty:
        return "<p><em>nothing to show</em></p>"
    return frame.to_html(index=index, na_rep="n/a", float_format=floats.format, classes="table", border=0,
                         escape=True)


def labelled(frame: pd.DataFrame, columns: tuple[str, ...] = ("condition",)) -> pd.DataFrame:
    """`frame` with its condition columns (and index levels) shown by their display labels."""
    out = frame.copy()
    for column in columns:
        if column in out.columns:
            out[column] = out[column].map(condition_label)
    if isinstance(out.index, pd.MultiIndex) and set(columns) & set(out.index.names):
        out.index = out.index.set_levels([level.map(condition_label) if name in columns else level
                                          for name, level in zip(out.index.names, out.index.levels)])
    elif out.index.name in columns:
        out.index = out.index.map(condition_label)
    return out


def tables_html(comp: Comparison) -> str:
    """The per-design and per-architecture tables as one HTML fragment, with how the intervals were made."""
    parts = [f"<p>Each cell: mean over the condition's units with its {comp.evaluation.ci_level:.0%} interval: viral "
             f"design, (repeat, seed) runs and {comp.evaluation.n_boot} class-stratified patient-bootstrap resamples "
             f"({comp.n_minority_patients} {comp.params.minority_class} patients); simulated design, draws and "
             "resamples of the draws.</p>"]
    for name, table in comp.tables.items():
        parts.append(f"<h3>{name}</h3>")
        if "replica" in name:
            parts.append(f"<p><strong>{ORIGINAL_REPLICA_NOTE}.</strong></p>")
        elif "leakage" in name:
            parts.append(f"<p><strong>{LEAKAGE_NOTE}.</strong></p>")
        parts.append(html_table(labelled(table)))
    return "\n".join(parts)


def effects_display(table: pd.DataFrame, evaluation: EvaluationParams) -> pd.DataFrame:
    """The effects as read in the report: primary first with test and Holm p; exploratory with intervals only."""
    level = f"{evaluation.ci_level:.0%}"
    rows = []
    for _, r in table.iterrows():
        kind = ("original replica" if Condition.parse(r["condition"]).original_replica else "leakage ablation"
                if r["leakage"] else "primary" if r["primary"] else "exploratory")
        rows.append({"kind": kind, "design": design_label(r["design"]), "arch": arch_label(r["arch"]),
                     "comparison": comparison_label(r["condition"], r["baseline"]),
                     "metric": metric_label(r["metric"], r["target_class"]), "pairs": r["n_pairs"],
                     f"difference [{level} interval]": K.cell(r["mean_diff"], r["ci_low"], r["ci_high"], r["n_pairs"]),
                     "p (exact Wilcoxon)": fmt_p(r["p"]) if r["primary"] else "",
                     "p (Holm, primary)": fmt_p(r["p_adj"]) if r["primary"] else "",
                     "smallest p": fmt_p(r["smallest_p"]) if r["primary"] else "",
                     "detectable effect": f"{r['mde']:.3f}" if r["primary"] and np.isfinite(r["mde"]) else (
                         "none" if r["primary"] and r["mde"] == np.inf else ""), "note": r["note"]})
    frame = pd.DataFrame(rows)
    return frame.set_index(["kind", "design", "arch", "comparison", "metric"]) if len(frame) else frame


def references_display(comp: Comparison) -> pd.DataFrame:
    """Every condition's minority figures beside its reference points, labelled."""
    table = comp.references
    if table.empty:
        return table
    flat = table.reset_index()
    for column in ("baseline", "oversampling control"):
        flat[column] = [value.replace(f"({raw})", f"({condition_label(raw)})") if "(" in value else value
                        for value, raw in zip(flat[column], flat[column].str.extract(r"\(([^)]*)\)$")[0].fillna(""))]
    flat["condition"] = flat["condition"].map(condition_label)
    flat["arch"] = flat["arch"].map(arch_label)
    flat["design"] = flat["design"].map(design_label)
    return flat.set_index(["design", "arch", "condition", "metric"])


def patient_display(comp: Comparison) -> pd.DataFrame:
    """Per viral patient (rows) and condition (columns): mean minority probability, median rank, sensitivity."""
    table = comp.patients
    if table.empty:
        return table
    wide = table.pivot_table(index=["patient_id", "probe", "videos"], columns="condition",
                             values=list(PT.MEASURES), aggfunc="mean", sort=False)
    wide.columns = [f"{condition_label(c)} · {PT.MEASURE_LABELS[m].format(m=comp.params.minority_class)}"
                    for m, c in wide.columns]
    return wide.reset_index()


def curve_display(comp: Comparison, metric: str = "minority_ap") -> pd.DataFrame:
    """The real-patient curve and every condition at its k, with what it is worth in real patients."""
    if comp.curve.empty:
        return comp.curve
    block = comp.curve[comp.curve["metric"] == metric]
    worth = comp.exchange[comp.exchange["metric"] == metric].set_index("condition") if not comp.exchange.empty \
        else pd.DataFrame()
    rows = []
    for _, r in block.sort_values(["target", "k"]).iterrows():
        w = worth.loc[r["condition"]] if r["condition"] in worth.index else None
        rows.append({"target": r["target"], "condition": condition_label(r["condition"]),
                     metric_label(metric, r["target"]): K.cell(r["estimate"], r["lower"], r["upper"], r["n_draws"]),
                     "draws": r["n_draws"],
                     "worth in real patients": (f"{w['patients']:+.1f} {interval(w['lower'], w['upper'])}"
                                                + (f" ({w['censored']} the curve)" if w["censored"] else ""))
                     if w is not None else ""})
    return pd.DataFrame(rows)


def glossary_display(comp: Comparison) -> pd.DataFrame:
    """The raw names of the CSVs beside the labels the page uses."""
    conditions = list(comp.runs["condition"]) if not comp.runs.empty else []
    return glossary(conditions, comp.params.metrics, comp.params.minority_class)


FRAGMENTS = {  # file under <out>/comparison -> what writes it
    "tables.html": tables_html,
    "effects.html": lambda comp: html_table(effects_display(comp.effects, comp.evaluation)),
    "references.html": lambda comp: html_table(references_display(comp)),
    "original_claim.html": lambda comp: html_table(comp.original_claim, index=False),
    "patients.html": lambda comp: html_table(patient_display(comp), index=False),
    "curve.html": lambda comp: html_table(curve_display(comp), index=False),
    "synthetic.html": lambda comp: html_table(audit_display(comp.audits), index=False),
    "glossary.html": lambda comp: html_table(glossary_display(comp), index=False),
}


def overview(comp: Comparison) -> str:
    runs = comp.runs
    if runs.empty:
        return "no finished classifier run"
    matched = int(comp.pairs["baseline_unit_id"].notna().sum()) if not comp.pairs.empty else 0
    lines = [f"{len(runs)} paired units ({runs['run_id'].nunique()} classifier runs): "
             f"{runs['arch'].nunique()} architecture(s), {runs['condition'].nunique()} condition(s), designs "
             f"{sorted(runs['design'].unique().tolist())}, protocol(s) {sorted(runs['protocol'].unique().tolist())}",
             f"{comp.n_minority_patients} {comp.params.minority_class} patients (the viral bootstrap's minority clusters)",
             f"{matched} of {len(comp.pairs)} wanted pairs matched to a baseline unit",
             f"{len(comp.audits)} synthetic set(s), "
             f"{int(comp.audits.get('audited', pd.Series(dtype=bool)).sum())} audited",
             f"{len(comp.missing)} failed or missing run(s)"]
    lines += [f"warning: {p}" for p in [*comp.problems, *comp.missing_primary]]
    return "\n".join(lines)


def matching_summary(comp: Comparison) -> pd.DataFrame:
    """Per architecture and comparison: units, units paired with a baseline unit, unmatched units."""
    if comp.pairs.empty:
        return pd.DataFrame()
    rows = []
    for (arch, condition, baseline), group in comp.pairs.groupby(["arch", "condition", "baseline"], sort=False):
        rows.append({"arch": arch, "comparison": comparison_label(condition, baseline), "units": len(group),
                     "paired": int(group["baseline_unit_id"].notna().sum()),
                     "unmatched units": ", ".join(group[group["baseline_unit_id"].isna()]["unit_id"])})
    return pd.DataFrame(rows).set_index(["arch", "comparison"])


def run_counts(comp: Comparison) -> pd.DataFrame:
    """Units per condition and architecture: where the n of every interval comes from."""
    if comp.runs.empty:
        return pd.DataFrame()
    counts = comp.runs.pivot_table(index="condition", columns="arch", values="unit_id", aggfunc="count",
                                   sort=False).fillna(0).astype(int)
    counts.index = counts.index.map(condition_label)
    return counts
