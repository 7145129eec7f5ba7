"""The comparison's conclusions as prose a clinician-researcher can read: sentences and small tables
generated from the numbers (never typed in). Primary comparisons first, with their pairs, intervals and
tests; then the reference points (baseline, metadata-only reference, oversampling control); the
per-patient view; the exploratory effects (intervals only, no p-values); the synthetic sets; the seed
study's claim, correction by correction (`original_claim`); the leakage ablation apart; and what failed or is
missing.
"""
from __future__ import annotations

import math
from typing import Sequence

import pandas as pd

from lus_utils import records
from lus_utils.compare import original_claim
from lus_utils.compare import statistics as S
from lus_utils.compare.audit_tables import family_audits
from lus_utils.compare.labels import comparison_label, condition_label, family_label
from lus_utils.compare.real_patient_curve import is_curve_point
from lus_utils.compare.result import Comparison
from lus_utils.compare.text import fmt_p, interval, markdown_table, num, plural
from lus_utils.generate.synthetic_audit_summary import interpretation
from lus_utils.paths import OutLayout
from lus_utils.vocabulary import Condition, metric_label

LEAKAGE_NOTE = ("leakage ablation: its generator also saw validation/test frames, so it is not a valid "
                "condition; shown only to see what leakage does")
ORIGINAL_REPLICA_NOTE = ("the original study's replica: its recipe as it ran (its video split puts a patient's "
                         "videos in train and test, its last epoch is tested, its generator saw frames of any split), "
                         "so it is not a valid condition; shown to test its claim as it was made")


def _mean_of(comp: Comparison, arch: str, condition: str, metric: str) -> str:
    s = comp.summary
    row = s[(s["arch"] == arch) & (s["condition"] == condition) & (s["metric"] == metric)]
    if row.empty:
        return "n/a"
    r = row.iloc[0]
    return f"{r['mean']:.3f} {interval(r['lo'], r['hi'], signed=False)}"


QUESTION = ("Does adding synthetic images made by diffusion models help a classifier recognise a lung-ultrasound "
            "class that has only a few patients?")


def pair_words(condition: str, baseline: str) -> str:
    """"DDPM, 3 frames, 1x vs baseline, both augmented": the two labels without the simulated target's prefix, the
    augmentation they share said once."""
    a, b = (condition_label(n).split(": ", 1)[-1] if Condition.parse(n).target else condition_label(n)
            for n in (condition, baseline))
    for state in ("augmented", "unaugmented"):
        suffix = f" ({state})"
        if a.endswith(suffix) and b.endswith(suffix):
            return f"{a[:-len(suffix)]} vs {b[:-len(suffix)]}, both {state}"
    return f"{a} vs {b}"


def _effect_words(comp: Comparison, r: pd.Series) -> str:
    """One primary comparison in words: what changed, by how much, how sure, and what the design could see."""
    parsed = Condition.parse(r["condition"])
    units = "paired draws" if r["design"] == "simulated_minority" else "paired (repeat, seed) replicates"
    where = f" with {parsed.k} real {parsed.target} patients" if parsed.target else ""
    metric = metric_label(r["metric"], r["target_class"])
    mde = num(r["mde"])
    could = ("; with this many pairs no change could have reached significance" if mde == math.inf else
             f"; the design could only have seen a change of about {mde:.2f}" if math.isfinite(mde) else "")
    verb = "changed" if r["significant"] else "did not change"
    detectably = "" if r["significant"] else " detectably"
    return (f"{pair_words(r['condition'], r['baseline'])}{where}: {verb} {metric}{detectably}, "
            f"{r['mean_diff']:+.3f} {interval(r['ci_low'], r['ci_high'])}, p = {fmt_p(r['p_adj'])} after Holm, "
            f"{plural(int(r['n_pairs']), units[:-1])}{could}.")


def worth_words(r: pd.Series) -> str:
    """"DDPM, 3 frames, 1x (augmented) is worth -0.4 [-1.2, +0.3] real patients": an exchange-rate row in words; a
    condition below the curve's first point (or above its last) is worth at most (at least) that bound."""
    bound = {"below": "at most ", "above": "at least "}.get(str(r.get("censored") or ""), "")
    where = {"below": " (below the curve's first point)", "above": " (above its last)"}.get(
        str(r.get("censored") or ""), "")
    return (f"{condition_label(r['condition']).split(': ', 1)[-1]} is worth {bound}{r['patients']:+.1f} "
            f"{interval(r['lower'], r['upper'], digits=1)} real patients{where}")


