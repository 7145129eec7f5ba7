"""From a profile to the study's runs: which notebook runs with which parameters, in which order.

Each stage's planner is named in `lus_utils.stages`; `PLAN_ORDER` runs them in dependency order (01, the
feature baseline, then 05 and 04, then the 02/03 grid including the augmented runs, then 06). Every planned
run's parameters are validated against its notebook's parameter classes before anything executes. Identities
are the vocabulary's types: a classifier run is a `RunKey` (its id and condition), a synthetic set a `SetRef`
(its folder), a split a `Split` (its frames.csv column); nothing here parses a name back.

The grid is archs x conditions x data.repeats x seeds; one classifier run covers every fold of its repeat.
Generators are planned per FOLD on that fold's training frames only (under `cv`: one fold per viral patient,
counted from frames.csv, else from the data's file list): a DDPM trains on viral frames only, which are the
same in every repeat (the viral patients' folds do not change), so each DDPM variant is trained once per fold
(on repeat 0's column) and serves every repeat. The class-conditional DDPM and the textual-inversion token with
the `domain` base model are planned per (repeat, fold), since they learn from the other classes' training
frames, which differ between repeats. A synthetic condition's classifier run waits for all folds' generators of its family and reads
fold f's set for fold f; its cache key fingerprints exactly those sets (`Run.reads`). A leaky family's frames
ignore the split, so one generator (one set) serves every fold.

The original study's replica (`grid.seed_replica`, overlay in section `seed_replica`): one notebook 05 run of the
`seed_3_mixed` generator (one for the study), and per arch, repeat and seed two notebook 02 runs on its video
split tested at their last epoch: `seed_replica` and `seed_replica_ddpm_seed_3_mixed@1fraction` (every image that
passed its gate, as its final runs added all of theirs); and one on the study's protocol with the same set,
`ddpm_seed_3_mixed@1fraction` (a leakage ablation: its generator saw every viral patient), which isolates what
the split and checkpoint did.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from lus_utils.config.classify import ClassifierRunParams
from lus_utils.config.notebooks import COMMON_NOTEBOOK_PARAMS, NOTEBOOK_PARAMS
from lus_utils.config.profiles import Profile
from lus_utils.config.schema import ParamError, as_dict, build
from lus_utils.data import dataset, simulated_minority, splits
from lus_utils.paths import NOTEBOOKS_DIR, OutLayout
from lus_utils.stages import STAGES, TABLE
from lus_utils.vocabulary import (CV, DDPM_CONDITIONAL_VARIANT, DDPM_LEAKY_VARIANTS, DDPM_ORIGINAL_VARIANT, HOLDOUT,
                                  METADATA_REFERENCE, ORIGINAL_SET, ORIGINAL_VIDEO, SIMULATED, VIRAL, Condition,
                                  RunKey, SetRef, Split, base_model_tag, ddpm_set_ref, ti_set_refs)

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
    reads: tuple[SetRef, ...] = ()  # the synthetic sets it reads (fingerprinted in its cache key)
    writes: tuple[SetRef, ...] = ()  # the synthetic sets it writes (a generator)

    @property
    def source(self) -> Path:
        return NOTEBOOKS_DIR / f"{self.notebook}.ipynb"


def section_values(*sections: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for section in sections:
        values.update(as_dict(section))
    return values


# --- planners: one per stage, in dependency order -------------------------------------------------------
def plan_explore(profile: Profile, common: dict[str, Any], planned: list[Run]) -> list[Run]:
    return [Run("01", NOTEBOOKS["01"], "01_data_exploration",
                {**common, **section_values(profile.data, profile.simulated_minority, profile.explore)})]


def source_table(profile: Profile, common: dict[str, Any]) -> pd.DataFrame:
    """The study's frames as far as planning needs them: frames.csv when notebook 01 has written it, else one row
    per data file (video, label, probe, patient), so a dry run plans before any frame is decoded."""
    frames_csv = Path(common["out_dir"]) / "data" / "frames.csv"
    if frames_csv.is_file():
        return pd.read_csv(frames_csv, usecols=["path", "video_id", "label", "probe", "patient_id"], dtype=str,
                           keep_default_na=False)
    root = dataset.resolve_data_root(common["data_root"] or None)
    sources, _, _ = dataset.discover(root, profile.data)
    meta = dataset.read_metadata(root)
    return pd.DataFrame([{"path": s.rel, "video_id": s.video_id, "label": s.label, "probe": s.probe,
                          "patient_id": dataset.patient_of(s, meta)} for s in sources])


def generator_folds(profile: Profile, common: dict[str, Any]) -> list[int]:
    """Folds generators are trained for: [-1] under the hold-out protocol, else one per viral patient."""
    if profile.data.protocol == HOLDOUT:
        return [-1]
    frames_csv = Path(common["out_dir"]) / "data" / "frames.csv"
    if frames_csv.is_file():
        header = pd.read_csv(frames_csv, nrows=0)
        if splits.cv_repeats(header).get(0):
            return splits.cv_repeats(header)[0]
    table = source_table(profile, common)
    patients = table.loc[table["label"] == VIRAL, "patient_id"].nunique()
    if patients < 2:
        raise ParamError(f"data.protocol cv needs at least 2 '{VIRAL}' patients in the data; found {patients}: use "
                         "data.protocol holdout, or a data root with more viral patients")
    return list(range(patients))


def simulated_splits(profile: Profile) -> list[tuple[str, list[Split]]]:
    """Every target of the simulated-minority design with its draws (none when it has no target)."""
    sim = profile.simulated_minority
    return [(t, [Split(SIMULATED, target=t, draw=d) for d in range(sim.draws)]) for t in sim.targets]


def simulated_curve(profile: Profile, common: dict[str, Any], target: str) -> list[int]:
    """The real-patient counts of `target`'s curve its draws' pool can give (k itself included)."""
    sim = profile.simulated_minority
    return simulated_minority.curve_points(simulated_minority.pool_size(source_table(profile, common), sim, target),
                                           sim)


def generator_split(fold: int) -> Split:
    """The split a viral generator of `fold` learns from: the hold-out's, or the fold's in repeat 0 (a fold's
    viral frames are the same in every repeat)."""
    return Split(HOLDOUT) if fold < 0 else Split(CV, 0, fold)


def repeats(profile: Profile) -> list[int]:
    return [0] if profile.data.protocol == HOLDOUT else list(range(profile.data.repeats))


def classifier_run(profile: Profile, common: dict[str, Any], key: RunKey, after: list[str],
                   reads: tuple[SetRef, ...] = (), **what: Any) -> Run:
    """A notebook 02 (strategy none) or 03 run of `key`, with its parameters."""
    c = key.condition
    values = {**as_dict(ClassifierRunParams()), **section_values(profile.train, profile.evaluation, profile.runtime),
              "arch": key.arch, "strategy": c.strategy, "augment": c.augment, "seed": key.seed,
              "protocol": c.protocol, "repeat": key.repeat, "checkpoint": c.checkpoint,
              "synthetic_set": c.synthetic, "synthetic_amount": c.amount if c.synthetic else 1.0,
              "oversample_amount": c.amount if c.oversample else 0.0, "amount_unit": c.unit,
              "target_class": c.target, "real_patients": c.k, **what}
    stage = "02" if c.strategy == "none" else "03"
    return Run(stage, NOTEBOOKS[stage], f"{stage}_{key.run_id}", {**common, **values}, after, reads=reads)


def feature_key(profile: Profile) -> RunKey:
    """The baseline classifier whose features measure the realism of synthetic sets (real data only)."""
    return RunKey(profile.grid.archs[0], Condition(protocol=profile.data.protocol), 0, profile.grid.seeds[0])


def plan_feature_baseline(profile: Profile, common: dict[str, Any], planned: list[Run]) -> list[Run]:
    """One baseline run first, so the synthetic-set audits can use its features (it is also a grid run)."""
    return [classifier_run(profile, common, feature_key(profile), [r.run_id for r in planned])]


def ddpm_splits(profile: Profile, common: dict[str, Any], variant: str) -> list[Split]:
    """The viral design's splits a DDPM variant is trained on: one in all for a leaky variant, whose frames ignore
    the split; one per fold (the viral frames of a fold are the same in every repeat); one per repeat and fold
    for the class-conditional variant, which learns every class's training frames."""
    if variant in DDPM_LEAKY_VARIANTS:
        return [Split(HOLDOUT)]
    folds = generator_folds(profile, common)
    if variant == DDPM_CONDITIONAL_VARIANT and profile.data.protocol == CV:
        return [Split(CV, repeat, fold) for repeat in repeats(profile) for fold in folds]
    return [generator_split(fold) for fold in folds]


