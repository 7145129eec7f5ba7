"""The final comparison, computed once: every classifier run read back, per-condition estimates, paired
effects (primary first), the per-minority-patient view, the synthetic sets' audits, the prose; written under
<out>/comparison (results.csv at the top of the output folder) and shown by notebook 06.

Nothing is trained again. What each number means is stated where it is made: `runs` (reading runs),
`statistics` (exact test, Holm, MDE, the class-stratified patient bootstrap), `conditions` (per-condition
intervals, reference points), `effects` (pairs, differences, the primary family), `patients`,
`audit_tables`, `conclusions`, `figures`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lus_utils.compare import audit_tables as A
from lus_utils.compare import conditions as K
from lus_utils.compare import effects as E
from lus_utils.compare import patients as PT
from lus_utils.compare import runs as R
from lus_utils.compare import seed_claim
from lus_utils.compare import statistics as S
from lus_utils.classify.run_identity import SEED_REPLICA
from lus_utils.compare.conclusions import LEAKAGE_NOTE, SEED_REPLICA_NOTE, conclusions, fmt_p
from lus_utils.params import CompareParams, as_dict
from lus_utils.paths import OutLayout
from lus_utils.provenance import (fingerprint_files, provenance, write_csv_atomic, write_json_atomic,
                                  write_text_atomic)


@dataclass
class Comparison:
    """Everything notebook 06 shows, computed once by `compare` and written under <out>/comparison."""

    out_dir: Path
    params: CompareParams
    runs: pd.DataFrame
    summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    pairs: pd.DataFrame = field(default_factory=pd.DataFrame)
    diffs: pd.DataFrame = field(default_factory=pd.DataFrame)
    effects: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=E.EFFECT_COLUMNS))
    references: pd.DataFrame = field(default_factory=pd.DataFrame)
    patients: pd.DataFrame = field(default_factory=pd.DataFrame)
    patient_effects: pd.DataFrame = field(default_factory=pd.DataFrame)
    patient_signs: pd.DataFrame = field(default_factory=pd.DataFrame)
    audits: pd.DataFrame = field(default_factory=pd.DataFrame)
    synthetic: pd.DataFrame = field(default_factory=pd.DataFrame)
    missing: pd.DataFrame = field(default_factory=pd.DataFrame)
    missing_primary: list[str] = field(default_factory=list)
    seed_claim: pd.DataFrame = field(default_factory=pd.DataFrame)  # see compare.seed_claim
    problems: list[str] = field(default_factory=list)
    n_minority_patients: int = 0
    conclusions: str = ""

    @property
    def folder(self) -> Path:
        return comparison_dir(self.out_dir)

    @property
    def figures(self) -> Path:
        return self.folder / "figures"

    @property
    def study_runs(self) -> pd.DataFrame:
        """The runs on the study's protocol: the seed replica's test other frames (its video split), so views
        that show every condition on the same frames (the Grad-CAM panel) leave them out."""
        if self.runs.empty or "seed_replica" not in self.runs.columns:
            return self.runs
        return self.runs[~self.runs["seed_replica"].astype(bool)].reset_index(drop=True)

    @property
    def primary_pairs(self) -> set[tuple[str, str]]:
        return {(p.condition, p.baseline) for p in self.params.primary_comparisons()}

    @property
    def primary_conditions(self) -> list[str]:
        return list(dict.fromkeys(c for pair in self.primary_pairs for c in pair))


def comparison_dir(out_dir: Path) -> Path:
    return Path(out_dir) / "comparison"


def needed_metrics(params: CompareParams) -> list[str]:
    """The profile's metrics and every primary comparison's metric."""
    return list(dict.fromkeys([*params.metrics, *(p.metric for p in params.primary_comparisons())]))


def bootstrap_draws(runs: pd.DataFrame, predictions: dict[str, pd.DataFrame], params: CompareParams,
                    metrics: list[str]) -> tuple[dict[str, dict[str, np.ndarray]], int]:
    """Every run's metrics in the same class-stratified patient resamples, and the minority cluster count."""
    if not predictions:
        return {}, int(np.nanmax(runs.get("n_minority_patients", pd.Series([0.0])).fillna(0))) if len(runs) else 0
    boot = S.PatientBootstrap(list(predictions.values()), params.minority_class, params.n_boot, params.compare_seed)
    draws = {run_id: boot.run_draws(table, table.attrs["classes"], metrics) for run_id, table in predictions.items()}
    return draws, boot.n_minority_patients


def _effects_step(comp: Comparison, draws: dict, metrics: list[str]) -> None:
    primary = comp.params.primary_comparisons()
    comp.pairs = E.match_pairs(comp.runs, E.wanted_comparisons(comp.runs, primary))
    comp.diffs = E.paired_differences(comp.runs, comp.pairs, metrics)
    comp.effects = E.effects(comp.diffs, draws, comp.params)
    comp.missing_primary = E.missing_primary(comp.effects, comp.runs, comp.params)
    comp.seed_claim = seed_claim.ladder(comp.effects, comp.params.minority_class, comp.primary_pairs)


