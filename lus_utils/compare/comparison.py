"""The final comparison, computed once: every classifier run of the current plan read back, per-condition
estimates, paired effects (primary first), the per-viral-patient view, the synthetic sets' audits, the prose;
written under <out>/comparison (results.csv at the top of the output folder) and shown by notebook 06.

Nothing is trained again. What each number means is stated where it is made: `runs` (reading runs),
`statistics` (exact test, Holm, MDE, the class-stratified patient bootstrap), `conditions` (per-condition
intervals, reference points), `effects` (pairs, differences, the primary family), `patients`,
`audit_tables`, `conclusions`, `figures`; `result.Comparison` holds it all.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lus_utils.compare import audit_tables as A
from lus_utils.compare import conditions as K
from lus_utils.compare import effects as E
from lus_utils.compare import original_claim
from lus_utils.compare import patients as PT
from lus_utils.compare import real_patient_curve as RC
from lus_utils.compare import runs as R
from lus_utils.compare import statistics as S
from lus_utils.compare.conclusions import answer, conclusions, missing_section
from lus_utils.compare.display import FRAGMENTS
from lus_utils.compare.result import Comparison, comparison_dir
from lus_utils.compare.text import fmt_p
from lus_utils.config.classify import EvaluationParams
from lus_utils.config.compare import CompareParams
from lus_utils.config.schema import as_dict
from lus_utils.paths import OutLayout
from lus_utils.provenance import (fingerprint_files, provenance, write_csv_atomic, write_json_atomic,
                                  write_text_atomic)
from lus_utils.vocabulary import MINORITY_METRICS, Condition, metric_label

__all__ = ["Comparison", "comparison_dir", "compare"]


def needed_metrics(params: CompareParams) -> list[str]:
    """The profile's metrics and every primary comparison's metric."""
    return list(dict.fromkeys([*params.metrics, *(p.metric for p in params.primary_comparisons())]))


def bootstrap_draws(runs: pd.DataFrame, predictions: dict[str, pd.DataFrame], params: CompareParams,
                    evaluation: EvaluationParams, metrics: list[str]) -> tuple[dict[str, dict[str, np.ndarray]], int]:
    """Every viral-design unit's metrics in the same class-stratified patient resamples, and the viral cluster
    count (a simulated draw's intervals resample draws instead: `conditions`, `effects`)."""
    viral = {u: predictions[u] for u in runs.loc[runs["design"] == "viral", "unit_id"] if u in predictions}
    if not viral:
        return {}, 0
    boot = S.PatientBootstrap(list(viral.values()), params.minority_class, evaluation.n_boot, params.compare_seed)
    draws = {unit: boot.run_draws(table, table.attrs["classes"], metrics) for unit, table in viral.items()}
    return draws, boot.n_minority_patients


def _effects_step(comp: Comparison, draws: dict, metrics: list[str]) -> None:
    primary = comp.params.primary_comparisons()
    comp.pairs = E.match_pairs(comp.runs, E.wanted_comparisons(comp.runs, primary))
    comp.diffs = E.paired_differences(comp.runs, comp.pairs, metrics)
    comp.effects = E.effects(comp.diffs, draws, comp.params, comp.evaluation)
    comp.missing_primary = E.missing_primary(comp.effects, comp.runs, comp.params)
    comp.original_claim = original_claim.ladder(comp.effects, comp.params.minority_class, comp.primary_pairs)


def _patients_step(comp: Comparison, predictions: dict[str, pd.DataFrame]) -> None:
    per_run = PT.per_run(comp.viral_runs, predictions, comp.params.minority_class)
    comp.patients = PT.patient_table(per_run)
    viral_pairs = comp.pairs[comp.pairs["design"] == "viral"] if not comp.pairs.empty else comp.pairs
    comp.patient_effects = PT.patient_effects(per_run, viral_pairs)
    comp.patient_signs = PT.sign_agreement(comp.patient_effects)


def compare(out_dir: Path, params: CompareParams, evaluation: EvaluationParams) -> Comparison:
    """Read the current plan's runs (every run folder when 06 runs by hand) and every audit, compute tables,
    pairs, effects, the patient view and the conclusions, and write them (atomically). With no finished run it
    still writes conclusions listing what is missing."""
    out_dir = Path(out_dir)
    runs, predictions, problems = R.load_runs(out_dir, R.planned_runs(out_dir))
    comp = Comparison(out_dir=out_dir, params=params, evaluation=evaluation, runs=runs, problems=problems,
                      missing=R.missing_runs(out_dir, runs), audits=A.load_audits(out_dir))
    if runs.empty:
        comp.conclusions = no_runs_conclusions(comp)
        write(comp)
        return comp
    metrics = needed_metrics(params)
    draws, comp.n_minority_patients = bootstrap_draws(runs, predictions, params, evaluation, metrics)
    comp.summary = K.summarize(runs, draws, metrics, evaluation, params.compare_seed)
    comp.tables = K.condition_tables(comp.summary)
    comp.references = K.reference_points(comp.summary)
    _effects_step(comp, draws, metrics)
    _patients_step(comp, predictions)
    comp.curve = RC.real_patient_curve(runs, list(MINORITY_METRICS), evaluation, params.compare_seed)
    comp.exchange = RC.exchange_rates(runs, list(MINORITY_METRICS), evaluation, params.compare_seed)
    comp.control = RC.positive_control(runs, list(MINORITY_METRICS), evaluation, params.compare_seed)
    comp.synthetic = A.synthetic_table(runs, comp.summary, comp.audits, params)
    comp.answer = "\n".join(answer(comp)).strip() + "\n"
    comp.conclusions = conclusions(comp)
    write(comp)
    return comp


def no_runs_conclusions(comp: Comparison) -> str:
    lines = [f"**No classifier run finished** in {OutLayout(comp.out_dir).runs}: nothing can be compared yet "
             "(run notebooks 02 and 03: python run_all.py --profile <name> --only 02 03).", ""]
    return "\n".join(lines + missing_section(comp)).strip() + "\n"


def write(comp: Comparison) -> None:
    """results.csv at the top of the output folder; tables, pairs, effects, conclusions and provenance beside."""
    folder = comp.folder
    if not comp.runs.empty:
        write_csv_atomic(comp.out_dir / "results.csv", R.results_table(comp.runs))
    outputs = {"summary.csv": comp.summary, "pairs.csv": comp.pairs, "effects.csv": comp.effects,
               "audits.csv": comp.audits, "patients.csv": comp.patients, "patient_effects.csv": comp.patient_effects,
               "missing_runs.csv": comp.missing, "original_claim.csv": comp.original_claim,
               "real_patient_curve.csv": comp.curve, "exchange_rate.csv": comp.exchange,
               "positive_control.csv": comp.control}
    for name, table in outputs.items():
        write_csv_atomic(folder / name, table)
    write_text_atomic(folder / "conclusions.md", comp.conclusions)
    write_text_atomic(folder / "answer.md", comp.answer or comp.conclusions)
    for name, fragment in FRAGMENTS.items():
        write_text_atomic(folder / name, fragment(comp))
    layout = OutLayout(comp.out_dir)
    sources = sorted(layout.runs.glob("*/metrics.json")) + sorted(layout.runs.glob("*/predictions.csv")) + sorted(
        layout.synthetic.glob("*/audit.json"))
    write_json_atomic(folder / "provenance.json", provenance(
        {"compare": as_dict(comp.params), "evaluation": as_dict(comp.evaluation)},
        inputs_fingerprint=fingerprint_files(sources, root=comp.out_dir) if sources else "",
        n_units=len(comp.runs), n_audits=int(comp.audits.get("audited", pd.Series(dtype=bool)).sum()),
        n_minority_patients=comp.n_minority_patients))