def plan_ddpm(profile: Profile, common: dict[str, Any], planned: list[Run]) -> list[Run]:
    """One notebook 05 run per variant and split (`ddpm_splits`), then the original study's generator, then one
    per variant and simulated draw."""
    feature_dir = _feature_run_dir(profile, common, planned)
    generators = [(variant, split, 0, {}) for variant in profile.ddpm_runs.variants
                  for split in ddpm_splits(profile, common, variant)]
    if profile.grid.seed_replica:
        generators.append((DDPM_ORIGINAL_VARIANT, Split(HOLDOUT), 0, profile.seed_replica.overrides()))
    k = profile.simulated_minority.real_patients
    generators += [(variant, split, k, {}) for _, draws in simulated_splits(profile) for split in draws
                   for variant in profile.ddpm_runs.simulated_variants]
    runs = []
    for variant, split, k, overrides in generators:
        ref = ddpm_set_ref(variant, split, k)
        values = {**as_dict(profile.ddpm), **as_dict(profile.audit), **as_dict(profile.runtime), "variant": variant,
                  "split_column": split.column, "target_class": split.target or VIRAL, "real_patients": k,
                  "output_size": profile.train.image_size, "feature_run_dir": feature_dir, **overrides}
        runs.append(Run("05", NOTEBOOKS["05"], f"05_{ref.name}", {**common, **values},
                        _ids(planned, *STAGES["05"].after), writes=(ref,)))
    return runs


