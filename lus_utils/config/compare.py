"""The final comparison (section `compare`, notebook 06): what it compares, which comparisons are primary,
and what it shows."""
from __future__ import annotations

from dataclasses import dataclass, field

from lus_utils.config.schema import choice, require
from lus_utils.vocabulary import CLASSES, METRICS, VIRAL, Condition, NameError_

MAX_PRIMARY = 4
PRIMARY_FORM = ("'<condition> vs <baseline>: <metric>', e.g. 'ddpm_3_mixed@1ratio vs none: minority_ap' or "
                "'pneumonia-k3/ddpm_3_mixed@1ratio+augment vs pneumonia-k3/none+augment: minority_ap'")


@dataclass(frozen=True)
class PrimaryComparison:
    """One declared primary comparison: `condition` against `baseline` on `metric`."""

    condition: str
    baseline: str
    metric: str

    def __str__(self) -> str:
        return f"{self.condition} vs {self.baseline}: {self.metric}"

    @property
    def design(self) -> str:
        return Condition.parse(self.condition).design

    @property
    def target(self) -> str:
        return Condition.parse(self.condition).minority


def parse_primary(entries: list[str]) -> list[PrimaryComparison]:
    """`compare.primary` entries as comparisons; a clear error for a malformed, unknown or leaky entry."""
    out = []
    for entry in entries:
        head, sep, metric = str(entry).rpartition(":")
        condition, vs, baseline = head.partition(" vs ")
        condition, baseline, metric = condition.strip(), baseline.strip(), metric.strip()
        require(bool(sep and vs and condition and baseline and metric), "compare.primary",
                f"entry '{entry}' is not of the form {PRIMARY_FORM}")
        require(metric in METRICS, "compare.primary",
                f"entry '{entry}': metric '{metric}' unknown; use one of {list(METRICS)}")
        require(condition != baseline, "compare.primary", f"entry '{entry}' compares a condition with itself")
        try:
            parsed = [Condition.parse(condition), Condition.parse(baseline)]
        except NameError_ as err:
            require(False, "compare.primary", f"entry '{entry}': {err}")
        require(not any(c.original_replica for c in parsed), "compare.primary",
                f"entry '{entry}': the original study's replica is never a primary comparison (its video split "
                "puts a patient in train and test)")
        require(not any(c.leaky for c in parsed), "compare.primary",
                f"entry '{entry}': the leakage ablation is never a primary comparison (its generator saw "
                "validation/test frames)")
        require(parsed[0].design == parsed[1].design and parsed[0].minority == parsed[1].minority,
                "compare.primary", f"entry '{entry}' pairs conditions of two designs or target classes")
        out.append(PrimaryComparison(condition, baseline, metric))
    require(len(set(out)) == len(out), "compare.primary", "lists a comparison twice")
    require(len(out) <= MAX_PRIMARY, "compare.primary",
            f"declares {len(out)} comparisons; at most {MAX_PRIMARY} (Holm over more leaves too little power)")
    return out


@dataclass
class CompareParams:
    minority_class: str = choice(VIRAL, CLASSES)  # the viral design's minority, whose AUROC, AP, sensitivity, recall and F1 are compared (a simulated minority's figures are its target's)
    metrics: list[str] = choice(["minority_auroc", "minority_ap", "minority_sens_at_spec", "balanced_accuracy", "accuracy", "weighted_f1", "video_balanced_accuracy"], tuple(METRICS))  # table columns and exploratory effect metrics (minority_: of the condition's minority class)
    primary: list[str] = field(default_factory=lambda: ["pneumonia-k3/ddpm_class_conditional@1ratio+augment vs pneumonia-k3/none+augment: minority_ap", "pneumonia-k3/ddpm_class_conditional@1ratio+augment vs pneumonia-k3/oversampling@1ratio+augment: minority_ap"])  # declared primary comparisons '<condition> vs <baseline>: <metric>' (at most 4 over both designs; Holm over these alone)
    mde_power: float = 0.8  # power at which the minimum detectable effect of a primary comparison is stated
    n_example_pairs: int = 4  # synthetic images per set shown beside their nearest training frame
    compare_seed: int = 0  # seed of every bootstrap resampling
    build_report: bool = True  # write report.html with every executed notebook rendered to HTML

    def check(self) -> None:
        require(len(self.metrics) >= 1 and len(set(self.metrics)) == len(self.metrics), "metrics",
                "must list distinct metrics")
        require(self.n_example_pairs >= 0, "n_example_pairs", "must be >= 0")
        require(0.5 <= self.mde_power < 1, "mde_power", "must lie in [0.5, 1)")
        require(self.compare_seed >= 0, "compare_seed", "must be >= 0")
        parse_primary(self.primary)

    def primary_comparisons(self) -> list[PrimaryComparison]:
        return parse_primary(self.primary)
