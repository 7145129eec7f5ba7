"""From a profile to the study's runs: which notebook runs with which parameters, in which order.

Each stage's planner is named in `lus_utils.stages`; `PLAN_ORDER` runs them in dependency order (01, the
feature baseline, then 05 and 04, then the 02/03 grid including the augmented runs, then 06). Every planned
run's parameters are validated against its notebook's parameter classes before anything executes.

The grid is archs x conditions x data.repeats x seeds; one classifier run covers every fold of its repeat.
Generators are planned per FOLD on that fold's training frames only (under `cv`: one fold per minority
patient, counted from frames.csv, else from the data's file list): a DDPM trains on minority frames only,
which are the same in every repeat (the minority patients' folds do not change), so each DDPM variant is
trained once per fold and serves every repeat. The textual-inversion token with the `domain` base model is
planned per (repeat, fold), since the domain model learns from the other classes' training frames, which
differ between repeats. A synthetic condition's classifier run waits for all folds' generators of its family
and reads fold f's set for fold f. The leakage ablation (`ddpm_3_mixed_any_split`) stays, labelled by its
provenance; its frames are chosen whatever the split, so one generator (fold -1) serves every fold.

The seed replica (`grid.seed_replica`, knobs in section `seed_replica`): one notebook 05 run of the
`seed_3_mixed` generator (one for the study: its frames do not depend on a split), and per arch, repeat and
seed two notebook 02 runs on the seed's video split tested at their last epoch: `seed_replica` and
`seed_replica_ddpm_seed_3_mixed@1fraction` (every image that passed the seed's gate, as its final runs added
all of theirs); and one on the study's protocol with the same set, `ddpm_seed_3_mixed@1fraction` (a leakage
ablation: its generator saw every minority patient), which isolates what the split and checkpoint did.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from lus_utils import params as P
from lus_utils.generate.synthetic import (DDPM_LEAKY_VARIANTS, DDPM_SEED_VARIANT, SEED_REPLICA_SET, ddpm_set_name,
                                          ti_set_names)
from lus_utils.paths import NOTEBOOKS_DIR
from lus_utils.stages import STAGES, TABLE

NOTEBOOKS = {stage.id: stage.notebook for stage in TABLE}


@dataclass
class Run:
    """One execution of one notebook with its parameters."""

    stage: str
    notebook: str
    run_id: str  # unique in the study; the executed notebook is <out>/notebooks/<run_id>.ipynb
    params: dict[str, Any]
    after: list[str] = field(default_factory=list)  # run_ids that must finish first
    runs_after_failures: bool = False  # runs on what finished when some of `after` failed (the comparison)

    @property
    def source(self) -> Path:
        return NOTEBOOKS_DIR / f"{self.notebook}.ipynb"


def section_values(*sections: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for section in sections:
        values.update(P.as_dict(section))
    return values


# --- planners: one per stage, in dependency order -------------------------------------------------------
def plan_explore(profile: P.Profile, common: dict[str, Any], planned: list[Run]) -> list[Run]:
    return [Run("01", NOTEBOOKS["01"], "01_data_exploration",
                {**common, **section_values(profile.data, profile.explore)})]


def generator_folds(profile: P.Profile, common: dict[str, Any]) -> list[int]:
    """Folds generators are trained for: [-1] under the hold-out protocol, else one per minority patient."""
    if profile.data.protocol == "holdout":
        return [-1]
    import pandas as pd

    from lus_utils.data import dataset, splits

    frames_csv = Path(common["out_dir"]) / "data" / "frames.csv"
    if frames_csv.is_file():
        header = pd.read_csv(frames_csv, nrows=0)
        if splits.cv_repeats(header).get(0):
            return splits.cv_repeats(header)[0]
    root = dataset.resolve_data_root(common["data_root"] or None)
    sources, _, _ = dataset.discover(root, profile.data)
    meta = dataset.read_metadata(root)
    patients = set()
    for source in sources:
        if source.label == P.MINORITY_CLASS:
            patient = str(meta.loc[source.video_id, "patient_id"]).strip() if source.video_id in meta.index else ""
            patients.add(patient or f"v:{source.video_id}")
    if len(patients) < 2:
        raise P.ParamError(f"data.protocol cv needs at least 2 '{P.MINORITY_CLASS}' patients in {root}; found "
                           f"{len(patients)}. Use data.protocol: holdout")
    return list(range(len(patients)))


def repeats(profile: P.Profile) -> list[int]:
    return [0] if profile.data.protocol == "holdout" else list(range(profile.data.repeats))


def run_base(profile: P.Profile) -> dict[str, Any]:
    """What every classifier run of the study shares: the protocol and the fixed specificity of thresholds."""
    spec = getattr(profile.compare, "fixed_specificity", P.ClassifierRunParams().fixed_specificity)
    return {"protocol": profile.data.protocol, "fixed_specificity": spec}


def feature_run(profile: P.Profile) -> dict[str, Any]:
    """The baseline classifier whose features measure the realism of synthetic sets (real data only)."""
    return {"arch": profile.grid.archs[0], "strategy": "none", "seed": profile.grid.seeds[0], "repeat": 0,
            "synthetic_set": "", "synthetic_amount": 1.0, **run_base(profile)}


def classifier_run(profile: P.Profile, common: dict[str, Any], what: dict[str, Any],
                   after: list[str]) -> Run:
    from lus_utils.classify.run_identity import run_id_for

    values = {**P.as_dict(P.ClassifierRunParams()), **P.as_dict(profile.train), **what}
    notebook = NOTEBOOKS[_notebook_stage(values["strategy"])]
    return Run(notebook[:2], notebook, f"{notebook[:2]}_{run_id_for(values)}", {**common, **values}, after)


def plan_feature_baseline(profile: P.Profile, common: dict[str, Any], planned: list[Run]) -> list[Run]:
    """One baseline run first, so the synthetic-set audits can use its features (it is also a grid run)."""
    return [classifier_run(profile, common, feature_run(profile), [r.run_id for r in planned])]


def plan_ddpm(profile: P.Profile, common: dict[str, Any], planned: list[Run]) -> list[Run]:
    """One notebook 05 run per variant and fold (the minority frames of a fold are the same in every repeat); one
    in all (fold -1) for a leaky variant, whose frames ignore the split; the seed replica's generator last."""
    feature_dir = _feature_run_dir(profile, common, planned)
    folds = generator_folds(profile, common)
    generators = [(variant, fold, {}) for variant in profile.ddpm_runs.variants
                  for fold in ([-1] if variant in DDPM_LEAKY_VARIANTS else folds)]
    if profile.grid.seed_replica:
        generators.append((DDPM_SEED_VARIANT, -1, seed_generator(profile.seed_replica)))
    runs = []
    for variant, fold, overrides in generators:
        values = {**P.as_dict(profile.ddpm), "variant": variant, "fold": fold,
                  "output_size": profile.train.image_size, **P.as_dict(profile.audit), "feature_run_dir": feature_dir,
                  **overrides}
        runs.append(Run("05", NOTEBOOKS["05"], f"05_{ddpm_set_name(variant, fold)}", {**common, **values},
                        _ids(planned, *STAGES["05"].after)))
    return runs


