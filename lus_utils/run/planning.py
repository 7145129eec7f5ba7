"""From a profile to the study's runs: which notebook runs with which parameters, in which order.

Each stage's planner is named in `lus_utils.stages`; `PLAN_ORDER` runs them in dependency order (01, the
feature baseline, then 05 and 04, then the 02/03 grid including the augmented runs, then 06). Every planned
run's parameters are validated against its notebook's parameter classes before anything executes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from lus_utils import params as P
from lus_utils.generate.synthetic import ddpm_set_name, ti_set_names
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


def feature_run(profile: P.Profile) -> dict[str, Any]:
    """The baseline classifier whose features measure the realism of synthetic sets (real data only)."""
    return {"arch": profile.grid.archs[0], "strategy": "none", "seed": profile.grid.seeds[0],
            "fold": profile.grid.folds[0], "synthetic_set": "", "synthetic_amount": 1.0}


def classifier_run(profile: P.Profile, common: dict[str, Any], what: dict[str, Any],
                   after: list[str]) -> Run:
    from lus_utils.classify.training import run_id_for

    values = {**P.as_dict(P.ClassifierRunParams()), **P.as_dict(profile.train), **what}
    notebook = NOTEBOOKS[_notebook_stage(values["strategy"])]
    return Run(notebook[:2], notebook, f"{notebook[:2]}_{run_id_for(values)}", {**common, **values}, after)


def plan_feature_baseline(profile: P.Profile, common: dict[str, Any], planned: list[Run]) -> list[Run]:
    """One baseline run first, so the synthetic-set audits can use its features (it is also a grid run)."""
    return [classifier_run(profile, common, feature_run(profile), [r.run_id for r in planned])]


def plan_ddpm(profile: P.Profile, common: dict[str, Any], planned: list[Run]) -> list[Run]:
    runs = []
    feature_dir = _feature_run_dir(profile, common, planned)
    for fold in profile.ddpm_runs.folds:
        for variant in profile.ddpm_runs.variants:
            values = {**P.as_dict(profile.ddpm), "variant": variant, "fold": fold,
                      "output_size": profile.train.image_size, **P.as_dict(profile.audit),
                      "feature_run_dir": feature_dir}
            runs.append(Run("05", NOTEBOOKS["05"], f"05_{ddpm_set_name(variant, fold)}",
                            {**common, **values}, _ids(planned, *STAGES["05"].after)))
    return runs


def plan_textual_inversion(profile: P.Profile, common: dict[str, Any], planned: list[Run]) -> list[Run]:
    """One notebook 04 run per base model and fold; each writes its sets under its own tag."""
    feature_dir = _feature_run_dir(profile, common, planned)
    ti_runs = profile.textual_inversion_runs
    runs = []
    for fold in ti_runs.folds:
        for base_model in ti_runs.base_models:
            tag = ti_set_tag(profile, base_model, fold)
            values = {**P.as_dict(profile.textual_inversion), "base_model": base_model, "fold": fold,
                      "set_tag": tag, "output_size": profile.train.image_size, **P.as_dict(profile.audit),
                      "feature_run_dir": feature_dir}
            runs.append(Run("04", NOTEBOOKS["04"], "04_" + "_".join(ti_set_names(tag).values()),
                            {**common, **values}, _ids(planned, *STAGES["04"].after)))
    return runs


def ti_set_tag(profile: P.Profile, base_model: str, fold: int) -> str:
    """No tag for a single hold-out run; otherwise one named for the base model and fold."""
    ti_runs = profile.textual_inversion_runs
    if len(ti_runs.base_models) == 1 and fold == -1:
        return ""
    slug = "".join(c if c.isalnum() else "-" for c in base_model.rstrip("/").split("/")[-1]).strip("-")
    return slug + (f"_fold{fold}" if fold >= 0 else "")


def synthetic_sets(planned: list[Run]) -> list[tuple[str, int, str]]:
    """(set name, fold, producing run_id) of every synthetic set the planned runs write."""
    sets = []
    for run in planned:
        if run.stage == "05":
            sets.append((ddpm_set_name(run.params["variant"], run.params["fold"]), run.params["fold"], run.run_id))
        elif run.stage == "04":
            sets += [(name, run.params["fold"], run.run_id) for name in ti_set_names(run.params["set_tag"]).values()]
    return sets


def plan_classifiers(profile: P.Profile, common: dict[str, Any], planned: list[Run]) -> list[Run]:
    """The 02/03 grid: baselines, imbalance strategies, and every synthetic set at every amount."""
    grid = profile.grid
    stages = profile.study.stages
    first = feature_run(profile)
    runs = []
    data_runs = _ids(planned, *STAGES["02"].after)
    for arch in grid.archs:
        for fold in grid.folds:
            for seed in grid.seeds:
                base = {"arch": arch, "seed": seed, "fold": fold}
                if "02" in stages and {**first, **base} != first:
                    runs.append(classifier_run(profile, common, {**base, "strategy": "none"}, data_runs))
                if "03" in stages:
                    runs += [classifier_run(profile, common, {**base, "strategy": s}, data_runs)
                             for s in grid.strategies]
                for strategy in grid.augment_strategies:  # classical augmentation, the comparator
                    if _notebook_stage(strategy) in stages:
                        runs.append(classifier_run(profile, common, {**base, "strategy": strategy, "augment": True},
                                                   data_runs))
                for name, set_fold, producer in synthetic_sets(planned):
                    if set_fold != fold:
                        continue
                    runs += [classifier_run(profile, common, {**base, "strategy": strategy, "synthetic_set": name,
                                                              "synthetic_amount": amount}, data_runs + [producer])
                             for strategy in grid.synthetic_strategies if _notebook_stage(strategy) in stages
                             for amount in grid.synthetic_amounts]
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
    from lus_utils.classify.training import run_id_for

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
    check_sets_for_grid(profile, runs)
    validate_runs(runs, profile)
    return runs


def check_sets_for_grid(profile: P.Profile, runs: list[Run]) -> None:
    """Each grid fold asks for synthetic-set runs once generators are planned: one must write a set for it."""
    made = {fold for _, fold, _ in synthetic_sets(runs)}
    if not made or not profile.grid.synthetic_strategies:
        return
    lacking = [f for f in profile.grid.folds if f not in made]
    if lacking:
        raise P.ParamError(f"{profile.path}: grid.folds {lacking} ask for synthetic-set runs (grid.synthetic_strategies "
                           f"{profile.grid.synthetic_strategies}) but no generator writes a set for them (sets are made "
                           f"for folds {sorted(made)}); add those folds to ddpm_runs.folds or textual_inversion_runs.folds, "
                           "or drop them from grid.folds")


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


