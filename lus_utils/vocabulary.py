"""The study's vocabulary: what it names, typed, and the one place where names are built and parsed back.

- `Split`: which partition of frames.csv a model trains, validates and tests on (its frames.csv column): a cv
  fold of a repeat, the hold-out split, the original study's video split of a repeat, or a simulated-minority
  draw of a target class.
- `SetRef`: one synthetic-set folder: a generator family trained on the frames of one split (or, for a set
  whose frames ignore the split, one folder for every split).
- `Condition`: what a classifier run measures (imbalance strategy, augmentation, a synthetic family and amount
  or the oversampling control, protocol, checkpoint; in the simulated-minority design its target class and
  number of real target patients), with its name and the one rule for its baselines. `RunKey` adds the
  architecture, repeat and seed: one notebook execution and its run id.
- `METRICS`: every endpoint name, in one list, with its label.

The original study (lamitay/uls_inversion, the study this one re-examines) is "the original study" in code; its
user-facing names (`seed_replica`, `seed_video`) stay as documented. Torch- and pandas-free, so every layer
imports it.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Mapping

# --- classes ------------------------------------------------------------------------------------------------
CLASSES = ("covid", "pneumonia", "regular", "viral")
VIRAL = "viral"  # the real minority class: 72 frames, 5 videos, 4 patients
CONVEX_CLASSES = ("covid", "pneumonia", "regular")  # the dataset owners' 3-class task, with many patients each

# --- what a classifier does -----------------------------------------------------------------------------------
STRATEGIES = ("none", "weighted_loss", "balanced_sampler")
METADATA_REFERENCE = "metadata_reference"  # the shortcut reference: logistic regression on probe and native size
AMOUNT_UNITS = ("ratio", "fraction", "count")  # x real minority training frames, share of the set, image count
CHECKPOINTS = ("best", "last")

# --- protocols: how frames are split ---------------------------------------------------------------------------
CV = "cv"  # one test fold per viral patient, redone per repeat for the other classes
HOLDOUT = "holdout"  # one patient-grouped train/val/test split
ORIGINAL_VIDEO = "seed_video"  # the original study's split by video: a patient's videos may straddle parts
SIMULATED = "simulated"  # a well-populated class cut to a few training patients, per draw
PROTOCOLS = (CV, HOLDOUT, ORIGINAL_VIDEO, SIMULATED)
DESIGNS = {CV: "viral", HOLDOUT: "viral", ORIGINAL_VIDEO: "viral", SIMULATED: "simulated_minority"}
ORIGINAL_REPLICA = "seed_replica"  # conditions on the original study's recipe: `seed_replica[_<plain name>]`

# --- synthetic families ------------------------------------------------------------------------------------------
DDPM_VARIANTS = ("3_mixed", "train_all", "3_mixed_any_split", "class_conditional", "seed_3_mixed")
DDPM_LEAKAGE_VARIANT = "3_mixed_any_split"  # the labelled leakage ablation: 3 frames whatever their split
DDPM_ORIGINAL_VARIANT = "seed_3_mixed"  # the original study's generator: 3 frames of any split, its sampler and gate
DDPM_CONDITIONAL_VARIANT = "class_conditional"  # one model of every class's training frames, asked for the minority
DDPM_LEAKY_VARIANTS = (DDPM_LEAKAGE_VARIANT, DDPM_ORIGINAL_VARIANT)  # one set for every split, marked leaky
ORIGINAL_SET = f"ddpm_{DDPM_ORIGINAL_VARIANT}"  # the original replica's set family
TI_MODES = ("txt2img", "img2img")


def ddpm_family(variant: str) -> str:
    return f"ddpm_{variant}"


def ti_family(mode: str, base_tag: str = "") -> str:
    """`ti_<mode>` for a single base model, `ti_<mode>_<base tag>` when base models sit side by side."""
    return f"ti_{mode}" + (f"_{base_tag}" if base_tag else "")


def base_model_tag(base_model: str) -> str:
    """A base model (keyword, hub id or folder) as a word for names: `domain`, `stable-diffusion-v1-5`."""
    return "".join(c if c.isalnum() else "-" for c in base_model.rstrip("/").split("/")[-1]).strip("-")


def ti_set_refs(base_model: str, base_tag: str, split: "Split") -> tuple["SetRef", ...]:
    """The two sets (txt2img, img2img) a textual-inversion run on `split` writes. A `domain` base model learns
    the other classes' training frames, which differ between repeats, so under cv its sets are the repeat's."""
    repeat_dependent = base_model == "domain" and split.protocol == CV
    return tuple(SetRef.for_split(ti_family(mode, base_tag), split, repeat_dependent=repeat_dependent)
                 for mode in TI_MODES)


def ddpm_set_ref(variant: str, split: "Split", k: int = 0) -> "SetRef":
    """The set (and generator) a DDPM variant trains on `split`. The class-conditional DDPM learns every class's
    training frames, and under cv the other classes' patients move between parts from one repeat to the next, so
    its set is the repeat's; the other variants learn minority frames only, the same in every repeat."""
    repeat_dependent = variant == DDPM_CONDITIONAL_VARIANT and split.protocol == CV
    return SetRef.for_split(ddpm_family(variant), split, k, repeat_dependent=repeat_dependent)