def seed_generator(seed: P.SeedReplicaParams) -> dict[str, Any]:
    """The seed's sampling and gate, over the profile's ddpm and audit sections (its generator trains as they say)."""
    return {"sampler": "ddpm", "sampling_steps": seed.sampling_steps, "n_samples": seed.n_samples,
            "gate_retries": seed.gate_retries, "gate": "seed", "min_std": seed.min_std,
            "min_entropy": seed.min_entropy}


def ti_repeats(profile: P.Profile, base_model: str) -> list[int | None]:
    """The domain base model learns from the other classes' training frames: one token per repeat. Other base
    models saw no study frame: one token per fold serves every repeat (None)."""
    return repeats(profile) if base_model == "domain" and profile.data.protocol == "cv" else [None]


def plan_textual_inversion(profile: P.Profile, common: dict[str, Any], planned: list[Run]) -> list[Run]:
    """One notebook 04 run per base model and fold (and repeat, for the domain base model)."""
    feature_dir = _feature_run_dir(profile, common, planned)
    ti_runs = profile.textual_inversion_runs
    runs = []
    for fold in generator_folds(profile, common):
        for base_model in ti_runs.base_models:
            for repeat in ti_repeats(profile, base_model):
                tag = ti_set_tag(profile, base_model, fold, repeat)
                values = {**P.as_dict(profile.textual_inversion), "base_model": base_model, "fold": fold,
                          "repeat": repeat or 0, "set_tag": tag, "output_size": profile.train.image_size,
                          **P.as_dict(profile.audit), "feature_run_dir": feature_dir}
                runs.append(Run("04", NOTEBOOKS["04"], "04_" + "_".join(ti_set_names(tag).values()),
                                {**common, **values}, _ids(planned, *STAGES["04"].after)))
    return runs