def answer(comp: Comparison) -> list[str]:
    """The question and its answer in a few generated sentences: the primary comparisons in words, and for the
    simulated design whether real patients help and what the synthetic sets are worth in them."""
    eff = comp.effects
    primary = eff[eff["primary"]] if not eff.empty else eff
    lines = [f"**Question.** {QUESTION}", ""]
    if primary.empty:
        lines.append("**Answer.** No declared primary comparison could be computed: "
                     + ("; ".join(comp.missing_primary) or "none is declared (compare.primary)") + ".")
    else:
        helped = primary[primary["significant"] & (primary["mean_diff"] > 0)]
        headline = ("Synthetic data helped detectably in " + plural(len(helped), "primary comparison") + "."
                    if len(helped) else "Synthetic data did not help detectably in any primary comparison.")
        lines.append(f"**Answer.** {headline}")
    lines += [f"- {_effect_words(comp, r)}" for _, r in primary.iterrows()]
    for condition in dict.fromkeys(primary["condition"]) if not primary.empty else []:  # why, when images were poor
        note = realism_note(comp, condition).strip()
        if note:
            lines.append(f"- {condition_label(condition)}: {note[0].lower() + note[1:]}")
    for _, c in comp.control[comp.control["metric"] == "minority_ap"].iterrows() if not comp.control.empty else []:
        label = metric_label("minority_ap", c["target"])
        rates = comp.exchange[(comp.exchange["target"] == c["target"]) & (comp.exchange["metric"] == "minority_ap")
                              & comp.exchange["condition"].map(lambda n: bool(Condition.parse(n).synthetic))]
        worth = "; ".join(worth_words(r) for _, r in rates.iterrows())
        n_draws = int(c["n_draws"]) if "n_draws" in c and pd.notna(c["n_draws"]) else 0
        where = f"Simulated {c['target']} minority" + (f" ({plural(n_draws, 'draw')})" if n_draws else "")
        change = (f"{c['difference']:+.3f} {interval(c['lower'], c['upper'])} from {int(c['k_low'])} to "
                  f"{int(c['k_high'])} real patients")
        rise = (f"real patients raise {label} ({change}), so the design can see data helping"
                if c["rises"] else
                f"real patients do not raise {label} detectably either ({change}): here the classifier, not the "
                "data, is the limit")
        lines.append(f"- {where}: {rise}" + (f"; {worth}." if worth else "."))
    return lines + [""]


def what_was_compared(comp: Comparison) -> list[str]:
    runs, p, e = comp.viral_runs, comp.params, comp.evaluation
    protocols = ", ".join(sorted(map(str, runs["protocol"].unique())))
    n_min = comp.n_minority_patients
    return [f"**What was compared.** {plural(len(runs), 'classifier run')} ({protocols} protocol) in "
            f"{plural(runs['condition'].nunique(), 'condition')}, repeats {sorted(runs['repeat'].unique().tolist())}, "
            f"seeds {sorted(runs['seed'].unique().tolist())}. Every figure is computed on a run's pooled test "
            f"predictions; a paired unit is one (repeat, seed): a condition's run and its baseline's run on the "
            f"same folds with the same seed. Intervals ({e.ci_level:.0%}) come from {e.n_boot} resamples of "
            f"patients, the {plural(n_min, p.minority_class + ' patient')} and the other patients resampled "
            f"separately. With {n_min} {p.minority_class} patients the {p.minority_class} figures rest on "
            f"{n_min} independent clusters: the intervals say how much the result could change with other "
            f"patients like these, and no method can make {n_min} patients say more.", ""]


