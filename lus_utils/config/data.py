"""What the study runs (section `study`), how frames are extracted and split (section `data`, notebook 01,
read by every other stage) and what notebook 01 shows (section `explore`)."""
from __future__ import annotations

from dataclasses import dataclass

from lus_utils.config.schema import choice, listof, require
from lus_utils.stages import IDS as STAGES
from lus_utils.vocabulary import CLASSES, CONVEX_CLASSES, CV, HOLDOUT, VIRAL


@dataclass
class StudyParams:
    stages: list[str] = choice(["01", "02", "03", "05", "06"], STAGES)  # notebooks to run (quick leaves out 04: a domain base model per repeat and fold does not fit its CPU hour)

    def check(self) -> None:
        require(len(self.stages) > 0 and len(set(self.stages)) == len(self.stages), "stages",
                "must name at least one stage, none twice")


@dataclass
class DataParams:
    sample_hz: float = 3.0  # frames kept per second of video (POCOVID: 3 Hz)
    max_frames_per_video: int = 10  # cap per video (POCOVID: 30; frames of a video are close, patients are the unit)
    probe: str = choice("both", ("both", "convex", "linear"))  # which probe's files to use
    classes: list[str] = choice(list(CLASSES), CLASSES)  # classes kept, in this order
    split_seed: int = 0  # seed of the patient-grouped splits
    val_fraction: float = 0.15  # share of each class's patients in validation
    test_fraction: float = 0.2  # share of each class's patients in test
    protocol: str = choice(HOLDOUT, (CV, HOLDOUT))  # the viral design: cv, one test fold per viral patient (full); holdout, one split (quick: cv's folds x generators do not fit its hour beside the simulated draws)
    repeats: int = 1  # cv: fold assignments of the other classes' patients (seed split_seed + repeat)
    few_patients: int = 5  # a class with fewer patients: 1 to train, 1 to val, rest to test (the original study: 3 videos or fewer)
    n_workers: int = 2  # processes decoding videos

    def check(self) -> None:
        require(self.sample_hz > 0, "sample_hz", "must be > 0")
        require(self.max_frames_per_video >= 1, "max_frames_per_video", "must be >= 1")
        require(self.split_seed >= 0, "split_seed", "must be >= 0 (numpy seeds are non-negative)")
        require(0 < self.val_fraction < 1 and 0 < self.test_fraction < 1
                and self.val_fraction + self.test_fraction < 1,
                "val_fraction/test_fraction", "must each lie in (0, 1) and sum to less than 1")
        require(self.repeats >= 1, "repeats", "must be >= 1")
        require(self.few_patients >= 3, "few_patients", "must be >= 3 (train, val and test each need one)")
        require(len(self.classes) >= 2 and len(set(self.classes)) == len(self.classes),
                "classes", "needs at least two distinct classes")
        require(VIRAL in self.classes, "classes",
                f"lacks '{VIRAL}', the study's minority class: every viral-design run measures it and the cv folds "
                f"are its patients; keep '{VIRAL}' in data.classes (drop other classes instead)")
        require(self.n_workers >= 1, "n_workers", "must be >= 1")


@dataclass
class SimulatedMinorityParams:
    """The simulated-minority design (section `simulated_minority`, data.simulated_minority): each target class of
    the convex three-class task cut to a few training patients, per draw; its draws are built by notebook 01."""

    targets: list[str] = choice(["pneumonia"], CONVEX_CLASSES)  # classes cut down in turn ([]: no simulated design; pneumonia has the most patients)
    draws: int = 8  # draws per target, each a new split and pool order: the paired unit (8 reach an exact two-sided Wilcoxon p of 0.008; Holm over 2 primaries 0.016)
    real_patients: int = 3  # k: the target's training patients the baseline and its generators see (3: as many as a cv fold's viral training patients)
    curve: list[int] = listof([1, 3, 12])  # real target patients of the positive-control curve (points larger than a pool are dropped)
    target_test_fraction: float = 0.5  # share of the target's patients tested in a draw; the rest is its ordered training pool

    def check(self) -> None:
        require(len(set(self.targets)) == len(self.targets), "targets", "must not repeat a class")
        require(self.draws >= 2, "draws", "must be >= 2 (the draw is the paired unit)")
        require(self.real_patients >= 1, "real_patients", "must be >= 1")
        require(len(self.curve) > 0 and all(k >= 1 for k in self.curve) and len(set(self.curve)) == len(self.curve),
                "curve", "must list distinct patient counts >= 1")
        require(0 < self.target_test_fraction < 1, "target_test_fraction", "must lie in (0, 1)")


@dataclass
class ExploreParams:
    n_sample_frames: int = 4  # sample frames shown per class and probe
    n_intensity_frames: int = 200  # frames per class for intensity statistics (0: all)
    explore_seed: int = 0  # which frames are shown and sampled

    def check(self) -> None:
        require(self.n_sample_frames >= 1, "n_sample_frames", "must be >= 1")
        require(self.n_intensity_frames >= 0, "n_intensity_frames", "must be >= 0")
        require(self.explore_seed >= 0, "explore_seed", "must be >= 0")
