"""Typed study parameters, validated in one place.

A profile (`params/<name>.yaml`) is made of sections, each one dataclass below (`SECTIONS`). The
defaults here ARE the `quick` profile (`params/quick.yaml` states nothing else), and every profile states
only the keys it changes, so the diff between two profiles is what they mean. The comment after each field
is its documentation (profiles need none). Unknown keys, wrong types and values outside their choices are
refused with the key and the file named, and so are `planned` fields: those the runner sets for each run
(which variant, fold, base model, ...), named in the profile through their `*_runs` section instead.

Each notebook's `parameters` cell holds exactly the fields of the dataclasses the stage table
(`lus_utils.stages`) lists for it (`NOTEBOOK_PARAMS`), plus `data_root` and `out_dir`, with the same defaults (a test checks this), so
papermill, JupyterLab and the runner all see one definition.
"""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import yaml

from lus_utils.paths import PARAMS_DIR
from lus_utils.stages import IDS as STAGES
from lus_utils.stages import TABLE as STAGE_TABLE

CLASSES = ("covid", "pneumonia", "regular", "viral")
MINORITY_CLASS = "viral"


class ParamError(ValueError):
    """A parameter that is unknown, mistyped or out of range; the message names it and its source."""


def choice(default: Any, choices: tuple, **kwargs: Any) -> Any:
    """A field whose value (or every item, for a list) must be one of `choices`."""
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: list(default), metadata={"choices": choices, **kwargs})
    return field(default=default, metadata={"choices": choices, **kwargs})


def listof(default: list) -> Any:
    return field(default_factory=lambda: list(default))


def planned(default: Any, by: str, choices: tuple | None = None) -> Any:
    """A field the runner sets for each run from `by` (another key): a notebook parameter, never a profile key."""
    return field(default=default, metadata={"planned": by, **({"choices": choices} if choices else {})})


# --- study: which notebooks the runner executes -------------------------------------------------------
@dataclass
class StudyParams:
    stages: list[str] = choice(["01", "02", "03", "05", "06"], STAGES)  # notebooks to run (quick leaves out 04: a domain base model per repeat and fold does not fit its CPU hour)

    def check(self) -> None:
        _require(len(self.stages) > 0, "stages", "must name at least one stage")


# --- data: frame extraction and patient-grouped splits (notebook 01, read by all others) -------------
@dataclass
class DataParams:
    sample_hz: float = 3.0  # frames kept per second of video (POCOVID: 3 Hz)
    max_frames_per_video: int = 10  # cap per video (POCOVID: 30; frames of a video are close, patients are the unit)
    probe: str = choice("both", ("both", "convex", "linear"))  # which probe's files to use
    classes: list[str] = choice(list(CLASSES), CLASSES)  # classes kept, in this order
    split_seed: int = 0  # seed of the patient-grouped splits
    val_fraction: float = 0.15  # share of each class's patients in validation
    test_fraction: float = 0.2  # share of each class's patients in test
    protocol: str = choice("cv", ("cv", "holdout"))  # cv: one test fold per minority patient; holdout: one split
    repeats: int = 2  # cv: fold assignments of the other classes' patients (seed split_seed + repeat)
    few_patients: int = 5  # a class with fewer patients: 1 to train, 1 to val, rest to test (seed: 3 videos or fewer)
    n_workers: int = 2  # processes decoding videos

    def check(self) -> None:
        _require(self.sample_hz > 0, "sample_hz", "must be > 0")
        _require(self.max_frames_per_video >= 1, "max_frames_per_video", "must be >= 1")
        _require(0 < self.val_fraction < 1 and 0 < self.test_fraction < 1
                 and self.val_fraction + self.test_fraction < 1,
                 "val_fraction/test_fraction", "must each lie in (0, 1) and sum to less than 1")
        _require(self.repeats >= 1, "repeats", "must be >= 1")
        _require(self.few_patients >= 3, "few_patients", "must be >= 3 (train, val and test each need one)")
        _require(len(self.classes) >= 2 and len(set(self.classes)) == len(self.classes),
                 "classes", "needs at least two distinct classes")
        _require(self.n_workers >= 1, "n_workers", "must be >= 1")


# --- explore: notebook 01 only ------------------------------------------------------------------------
@dataclass
class ExploreParams:
    n_sample_frames: int = 4  # sample frames shown per class and probe
    n_intensity_frames: int = 200  # frames per class for intensity statistics (0: all)
    explore_seed: int = 0  # which frames are shown and sampled

    def check(self) -> None:
        _require(self.n_sample_frames >= 1, "n_sample_frames", "must be >= 1")
        _require(self.n_intensity_frames >= 0, "n_intensity_frames", "must be >= 0")


# --- sections owned by later stages are added below, one dataclass each ---------------------------------

# --- train / grid: the classifier experiments (notebooks 02 and 03) ---------------------------------------
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
STRATEGIES = ("none", "weighted_loss", "balanced_sampler")
METADATA_REFERENCE = "metadata_reference"  # the shortcut reference: logistic regression on probe and native size
SYNTHETIC_AMOUNT_UNITS = ("ratio", "fraction", "count")
SEED_VIDEO = "seed_video"  # the seed study's split by video: a patient's videos may sit in train and test
RUN_PROTOCOLS = ("cv", "holdout", SEED_VIDEO)
CHECKPOINTS = ("best", "last")