def is_leaky_family(family: str) -> bool:
    return family in {ddpm_family(v) for v in DDPM_LEAKY_VARIANTS}


class NameError_(ValueError):
    """A name (of a split, set or condition) that does not parse; the message says what was expected."""


# --- splits ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Split:
    """One partition of frames.csv: its column holds train/val/test (and `out` for a simulated draw's unused
    target patients) for every frame it covers."""

    protocol: str = CV
    repeat: int = 0  # cv / original video split: which repeat
    fold: int = -1  # cv: which fold (-1 for a single split)
    target: str = ""  # simulated: the target class
    draw: int = -1  # simulated: which draw

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise NameError_(f"protocol '{self.protocol}' unknown; allowed: {list(PROTOCOLS)}")
        if self.protocol == SIMULATED and (not self.target or self.draw < 0):
            raise NameError_("a simulated split needs a target class and a draw >= 0")
        if self.protocol == CV and self.fold < 0:
            raise NameError_("a cv split needs a fold >= 0")

    @property
    def column(self) -> str:
        if self.protocol == CV:
            return f"cv_r{self.repeat}_f{self.fold}"
        if self.protocol == ORIGINAL_VIDEO:
            return f"seed_video_r{self.repeat}"
        if self.protocol == SIMULATED:
            return f"sim_{self.target}_d{self.draw}"
        return "split"

    @property
    def rank_column(self) -> str:
        """Simulated: the column holding each training target patient's place in the draw's pool (0 first)."""
        return f"{self.column}_rank"

    @property
    def unit(self) -> int:
        """Which of a run's models this split trains: the fold, the draw, or -1 for a single split."""
        return self.draw if self.protocol == SIMULATED else self.fold

    @classmethod
    def from_column(cls, column: str) -> "Split":
        if column == "split":
            return cls(HOLDOUT)
        for pattern, build in ((r"cv_r(\d+)_f(\d+)", lambda m: cls(CV, int(m[1]), int(m[2]))),
                               (r"seed_video_r(\d+)", lambda m: cls(ORIGINAL_VIDEO, int(m[1]))),
                               (r"sim_([a-z]+)_d(\d+)", lambda m: cls(SIMULATED, target=m[1], draw=int(m[2])))):
            found = re.fullmatch(pattern, column)
            if found:
                return build(found)
        raise NameError_(f"'{column}' is no split column (split, cv_r<r>_f<f>, seed_video_r<r>, sim_<class>_d<d>)")