def ti_repeats(profile: Profile, base_model: str) -> list[int | None]:
    """The domain base model learns from the other classes' training frames: one token per repeat. Other base
    models saw no study frame: one token per fold serves every repeat (None)."""
    return repeats(profile) if base_model == "domain" and profile.data.protocol == CV else [None]


def ti_base_tag(profile: Profile, base_model: str) -> str:
    """No tag for a single base model on the hold-out split (sets `ti_txt2img`), else the base model's word, so
    base models and folds sit side by side (`ti_txt2img_domain_r0_fold1`)."""
    single = len(profile.textual_inversion_runs.base_models) == 1 and profile.data.protocol == HOLDOUT
    return "" if single else base_model_tag(base_model)


def plan_textual_inversion(profile: Profile, common: dict[str, Any], planned: list[Run]) -> list[Run]:
    """One notebook 04 run per base model and fold (and repeat, for the domain base model)."""
    feature_dir = _feature_run_dir(profile, common, planned)
    runs = []
    for fold in generator_folds(profile, common):
        for base_model in profile.textual_inversion_runs.base_models:
            for repeat in ti_repeats(profile, base_model):
                split = generator_split(fold) if repeat is None else Split(CV, repeat, fold)
                tag = ti_base_tag(profile, base_model)
                refs = ti_set_refs(base_model, tag, split)
                values = {**as_dict(profile.textual_inversion), **as_dict(profile.domain_base_model),
                          **as_dict(profile.audit), **as_dict(profile.runtime), "base_model": base_model,
                          "split_column": split.column, "set_tag": tag, "output_size": profile.train.image_size,
                          "feature_run_dir": feature_dir}
                runs.append(Run("04", NOTEBOOKS["04"], "04_" + "_".join(r.name for r in refs), {**common, **values},
                                _ids(planned, *STAGES["04"].after), writes=refs))
    return runs


def synthetic_families(planned: list[Run]) -> dict[str, list[tuple[SetRef, str]]]:
    """{family: [(set, producing run_id)]} of every synthetic set the planned runs write."""
    families: dict[str, list[tuple[SetRef, str]]] = {}
    for run in planned:
        for ref in run.writes:
            families.setdefault(ref.family, []).append((ref, run.run_id))
    return families


def _family_for(producers: list[tuple[SetRef, str]], repeat: int, target: str = "") -> tuple[tuple[SetRef, ...],
                                                                                            list[str]]:
    """The sets (and their producers) a classifier run of `repeat` (or of a simulated `target`) reads of a family."""
    chosen = [(ref, run_id) for ref, run_id in producers if ref.target == target
              and (ref.repeat is None or ref.repeat == repeat)]
    return tuple(ref for ref, _ in chosen), [run_id for _, run_id in chosen]