def realism_note(comp: Comparison, condition: str) -> str:
    """Whether the generators behind a synthetic condition reached realism (each fold's or draw's audit), so a
    result is not read as "synthetic data hurts" when the images were noise; empty without synthetic data."""
    parsed = Condition.parse(condition)
    if not parsed.synthetic or comp.audits.empty:
        return "" if not parsed.synthetic else " Whether its generators reached realism was not measured."
    sets = comp.audits[(comp.audits["family"] == parsed.synthetic) & (comp.audits["target"].fillna("") == parsed.target)
                       & ((comp.audits["k"] == parsed.k) if parsed.k else True)]
    verdicts = [v if isinstance(v, bool) else None for v in sets["reached_realism"]]
    measured = [v for v in verdicts if v is not None]
    missing = len(verdicts) - len(measured)
    unit = "draw" if parsed.target else "fold"  # a simulated condition's sets are one per draw
    unmeasured = f" ({plural(missing, unit)} not measured)" if missing else ""
    if not measured:
        return " Whether its generators reached realism was not measured."
    reached = sum(bool(v) for v in measured)
    if reached < len(measured):
        return (f" Caution: its generator reached realism in only {reached} of {plural(len(measured), unit)}"
                f"{unmeasured} (audit criterion), so this compares these images, not synthetic data that looks "
                "like ultrasound.")
    return (f" Its generator reached realism in {reached} of {plural(len(measured), unit)}{unmeasured} "
            "(audit criterion).")


def _primary_sentence(comp: Comparison, r: pd.Series) -> str:
    p = comp.params
    alpha = 1 - comp.evaluation.ci_level
    metric = metric_label(r["metric"], r["target_class"])
    head = (f"- **{comparison_label(r['condition'], r['baseline'])}** ({r['arch']}), {metric}: "
            f"{_mean_of(comp, r['arch'], r['condition'], r['metric'])} against "
            f"{_mean_of(comp, r['arch'], r['baseline'], r['metric'])}; mean paired difference "
            f"{r['mean_diff']:+.3f} {interval(r['ci_low'], r['ci_high'])} over {plural(int(r['n_pairs']), 'pair')}. ")
    test = (f"Exact Wilcoxon signed-rank p = {fmt_p(r['p'])}, Holm-adjusted p = {fmt_p(r['p_adj'])} "
            f"(smallest attainable p {fmt_p(r['smallest_p'])}; minimum detectable effect "
            f"{'none can be detected' if num(r['mde']) == math.inf else format(num(r['mde']), '.3f')} at "
            f"{p.mde_power:.0%} power, paired t-approximation). ")
    if r["degenerate"]:
        verdict = ("Every pair gives the same difference: the interval is a single point and says nothing "
                   "about uncertainty.")
    elif r["significant"]:
        verdict = f"The difference is significant after Holm correction (adjusted p < {alpha:.2g})."
    elif math.isfinite(num(r["smallest_p"])) and r["smallest_p"] >= alpha:
        verdict = (f"With this number of pairs no result could reach p < {alpha:.2g}: this says nothing about "
                   "the effect.")
    else:
        verdict = "Not significant after Holm correction" + (
            "; the interval excludes zero" if r["ci_excludes_zero"] else "; the interval includes zero") + "."
    return head + test + verdict + realism_note(comp, r["condition"])


def primary_section(comp: Comparison) -> list[str]:
    eff = comp.effects
    primary = eff[eff["primary"]] if not eff.empty else eff
    lines = [f"**Primary comparisons** (declared in the profile; Holm over these {len(primary)} alone):"]
    if primary.empty and not comp.missing_primary:
        lines.append("- none declared (`compare.primary` is empty).")
    lines += [_primary_sentence(comp, r) for _, r in primary.iterrows()]
    lines += [f"- {m}" for m in comp.missing_primary]
    if len(primary):
        p = comp.params
        table = pd.DataFrame([{"comparison": comparison_label(r["condition"], r["baseline"]),
                               "metric": metric_label(r["metric"], r["target_class"]),
                               "pairs": int(r["n_pairs"]), "difference": f"{r['mean_diff']:+.3f}",
                               f"{comp.evaluation.ci_level:.0%} interval": interval(r["ci_low"], r["ci_high"]),
                               "p": fmt_p(r["p"]), "Holm p": fmt_p(r["p_adj"]), "smallest p": fmt_p(r["smallest_p"])}
                              for _, r in primary.iterrows()])
        lines += ["", *markdown_table(table)]
    return lines + [""]


def reference_section(comp: Comparison) -> list[str]:
    table = comp.references
    if table.empty:
        return []
    flat = table.reset_index()
    keep = flat[flat["condition"].isin(["none", *comp.primary_conditions])]
    lines = ["**Reference points** (mean [interval]). The metadata reference predicts the class from the probe and "
             "the native frame size alone; what it reaches, a classifier can reach through that shortcut. The "
             "oversampling control repeats the real minority frames as often as a synthetic set adds images: a "
             "synthetic set only brings new information where it beats the control.", ""]
    return lines + markdown_table(keep if len(keep) else flat) + [""]