def ti_set_tag(profile: P.Profile, base_model: str, fold: int, repeat: int | None = None) -> str:
    """No tag for a single hold-out run; otherwise one named for the base model (and repeat) and fold, so the
    set folders read `<family>[_r<repeat>]_fold<f>` (see `run_identity.fold_set_names`)."""
    ti_runs = profile.textual_inversion_runs
    if len(ti_runs.base_models) == 1 and fold == -1:
        return ""
    slug = "".join(c if c.isalnum() else "-" for c in base_model.rstrip("/").split("/")[-1]).strip("-")
    return slug + (f"_r{repeat}" if repeat is not None else "") + (f"_fold{fold}" if fold >= 0 else "")


def _family(name: str) -> tuple[str, int | None]:
    """A fold's set folder name -> (family, repeat or None): `ti_txt2img_domain_r1_fold0` -> (`ti_txt2img_domain`, 1)."""
    stem = re.sub(r"_fold\d+$", "", name)
    found = re.search(r"_r(\d+)$", stem)
    return (stem[:found.start()], int(found.group(1))) if found else (stem, None)


def synthetic_sets(planned: list[Run]) -> dict[str, list[tuple[int | None, str]]]:
    """{family: [(repeat or None, producing run_id)]} of every synthetic set the planned runs write."""
    names = []
    for run in planned:
        if run.stage == "05":
            names.append((ddpm_set_name(run.params["variant"], run.params["fold"]), run.run_id))
        elif run.stage == "04":
            names += [(name, run.run_id) for name in ti_set_names(run.params["set_tag"]).values()]
    families: dict[str, list[tuple[int | None, str]]] = {}
    for name, producer in names:
        family, repeat = _family(name)
        families.setdefault(family, []).append((repeat, producer))
    return families


def plan_classifiers(profile: P.Profile, common: dict[str, Any], planned: list[Run]) -> list[Run]:
    """The 02/03 grid: baselines, imbalance strategies, augmentation, every synthetic family at every amount,
    its oversampling control, and the metadata reference, for every repeat and seed."""
    grid = profile.grid
    stages = profile.study.stages
    first = feature_run(profile)
    runs = []
    data_runs = _ids(planned, *STAGES["02"].after)
    families = synthetic_sets(planned)
    seed_set = families.pop(SEED_REPLICA_SET, [])
    for repeat in repeats(profile):
        if grid.metadata_reference and "02" in stages:
            runs.append(classifier_run(profile, common, {**run_base(profile), "arch": P.METADATA_REFERENCE,
                                                         "seed": grid.seeds[0], "repeat": repeat}, data_runs))
        for arch in grid.archs:
            for seed in grid.seeds:
                base = {**run_base(profile), "arch": arch, "seed": seed, "repeat": repeat}
                if "02" in stages and {**first, **base} != first:
                    runs.append(classifier_run(profile, common, {**base, "strategy": "none"}, data_runs))
                if "03" in stages:
                    runs += [classifier_run(profile, common, {**base, "strategy": s}, data_runs)
                             for s in grid.strategies]
                for strategy in grid.augment_strategies:  # classical augmentation, the comparator
                    if _notebook_stage(strategy) in stages:
                        runs.append(classifier_run(profile, common, {**base, "strategy": strategy, "augment": True},
                                                   data_runs))
                strategies = [s for s in grid.synthetic_strategies if _notebook_stage(s) in stages]
                for family, producers in families.items():
                    after = [run_id for r, run_id in producers if r is None or r == repeat]
                    runs += [classifier_run(profile, common, {**base, "strategy": strategy, "synthetic_set": family,
                                                              "synthetic_amount": amount}, data_runs + after)
                             for strategy in strategies for amount in grid.synthetic_amounts]
                if grid.oversampling and families:
                    runs += [classifier_run(profile, common, {**base, "strategy": strategy,
                                                              "oversample_amount": amount}, data_runs)
                             for strategy in strategies for amount in grid.synthetic_amounts]
                if grid.seed_replica and "02" in stages:
                    runs += seed_replica_runs(profile, common, base, data_runs, [run_id for _, run_id in seed_set])
    return runs