def split_columns(columns: Any) -> list[str]:
    """The split columns among a frames table's columns."""
    out = []
    for column in columns:
        try:
            Split.from_column(str(column))
        except NameError_:
            continue
        out.append(str(column))
    return out


# --- synthetic sets ---------------------------------------------------------------------------------------------
_SET_SIM = re.compile(r"(?P<family>.+)_(?P<target>[a-z]+)_k(?P<k>\d+)_d(?P<draw>\d+)")
_SET_CV = re.compile(r"(?P<family>.+?)(?:_r(?P<repeat>\d+))?(?:_fold(?P<fold>\d+))?")


@dataclass(frozen=True)
class SetRef:
    """One synthetic-set folder (under <out>/synthetic and <out>/generators): a family trained on one split.

    `fold` -1 and `repeat` None: one set for every split (the hold-out's, or a leaky family's). `repeat` is set
    only for a generator whose frames depend on the repeat (the domain base model learns the other classes'
    training frames). A simulated-minority set names its target, real target patients `k` and draw."""

    family: str
    fold: int = -1
    repeat: int | None = None
    target: str = ""
    k: int = 0
    draw: int = -1

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_.+-]*", self.family) or _SET_CV.fullmatch(self.family)["fold"]:
            raise NameError_(f"synthetic family '{self.family}': lower-case letters, digits, _ . + - only, and no "
                             "_fold<f> suffix")

    @property
    def name(self) -> str:
        """The folder name: `<family>[_r<repeat>][_fold<f>]`, or `<family>_<target>_k<k>_d<draw>`."""
        if self.draw >= 0:
            return f"{self.family}_{self.target}_k{self.k}_d{self.draw}"
        return (self.family + (f"_r{self.repeat}" if self.repeat is not None else "")
                + (f"_fold{self.fold}" if self.fold >= 0 else ""))

    @classmethod
    def parse(cls, name: str) -> "SetRef":
        found = _SET_SIM.fullmatch(name)
        if found and found["target"] in CLASSES:
            return cls(found["family"], target=found["target"], k=int(found["k"]), draw=int(found["draw"]))
        found = _SET_CV.fullmatch(name)
        return cls(found["family"], fold=int(found["fold"]) if found["fold"] else -1,
                   repeat=int(found["repeat"]) if found["repeat"] else None)

    @classmethod
    def for_split(cls, family: str, split: Split, k: int = 0, repeat_dependent: bool = False) -> "SetRef":
        """The set a run on `split` reads of `family` (a leaky family: its one set for every split)."""
        if is_leaky_family(family):
            return cls(family)
        if split.protocol == SIMULATED:
            return cls(family, target=split.target, k=k, draw=split.draw)
        if split.protocol == CV:
            return cls(family, fold=split.fold, repeat=split.repeat if repeat_dependent else None)
        return cls(family)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "name": self.name}


# --- conditions -------------------------------------------------------------------------------------------------
_AMOUNT = re.compile(r"(?P<what>.+)@(?P<amount>[0-9.e+-]+?)(?P<unit>ratio|fraction|count)")
_SIM_PREFIX = re.compile(r"(?P<target>[a-z]+)-k(?P<k>\d+)/(?P<rest>.+)")


def _number(value: float) -> str:
    return f"{float(value):g}"