@dataclass
class TrainParams:
    """Knobs shared by every classifier run of a study (section `train`)."""

    image_size: int = 32  # square input in pixels (ViTs: a multiple of 16); synthetic sets are written at it
    epochs: int = 2  # most epochs; early stopping may end sooner
    batch_size: int = 32  # frames per optimisation step
    lr: float = 0.0003  # AdamW learning rate
    weight_decay: float = 0.05  # AdamW weight decay
    patience: int = 2  # epochs without a better validation loss before stopping
    lr_patience: int = 1  # epochs without a better validation loss before the learning rate drops
    lr_factor: float = 0.3  # learning-rate multiplier on a plateau
    pretrained: bool = False  # ImageNet weights through timm (must already be in the local HF cache)
    augment: bool = False  # light augmentation (rotate/shift/scale, brightness/contrast, h-flip)
    num_threads: int = 1  # CPU threads for torch (fixed, so numbers repeat)
    n_boot: int = 200  # bootstrap resamples of test patients for the 95% CIs
    synthetic_amount_unit: str = choice("ratio", SYNTHETIC_AMOUNT_UNITS)  # x real minority frames, share of set, count
    device: str = choice("auto", ("auto", "cpu", "cuda"))  # auto: cuda when available
    amp: bool = True  # bfloat16 autocast on cuda and cpu (a resnet18 step measured 1.6x faster on this AMX CPU)
    max_steps_per_epoch: int = 0  # optimiser steps per epoch at most (0: every batch; the rehearsal sets 2)

    def check(self) -> None:
        _require(self.image_size >= 16, "image_size", "must be >= 16")
        _require(self.epochs >= 1, "epochs", "must be >= 1")
        _require(self.batch_size >= 2, "batch_size", "must be >= 2 (batch norm needs two frames)")
        _require(self.lr > 0, "lr", "must be > 0")
        _require(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        _require(self.patience >= 1 and self.lr_patience >= 0, "patience/lr_patience", "must be >= 1 / >= 0")
        _require(0 < self.lr_factor < 1, "lr_factor", "must lie in (0, 1)")
        _require(self.num_threads >= 1, "num_threads", "must be >= 1")
        _require(self.n_boot >= 0, "n_boot", "must be >= 0 (0: no confidence intervals)")
        _require(self.max_steps_per_epoch >= 0, "max_steps_per_epoch", "must be >= 0 (0: every batch)")


@dataclass
class ClassifierRunParams:
    """What one classifier run is (notebook 02): not a profile section, the runner fills it per run."""

    arch: str = choice("resnet18", ArchNames((*ARCHS, METADATA_REFERENCE)))  # timm architecture, or metadata_reference (logistic regression on probe and native frame size)
    strategy: str = choice("none", STRATEGIES)  # imbalance strategy: none, weighted_loss or balanced_sampler
    seed: int = 0  # seed of initialisation, batch order and augmentation
    protocol: str = choice("cv", RUN_PROTOCOLS)  # cv: one model per fold of the repeat, predictions pooled; holdout: the one split; seed_video: the seed study's video split (leaky, the seed replica only)
    repeat: int = 0  # cv: which fold assignment (0 .. data.repeats - 1); seed_video: which shuffle of the videos; holdout: 0
    checkpoint: str = choice("best", CHECKPOINTS)  # epoch tested: best (lowest validation loss) or last (the seed study's)
    synthetic_set: str = ""  # synthetic set family for training: name in <out_dir>/synthetic (fold f reads <name>_fold<f>), or a path ("": none)
    synthetic_amount: float = 1.0  # how many synthetic images, in train.synthetic_amount_unit
    oversample_amount: float = 0.0  # real minority training frames added again (the oversampling control), in train.synthetic_amount_unit
    fixed_specificity: float = 0.95  # minority threshold per fold: this specificity on the fold's validation negatives (the runner copies compare's)
    frames_csv: str = ""  # frames.csv ("": <out_dir>/data/frames.csv, built with default data params if absent)

    def check(self) -> None:
        _require(self.repeat >= 0, "repeat", "must be >= 0")
        _require(self.protocol != "holdout" or self.repeat == 0, "repeat", "must be 0 under the holdout protocol")
        _require(self.synthetic_amount >= 0 and self.oversample_amount >= 0, "synthetic_amount/oversample_amount",
                 "must be >= 0")
        _require(not (self.synthetic_set and self.oversample_amount > 0), "oversample_amount",
                 "is the control of a synthetic set, so it must be 0 when synthetic_set is given")
        _require(0 < self.fixed_specificity < 1, "fixed_specificity", "must lie in (0, 1)")


@dataclass
class ImbalanceRunParams(ClassifierRunParams):
    """Notebook 03's run: the same as notebook 02's, with an imbalance strategy by default."""

    strategy: str = choice("weighted_loss", STRATEGIES)  # imbalance strategy: weighted_loss or balanced_sampler


@dataclass
class GridParams:
    """Which classifier runs the study makes (section `grid`): archs x conditions x data.repeats x seeds."""

    archs: list[str] = choice(["resnet18"], ARCHS)  # architectures
    seeds: list[int] = listof([0, 1, 2, 3])  # seeds per condition (each (repeat, seed) is one paired replicate)
    strategies: list[str] = choice(["weighted_loss"], STRATEGIES)  # notebook 03's strategies
    synthetic_amounts: list[float] = listof([1.0])  # amounts of each synthetic set (train.synthetic_amount_unit)
    synthetic_strategies: list[str] = choice(["none"], STRATEGIES)  # strategies run with every synthetic set and amount
    augment_strategies: list[str] = choice(["none"], STRATEGIES)  # strategies also run with classical augmentation (comparator)
    oversampling: bool = True  # the oversampling control (real minority frames repeated) at every synthetic amount
    metadata_reference: bool = True  # the shortcut reference (logistic regression on probe and native size), per repeat
    seed_replica: bool = True  # the seed study's recipe as it ran (section seed_replica), per arch, repeat and seed

    def check(self) -> None:
        for key in ("archs", "seeds"):
            values = getattr(self, key)
            _require(len(values) > 0 and len(set(values)) == len(values), key, "must list distinct values")
        _require(all(a > 0 for a in self.synthetic_amounts), "synthetic_amounts", "must all be > 0")


# --- ddpm: DDPM generators of synthetic minority frames (notebook 05) -----------------------------------
DDPM_VARIANTS = ("3_mixed", "train_all", "3_mixed_any_split", "seed_3_mixed")
DDPM_SAMPLERS = ("ddpm", "ddim", "dpmsolver", "dpmsolver_ode")
FEATURE_EXTRACTORS = ("random_cnn", "classifier", "inception", "dinov2", "pixels")
QUALITY_GATES = ("real_range", "seed")


@dataclass
class DDPMRunsParams:
    variants: list[str] = choice(["3_mixed"], DDPM_VARIANTS[:3])  # generators the runner trains, each once per fold (quick: the seed's 3-frame DDPM only; seed_3_mixed comes with grid.seed_replica)

    def check(self) -> None:
        _require(len(self.variants) == len(set(self.variants)), "variants", "must not repeat a variant")


@dataclass
class DDPMParams:
    variant: str = planned("3_mixed", "ddpm_runs.variants", DDPM_VARIANTS)  # frames the generator trains on (see notebook 05)
    fold: int = planned(-1, "data.protocol (each fold)")  # split the frames come from: -1 hold-out, f for fold f
    seed: int = 0  # seed of frame choice, initial weights, training noise and sampling
    image_size: int = 64  # generator resolution in px (square); seed study 128
    block_out_channels: list[int] = listof([16, 32, 64, 128])  # UNet channels per level; seed 128,128,256,256,512,512
    layers_per_block: int = 1  # ResNet layers per UNet level (seed 2)
    attention_levels: list[int] = listof([3])  # 0-based UNet levels with self-attention (seed: [4])
    epochs_3_mixed: int = 1000  # passes over the frames for the 3-frame variants (seed and full 3000; quick's fold 1 reaches realism only at 3000, 1000 fits quick's hour: bench_generator_budget)
    epochs_train_all: int = 100  # passes over the frames for train_all (seed 2000)
    batch_size: int = 16  # training images per optimizer step (seed 16)
    lr: float = 0.0005  # AdamW peak learning rate (seed 1e-4; 5e-4 measured in bench_ddpm)
    warmup_steps: int = 50  # linear warm-up steps of the cosine schedule (seed 500)
    ema_decay: float = 0.999  # largest decay of the EMA weights the pipeline is saved with (the seed used no EMA)
    mixed_precision: str = choice("bf16", ("no", "fp16", "bf16"))  # training autocast: bf16 (CPU or GPU), fp16 (GPU only), no: fp32
    checkpoint_every: int = 200  # optimizer steps between checkpoints (resume starts from the last)
    sample_grids: int = 4  # sample grids saved during training, evenly spaced over the epochs (0: none)
    resume: str = choice("latest", ("latest", "none"))  # continue an interrupted training from its last checkpoint
    sampler: str = choice("dpmsolver", DDPM_SAMPLERS)  # ddpm (ancestral), ddim, dpmsolver (SDE-DPM-Solver++) or dpmsolver_ode (DPM-Solver++)
    sampling_steps: int = 20  # denoising steps (seed: ddpm 500; usual: ddim 50, dpmsolver 20)
    sampling_precision: str = choice("fp32", ("fp32", "bf16"))  # UNet precision while sampling (bf16: autocast)
    n_samples: int = 160  # images generated, kept and rejected alike
    gate_retries: int = 0  # seed gate only: an image failing both criteria is redrawn (seed + 1000 x attempt), at most this often (the seed's loop)
    sample_batch_size: int = 40  # images denoised together
    output_size: int = planned(48, "train.image_size")  # side in px of the written images: the classifier's input size
    num_threads: int = 1  # CPU threads torch may use
    device: str = choice("auto", ("auto", "cpu", "cuda"))  # auto: cuda when available

    def check(self) -> None:
        _require(self.fold >= -1, "fold", "must be -1 (hold-out) or a fold number >= 0")
        levels = len(self.block_out_channels)
        _require(levels >= 2, "block_out_channels", "needs at least two UNet levels")
        _require(self.image_size % 2 ** (levels - 1) == 0 and self.image_size >= 8, "image_size",
                 f"must be >= 8 and divisible by 2**(levels-1) = {2 ** (levels - 1)}")
        _require(all(c > 0 and c % 8 == 0 for c in self.block_out_channels), "block_out_channels",
                 "must be positive multiples of 8 (GroupNorm uses 8 groups at least)")
        _require(all(0 <= a < levels for a in self.attention_levels), "attention_levels",
                 f"must be level indices in [0, {levels - 1}]")
        _require(self.layers_per_block >= 1, "layers_per_block", "must be >= 1")
        _require(self.epochs_3_mixed >= 1 and self.epochs_train_all >= 1, "epochs_3_mixed/epochs_train_all",
                 "must be >= 1")
        _require(self.batch_size >= 1 and self.sample_batch_size >= 1, "batch_size/sample_batch_size",
                 "must be >= 1")
        _require(self.lr > 0, "lr", "must be > 0")
        _require(self.warmup_steps >= 0, "warmup_steps", "must be >= 0")
        _require(0 < self.ema_decay < 1, "ema_decay", "must lie in (0, 1)")
        _require(self.checkpoint_every >= 1, "checkpoint_every", "must be >= 1")
        _require(self.sample_grids >= 0, "sample_grids", "must be >= 0")
        _require(1 <= self.sampling_steps <= 1000, "sampling_steps", "must lie in [1, 1000] (1000 training steps)")
        _require(self.n_samples >= 1, "n_samples", "must be >= 1")
        _require(self.gate_retries >= 0, "gate_retries", "must be >= 0 (0: no redraw)")
        _require(self.output_size >= 8, "output_size", "must be >= 8")
        _require(self.num_threads >= 1, "num_threads", "must be >= 1")


# --- audit: quality gate, memorization and realism audit of synthetic sets (notebooks 04 and 05) ---------
@dataclass
class AuditParams:
    gate: str = choice("real_range", QUALITY_GATES)  # quality gate: real_range (statistics inside the real training frames' range) or seed (std/entropy)
    gate_quantile: float = 0.005  # real_range gate: each statistic's [q, 1-q] quantile range over the fold's real training frames
    gate_margin: float = 0.25  # real_range gate: the range widened by this share of its width on both sides
    min_std: float = 20.0  # seed gate: grey-level std (0-255) must exceed this (seed 30, on RGB)
    min_entropy: float = 4.0  # seed gate: 256-bin histogram entropy in nats must exceed this (seed 4.7, on RGB)
    memorization_threshold: float = 0.95  # pixel correlation with a training frame above which an image counts as memorized
    ssim_threshold: float = 0.9  # SSIM with a training frame above which an image counts as memorized
    audit_size: int = 64  # side in px of the grey images compared
    ssim_candidates: int = 5  # SSIM is computed against this many frames nearest by correlation
    n_holdout_reference: int = 30  # real held-out minority frames compared with training frames (what close means)
    n_closest_pairs: int = 8  # closest synthetic-training pairs listed and shown
    kid_subset: int = 50  # images per KID subset (at most the images per side)
    kid_subsets: int = 100  # KID subsets averaged (their 2.5-97.5 % range is the interval)
    c2st_folds: int = 5  # cross-validation folds of the classifier two-sample test
    feature_extractor: str = choice("random_cnn", FEATURE_EXTRACTORS)  # feature space of KID and C2ST (random_cnn: seeded random CNN, fixed across conditions)
    feature_run_dir: str = planned("", "grid (its first baseline run)")  # baseline classifier run folder (real data only) for classifier features; empty: none
    audit_seed: int = 0  # seed of the subsets and reference frames

    def check(self) -> None:
        _require(self.min_std >= 0 and self.min_entropy >= 0, "min_std/min_entropy", "must be >= 0")
        _require(-1 <= self.memorization_threshold <= 1, "memorization_threshold", "must lie in [-1, 1]")
        _require(-1 <= self.ssim_threshold <= 1, "ssim_threshold", "must lie in [-1, 1]")
        _require(self.audit_size >= 16, "audit_size", "must be >= 16 (SSIM needs a 7-px window)")
        _require(self.ssim_candidates >= 1, "ssim_candidates", "must be >= 1")
        _require(self.n_holdout_reference >= 0 and self.n_closest_pairs >= 0,
                 "n_holdout_reference/n_closest_pairs", "must be >= 0")
        _require(self.kid_subset >= 2 and self.kid_subsets >= 1, "kid_subset/kid_subsets", "must be >= 2 and >= 1")
        _require(self.c2st_folds >= 2, "c2st_folds", "must be >= 2")
        _require(0 <= self.gate_quantile < 0.5 and self.gate_margin >= 0, "gate_quantile/gate_margin",
                 "must lie in [0, 0.5) and be >= 0")


# --- seed_replica: the seed study's recipe end to end, to test its claim as it was run -------------------
@dataclass
class SeedReplicaParams:
    """The seed replica (`grid.seed_replica`): one DDPM trained on three minority frames chosen whatever their
    split (the seed's hand-picked folder), sampled and gated the seed's way; two classifier conditions on the
    seed's video split, tested at their last epoch: `seed_replica` (no synthetic image) and
    `seed_replica_ddpm_seed_3_mixed@1fraction` (every image that passed the gate). The classifier's optimiser is
    the profile's `train` section (in `full`, the seed's settings)."""

    sampling_steps: int = 100  # the seed's DDPM sampler, steps (seed 500; fewer on a CPU)
    n_samples: int = 32  # images tried, each redrawn while it fails both gate criteria (seed 1000)
    gate_retries: int = 2  # redraws of an image failing both criteria (the seed's loop is unbounded)
    min_std: float = 30.0  # the seed's gate: grey-level std must exceed this (seed 30)
    min_entropy: float = 4.7  # the seed's gate: histogram entropy in nats must exceed this (seed 4.7)

    def check(self) -> None:
        _require(1 <= self.sampling_steps <= 1000, "sampling_steps", "must lie in [1, 1000]")
        _require(self.n_samples >= 1, "n_samples", "must be >= 1")
        _require(self.gate_retries >= 0, "gate_retries", "must be >= 0")
        _require(self.min_std >= 0 and self.min_entropy >= 0, "min_std/min_entropy", "must be >= 0")


# --- textual_inversion: a minority token learned on a Stable-Diffusion-style model (notebook 04) ----------
TI_BASE_KEYWORDS = ("tiny", "domain")
TI_TRAIN_FRAMES = ("3_mixed", "6_mixed", "all")
TI_SAMPLERS = ("dpmsolver", "ddim", "euler", "pndm")


@dataclass
class TextualInversionRunsParams:
    base_models: list[str] = listof(["domain"])  # one notebook 04 run per base model (tiny, domain, hub id or folder)

    def check(self) -> None:
        _require(len(self.base_models) >= 1 and len(set(self.base_models)) == len(self.base_models),
                 "base_models", "must list at least one base model, none twice")


@dataclass
class TextualInversionParams:
    base_model: str = planned("tiny", "textual_inversion_runs.base_models")  # tiny (offline test pipeline: noise), domain (study-trained), hub id or diffusers folder
    placeholder_token: str = "<viral-pneumonia-ultrasound>"  # the new token learned for the minority class
    initializer_token: str = "pneumonia"  # one existing token whose embedding the new one starts from
    num_vectors: int = 1  # embedding vectors behind the token
    learnable_property: str = choice("object", ("object", "style", "ultrasound"))  # training prompt templates
    train_frames: str = choice("3_mixed", TI_TRAIN_FRAMES)  # minority training frames: 3 or 6 spread over videos, or all
    fold: int = planned(-1, "data.protocol (each fold)")  # split the frames come from: -1 hold-out, f for fold f
    repeat: int = planned(0, "data.repeats (domain base model)")  # cv repeat whose split the frames come from (the domain base model learns its other classes)
    seed: int = 0  # seed of frame choice, training noise and sampling
    lr: float = 0.005  # AdamW learning rate of the token embedding
    steps: int = 300  # optimizer steps
    batch_size: int = 2  # training images per micro-batch
    gradient_accumulation: int = 1  # micro-batches per optimizer step
    resolution: int = 0  # training image side in px; 0: the base model's native size
    checkpoint_every: int = 100  # steps between saved embeddings and sample grids
    n_checkpoint_images: int = 4  # images in each checkpoint sample grid
    prompt: str = "a lung ultrasound frame of {}"  # generation prompt; {} becomes the learned token
    n_txt2img: int = 60  # text-to-image samples written (kept and rejected alike)
    n_img2img: int = 60  # image-to-image samples written, from the training frames in turn
    strength: float = 0.5  # img2img noise strength: 0 returns the source, 1 ignores it
    sampler: str = choice("dpmsolver", TI_SAMPLERS)  # scheduler used for sampling (DPM-Solver++ by default)
    sampling_steps: int = 20  # denoising steps per image
    guidance_scale: float = 3.0  # classifier-free guidance scale (1: none)
    sample_batch_size: int = 20  # images denoised together
    output_size: int = planned(48, "train.image_size")  # side in px of the written images: the classifier's input size
    domain_resolution: int = 64  # domain base model: image side in px (multiple of 16)
    domain_width: int = 16  # domain base model: channels of the first UNet level (then x2, x4)
    domain_vae_steps: int = 300  # domain base model: autoencoder training steps
    domain_steps: int = 1500  # domain base model: text encoder + UNet training steps
    domain_batch_size: int = 16  # domain base model: frames per step
    domain_lr: float = 0.001  # domain base model: AdamW learning rate
    domain_caption_dropout: float = 0.1  # domain base model: share of empty captions (for guidance)
    set_tag: str = planned("", "textual_inversion_runs (base model and fold)")  # suffix of the synthetic set folders (ti_txt2img_TAG), so base models sit side by side
    mixed_precision: str = choice("fp16", ("no", "fp16"))  # fp16 weights for hub/folder models on GPU; CPU runs fp32
    device: str = choice("auto", ("auto", "cpu", "cuda"))  # auto: cuda when available
    num_threads: int = 1  # CPU threads torch may use

    def check(self) -> None:
        _require(bool(self.base_model.strip()), "base_model", "must be tiny, domain, a hub id or a folder")
        _require(bool(self.placeholder_token.strip()) and " " not in self.placeholder_token, "placeholder_token",
                 "must be one word without spaces, e.g. <viral-pneumonia-ultrasound>")
        _require(bool(self.initializer_token.strip()), "initializer_token", "must be an existing word")
        _require(self.num_vectors >= 1, "num_vectors", "must be >= 1")
        _require(self.fold >= -1, "fold", "must be -1 (hold-out) or a fold number >= 0")
        _require(self.lr > 0, "lr", "must be > 0")
        _require(self.steps >= 1 and self.batch_size >= 1 and self.gradient_accumulation >= 1,
                 "steps/batch_size/gradient_accumulation", "must be >= 1")
        _require(self.resolution == 0 or (self.resolution >= 16 and self.resolution % 8 == 0), "resolution",
                 "must be 0 (native) or a multiple of 8 >= 16")
        _require(self.checkpoint_every >= 1 and self.n_checkpoint_images >= 1,
                 "checkpoint_every/n_checkpoint_images", "must be >= 1")
        _require(self.prompt.count("{}") == 1, "prompt", "must hold exactly one {} for the learned token")
        _require(self.n_txt2img >= 0 and self.n_img2img >= 0 and self.n_txt2img + self.n_img2img >= 1,
                 "n_txt2img/n_img2img", "must be >= 0 and not both 0")
        _require(0 < self.strength <= 1, "strength", "must lie in (0, 1]")
        _require(1 <= self.sampling_steps <= 1000, "sampling_steps", "must lie in [1, 1000]")
        _require(self.guidance_scale >= 1, "guidance_scale", "must be >= 1 (1: no guidance)")
        _require(self.sample_batch_size >= 1, "sample_batch_size", "must be >= 1")
        _require(self.output_size >= 8, "output_size", "must be >= 8")
        _require(self.domain_resolution >= 16 and self.domain_resolution % 16 == 0, "domain_resolution",
                 "must be a multiple of 16")
        _require(self.domain_width >= 8 and self.domain_width % 8 == 0, "domain_width",
                 "must be a positive multiple of 8")
        _require(self.domain_vae_steps >= 1 and self.domain_steps >= 1 and self.domain_batch_size >= 1,
                 "domain_vae_steps/domain_steps/domain_batch_size", "must be >= 1")
        _require(self.domain_lr > 0, "domain_lr", "must be > 0")
        _require(0 <= self.domain_caption_dropout < 1, "domain_caption_dropout", "must lie in [0, 1)")
        _require(self.set_tag == "" or self.set_tag.replace("_", "").replace("-", "").isalnum(), "set_tag",
                 "must be empty or letters, digits, - and _")
        _require(self.num_threads >= 1, "num_threads", "must be >= 1")


# --- compare: the final comparison (notebook 06) -------------------------------------------------------
COMPARE_METRICS = ("minority_auroc", "minority_ap", "minority_sens_at_spec", "balanced_accuracy", "accuracy",
                   "weighted_precision", "weighted_recall", "weighted_f1", "macro_f1", "minority_recall",
                   "minority_precision", "minority_f1", "minority_specificity", "video_accuracy",
                   "video_balanced_accuracy", "video_macro_f1", "video_weighted_f1", "video_minority_recall",
                   "video_minority_auroc", "video_minority_ap")
MAX_PRIMARY = 4
PRIMARY_FORM = "'<condition> vs <baseline>: <metric>', e.g. 'ddpm_3_mixed@1ratio vs none: minority_ap'"


@dataclass(frozen=True)
class PrimaryComparison:
    """One declared primary comparison: `condition` against `baseline` on `metric`."""

    condition: str
    baseline: str
    metric: str

    def __str__(self) -> str:
        return f"{self.condition} vs {self.baseline}: {self.metric}"


def parse_primary(entries: list[str]) -> list[PrimaryComparison]:
    """`compare.primary` entries as comparisons; a clear error for a malformed, unknown or leaky entry."""
    out = []
    for entry in entries:
        head, sep, metric = str(entry).rpartition(":")
        condition, vs, baseline = head.partition(" vs ")
        condition, baseline, metric = condition.strip(), baseline.strip(), metric.strip()
        _require(bool(sep and vs and condition and baseline and metric), "compare.primary",
                 f"entry '{entry}' is not of the form {PRIMARY_FORM}")
        _require(metric in COMPARE_METRICS, "compare.primary",
                 f"entry '{entry}': metric '{metric}' unknown; use one of {list(COMPARE_METRICS)}")
        _require(condition != baseline, "compare.primary", f"entry '{entry}' compares a condition with itself")
        _require("any_split" not in condition + baseline, "compare.primary",
                 f"entry '{entry}': the leakage ablation is never a primary comparison (its generator saw "
                 "validation/test frames)")
        _require("seed_replica" not in condition + baseline, "compare.primary",
                 f"entry '{entry}': the seed replica is never a primary comparison (its video split puts a "
                 "patient in train and test)")
        out.append(PrimaryComparison(condition, baseline, metric))
    _require(len(set(out)) == len(out), "compare.primary", "lists a comparison twice")
    _require(len(out) <= MAX_PRIMARY, "compare.primary",
             f"declares {len(out)} comparisons; at most {MAX_PRIMARY} (Holm over more leaves too little power)")
    return out


@dataclass
class CompareParams:
    minority_class: str = choice(MINORITY_CLASS, CLASSES)  # class whose AUROC, AP, sensitivity, recall and F1 are compared
    metrics: list[str] = choice(["minority_auroc", "minority_ap", "minority_sens_at_spec", "balanced_accuracy", "accuracy", "weighted_f1", "video_balanced_accuracy"], COMPARE_METRICS)  # table columns and exploratory effect metrics (minority_: of minority_class)
    primary: list[str] = field(default_factory=lambda: ["ddpm_3_mixed@1ratio vs none: minority_ap", "ddpm_3_mixed@1ratio vs oversampling@1ratio: minority_ap"])  # declared primary comparisons '<condition> vs <baseline>: <metric>' (at most 4; Holm over these alone)
    fixed_specificity: float = 0.95  # specificity on each fold's validation negatives that sets the minority threshold
    ci_level: float = 0.95  # confidence level of every interval (the tests use 1 - ci_level as alpha)
    n_boot: int = 1000  # patient-bootstrap resamples (stratified by class) of every interval
    mde_power: float = 0.8  # power at which the minimum detectable effect of a primary comparison is stated
    n_example_pairs: int = 4  # synthetic images per set shown beside their nearest training frame
    compare_seed: int = 0  # seed of every bootstrap resampling
    build_report: bool = True  # write report.html with every executed notebook rendered to HTML

    def check(self) -> None:
        _require(0.5 <= self.ci_level < 1, "ci_level", "must lie in [0.5, 1)")
        _require(len(self.metrics) >= 1 and len(set(self.metrics)) == len(self.metrics), "metrics",
                 "must list distinct metrics")
        _require(self.n_boot >= 100, "n_boot", "must be >= 100 (fewer resamples give unstable intervals)")
        _require(self.n_example_pairs >= 0, "n_example_pairs", "must be >= 0")
        _require(0.5 <= self.fixed_specificity < 1, "fixed_specificity", "must lie in [0.5, 1)")
        _require(0.5 <= self.mde_power < 1, "mde_power", "must lie in [0.5, 1)")
        parse_primary(self.primary)

    def primary_comparisons(self) -> list[PrimaryComparison]:
        return parse_primary(self.primary)


# --- slurm: resources of the runner's Slurm jobs (python run_all.py --executor slurm) ---------------------
@dataclass
class SlurmParams:
    partition: str = ""  # Slurm partition (empty: the cluster's default)
    account: str = ""  # Slurm account charged (empty: your default)
    gpus_per_node: int = 0  # GPUs per job (stages in cpu_stages get none)
    cpus_per_task: int = 4  # CPU cores per job
    mem_gb: int = 16  # memory per job in GB
    timeout_min: int = 120  # wall-time limit per job in minutes
    array_parallelism: int = 16  # most jobs of one job array running at once
    cpu_stages: list[str] = choice(["01", "06"], STAGES)  # stages whose jobs ask for no GPU

    def check(self) -> None:
        _require(self.gpus_per_node >= 0, "gpus_per_node", "must be >= 0")
        _require(self.cpus_per_task >= 1 and self.mem_gb >= 1, "cpus_per_task/mem_gb", "must be >= 1")
        _require(self.timeout_min >= 1, "timeout_min", "must be >= 1 minute")
        _require(self.array_parallelism >= 1, "array_parallelism", "must be >= 1")


SECTIONS: dict[str, type] = {
    "study": StudyParams,
    "data": DataParams,
    "explore": ExploreParams,
    "ddpm_runs": DDPMRunsParams,
    "ddpm": DDPMParams,
    "audit": AuditParams,
    "train": TrainParams,
    "grid": GridParams,
    "seed_replica": SeedReplicaParams,
    "textual_inversion_runs": TextualInversionRunsParams,
    "textual_inversion": TextualInversionParams,
    "compare": CompareParams,
    "slurm": SlurmParams,
}

# Which classes make up each notebook's parameters (besides data_root and out_dir): the stage table's.
NOTEBOOK_PARAMS: dict[str, tuple[type, ...]] = {
    stage.notebook: tuple(globals()[name] for name in stage.params) for stage in STAGE_TABLE}
# Every notebook also takes these two paths (name: help); both default to "".
COMMON_NOTEBOOK_PARAMS = {
    "data_root": "dataset data/ folder; empty: $LUS_DATA_ROOT, else data/covid19_ultrasound/data",
    "out_dir": "study output folder; empty: outputs/notebook",
}


# --- validation ---------------------------------------------------------------------------------------
def _require(ok: bool, key: str, why: str) -> None:
    if not ok:
        raise ParamError(f"parameter '{key}' {why}")


def _type_ok(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, arg) for arg in typing.get_args(hint))
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        return isinstance(value, (list, tuple)) and all(_type_ok(v, item) for v in value)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def planned_keys(cls: type) -> dict[str, str]:
    """The `planned` fields of a class and the key each is planned from."""
    return {f.name: f.metadata["planned"] for f in fields(cls) if "planned" in f.metadata}


