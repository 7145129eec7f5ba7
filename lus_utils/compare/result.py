"""The comparison's result: everything notebook 06 and the report show, computed once by `comparison.compare`
and written under <out>/comparison."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from lus_utils.compare import effects as E
from lus_utils.config.classify import EvaluationParams
from lus_utils.config.compare import CompareParams


def comparison_dir(out_dir: Path) -> Path:
    return Path(out_dir) / "comparison"


@dataclass
class Comparison:
    out_dir: Path
    params: CompareParams
    evaluation: EvaluationParams
    runs: pd.DataFrame  # one row per paired unit (compare.runs)
    summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    pairs: pd.DataFrame = field(default_factory=pd.DataFrame)
    diffs: pd.DataFrame = field(default_factory=pd.DataFrame)
    effects: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=E.EFFECT_COLUMNS))
    references: pd.DataFrame = field(default_factory=pd.DataFrame)
    patients: pd.DataFrame = field(default_factory=pd.DataFrame)
    patient_effects: pd.DataFrame = field(default_factory=pd.DataFrame)
    patient_signs: pd.DataFrame = field(default_factory=pd.DataFrame)
    audits: pd.DataFrame = field(default_factory=pd.DataFrame)
    synthetic: pd.DataFrame = field(default_factory=pd.DataFrame)
    missing: pd.DataFrame = field(default_factory=pd.DataFrame)
    missing_primary: list[str] = field(default_factory=list)
    original_claim: pd.DataFrame = field(default_factory=pd.DataFrame)  # see compare.original_claim
    curve: pd.DataFrame = field(default_factory=pd.DataFrame)  # the simulated design's real-patient curve
    exchange: pd.DataFrame = field(default_factory=pd.DataFrame)  # what each condition is worth in real patients
    control: pd.DataFrame = field(default_factory=pd.DataFrame)  # does the curve rise (the positive control)
    problems: list[str] = field(default_factory=list)
    n_minority_patients: int = 0
    answer: str = ""  # the question and its answer in words (conclusions.answer): the report's first screen
    conclusions: str = ""

    @property
    def folder(self) -> Path:
        return comparison_dir(self.out_dir)

    @property
    def figures(self) -> Path:
        return self.folder / "figures"

    @property
    def simulated(self) -> bool:
        return not self.runs.empty and bool((self.runs["design"] == "simulated_minority").any())

    @property
    def viral_runs(self) -> pd.DataFrame:
        """The viral design's units (the per-patient and per-probe views are about its four patients)."""
        if self.runs.empty:
            return self.runs
        return self.runs[self.runs["design"] == "viral"].reset_index(drop=True)

    @property
    def study_runs(self) -> pd.DataFrame:
        """The viral design's runs on the study's protocol: the original study's replica tests other frames (its
        video split), so views that show every condition on the same frames (the Grad-CAM panel) leave it out."""
        runs = self.viral_runs
        return runs if runs.empty else runs[~runs["original_replica"].astype(bool)].reset_index(drop=True)

    @property
    def primary_pairs(self) -> set[tuple[str, str]]:
        return {(p.condition, p.baseline) for p in self.params.primary_comparisons()}

    @property
    def primary_conditions(self) -> list[str]:
        return list(dict.fromkeys(c for pair in self.primary_pairs for c in pair))