def seed_replica_runs(profile: P.Profile, common: dict[str, Any], base: dict[str, Any], data_runs: list[str],
                      seed_set_producers: list[str]) -> list[Run]:
    """The seed replica's runs of one arch, repeat and seed: its video split, its last-epoch checkpoint, without
    and (when its generator is planned) with every image of its set; and that set on the study's protocol."""
    seed = {**base, "strategy": "none", "protocol": P.SEED_VIDEO, "checkpoint": "last"}
    runs = [classifier_run(profile, common, seed, data_runs)]
    if seed_set_producers:
        all_of_set = {"synthetic_set": SEED_REPLICA_SET, "synthetic_amount": 1.0, "synthetic_amount_unit": "fraction"}
        after = data_runs + seed_set_producers
        runs += [classifier_run(profile, common, {**seed, **all_of_set}, after),
                 classifier_run(profile, common, {**base, "strategy": "none", **all_of_set}, after)]
    return runs


def plan_compare(profile: P.Profile, common: dict[str, Any], planned: list[Run]) -> list[Run]:
    return [Run("06", NOTEBOOKS["06"], "06_final_comparison", {**common, **P.as_dict(profile.compare)},
                [r.run_id for r in planned], runs_after_failures=True)]


def _notebook_stage(strategy: str) -> str:
    """Baselines (strategy none) run in notebook 02, imbalance strategies in notebook 03."""
    return "02" if strategy == "none" else "03"


def _ids(planned: list[Run], *stages: str) -> list[str]:
    return [r.run_id for r in planned if r.stage in stages]


def _feature_run_dir(profile: P.Profile, common: dict[str, Any], planned: list[Run]) -> str:
    """The feature baseline's run folder when it is planned in this invocation or already exists."""
    from lus_utils.classify.run_identity import run_id_for

    run_dir = Path(common["out_dir"]) / "runs" / run_id_for({**P.as_dict(P.ClassifierRunParams()),
                                                              **feature_run(profile), **P.as_dict(profile.train)})
    planned_here = any(r.stage == "02" for r in planned)
    return str(run_dir) if planned_here or (run_dir / "metrics.json").is_file() else ""


Planner = Callable[[P.Profile, dict[str, Any], list[Run]], list[Run]]
# Order: data, the feature baseline, generators (05 before 04: 04 reuses its audit), the grid, comparison.
PLAN_ORDER: tuple[Planner, ...] = (plan_explore, plan_feature_baseline, plan_ddpm, plan_textual_inversion,
                                   plan_classifiers, plan_compare)


def planned_stages(planner: Planner) -> set[str]:
    """The stages a planner plans runs for (from the stage table)."""
    return {s.id for s in TABLE if planner.__name__ in s.planners}


def plan(profile: P.Profile, out_dir: Path, data_root: Path, only: list[str] | None = None) -> list[Run]:
    """All runs of the study in execution order; `only` keeps those stages (their inputs must exist)."""
    common = {"data_root": str(data_root), "out_dir": str(out_dir)}
    stages = [s for s in profile.study.stages if not only or s in only]
    unknown = sorted(set(only or []) - set(NOTEBOOKS))
    if unknown:
        raise P.ParamError(f"--only {unknown}: unknown stage(s); known: {sorted(NOTEBOOKS)}")
    missing = [s for s in stages if not any(s in planned_stages(p) for p in PLAN_ORDER)]
    if missing:
        raise P.ParamError(f"{profile.path}: stage(s) {missing} have no planner in this version of the runner")
    runs: list[Run] = []
    for planner in PLAN_ORDER:
        if planned_stages(planner) & set(stages):
            runs.extend(planner(profile, common, runs))
    ids = [r.run_id for r in runs]
    if len(ids) != len(set(ids)):
        raise P.ParamError("two planned runs share a run_id; the planners must name runs uniquely")
    validate_runs(runs, profile)
    return runs


def validate_runs(runs: list[Run], profile: P.Profile) -> None:
    """Check every run's parameters against its notebook's parameter classes before anything runs."""
    for run in runs:
        source = f"{profile.path} -> run {run.run_id} ({run.notebook})"
        known = set(P.COMMON_NOTEBOOK_PARAMS)
        for cls in P.NOTEBOOK_PARAMS[run.notebook]:
            names = {f for f in cls.__dataclass_fields__}
            P.build(cls, {k: v for k, v in run.params.items() if k in names}, source)
            known |= names
        extra = sorted(set(run.params) - known)
        if extra:
            raise P.ParamError(f"{source}: parameters {extra} are not parameters of {run.notebook}")
        if not run.source.is_file():
            raise P.ParamError(f"{source}: notebook {run.source} does not exist")


