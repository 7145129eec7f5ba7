"""The study's stages, one table: which notebook each runs, its parameters, its planner and what it reads.

`config.notebooks` builds each notebook's parameters from `Stage.params`, `run.planning` plans each stage with
`Stage.planners` and orders it after `Stage.after`, and `run.cache_keys` keys its cache on `Stage.reads`.
The table is plain data (class and function names, not objects), so every module can import it.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    id: str
    notebook: str  # notebooks/<notebook>.ipynb
    params: tuple[str, ...]  # lus_utils.config classes that make up the notebook's parameters
    planners: tuple[str, ...]  # lus_utils.run.planning functions that plan the stage's runs
    after: tuple[str, ...]  # stages whose runs finish first (a classifier run also waits for its synthetic set)
    reads: str  # what its cache key fingerprints: data_root, frames (frames.csv and its inputs) or runs (all)
    # Its dependents are keyed on what it wrote (01: frames.csv) rather than on its own key, so a change that
    # leaves frames.csv as it was (e.g. the explore section) re-runs notebook 01 only.
    keyed_by_outputs: bool = False


TABLE: tuple[Stage, ...] = (
    Stage("01", "01_data_exploration", ("DataParams", "SimulatedMinorityParams", "ExploreParams"), ("plan_explore",),
          (), "data_root",
          keyed_by_outputs=True),
    Stage("02", "02_baseline", ("ClassifierRunParams", "TrainParams", "EvaluationParams", "RuntimeParams"),
          ("plan_feature_baseline", "plan_classifiers"), ("01",), "frames"),
    Stage("03", "03_weighted_loss", ("ImbalanceRunParams", "TrainParams", "EvaluationParams", "RuntimeParams"),
          ("plan_classifiers",), ("01",), "frames"),
    Stage("04", "04_textual_inversion", ("TextualInversionParams", "DomainBaseModelParams", "AuditParams",
                                         "RuntimeParams"), ("plan_textual_inversion",),
          ("01", "02"), "frames"),
    Stage("05", "05_ddpm", ("DDPMParams", "AuditParams", "RuntimeParams"), ("plan_ddpm",), ("01", "02"), "frames"),
    Stage("06", "06_final_comparison", ("CompareParams", "EvaluationParams"), ("plan_compare",),
          ("01", "02", "03", "04", "05"), "runs"),
)
STAGES: dict[str, Stage] = {stage.id: stage for stage in TABLE}
IDS: tuple[str, ...] = tuple(STAGES)


def by_notebook(notebook: str) -> Stage:
    for stage in TABLE:
        if stage.notebook == notebook:
            return stage
    raise KeyError(f"notebook '{notebook}' is no stage's; known: {[s.notebook for s in TABLE]}")
