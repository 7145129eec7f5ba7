"""An audit read for people: tables of its figures and a few plain sentences (no verdict the numbers do not support)."""
from __future__ import annotations

from typing import Any

import pandas as pd


def summary_table(audit: dict[str, Any]) -> pd.DataFrame:
    """One row per comparison: nearest-frame similarity of synthetic images and of real reference frames."""
    rows = []
    for name, stats in [*((f"synthetic vs {k}", v) for k, v in audit["memorization"].items()),
                        *((f"real {k.replace('_vs_', ' vs ')}", v) for k, v in audit["real_reference"].items()
                          if isinstance(v, dict))]:
        if not stats.get("n"):
            continue
        rows.append({"comparison": name, "n": stats["n"], "pool": stats["pool_size"],
                     "median r": stats["correlation"]["median"], "max r": stats["correlation"]["max"],
                     f"share r > {audit['thresholds']['correlation']}": stats["correlation"]["share_above"],
                     "median SSIM": stats["ssim"]["median"], "max SSIM": stats["ssim"]["max"],
                     f"share SSIM > {audit['thresholds']['ssim']}": stats["ssim"]["share_above"],
                     "share memorized": stats["share_memorized"]})
    return pd.DataFrame(rows)


def _interval(figure: dict[str, float], digits: int = 4) -> str:
    return f"{figure['mean']:.{digits}f} [{figure['ci_low']:.{digits}f}, {figure['ci_high']:.{digits}f}]"


REALISM_SPACES = (("structure", "ultrasound encoder, decides"), ("", "second opinion"))
REALISM_PAIRS = {"synthetic_vs_holdout": "synthetic vs held-out real",
                 "real_train_vs_holdout": "real training vs held-out real (reference)"}


def realism_table(audit: dict[str, Any]) -> pd.DataFrame:
    """KID (with intervals), density and coverage or C2ST AUROC of the synthetic set and of the real reference
    against held-out real minority frames, in the ultrasound encoder's space (with the permutation test's p) and
    in the second opinion's; one row saying why for a space where nothing was measured."""
    info = audit["realism"]
    rows = []
    for key, space in REALISM_SPACES:
        figures = info.get(key, {}) if key else info
        if "synthetic_vs_holdout" not in figures:
            rows.append({"comparison": f"- ({space})", "feature space": figures.get("feature_space", ""),
                         "why not measured": figures.get("not_measured", "not in this audit")})
            continue
        for pair, label in REALISM_PAIRS.items():
            f = figures[pair]
            row = {"comparison": f"{label} ({space})", "n per side": figures["n_per_side"],
                   "KID": f["kid"]["mean"], "KID low": f["kid"]["ci_low"], "KID high": f["kid"]["ci_high"]}
            if "density" in f:
                row.update({"density": f["density"]["mean"], "coverage": f["coverage"]["mean"]})
            if "c2st" in f:
                row.update({"C2ST AUROC": f["c2st"]["auroc"], "C2ST low": f["c2st"]["ci_low"],
                            "C2ST high": f["c2st"]["ci_high"]})
            if pair == "synthetic_vs_holdout" and "farther_than_reference" in figures:
                row["structure p"] = figures["farther_than_reference"]["p_value"]
            rows.append({**row, "feature space": figures["feature_space"]})
    return pd.DataFrame(rows)