def build(cls: type, values: Mapping[str, Any], source: str, profile: bool = False) -> Any:
    """Make `cls` from `values` (missing keys keep their defaults), refusing unknown keys and wrong types,
    naming `source`. With `profile`, planned keys are refused too (the runner sets them per run)."""
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ParamError(f"{source}: unknown parameter(s) {unknown}; allowed: {sorted(known)}")
    per_run = {k: by for k, by in planned_keys(cls).items() if k in values} if profile else {}
    if per_run:
        raise ParamError(f"{source}: {sorted(per_run)} are set for each run by the runner, not by a profile "
                         f"(from {sorted(set(per_run.values()))}); remove them")
    for key, value in values.items():
        hint = hints[key]
        if not _type_ok(value, hint):
            raise ParamError(f"{source}: parameter '{key}' must be {_type_name(hint)}, "
                             f"got {value!r} ({type(value).__name__})")
        choices = known[key].metadata.get("choices")
        if choices is not None:
            items = value if isinstance(value, (list, tuple)) else [value]
            bad = [v for v in items if v not in choices]
            if bad:
                raise ParamError(f"{source}: parameter '{key}' has {bad}; allowed: {list(choices)}"
                                 f"{getattr(choices, 'hint', '')}")
    coerced = {k: (float(v) if hints[k] is float else list(v) if isinstance(v, tuple) else v)
               for k, v in values.items()}
    obj = cls(**coerced)
    if hasattr(obj, "check"):
        try:
            obj.check()
        except ParamError as err:
            raise ParamError(f"{source}: {err}") from None
    return obj