def patient_section(comp: Comparison) -> list[str]:
    signs = comp.patient_signs
    if signs.empty:
        return ["**Per patient:** no pair with predictions, so no per-patient view.", ""]
    focus = signs[signs.apply(lambda r: (r["condition"], r["baseline"]) in comp.primary_pairs, axis=1)]
    focus = focus if len(focus) else signs
    lines = [f"**Per {comp.params.minority_class} patient** (each patient's test frames, condition minus baseline, "
             "mean over pairs):"]
    for _, r in focus.iterrows():
        agree = ("the same sign for every patient" if r["same_sign_all_patients"]
                 else f"{r['up']} up, {r['down']} down, {r['patients'] - r['up'] - r['down']} unchanged")
        lines.append(f"- {comparison_label(r['condition'], r['baseline'])}, {r['measure']}: {agree} "
                     f"({r['patients']} patients).")
    return lines + [""]


def exploratory_section(comp: Comparison) -> list[str]:
    eff = comp.effects
    rest = eff[~eff["primary"] & ~eff["leakage"]] if not eff.empty else eff
    if rest.empty:
        return []
    level = f"{comp.evaluation.ci_level:.0%}"
    clear = rest[rest["ci_excludes_zero"]]
    lines = [f"**Exploratory effects** ({len(rest)} condition x baseline x metric differences): intervals only, "
             "no p-values and no correction, so they suggest where to look next and prove nothing. "
             f"{len(clear)} have a {level} interval that excludes zero"
             + (":" if len(clear) else ".")]
    for _, r in clear.head(12).iterrows():
        lines.append(f"- {comparison_label(r['condition'], r['baseline'])} ({r['arch']}), "
                     f"{metric_label(r['metric'], r['target_class'])}: {r['mean_diff']:+.3f} "
                     f"{interval(r['ci_low'], r['ci_high'])} over {plural(int(r['n_pairs']), 'pair')}.")
    if len(clear) > 12:
        lines.append(f"- ... and {len(clear) - 12} more in comparison/effects.csv.")
    n_degenerate = int(rest["degenerate"].sum())
    if n_degenerate:
        lines.append(f"- {n_degenerate} differences are the same in every pair or resample (a point, not an interval); "
                     "they are not counted as excluding zero.")
    return lines + [""]


def synthetic_section(comp: Comparison) -> list[str]:
    audits = comp.audits
    if audits.empty:
        return ["**Synthetic sets:** none found in this output folder.", ""]
    lines = ["**Synthetic families** (what their sets' audits say; one set per fold or draw):"]
    for _, r in family_audits(audits).iterrows():
        flag = " (leakage ablation)" if r.get("leakage_ablation") else ""
        first = audits[audits["family"] == r["family"]]["synthetic_set"].iloc[0]
        audit = records.read_audit(OutLayout(comp.out_dir).synthetic / first / "audit.json")
        try:
            text = interpretation(audit).replace("\n", " ")
        except (KeyError, TypeError, AttributeError):  # no audit, or an unfinished one
            text = "no complete audit, so how much it memorizes and how realistic it is are unknown."
        lines.append(f"- {family_label(r['family'])}{flag}, {plural(int(r['sets']), 'set')}, reached the realism criterion in "
                     f"{r['reached realism']}; the first set's audit: {text}")
    return lines + [""]


