"""The classifier: its training recipe (section `train`), one run's identity (`ClassifierRunParams`, set by the
runner per run), which runs the study makes (section `grid`) and how every run is evaluated (section
`evaluation`, shared with the comparison)."""
from __future__ import annotations

import re
from dataclasses import dataclass

from lus_utils.config.schema import choice, listof, planned, require
from lus_utils.vocabulary import (AMOUNT_UNITS, CHECKPOINTS, CLASSES, CV, METADATA_REFERENCE, PROTOCOLS, SIMULATED,
                                  STRATEGIES)


class ArchNames(tuple):
    """timm architectures the study builds; a name may carry timm's pretrained tag (`resnet50.tv_in1k`).

    `name in ARCHS` checks the base name (before the dot) and that a tag is a plain word; whether timm has
    weights under that tag is checked where timm is loaded (`classify.models.check_arch`).
    """

    hint = " (each may carry a timm pretrained tag, e.g. resnet50.tv_in1k)"

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        base, dot, tag = name.partition(".")
        return tuple.__contains__(self, base) and (not dot or re.fullmatch(r"[a-z0-9_]+", tag) is not None)


ARCHS = ArchNames(("resnet18", "resnet50", "vit_tiny_patch16_224", "vit_base_patch16_224"))


@dataclass
class TrainParams:
    """The training recipe shared by every classifier run of a study (section `train`)."""

    image_size: int = 48  # square input in pixels (ViTs: a multiple of 16); synthetic sets are written at it (48: the best validation macro AUROC per CPU-second of 32/48/64 px, benchmarks/RESULTS.md)
    epochs: int = 10  # most epochs; early stopping (patience) ends most trainings sooner (benchmarks/RESULTS.md: 5-6 at 48 px)
    batch_size: int = 32  # frames per optimisation step
    lr: float = 0.0003  # AdamW learning rate
    weight_decay: float = 0.05  # AdamW weight decay
    patience: int = 2  # epochs without a better validation loss before stopping
    lr_patience: int = 1  # epochs without a better validation loss before the learning rate drops
    lr_factor: float = 0.3  # learning-rate multiplier on a plateau
    pretrained: bool = False  # ImageNet weights through timm (must already be in the local HF cache)
    max_steps_per_epoch: int = 0  # optimiser steps per epoch at most (0: every batch; the rehearsal sets 2)

    def check(self) -> None:
        require(self.image_size >= 16, "image_size", "must be >= 16")
        require(self.epochs >= 1, "epochs", "must be >= 1")
        require(self.batch_size >= 2, "batch_size", "must be >= 2 (batch norm needs two frames)")
        require(self.lr > 0, "lr", "must be > 0")
        require(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        require(self.patience >= 1 and self.lr_patience >= 0, "patience/lr_patience", "must be >= 1 / >= 0")
        require(0 < self.lr_factor < 1, "lr_factor", "must lie in (0, 1)")
        require(self.max_steps_per_epoch >= 0, "max_steps_per_epoch", "must be >= 0 (0: every batch)")


@dataclass
class EvaluationParams:
    """How every run is scored and every interval made (section `evaluation`): classifier runs and the comparison."""

    fixed_specificity: float = 0.95  # minority threshold per fold: this specificity on the fold's validation negatives
    ci_level: float = 0.95  # confidence level of every interval (the tests use 1 - ci_level as alpha)
    n_boot: int = 1000  # patient-bootstrap resamples (stratified by class) of every interval

    def check(self) -> None:
        require(0.5 <= self.fixed_specificity < 1, "fixed_specificity", "must lie in [0.5, 1)")
        require(0.5 <= self.ci_level < 1, "ci_level", "must lie in [0.5, 1)")
        require(self.n_boot >= 100, "n_boot", "must be >= 100 (fewer resamples give unstable intervals)")


@dataclass
class ClassifierRunParams:
    """What one classifier run is (notebook 02): not a profile section, the runner fills it per run."""

    arch: str = choice("resnet18", ArchNames((*ARCHS, METADATA_REFERENCE)))  # timm architecture, or metadata_reference (logistic regression on probe and native frame size)
    strategy: str = choice("none", STRATEGIES)  # imbalance strategy: none, weighted_loss or balanced_sampler
    augment: bool = False  # classical augmentation (rotate/shift/scale, brightness/contrast, left-right flip)
    seed: int = 0  # seed of initialisation, batch order and augmentation
    protocol: str = choice(CV, PROTOCOLS)  # cv: one model per fold of the repeat, predictions pooled; holdout: the one split; seed_video: the original study's video split (leaky, its replica only); simulated: one model per draw of a simulated minority
    repeat: int = 0  # cv: which fold assignment (0 .. data.repeats - 1); seed_video: which shuffle of the videos; holdout and simulated: 0
    checkpoint: str = choice("best", CHECKPOINTS)  # epoch tested: best (lowest validation loss) or last (the original study's)
    synthetic_set: str = ""  # synthetic family for training: name in <out_dir>/synthetic (each fold or draw reads its own folder), or a folder path ("": none)
    synthetic_amount: float = 1.0  # how many synthetic images, in amount_unit
    oversample_amount: float = 0.0  # real minority training frames added again (the oversampling control), in amount_unit
    amount_unit: str = choice("ratio", AMOUNT_UNITS)  # ratio: x real minority training frames; fraction: share of the set; count: images
    target_class: str = choice("", ("", *CLASSES))  # simulated: the class cut to a few training patients ("" otherwise)
    real_patients: int = 0  # simulated: training patients of the target class the classifier sees (0 otherwise)
    frames_csv: str = ""  # frames.csv ("": <out_dir>/data/frames.csv, built with default data params if absent)

    def check(self) -> None:
        require(self.seed >= 0, "seed", "must be >= 0")
        require(self.repeat >= 0, "repeat", "must be >= 0")
        require(self.protocol not in ("holdout", SIMULATED) or self.repeat == 0, "repeat",
                f"must be 0 under the {self.protocol} protocol")
        require(self.synthetic_amount > 0 and self.oversample_amount >= 0, "synthetic_amount/oversample_amount",
                "must be > 0 / >= 0")
        require(not (self.synthetic_set and self.oversample_amount > 0), "oversample_amount",
                "is the control of a synthetic set, so it must be 0 when synthetic_set is given")
        require(self.oversample_amount == 0 or self.amount_unit != "fraction", "amount_unit",
                "fraction (a share of a synthetic set) has no real-frame equivalent for the oversampling control; "
                "use ratio or count")
        simulated = self.protocol == SIMULATED
        require(simulated == bool(self.target_class) and simulated == (self.real_patients >= 1),
                "target_class/real_patients", "are set together, under the simulated protocol only")
        require(not (simulated and self.arch == METADATA_REFERENCE and self.augment), "augment",
                "means nothing for the metadata reference")


@dataclass
class ImbalanceRunParams(ClassifierRunParams):
    """Notebook 03's run: the same as notebook 02's, with an imbalance strategy by default."""

    strategy: str = choice("weighted_loss", STRATEGIES)  # imbalance strategy: weighted_loss or balanced_sampler


@dataclass
class GridParams:
    """Which classifier runs the study makes (section `grid`): archs x conditions x data.repeats x seeds."""

    archs: list[str] = choice(["resnet18"], ARCHS)  # architectures
    seeds: list[int] = listof([0])  # seeds per condition (viral cv: each (repeat, seed) is one paired replicate; simulated: the draws are)
    strategies: list[str] = choice(["weighted_loss"], STRATEGIES)  # notebook 03's strategies
    synthetic_amounts: list[float] = listof([1.0])  # amounts of each synthetic set (amount_unit ratio)
    synthetic_strategies: list[str] = choice(["none"], STRATEGIES)  # strategies run with every synthetic set and amount
    augment_strategies: list[str] = choice(["none"], STRATEGIES)  # strategies also run with classical augmentation (none+augment: the practitioner's baseline)
    augment_synthetic: bool = True  # synthetic sets and their oversampling control join the augmented recipe, as a practitioner trains (false: the original study's unaugmented recipe)
    oversampling: bool = True  # the oversampling control (real minority frames repeated) at every synthetic amount
    metadata_reference: bool = True  # the shortcut reference (logistic regression on probe and native size), per repeat
    seed_replica: bool = False  # the original study's recipe as it ran (section seed_replica), per arch, repeat and seed

    def check(self) -> None:
        for key in ("archs", "seeds"):
            values = getattr(self, key)
            require(len(values) > 0 and len(set(values)) == len(values), key, "must list distinct values")
        require(all(s >= 0 for s in self.seeds), "seeds", "must all be >= 0")
        require(len(set(self.strategies)) == len(self.strategies), "strategies", "must not repeat a strategy")
        require(len(self.synthetic_amounts) > 0 and all(a > 0 for a in self.synthetic_amounts)
                and len(set(self.synthetic_amounts)) == len(self.synthetic_amounts),
                "synthetic_amounts", "must list at least one amount, distinct and all > 0 (a study without synthetic "
                "data leaves out stages 04 and 05)")
        require(len(self.synthetic_strategies) > 0 and len(set(self.synthetic_strategies)) == len(
            self.synthetic_strategies), "synthetic_strategies", "must list at least one strategy, none twice")
        require(len(set(self.augment_strategies)) == len(self.augment_strategies), "augment_strategies",
                "must not repeat a strategy")