@dataclass(frozen=True)
class Condition:
    """What a classifier run measures, whatever its architecture, repeat and seed.

    Its `name` is what tables, CSVs and profiles call it (`none`, `none+augment`, `weighted_loss`,
    `ddpm_3_mixed@1ratio`, `oversampling@1ratio+augment`, `metadata_reference`, `seed_replica`,
    `seed_replica_ddpm_seed_3_mixed@1fraction`; in the simulated-minority design prefixed by the target and the
    number of real target patients: `pneumonia-k3/ddpm_3_mixed@1ratio+augment`). `Condition.parse(name)` gives
    it back."""

    strategy: str = "none"
    augment: bool = False
    synthetic: str = ""  # a synthetic family ("": none)
    oversample: bool = False  # the oversampling control: real minority training frames repeated to `amount`
    amount: float = 1.0  # of the synthetic set or the control, in `unit`
    unit: str = "ratio"
    protocol: str = CV
    checkpoint: str = "best"
    reference: bool = False  # the metadata reference (no pixel seen)
    target: str = ""  # simulated: the target class (cut to `k` training patients)
    k: int = 0  # simulated: real target patients the classifier sees

    def __post_init__(self) -> None:
        problems = []
        if self.strategy not in STRATEGIES:
            problems.append(f"strategy '{self.strategy}' unknown ({list(STRATEGIES)})")
        if self.unit not in AMOUNT_UNITS:
            problems.append(f"unit '{self.unit}' unknown ({list(AMOUNT_UNITS)})")
        if self.protocol not in PROTOCOLS:
            problems.append(f"protocol '{self.protocol}' unknown ({list(PROTOCOLS)})")
        if self.checkpoint not in CHECKPOINTS:
            problems.append(f"checkpoint '{self.checkpoint}' unknown ({list(CHECKPOINTS)})")
        if self.synthetic and self.oversample:
            problems.append("a synthetic set and the oversampling control exclude each other")
        if (self.protocol == SIMULATED) != bool(self.target and self.k > 0):
            problems.append("the simulated protocol, and it alone, needs a target class and k >= 1")
        if self.reference and (self.synthetic or self.oversample or self.augment or self.strategy != "none"):
            problems.append("the metadata reference takes no strategy, augmentation or added frames")
        if problems:
            raise NameError_("; ".join(problems))

    # -- derived facts
    @property
    def design(self) -> str:
        return DESIGNS[self.protocol]

    @property
    def minority(self) -> str:
        """The class whose figures the condition is about: the target, or viral."""
        return self.target or VIRAL

    @property
    def original_replica(self) -> bool:
        return self.protocol == ORIGINAL_VIDEO

    @property
    def leaky(self) -> bool:
        """Trained on a set whose generator saw frames outside the training part (by its family's design)."""
        return is_leaky_family(self.synthetic)

    @property
    def control(self) -> bool:
        return self.oversample

    def replace(self, **changes: Any) -> "Condition":
        return dataclasses.replace(self, **changes)

    # -- names
    @property
    def _default_checkpoint(self) -> str:
        return "last" if self.protocol == ORIGINAL_VIDEO else "best"

    @property
    def plain_name(self) -> str:
        """The name without the simulated prefix."""
        if self.reference:
            return METADATA_REFERENCE
        strategy = self.strategy
        if self.synthetic:
            name = f"{self.synthetic}@{_number(self.amount)}{self.unit}"
        elif self.oversample:
            name = f"oversampling@{_number(self.amount)}{self.unit}"
        else:
            name, strategy = strategy, "none"
        name += f"+{strategy}" if strategy != "none" else ""
        name += "+augment" if self.augment else ""
        name += "+lastepoch" if self.checkpoint != self._default_checkpoint and self.checkpoint == "last" else ""
        name += "+bestepoch" if self.checkpoint != self._default_checkpoint and self.checkpoint == "best" else ""
        if self.protocol == ORIGINAL_VIDEO:
            return ORIGINAL_REPLICA if name == "none" else f"{ORIGINAL_REPLICA}_{name}"
        return name

    @property
    def name(self) -> str:
        return f"{self.target}-k{self.k}/{self.plain_name}" if self.protocol == SIMULATED else self.plain_name

    def __str__(self) -> str:
        return self.name

    @classmethod
    def parse(cls, name: str, protocol: str = CV) -> "Condition":
        """A condition from its name (`protocol` says which viral protocol a plain name means: cv or holdout)."""
        text, extra = str(name).strip(), {}
        found = _SIM_PREFIX.fullmatch(text)
        if found:
            text, extra = found["rest"], {"protocol": SIMULATED, "target": found["target"], "k": int(found["k"])}
        elif text == ORIGINAL_REPLICA or text.startswith(f"{ORIGINAL_REPLICA}_"):
            text, extra = text[len(ORIGINAL_REPLICA) + 1:] or "none", {"protocol": ORIGINAL_VIDEO, "checkpoint": "last"}
        else:
            extra = {"protocol": protocol}
        if text == METADATA_REFERENCE:
            return cls(reference=True, **extra)
        head, *flags = text.split("+")
        fields: dict[str, Any] = dict(extra)
        for flag in flags:
            if flag == "augment":
                fields["augment"] = True
            elif flag in ("lastepoch", "bestepoch"):
                fields["checkpoint"] = flag[:4]
            elif flag in STRATEGIES and "strategy" not in fields:
                fields["strategy"] = flag
            else:
                raise NameError_(f"condition '{name}': '+{flag}' is neither a strategy (one at most), augment nor an "
                                 "epoch")
        amount = _AMOUNT.fullmatch(head)
        if amount:
            what = amount["what"]
            fields.update(amount=float(amount["amount"]), unit=amount["unit"])
            fields.update(oversample=True) if what == "oversampling" else fields.update(synthetic=what)
        elif head in STRATEGIES:
            if "strategy" in fields:
                raise NameError_(f"condition '{name}' names two strategies")
            fields["strategy"] = head
        else:
            raise NameError_(f"condition '{name}' does not parse: expected a strategy {list(STRATEGIES)}, "
                             "<set>@<amount><unit>, oversampling@<amount><unit> or metadata_reference, then "
                             "+<strategy>, +augment")
        try:
            return cls(**fields)
        except NameError_ as err:
            raise NameError_(f"condition '{name}': {err}") from None

    # -- the one rule for baselines
    def baselines(self) -> list["Condition"]:
        """The conditions this one is compared with, each isolating what it changes: a synthetic set against the
        same recipe without it, against the oversampling control of the same amount (not in the original
        replica, which ran none) and, unaugmented, against classical augmentation; the control against the
        recipe without it; a strategy against `none` with the same augmentation; augmentation against no
        augmentation. The metadata reference is a reference point, compared with nothing; so are the points of
        the simulated design's real-patient curve (other `k`)."""
        if self.reference:
            return []
        plain = self.replace(synthetic="", oversample=False, amount=1.0, unit="ratio")
        if self.synthetic:
            out = [plain]
            if not self.original_replica and self.strategy == "none":
                out.append(self.replace(synthetic="", oversample=True))
                if not self.augment:
                    out.append(plain.replace(augment=True))
            return out
        if self.oversample:
            return [plain]
        if self.strategy != "none":
            return [self.replace(strategy="none")]
        if self.augment:
            return [self.replace(augment=False)]
        return []

    # -- records
    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "name": self.name, "design": self.design, "minority": self.minority}

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> "Condition":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in names})

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "Condition":
        """The condition of a classifier run's parameters (notebook 02/03: `ClassifierRunParams` fields)."""
        reference = params.get("arch") == METADATA_REFERENCE
        oversample = float(params.get("oversample_amount", 0) or 0)
        synthetic = str(params.get("synthetic_set", "") or "")
        protocol = str(params.get("protocol", CV))
        return cls(strategy=str(params.get("strategy", "none")), augment=bool(params.get("augment", False)),
                   synthetic=set_family_of(synthetic), oversample=oversample > 0,
                   amount=oversample if oversample > 0 else float(params.get("synthetic_amount", 1.0)),
                   unit=str(params.get("amount_unit", "ratio")), protocol=protocol,
                   checkpoint=str(params.get("checkpoint", "best")), reference=reference,
                   target=str(params.get("target_class", "")) if protocol == SIMULATED else "",
                   k=int(params.get("real_patients", 0)) if protocol == SIMULATED else 0)