def plan_classifiers(profile: Profile, common: dict[str, Any], planned: list[Run]) -> list[Run]:
    """The 02/03 grid: baselines, imbalance strategies, augmentation, every synthetic family at every amount,
    its oversampling control, and the metadata reference, for every repeat and seed."""
    grid, stages = profile.grid, profile.study.stages
    first = feature_key(profile)
    runs = []
    data_runs = _ids(planned, *STAGES["02"].after)
    families = synthetic_families(planned)
    original_set = families.pop(ORIGINAL_SET, [])
    protocol = profile.data.protocol
    for repeat in repeats(profile):
        if grid.metadata_reference and "02" in stages:
            key = RunKey(METADATA_REFERENCE, Condition(protocol=protocol, reference=True), repeat, grid.seeds[0])
            runs.append(classifier_run(profile, common, key, data_runs))
        for arch in grid.archs:
            for seed in grid.seeds:
                def key(**condition: Any) -> RunKey:
                    return RunKey(arch, Condition(protocol=protocol, **condition), repeat, seed)

                if "02" in stages and key() != first:
                    runs.append(classifier_run(profile, common, key(), data_runs))
                if "03" in stages:
                    runs += [classifier_run(profile, common, key(strategy=s), data_runs) for s in grid.strategies]
                for strategy in grid.augment_strategies:  # classical augmentation, the comparator
                    if _notebook_stage(strategy) in stages:
                        runs.append(classifier_run(profile, common, key(strategy=strategy, augment=True), data_runs))
                strategies = [s for s in grid.synthetic_strategies if _notebook_stage(s) in stages]
                for family, producers in families.items():
                    reads, after = _family_for(producers, repeat)
                    if not reads:  # a family made for the simulated design only
                        continue
                    runs += [classifier_run(profile, common, key(strategy=s, synthetic=family, amount=amount,
                                                                 augment=grid.augment_synthetic),
                                            data_runs + after, reads)
                             for s in strategies for amount in grid.synthetic_amounts]
                if grid.oversampling and families:
                    runs += [classifier_run(profile, common, key(strategy=s, oversample=True, amount=amount,
                                                                 augment=grid.augment_synthetic), data_runs)
                             for s in strategies for amount in grid.synthetic_amounts]
                if grid.seed_replica and "02" in stages:
                    runs += original_replica_runs(profile, common, key(), data_runs, original_set)
    if "02" in stages:
        runs += simulated_runs(profile, common, data_runs, families)
    return runs


def simulated_runs(profile: Profile, common: dict[str, Any], data_runs: list[str],
                   families: dict[str, list[tuple[SetRef, str]]]) -> list[Run]:
    """The simulated-minority design, per target, architecture and seed (each run covers every draw): the
    practitioner's baseline (augmented) with k real target patients, the same without augmentation, the
    oversampling control and every synthetic family made on the draws at each amount, the metadata reference,
    and the real-patient curve (the baseline with k' patients)."""
    grid, sim, runs = profile.grid, profile.simulated_minority, []
    k = sim.real_patients
    for target, _ in simulated_splits(profile):
        design = {"protocol": SIMULATED, "target": target}
        reference = RunKey(METADATA_REFERENCE, Condition(reference=True, k=k, **design), 0, grid.seeds[0])
        runs.append(classifier_run(profile, common, reference, data_runs))
        for arch in grid.archs:
            for seed in grid.seeds[:1]:  # the draw is the unit: one seed per draw
                def key(**condition: Any) -> RunKey:
                    return RunKey(arch, Condition(**{"k": k, "augment": True, **design, **condition}), 0, seed)

                runs += [classifier_run(profile, common, key(k=n), data_runs)
                         for n in simulated_curve(profile, common, target)]
                runs.append(classifier_run(profile, common, key(augment=False), data_runs))
                for family, producers in families.items():
                    reads, after = _family_for(producers, 0, target)
                    runs += [classifier_run(profile, common, key(synthetic=family, amount=amount), data_runs + after,
                                            reads) for amount in grid.synthetic_amounts if reads]
                if grid.oversampling and families:
                    runs += [classifier_run(profile, common, key(oversample=True, amount=amount), data_runs)
                             for amount in grid.synthetic_amounts]
    return runs


