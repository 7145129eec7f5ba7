"""A classifier run's identity: its id, the name of the condition it measures and the runs it is compared with.

Torch-free, so the planner imports no torch. A run is one (arch, condition, repeat, seed) and covers every fold
of its protocol (`cv`: the folds of one repeat; `holdout`: the one split, repeat 0).
"""
from __future__ import annotations

from typing import Any, Mapping

from lus_utils.generate.synthetic import set_name as synthetic_set_name
from lus_utils.params import METADATA_REFERENCE, SEED_VIDEO

SEED_REPLICA = "seed_replica"  # the conditions of the seed study's recipe: `seed_replica[_<set>@<amount>]`


def _amount(amount: Any, params: Mapping[str, Any]) -> str:
    return f"{float(amount):g}{params.get('synthetic_amount_unit', 'ratio')}"


def split_label(params: Mapping[str, Any]) -> str:
    """`holdout`, `cv-r<repeat>`, or `seedvideo-r<repeat>` (the seed study's video split)."""
    protocol = params.get("protocol", "cv")
    if protocol == "holdout":
        return "holdout"
    return f"{'seedvideo' if protocol == SEED_VIDEO else 'cv'}-r{int(params.get('repeat', 0))}"


def run_id_for(params: Mapping[str, Any]) -> str:
    """Deterministic, readable run id: arch-strategy-seed-split[-set@amount|-oversampling@amount][-aug].

    e.g. `resnet18-none-seed0-cv-r0`, `resnet18-weighted_loss-seed2-cv-r1-ddpm_3_mixed@5ratio-aug`.
    """
    parts = [str(params["arch"]), str(params.get("strategy", "none")), f"seed{int(params.get('seed', 0))}",
             split_label(params)]
    if params.get("checkpoint", "best") != "best":
        parts.append(f"{params['checkpoint']}epoch")
    if params.get("synthetic_set"):
        parts.append(f"{synthetic_set_name(params['synthetic_set'])}@{_amount(params.get('synthetic_amount', 1.0), params)}")
    elif float(params.get("oversample_amount", 0) or 0) > 0:
        parts.append(f"oversampling@{_amount(params['oversample_amount'], params)}")
    if params.get("augment"):
        parts.append("aug")
    return "-".join(parts)


def condition_name(params: Mapping[str, Any]) -> str:
    """What a run measures: `metadata_reference`; the strategy; `<set>@<amount><unit>[+strategy]`; or
    `oversampling@<amount><unit>[+strategy]` (the control of a synthetic set); `+augment` when augmented.
    Runs on the seed study's video split are the seed replica: `seed_replica`, `seed_replica_<that name>`."""
    if params.get("protocol") == SEED_VIDEO:
        plain = condition_name({**params, "protocol": "cv"})
        return SEED_REPLICA if plain == "none" else f"{SEED_REPLICA}_{plain}"
    if params.get("arch") == METADATA_REFERENCE:
        return METADATA_REFERENCE
    strategy = str(params.get("strategy", "none"))
    if params.get("synthetic_set"):
        name = f"{synthetic_set_name(params['synthetic_set'])}@{_amount(params.get('synthetic_amount', 1.0), params)}"
    elif float(params.get("oversample_amount", 0) or 0) > 0:
        name = f"oversampling@{_amount(params['oversample_amount'], params)}"
    else:
        name = strategy
        strategy = "none"
    name += f"+{strategy}" if strategy != "none" else ""
    return name + ("+augment" if params.get("augment") else "")


def baseline_run_ids(params: Mapping[str, Any]) -> list[str]:
    """Runs a run is set beside: strategy none with the same arch/seed/repeat/augment; with a synthetic set,
    also the run without it and its oversampling control (same amount); with oversampling, the run without."""
    base = {**params, "strategy": "none"}
    ids = [run_id_for(base)]
    if params.get("synthetic_set"):
        plain = {**base, "synthetic_set": "", "oversample_amount": 0.0}
        ids += [run_id_for(plain), run_id_for({**params, "synthetic_set": "",
                                               "oversample_amount": params.get("synthetic_amount", 1.0)})]
    elif float(params.get("oversample_amount", 0) or 0) > 0:
        ids.append(run_id_for({**base, "oversample_amount": 0.0}))
    return [i for i in dict.fromkeys(ids) if i != run_id_for(params)]


def fold_set_names(synthetic_set: str, fold: int, repeat: int) -> list[str]:
    """Folder names a run of `fold` (and `repeat`) may read for a synthetic set family, most specific first:
    `<set>_r<repeat>_fold<f>` (a generator that also depends on the repeat's split), `<set>_fold<f>`, then the set
    itself (one set for every fold: only a generator marked leaky may serve folds it did not train for, which
    `synthetic.load_for_training` checks). The hold-out split (fold -1) reads the set itself."""
    if fold < 0:
        return [synthetic_set]
    return [f"{synthetic_set}_r{repeat}_fold{fold}", f"{synthetic_set}_fold{fold}", synthetic_set]