def set_family_of(synthetic_set: str) -> str:
    """The family a run's `synthetic_set` parameter names: itself, or a folder path's last part (an external set)."""
    text = str(synthetic_set or "").rstrip("/")
    if not text:
        return ""
    name = re.sub(r"[^a-z0-9_.+-]+", "-", text.replace("\\", "/").split("/")[-1].lower()).strip("-")
    return name or "set"


# --- runs -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunKey:
    """One classifier run: a condition for one architecture, repeat and seed, covering every unit (fold or
    draw) of its protocol."""

    arch: str
    condition: Condition
    repeat: int = 0
    seed: int = 0

    @property
    def split_label(self) -> str:
        c = self.condition
        if c.protocol == HOLDOUT:
            return "holdout"
        if c.protocol == SIMULATED:
            return f"sim-{c.target}-k{c.k}"
        return f"{'seedvideo' if c.protocol == ORIGINAL_VIDEO else 'cv'}-r{self.repeat}"

    @property
    def run_id(self) -> str:
        """Readable and unique: arch-strategy-seed<s>-split[-<epoch>][-set@amount|-oversampling@amount][-aug]."""
        c = self.condition
        parts = [self.arch, c.strategy, f"seed{self.seed}", self.split_label]
        if c.checkpoint != "best":
            parts.append(f"{c.checkpoint}epoch")
        if c.synthetic:
            parts.append(f"{c.synthetic}@{_number(c.amount)}{c.unit}")
        elif c.oversample:
            parts.append(f"oversampling@{_number(c.amount)}{c.unit}")
        if c.augment:
            parts.append("aug")
        return "-".join(parts)

    def with_condition(self, condition: Condition) -> "RunKey":
        arch = METADATA_REFERENCE if condition.reference else self.arch
        return dataclasses.replace(self, condition=condition, arch=arch)

    def baseline_run_ids(self) -> list[str]:
        return [self.with_condition(b).run_id for b in self.condition.baselines()]

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch, "repeat": self.repeat, "seed": self.seed, "run_id": self.run_id,
                "condition": self.condition.to_dict()}

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "RunKey":
        return cls(str(params["arch"]), Condition.from_params(params), int(params.get("repeat", 0)),
                   int(params.get("seed", 0)))