def realism_sentences(audit: dict[str, Any]) -> list[str]:
    """The realism verdict in words: the ultrasound encoder's figures and verdict, then the second opinion's."""
    info = audit["realism"]
    structure = info.get("structure", {})
    if "synthetic_vs_holdout" not in structure:
        lines = [f"Realism in the ultrasound encoder's space: not measured "
                 f"({structure.get('not_measured', 'not in this audit')})."]
    else:
        syn, ref, test = (structure["synthetic_vs_holdout"], structure["real_train_vs_holdout"],
                          structure["farther_than_reference"])
        lines = [f"Realism against {structure['n_per_side']} held-out real minority frames per side, in an ultrasound "
                 f"encoder trained on this split's other classes: the set lies farther from them than real training "
                 f"frames do by D = {test['difference']:.3g} (permutation p = {test['p_value']:.3f}); KID "
                 f"{_interval(syn['kid'], 3)} against {_interval(ref['kid'], 3)} for real training frames; density "
                 f"{syn['density']['mean']:.2f} (real {ref['density']['mean']:.2f}) and coverage "
                 f"{syn['coverage']['mean']:.2f} (real {ref['coverage']['mean']:.2f}).",
                 ("The generator reached realism" if structure["reached_realism"] else
                  "The generator did NOT reach realism") + f" by the criterion: {structure['criterion']}."]
    if "synthetic_vs_holdout" not in info:
        lines.append(f"Second opinion: not measured ({info.get('not_measured', info['feature_space'])}).")
    else:
        syn, ref = info["synthetic_vs_holdout"], info["real_train_vs_holdout"]
        verdict = "would count as realistic" if info["reached_realism"] else "would not count as realistic"
        random_cnn = info["feature_space"].startswith("random CNN")
        reads = "; it reads intensity statistics, not structure" if random_cnn else ""
        lines.append(f"Second opinion ({info['feature_space']}, {info['n_per_side']} frames per side{reads}): KID "
                     f"{_interval(syn['kid'])} for the synthetic set, {_interval(ref['kid'])} for real training frames; C2ST AUROC {syn['c2st']['auroc']:.2f} "
                     f"[{syn['c2st']['ci_low']:.2f}, {syn['c2st']['ci_high']:.2f}] against {ref['c2st']['auroc']:.2f} "
                     f"for real frames (0.5: indistinguishable); by its rule ({info['criterion']}) the set {verdict}.")
    return lines


def interpretation(audit: dict[str, Any]) -> str:
    """A few plain sentences reading the audit's numbers (no verdict that the numbers do not support)."""
    threshold = audit["thresholds"]["correlation"]
    lines = [f"{audit['n_kept']} of {audit['n_images']} images passed the quality gate "
             f"(rejection rate {audit['rejection_rate']:.0%})."]
    on_real = audit.get("gate_on_real", {})
    shown = [f"{on_real[k]['pass_rate']:.0%} of {on_real[k]['n']} {k.replace('_', ' ')} frames"
             for k in ("minority_train", "minority_holdout", "all_train") if on_real.get(k, {}).get("n")]
    noise = [f"{v['pass_rate']:.0%} of {k.replace('noise_', '')}" for k, v in on_real.items()
             if k.startswith("noise_") and v.get("n")]
    if shown:
        lines.append(f"The same gate keeps {', '.join(shown)} (real), and {', '.join(noise)} noise images.")
    mem = audit["memorization"].get("generator_training_frames", {})
    ref = audit["real_reference"].get("holdout_minority_vs_minority_train", {})
    neighbours = audit["real_reference"].get("minority_train_vs_other_minority_train", {})
    if mem.get("n"):
        lines.append(f"Against the {mem['pool_size']} frames the generator trained on, the median nearest-frame "
                     f"correlation is {mem['correlation']['median']:.3f} (max {mem['correlation']['max']:.3f}); "
                     f"{mem['share_memorized']:.0%} of the images count as memorized (r > {threshold} or SSIM > "
                     f"{audit['thresholds']['ssim']}).")
    if ref.get("n"):
        lines.append(f"For scale: real held-out minority frames (other patients) reach a median of "
                     f"{ref['correlation']['median']:.3f} against the minority training frames, and a training frame "
                     f"against its own video's other frames {neighbours.get('correlation', {}).get('median', float('nan')):.3f}.")
    test = audit["memorization"].get("minority_test")
    if test and test.get("n"):
        lines.append(f"Leakage ablation: against the minority test frames the median is {test['correlation']['median']:.3f} "
                     f"and {test['share_memorized']:.0%} count as copies of test frames; a classifier tested on "
                     "those frames would be flattered.")
    lines += realism_sentences(audit)
    return "\n".join(lines)


def gate_table(audit: dict[str, Any]) -> pd.DataFrame:
    """The quality gate's pass rate (and the original study's gate's) on real frames and on noise."""
    return pd.DataFrame([{"images": name.replace("_", " "), "n": v["n"], "gate pass rate": v["pass_rate"],
                          "seed gate pass rate": v["seed_gate_pass_rate"]}
                         for name, v in audit.get("gate_on_real", {}).items()])