def as_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


@dataclass
class Profile:
    """A validated profile: one dataclass per section, plus where it came from."""

    name: str
    path: Path
    description: str
    sections: dict[str, Any]

    def __getattr__(self, item: str) -> Any:
        sections = self.__dict__.get("sections", {})
        if item in sections:
            return sections[item]
        raise AttributeError(item)

    def to_dict(self) -> dict[str, Any]:
        return {name: as_dict(section) for name, section in self.sections.items()}


def profile_path(name_or_path: str) -> Path:
    """`smoke` -> params/smoke.yaml; anything with a suffix or a slash is taken as a path."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or len(candidate.parts) > 1:
        path = candidate
    else:
        path = PARAMS_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))
        raise ParamError(f"profile '{name_or_path}' not found at {path}; available: {available} "
                         "or a path to a .yaml file")
    return path


def load_profile(name_or_path: str) -> Profile:
    path = profile_path(name_or_path)
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise ParamError(f"{path}: a profile is a mapping of sections, got {type(raw).__name__}")
    description = raw.pop("description", "")
    if not isinstance(description, str) or not description.strip():
        raise ParamError(f"{path}: 'description' (what this profile is for) is required")
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ParamError(f"{path}: unknown section(s) {unknown}; allowed: {sorted(SECTIONS)}")
    sections = {}
    for name, cls in SECTIONS.items():
        values = raw.get(name) or {}
        if not isinstance(values, dict):
            raise ParamError(f"{path}: section '{name}' must be a mapping")
        sections[name] = build(cls, values, f"{path} [{name}]", profile=True)
    stem = path.stem
    return Profile(name=stem, path=path, description=description.strip(), sections=sections)


def notebook_defaults(notebook: str) -> dict[str, Any]:
    """The parameters cell of `notebook` as a dict: common params then each section's defaults."""
    values: dict[str, Any] = {key: "" for key in COMMON_NOTEBOOK_PARAMS}
    for cls in NOTEBOOK_PARAMS[notebook]:
        values.update(as_dict(cls()))
    return values


