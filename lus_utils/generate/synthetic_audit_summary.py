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


def realism_table(audit: dict[str, Any]) -> pd.DataFrame:
    """KID and C2ST AUROC (with intervals) of the synthetic set and of the real reference against held-out
    real minority frames; one row saying why when nothing was measured."""
    info = audit["realism"]
    if "synthetic_vs_holdout" not in info:
        return pd.DataFrame([{"comparison": "-", "feature space": info["feature_space"],
                              "why not measured": info.get("not_measured", "")}])
    names = {"synthetic_vs_holdout": "synthetic vs held-out real",
             "real_train_vs_holdout": "real training vs held-out real (reference)"}
    return pd.DataFrame([{"comparison": label, "n per side": info["n_per_side"],
                          "KID": info[key]["kid"]["mean"], "KID low": info[key]["kid"]["ci_low"],
                          "KID high": info[key]["kid"]["ci_high"], "C2ST AUROC": info[key]["c2st"]["auroc"],
                          "C2ST low": info[key]["c2st"]["ci_low"], "C2ST high": info[key]["c2st"]["ci_high"],
                          "feature space": info["feature_space"]} for key, label in names.items()])


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
    info = audit["realism"]
    if "synthetic_vs_holdout" not in info:
        lines.append(f"Realism: not measured ({info.get('not_measured', info['feature_space'])}).")
    else:
        syn, ref = info["synthetic_vs_holdout"], info["real_train_vs_holdout"]
        lines.append(f"Realism against {info['n_per_side']} held-out real minority frames per side "
                     f"({info['feature_space']}): KID {syn['kid']['mean']:.4f} "
                     f"[{syn['kid']['ci_low']:.4f}, {syn['kid']['ci_high']:.4f}] for the synthetic set, "
                     f"{ref['kid']['mean']:.4f} [{ref['kid']['ci_low']:.4f}, {ref['kid']['ci_high']:.4f}] for real "
                     f"training frames; C2ST AUROC {syn['c2st']['auroc']:.2f} [{syn['c2st']['ci_low']:.2f}, "
                     f"{syn['c2st']['ci_high']:.2f}] against {ref['c2st']['auroc']:.2f} for real frames "
                     "(0.5: indistinguishable).")
        lines.append(("The generator reached realism" if info["reached_realism"] else
                      "The generator did NOT reach realism") + f" by the criterion: {info['criterion']}.")
    return "\n".join(lines)


def gate_table(audit: dict[str, Any]) -> pd.DataFrame:
    """The quality gate's pass rate (and the original study's gate's) on real frames and on noise."""
    return pd.DataFrame([{"images": name.replace("_", " "), "n": v["n"], "gate pass rate": v["pass_rate"],
                          "seed gate pass rate": v["seed_gate_pass_rate"]}
                         for name, v in audit.get("gate_on_real", {}).items()])