def _patients_step(comp: Comparison, predictions: dict[str, pd.DataFrame]) -> None:
    per_run = PT.per_run(comp.runs, predictions, comp.params.minority_class)
    comp.patients = PT.patient_table(per_run)
    comp.patient_effects = PT.patient_effects(per_run, comp.pairs)
    comp.patient_signs = PT.sign_agreement(comp.patient_effects)


def compare(out_dir: Path, params: CompareParams) -> Comparison:
    """Read every run and audit, compute tables, pairs, effects, the patient view and the conclusions, and
    write them (atomically). With no finished run it still writes conclusions listing what is missing."""
    out_dir = Path(out_dir)
    runs, predictions, problems = R.load_runs(out_dir, params.minority_class)
    comp = Comparison(out_dir=out_dir, params=params, runs=runs, problems=problems,
                      missing=R.missing_runs(out_dir, runs), audits=A.load_audits(out_dir))
    if runs.empty:
        comp.conclusions = no_runs_conclusions(comp)
        write(comp)
        return comp
    metrics = needed_metrics(params)
    draws, comp.n_minority_patients = bootstrap_draws(runs, predictions, params, metrics)
    comp.summary = K.summarize(runs, draws, metrics, params.ci_level)
    comp.tables = K.condition_tables(comp.summary, params)
    comp.references = K.reference_points(comp.summary, params)
    _effects_step(comp, draws, metrics)
    _patients_step(comp, predictions)
    comp.synthetic = A.synthetic_table(runs, comp.summary, comp.audits, params)
    comp.conclusions = conclusions(comp)
    write(comp)
    return comp


def no_runs_conclusions(comp: Comparison) -> str:
    from lus_utils.compare.conclusions import missing_section

    lines = [f"**No classifier run finished** in {OutLayout(comp.out_dir).runs}: nothing can be compared yet "
             "(run notebooks 02 and 03: python run_all.py --profile <name> --only 02 03).", ""]
    return "\n".join(lines + missing_section(comp)).strip() + "\n"


def write(comp: Comparison) -> None:
    """results.csv at the top of the output folder; tables, pairs, effects, conclusions and provenance beside."""
    folder, minority = comp.folder, comp.params.minority_class
    if not comp.runs.empty:
        write_csv_atomic(comp.out_dir / "results.csv", R.results_table(comp.runs, minority))
    outputs = {"summary.csv": comp.summary, "pairs.csv": comp.pairs, "effects.csv": comp.effects,
               "audits.csv": comp.audits, "patients.csv": comp.patients, "patient_effects.csv": comp.patient_effects,
               "missing_runs.csv": comp.missing, "seed_claim.csv": comp.seed_claim}
    for name, table in outputs.items():
        write_csv_atomic(folder / name, table)
    write_text_atomic(folder / "conclusions.md", comp.conclusions)
    write_text_atomic(folder / "tables.html", tables_html(comp))
    write_text_atomic(folder / "effects.html", html_table(effects_display(comp.effects, comp.params)))
    write_text_atomic(folder / "references.html", html_table(comp.references))
    write_text_atomic(folder / "seed_claim.html", html_table(comp.seed_claim, index=False))
    write_text_atomic(folder / "patients.html", html_table(patient_display(comp), index=False))
    write_text_atomic(folder / "synthetic.html", html_table(comp.synthetic, index=False))
    layout = OutLayout(comp.out_dir)
    sources = sorted(layout.runs.glob("*/metrics.json")) + sorted(layout.runs.glob("*/predictions.csv")) + sorted(
        layout.synthetic.glob("*/audit.json"))
    write_json_atomic(folder / "provenance.json", provenance(
        as_dict(comp.params), inputs_fingerprint=fingerprint_files(sources, root=comp.out_dir) if sources else "",
        n_runs=len(comp.runs), n_audits=int(comp.audits.get("audited", pd.Series(dtype=bool)).sum()),
        n_minority_patients=comp.n_minority_patients))


# --- what notebook 06 and the report show ------------------------------------------------------------------
def html_table(frame: pd.DataFrame, index: bool = True, floats: str = "{:.3f}") -> str:
    if frame is None or frame.empty:
        return "<p><em>nothing to show</em></p>"
    return frame.to_html(index=index, na_rep="n/a", float_format=floats.format, classes="table", border=0,
                         escape=True)