# --- metrics ----------------------------------------------------------------------------------------------------
# Every endpoint a run records and the comparison reads, with its label ({m}: the condition's minority class).
METRICS: dict[str, str] = {
    "minority_auroc": "{m} AUROC", "minority_ap": "{m} average precision",
    "minority_sens_at_spec": "{m} sensitivity at the fixed specificity",
    "balanced_accuracy": "balanced accuracy", "accuracy": "accuracy", "weighted_precision": "weighted precision",
    "weighted_recall": "weighted recall", "weighted_f1": "weighted F1", "macro_f1": "macro F1",
    "minority_recall": "{m} recall (argmax)", "minority_precision": "{m} precision", "minority_f1": "{m} F1",
    "minority_specificity": "{m} specificity", "video_accuracy": "video accuracy",
    "video_balanced_accuracy": "video balanced accuracy", "video_macro_f1": "video macro F1",
    "video_weighted_f1": "video weighted F1", "video_minority_recall": "video {m} recall",
    "video_minority_auroc": "video {m} AUROC", "video_minority_ap": "video {m} average precision",
}
MINORITY_METRICS = ("minority_auroc", "minority_ap", "minority_sens_at_spec")  # beside every reference point


def metric_label(metric: str, minority: str) -> str:
    return METRICS.get(metric, metric).format(m=minority)


def metric_column(metric: str, minority: str) -> str:
    """`minority_auroc` -> `viral_auroc`: a metric's column in results.csv."""
    return metric.replace("minority", minority)