def original_replica_runs(profile: Profile, common: dict[str, Any], base: RunKey, data_runs: list[str],
                          original_set: list[tuple[SetRef, str]]) -> list[Run]:
    """The original study's replica for one arch, repeat and seed: its video split and last-epoch checkpoint,
    without and (when its generator is planned) with every image of its set; and that set on the study's protocol."""
    replica = base.with_condition(Condition(protocol=ORIGINAL_VIDEO, checkpoint="last"))
    runs = [classifier_run(profile, common, replica, data_runs)]
    if original_set:
        reads, after = _family_for(original_set, base.repeat)
        every_image = {"synthetic": ORIGINAL_SET, "amount": 1.0, "unit": "fraction"}
        runs += [classifier_run(profile, common, replica.with_condition(replica.condition.replace(**every_image)),
                                data_runs + after, reads),
                 classifier_run(profile, common, base.with_condition(base.condition.replace(**every_image)),
                                data_runs + after, reads)]
    return runs


def plan_compare(profile: Profile, common: dict[str, Any], planned: list[Run]) -> list[Run]:
    return [Run("06", NOTEBOOKS["06"], "06_final_comparison",
                {**common, **section_values(profile.compare, profile.evaluation)},
                [r.run_id for r in planned], runs_after_failures=True)]


def _notebook_stage(strategy: str) -> str:
    """Baselines (strategy none) run in notebook 02, imbalance strategies in notebook 03."""
    return "02" if strategy == "none" else "03"


def _ids(planned: list[Run], *stages: str) -> list[str]:
    return [r.run_id for r in planned if r.stage in stages]


def _feature_run_dir(profile: Profile, common: dict[str, Any], planned: list[Run]) -> str:
    """The feature baseline's run folder, relative to the output folder (a moved study stays cached), when it is
    planned in this invocation or already exists."""
    relative = OutLayout(Path()).run_dir(feature_key(profile).run_id)
    planned_here = any(r.stage == "02" for r in planned)
    exists = (Path(common["out_dir"]) / relative / "metrics.json").is_file()
    return relative.as_posix() if planned_here or exists else ""


Planner = Callable[[Profile, dict[str, Any], list[Run]], list[Run]]
# Order: data, the feature baseline, generators (05 before 04: 04 reuses its audit), the grid, comparison.
PLAN_ORDER: tuple[Planner, ...] = (plan_explore, plan_feature_baseline, plan_ddpm, plan_textual_inversion,
                                   plan_classifiers, plan_compare)


def planned_stages(planner: Planner) -> set[str]:
    """The stages a planner plans runs for (from the stage table)."""
    return {s.id for s in TABLE if planner.__name__ in s.planners}


def plan(profile: Profile, out_dir: Path, data_root: Path, only: list[str] | None = None) -> list[Run]:
    """All runs of the study in execution order; `only` keeps those stages (their inputs must exist)."""
    common = {"data_root": str(data_root), "out_dir": str(out_dir)}
    stages = [s for s in profile.study.stages if not only or s in only]
    unknown = sorted(set(only or []) - set(NOTEBOOKS))
    if unknown:
        raise ParamError(f"--only {unknown}: unknown stage(s); known: {sorted(NOTEBOOKS)}")
    missing = [s for s in stages if not any(s in planned_stages(p) for p in PLAN_ORDER)]
    if missing:
        raise ParamError(f"{profile.path}: stage(s) {missing} have no planner in this version of the runner")
    runs: list[Run] = []
    for planner in PLAN_ORDER:
        if planned_stages(planner) & set(stages):
            runs.extend(planner(profile, common, runs))
    ids = [r.run_id for r in runs]
    if len(ids) != len(set(ids)):
        raise ParamError("two planned runs share a run_id; the planners must name runs uniquely")
    validate_runs(runs, profile)
    return runs


def validate_runs(runs: list[Run], profile: Profile) -> None:
    """Check every run's parameters against its notebook's parameter classes before anything runs."""
    for run in runs:
        source = f"{profile.path} -> run {run.run_id} ({run.notebook})"
        known = set(COMMON_NOTEBOOK_PARAMS)
        for cls in NOTEBOOK_PARAMS[run.notebook]:
            names = {f for f in cls.__dataclass_fields__}
            build(cls, {k: v for k, v in run.params.items() if k in names}, source)
            known |= names
        extra = sorted(set(run.params) - known)
        if extra:
            raise ParamError(f"{source}: parameters {extra} are not parameters of {run.notebook}")
        if not run.source.is_file():
            raise ParamError(f"{source}: notebook {run.source} does not exist")