def tables_html(comp: Comparison) -> str:
    """The per-architecture tables as one HTML fragment, with how the intervals were made."""
    parts = [f"<p>Each cell: mean over the condition's runs ((repeat, seed) pooled metrics) with its "
             f"{comp.params.ci_level:.0%} interval from {comp.params.n_boot} class-stratified patient-bootstrap "
             f"resamples ({comp.n_minority_patients} {comp.params.minority_class} patients); 'no CI' where a run "
             "has no predictions.csv.</p>"]
    for name, table in comp.tables.items():
        parts.append(f"<h3>{name}</h3>")
        if "seed replica" in name:
            parts.append(f"<p><strong>{SEED_REPLICA_NOTE}.</strong></p>")
        elif "leakage" in name:
            parts.append(f"<p><strong>{LEAKAGE_NOTE}.</strong></p>")
        parts.append(html_table(table))
    return "\n".join(parts)


def effects_display(table: pd.DataFrame, params: CompareParams) -> pd.DataFrame:
    """The effects as read in the report: primary first with test and Holm p; exploratory with intervals only."""
    level = f"{params.ci_level:.0%}"
    rows = []
    for _, r in table.iterrows():
        kind = ("seed replica" if str(r["condition"]).startswith(SEED_REPLICA) else "leakage ablation" if r["leakage"]
                else "primary" if r["primary"] else "exploratory")
        rows.append({"kind": kind, "arch": r["arch"], "comparison": f"{r['condition']} vs {r['baseline']}",
                     "metric": R.metric_label(r["metric"], params.minority_class), "pairs": r["n_pairs"],
                     f"difference [{level} interval]": K.cell(r["mean_diff"], r["ci_low"], r["ci_high"], r["n_pairs"]),
                     "p (exact Wilcoxon)": fmt_p(r["p"]) if r["primary"] else "",
                     "p (Holm, primary)": fmt_p(r["p_adj"]) if r["primary"] else "",
                     "smallest p": fmt_p(r["smallest_p"]) if r["primary"] else "",
                     "MDE": f"{r['mde']:.3f}" if r["primary"] and np.isfinite(r["mde"]) else (
                         "none detectable" if r["primary"] and r["mde"] == np.inf else ""), "note": r["note"]})
    frame = pd.DataFrame(rows)
    return frame.set_index(["kind", "arch", "comparison", "metric"]) if len(frame) else frame


def patient_display(comp: Comparison) -> pd.DataFrame:
    """Per minority patient (rows) and condition (columns): mean minority probability, median rank, sensitivity."""
    table = comp.patients
    if table.empty:
        return table
    wide = table.pivot_table(index=["patient_id", "probe", "videos"], columns="condition",
                             values=list(PT.MEASURES), aggfunc="mean", sort=False)
    wide.columns = [f"{c} · {PT.MEASURE_LABELS[m].format(m=comp.params.minority_class)}" for m, c in wide.columns]
    return wide.reset_index()


def overview(comp: Comparison) -> str:
    runs = comp.runs
    if runs.empty:
        return "no finished classifier run"
    matched = int(comp.pairs["baseline_run_id"].notna().sum()) if not comp.pairs.empty else 0
    lines = [f"{len(runs)} classifier runs: {runs['arch'].nunique()} architecture(s), "
             f"{runs['condition'].nunique()} condition(s), protocol(s) {sorted(runs['protocol'].unique().tolist())}, "
             f"repeats {sorted(runs['repeat'].unique().tolist())}, seeds {sorted(runs['seed'].unique().tolist())}",
             f"{comp.n_minority_patients} {comp.params.minority_class} patients (the bootstrap's minority clusters)",
             f"{matched} of {len(comp.pairs)} wanted pairs matched to a baseline run",
             f"{len(comp.audits)} synthetic set(s), "
             f"{int(comp.audits.get('audited', pd.Series(dtype=bool)).sum())} audited",
             f"{len(comp.missing)} failed or missing run(s)"]
    lines += [f"warning: {p}" for p in [*comp.problems, *comp.missing_primary]]
    return "\n".join(lines)


def matching_summary(comp: Comparison) -> pd.DataFrame:
    """Per architecture and comparison: runs, runs paired with a baseline run, unmatched runs."""
    if comp.pairs.empty:
        return pd.DataFrame()
    rows = []
    for (arch, condition, baseline), group in comp.pairs.groupby(["arch", "condition", "baseline"], sort=False):
        rows.append({"arch": arch, "condition": condition, "baseline": baseline, "runs": len(group),
                     "paired": int(group["baseline_run_id"].notna().sum()),
                     "unmatched runs": ", ".join(group[group["baseline_run_id"].isna()]["run_id"])})
    return pd.DataFrame(rows).set_index(["arch", "condition", "baseline"])


def run_counts(comp: Comparison) -> pd.DataFrame:
    """Runs per condition and architecture ((repeat, seed) units): where the n of every interval comes from."""
    if comp.runs.empty:
        return pd.DataFrame()
    return comp.runs.pivot_table(index="condition", columns="arch", values="run_id", aggfunc="count",
                                 sort=False).fillna(0).astype(int)
