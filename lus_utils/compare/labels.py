"""Display labels: what the report, notebook 06 and the figures call each condition, set family and metric,
in words a clinician-researcher reads ("DDPM, 3 frames, 1x", "classical augmentation", "viral average
precision"). The raw names stay in the CSVs; `glossary` maps one to the other. Labels are built from the
vocabulary's fields, never by editing a name string.
"""
from __future__ import annotations

from typing import Iterable

import pandas as pd

from lus_utils.vocabulary import METADATA_REFERENCE, Condition, NameError_, metric_label

FAMILIES = {
    "ddpm_3_mixed": "DDPM, 3 frames", "ddpm_train_all": "DDPM, all training frames",
    "ddpm_3_mixed_any_split": "DDPM, 3 frames of any split (leakage ablation)",
    "ddpm_seed_3_mixed": "the original study's DDPM", "ddpm_class_conditional": "class-conditional DDPM",
    "ti_txt2img": "textual inversion, text-to-image", "ti_img2img": "textual inversion, image-to-image",
}
STRATEGIES = {"weighted_loss": "weighted loss", "balanced_sampler": "balanced sampler"}
UNITS = {"ratio": "x", "fraction": " of the set", "count": " images"}


def family_label(family: str) -> str:
    """`ti_txt2img_domain` -> "textual inversion, text-to-image (domain base model)"."""
    if family in FAMILIES:
        return FAMILIES[family]
    for prefix in ("ti_txt2img_", "ti_img2img_"):
        if family.startswith(prefix):
            return f"{FAMILIES[prefix[:-1]]} ({family[len(prefix):]} base model)"
    return family


def design_label(design: str) -> str:
    """`simulated_minority` -> "simulated minority"; `viral` -> "viral (the real minority)"."""
    return {"viral": "viral (the real minority)"}.get(design, design.replace("_", " "))


def arch_label(arch: str) -> str:
    """An architecture as the report names it: the metadata reference is no network."""
    return "metadata reference (no image)" if arch == METADATA_REFERENCE else arch


def _amount(condition: Condition) -> str:
    amount = f"{condition.amount:g}"
    if condition.unit == "fraction" and condition.amount == 1:
        return "every image"
    return amount + UNITS[condition.unit]


def condition_label(name: str) -> str:
    """The words for a condition name (the name itself when it does not parse)."""
    try:
        c = Condition.parse(name)
    except NameError_:
        return name
    if c.reference:
        core = "metadata reference (probe and frame size only)"
    elif c.synthetic:
        core = f"{family_label(c.synthetic)}, {_amount(c)}"
    elif c.oversample:
        core = f"oversampling control, {_amount(c)}"
    else:
        core = "baseline"
    extras = [STRATEGIES[c.strategy]] if c.strategy != "none" else []
    if c.checkpoint == "last" and not c.original_replica:
        extras.append("last epoch")
    label = core + (f" + {' + '.join(extras)}" if extras else "")
    if not c.reference and c.protocol != "seed_video":  # the practitioner trains augmented; say which it is
        label += " (augmented)" if c.augment else " (unaugmented)"
    if c.original_replica:
        label = f"original study's recipe: {core}"
    if c.target:
        label = f"{c.target}, {c.k} real patient{'s' if c.k != 1 else ''}: {label}"
    return label


def comparison_label(condition: str, baseline: str) -> str:
    return f"{condition_label(condition)} vs {condition_label(baseline)}"


def glossary(conditions: Iterable[str], metrics: Iterable[str], minority: str) -> pd.DataFrame:
    """One table from the raw names (as in the CSVs) to the labels used everywhere else."""
    rows = [{"kind": "condition", "name": c, "label": condition_label(c)} for c in dict.fromkeys(conditions)]
    rows += [{"kind": "metric", "name": m, "label": metric_label(m, minority)} for m in dict.fromkeys(metrics)]
    return pd.DataFrame(rows, columns=["kind", "name", "label"])