def from_notebook(notebook: str, namespace: Mapping[str, Any]) -> tuple[Any, ...]:
    """Validate a notebook's parameters (taken from its globals) into its section dataclasses.

    Used in the cell after `parameters`, so a mistyped `-p` value stops the notebook at once.
    """
    out = []
    for cls in NOTEBOOK_PARAMS[notebook]:
        values = {f.name: namespace[f.name] for f in fields(cls) if f.name in namespace}
        out.append(build(cls, values, f"notebook {notebook} parameters"))
    for key in COMMON_NOTEBOOK_PARAMS:
        value = namespace.get(key, "")
        if not isinstance(value, str):
            raise ParamError(f"notebook {notebook} parameters: '{key}' must be a str path, got {value!r}")
    return tuple(out)


def _field_comments(cls: type) -> dict[str, str]:
    """The `# comment` written after each field in the dataclass source (used as parameter help)."""
    import inspect

    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        for line in inspect.getsource(klass).splitlines():
            name, sep, rest = line.strip().partition(":")
            if sep and name.isidentifier() and "#" in rest:
                comments[name] = rest.split("#", 1)[1].strip()
    return comments


def parameters_cell(notebook: str) -> str:
    """The source of `notebook`'s `parameters` cell, rendered from the dataclasses (one literal a line)."""
    lines = [f'{key}: str = ""  # {comment}' for key, comment in COMMON_NOTEBOOK_PARAMS.items()]
    for cls in NOTEBOOK_PARAMS[notebook]:
        comments = _field_comments(cls)
        # papermill's parser misreads a comment holding "=", and then drops the parameter.
        bad = {k: c for k, c in comments.items() if "=" in c}
        if bad:
            raise ParamError(f"{cls.__name__}: field comments must not contain '=': {bad}")
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            value = getattr(cls(), f.name)
            hint = hints[f.name]
            type_name = "list" if typing.get_origin(hint) is list else _type_name(hint)
            literal = repr(value).replace("'", '"')
            lines.append(f"{f.name}: {type_name} = {literal}  # {comments.get(f.name, '')}".rstrip())
    return "\n".join(lines)


def sync_notebook_parameters() -> list[str]:
    """Rewrite every notebook's `parameters` cell from the dataclasses; returns the notebooks it changed."""
    import json

    from lus_utils.paths import NOTEBOOKS_DIR

    changed = []
    for notebook in NOTEBOOK_PARAMS:
        path = NOTEBOOKS_DIR / f"{notebook}.ipynb"
        nb = json.loads(path.read_text())
        cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
        source = parameters_cell(notebook)
        if "".join(cell["source"]) != source:
            cell["source"] = source.splitlines(keepends=True)
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
            changed.append(notebook)
    return changed


if __name__ == "__main__":  # python -m lus_utils.params: after editing a parameter class
    print("rewrote the parameters cell of:", sync_notebook_parameters() or "nothing (all in sync)")