def simulated_section(comp: Comparison) -> list[str]:
    """The simulated minorities: per target, the real-patient curve, whether it rises (the positive control) and
    what each condition is worth in real patients."""
    if comp.curve.empty:
        return []
    lines = ["**Simulated minorities** (a well-populated convex class cut to k real training patients per draw, "
             "tested on its other patients; every figure the mean over draws, intervals over resampled draws):"]
    metric = "minority_ap"
    for target, block in comp.curve[comp.curve["metric"] == metric].groupby("target", sort=False):
        label = metric_label(metric, target)
        points = block[block["condition"].map(lambda c: is_curve_point(Condition.parse(c)))].sort_values("k")
        curve = ", ".join(f"{int(r['k'])}: {r['estimate']:.3f} {interval(r['lower'], r['upper'], signed=False)}"
                          for _, r in points.iterrows())
        lines.append(f"- {target}, {label} with k real patients ({plural(int(points['n_draws'].max()), 'draw')}): "
                     f"{curve}.")
        control = comp.control[(comp.control["target"] == target) & (comp.control["metric"] == metric)]
        for _, c in control.iterrows():
            verdict = ("the curve rises: more real patients help, so this design can see data helping" if c["rises"]
                       else "the curve does not rise detectably: the classifier, not the data, is the limit here, and "
                            "no synthetic set can be expected to help")
            lines.append(f"- Positive control: from {int(c['k_low'])} to {int(c['k_high'])} real patients "
                         f"{label} moves by {c['difference']:+.3f} {interval(c['lower'], c['upper'])}: {verdict}.")
        rates = comp.exchange[(comp.exchange["target"] == target) & (comp.exchange["metric"] == metric)]
        for _, r in rates.iterrows():
            bound = {"below": " (below the curve's first point: at most this)",
                     "above": " (above the curve's last point: at least this)"}.get(r["censored"], "")
            lines.append(f"- {condition_label(r['condition'])} is worth {r['patients']:+.1f} {interval(r['lower'], r['upper'])} real "
                         f"{target} patients by {label}{bound}.")
    return lines + [""]


def original_claim_section(comp: Comparison) -> list[str]:
    table = comp.original_claim
    if table.empty:
        return []
    lines = [f"**The original study's claim, correction by correction** ({ORIGINAL_REPLICA_NOTE}). The effect of "
             "synthetic images under its recipe, then with the leak-free split but a leaky generator, then leak-free. "
             + original_claim.split_leak(comp.out_dir, comp.params.minority_class)]
    for metric in original_claim.HEADLINE[:3]:  # viral AP and AUROC, and its own headline, accuracy
        lines += original_claim.sentences(table, metric_label(metric, comp.params.minority_class))
    return lines + [""]


def leakage_section(comp: Comparison) -> list[str]:
    eff = comp.effects
    replica = eff["condition"].map(lambda c: Condition.parse(c).original_replica) if not eff.empty else eff
    leak = eff[eff["leakage"] & ~replica] if not eff.empty else eff
    if leak.empty:
        return []
    lines = [f"**Leakage ablation** (shown apart, in no correction family; {LEAKAGE_NOTE}):"]
    for _, r in leak.iterrows():
        lines.append(f"- {comparison_label(r['condition'], r['baseline'])}, {metric_label(r['metric'], r['target_class'])}: "
                     f"{r['mean_diff']:+.3f} {interval(r['ci_low'], r['ci_high'])}.")
    return lines + [""]


def missing_section(comp: Comparison) -> list[str]:
    lines = []
    if len(comp.missing):
        lines.append(f"**Failed or missing runs** ({len(comp.missing)}), so the figures above leave them out:")
        lines += [f"- `{r['run_id']}` (stage {r['stage']}): {r['status']}"
                  + (f", {r['message']}" if r["message"] else "") for _, r in comp.missing.iterrows()]
    if comp.problems:
        lines.append("**Left out:** " + "; ".join(comp.problems))
    return lines


def power_note(comp: Comparison) -> list[str]:
    alpha = 1 - comp.evaluation.ci_level
    eff = comp.effects
    primary = eff[eff["primary"]] if not eff.empty else eff
    most = int(primary["n_pairs"].max()) if len(primary) else 0
    return [f"**What the design can detect.** The exact test needs at least {S.pairs_needed(alpha)} non-zero pairs "
            f"to reach p < {alpha:.2g} at all (smallest p 2^(1-n)); the primary comparisons here have up to "
            f"{most} pairs, smallest attainable p {fmt_p(S.smallest_p(most))} before Holm over "
            f"{len(primary)} comparison(s).", ""]


def conclusions(comp: Comparison) -> str:
    """Markdown: every section of the module doc, in reading order."""
    sections: Sequence[list[str]] = (what_was_compared(comp), primary_section(comp), power_note(comp),
                                     simulated_section(comp),
                                     reference_section(comp), patient_section(comp), exploratory_section(comp),
                                     synthetic_section(comp), original_claim_section(comp), leakage_section(comp),
                                     missing_section(comp))
    return "\n".join(line for section in sections for line in section).strip() + "\n"
