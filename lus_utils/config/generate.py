"""The generators and their audit: the DDPMs (sections `ddpm_runs`, `ddpm`), textual inversion
(`textual_inversion_runs`, `textual_inversion`) and its study-trained base model (`domain_base_model`), the
quality gate and memorization/realism audit of every synthetic set (`audit`), and the original study's
generator as an overlay of the DDPM and audit keys (`seed_replica`)."""
from __future__ import annotations

from dataclasses import dataclass

from lus_utils.config.schema import ParamError, build, choice, listof, mapping, planned, require
from lus_utils.vocabulary import CLASSES, DDPM_LEAKY_VARIANTS, DDPM_ORIGINAL_VARIANT, DDPM_VARIANTS, VIRAL

DDPM_SAMPLERS = ("ddpm", "ddim", "dpmsolver", "dpmsolver_ode")
FEATURE_EXTRACTORS = ("random_cnn", "classifier", "inception", "dinov2", "pixels")
QUALITY_GATES = ("real_range", "seed")
CLASS_SAMPLINGS = ("frames", "balanced")
RUNNER_VARIANTS = tuple(v for v in DDPM_VARIANTS if v != DDPM_ORIGINAL_VARIANT)  # seed_3_mixed: grid.seed_replica
SIMULATED_VARIANTS = tuple(v for v in DDPM_VARIANTS if v not in DDPM_LEAKY_VARIANTS)  # a draw's generators see only it
TI_TRAIN_FRAMES = ("3_mixed", "6_mixed", "all")
TI_SAMPLERS = ("dpmsolver", "ddim", "euler", "pndm")


def _check_split_target(split_column: str, target_class: str, real_patients: int) -> None:
    require(bool(split_column.strip()), "split_column", "must name a frames.csv split column")
    require(real_patients >= 0, "real_patients", "must be >= 0 (0: every training patient)")
    require(split_column.startswith("sim_") == (real_patients > 0), "real_patients",
            "is set (>= 1) for a simulated draw's split and only there")
    require(not split_column.startswith("sim_") or split_column.startswith(f"sim_{target_class}_"),
            "target_class", f"must be the target class of the simulated split {split_column}")


@dataclass
class DDPMRunsParams:
    variants: list[str] = choice(["3_mixed"], RUNNER_VARIANTS)  # generators the runner trains, each once per fold (class_conditional: per repeat and fold; quick: the original study's 3-frame DDPM only; seed_3_mixed comes with grid.seed_replica)
    simulated_variants: list[str] = choice(["class_conditional"], SIMULATED_VARIANTS)  # generators trained on each simulated draw's first k target patients (each a synthetic condition of that design; class_conditional learns the draw's other classes too)

    def check(self) -> None:
        require(len(self.variants) == len(set(self.variants)), "variants", "must not repeat a variant")
        require(len(self.simulated_variants) == len(set(self.simulated_variants)), "simulated_variants",
                "must not repeat a variant")


@dataclass
class DDPMParams:
    variant: str = planned("3_mixed", "ddpm_runs.variants", DDPM_VARIANTS)  # frames the generator trains on (see notebook 05)
    split_column: str = planned("split", "data.protocol (each fold or draw)")  # frames.csv column whose training part the generator learns from (split: hold-out, cv_r<r>_f<f>: a fold, sim_<class>_d<d>: a simulated draw)
    target_class: str = planned(VIRAL, "simulated_minority.targets", CLASSES)  # the class the generator makes (viral, or a simulated minority's target)
    real_patients: int = planned(0, "simulated_minority.real_patients")  # simulated: the draw's first k target patients it may learn from (0: every training patient)
    seed: int = 0  # seed of frame choice, initial weights, training noise and sampling
    image_size: int = 32  # generator resolution in px (square; the set is written at train.image_size); the original study 128
    block_out_channels: list[int] = listof([16, 32, 64])  # UNet channels per level; the original study 128,128,256,256,512,512
    layers_per_block: int = 1  # ResNet layers per UNet level (the original study 2)
    attention_levels: list[int] = listof([])  # 0-based UNet levels with self-attention (the original study: [4])
    epochs_3_mixed: int = 1000  # passes over the frames for the 3-frame variants (the original study and full 3000; quick's fold 1 reaches realism only at 3000, 1000 fits quick's hour: bench_generator_budget)
    epochs_train_all: int = 100  # passes over the frames for train_all (the original study 2000)
    batch_size: int = 16  # training images per optimizer step (the original study 16)
    lr: float = 0.0005  # AdamW peak learning rate (the original study 1e-4; 5e-4 measured in bench_ddpm)
    warmup_steps: int = 50  # linear warm-up steps of the cosine schedule (the original study 500)
    ema_decay: float = 0.999  # largest decay of the EMA weights the pipeline is saved with (the original study used no EMA)
    checkpoint_every: int = 200  # optimizer steps between checkpoints (resume starts from the last)
    sample_grids: int = 4  # sample grids saved during training, evenly spaced over the epochs (0: none)
    resume: str = choice("latest", ("latest", "none"))  # continue an interrupted training from its last checkpoint
    sampler: str = choice("dpmsolver", DDPM_SAMPLERS)  # ddpm (ancestral), ddim, dpmsolver (SDE-DPM-Solver++) or dpmsolver_ode (DPM-Solver++)
    sampling_steps: int = 20  # denoising steps (the original study: ddpm 500; usual: ddim 50, dpmsolver 20)
    n_samples: int = 200  # images generated, kept and rejected alike (amount 1 ratio asks for as many kept images as the minority's real training frames: 3 pneumonia patients give at most 45 at 10 frames per video)
    gate_retries: int = 0  # the original study's gate only: an image failing both criteria is redrawn (seed + 1000 x attempt), at most this often (its loop)
    sample_batch_size: int = 40  # images denoised together
    output_size: int = planned(48, "train.image_size")  # side in px of the written images: the classifier's input size
    conditional_train_steps: int = 500  # class_conditional: optimizer steps (batches drawn with replacement from every training frame; 250 failed the structure test on viral and pneumonia, 500 passed on both at the right guidance: benchmarks/RESULTS.md)
    conditional_batch_size: int = 32  # class_conditional: training images per optimizer step
    label_dropout: float = 0.15  # class_conditional: share of training labels replaced by the null label (classifier-free guidance)
    guidance_scale: float = 4.0  # class_conditional: w of eps_u + w (eps_c - eps_u) at sampling; on pneumonia cut to 3 patients (quick's primary target) only 4 passed the structure test (1 and 2 failed); on viral cv_r0_f0 only 1 passed (benchmarks/RESULTS.md)
    class_sampling: str = choice("frames", CLASS_SAMPLINGS)  # class_conditional: batches draw every frame (frames) or every class (balanced) equally often

    def check(self) -> None:
        _check_split_target(self.split_column, self.target_class, self.real_patients)
        require(self.seed >= 0, "seed", "must be >= 0")
        levels = len(self.block_out_channels)
        require(levels >= 2, "block_out_channels", "needs at least two UNet levels")
        require(self.image_size % 2 ** (levels - 1) == 0 and self.image_size >= 8, "image_size",
                f"must be >= 8 and divisible by 2**(levels-1) = {2 ** (levels - 1)}")
        require(all(c > 0 and c % 8 == 0 for c in self.block_out_channels), "block_out_channels",
                "must be positive multiples of 8 (GroupNorm uses 8 groups at least)")
        require(all(0 <= a < levels for a in self.attention_levels)
                and len(set(self.attention_levels)) == len(self.attention_levels), "attention_levels",
                f"must be distinct level indices in [0, {levels - 1}]")
        require(self.layers_per_block >= 1, "layers_per_block", "must be >= 1")
        require(self.epochs_3_mixed >= 1 and self.epochs_train_all >= 1, "epochs_3_mixed/epochs_train_all",
                "must be >= 1")
        require(self.batch_size >= 1 and self.sample_batch_size >= 1, "batch_size/sample_batch_size",
                "must be >= 1")
        require(self.lr > 0, "lr", "must be > 0")
        require(self.warmup_steps >= 0, "warmup_steps", "must be >= 0")
        require(0 < self.ema_decay < 1, "ema_decay", "must lie in (0, 1)")
        require(self.checkpoint_every >= 1, "checkpoint_every", "must be >= 1")
        require(self.sample_grids >= 0, "sample_grids", "must be >= 0")
        require(1 <= self.sampling_steps <= 1000, "sampling_steps", "must lie in [1, 1000] (1000 training steps)")
        require(self.n_samples >= 1, "n_samples", "must be >= 1")
        require(self.gate_retries >= 0, "gate_retries", "must be >= 0 (0: no redraw)")
        require(self.output_size >= 8, "output_size", "must be >= 8")
        require(self.conditional_train_steps >= 1 and self.conditional_batch_size >= 1,
                "conditional_train_steps/conditional_batch_size", "must be >= 1")
        require(0 < self.label_dropout < 1, "label_dropout",
                "must lie in (0, 1): guidance needs the unconditional prediction, the class the conditional one")
        require(self.guidance_scale >= 0, "guidance_scale", "must be >= 0 (1: the conditional prediction alone)")


@dataclass
class AuditParams:
    gate: str = choice("real_range", QUALITY_GATES)  # quality gate: real_range (statistics inside the real training frames' range) or seed (the original study's std/entropy)
    gate_quantile: float = 0.005  # real_range gate: each statistic's [q, 1-q] quantile range over the split's real training frames
    gate_margin: float = 0.25  # real_range gate: the range widened by this share of its width on both sides
    min_std: float = 20.0  # seed gate: grey-level std (0-255) must exceed this (the original study 30, on RGB)
    min_entropy: float = 4.0  # seed gate: 256-bin histogram entropy in nats must exceed this (the original study 4.7, on RGB)
    memorization_threshold: float = 0.95  # pixel correlation with a training frame above which an image counts as memorized
    ssim_threshold: float = 0.9  # SSIM with a training frame above which an image counts as memorized
    audit_size: int = 64  # side in px of the grey images compared
    ssim_candidates: int = 5  # SSIM is computed against this many frames nearest by correlation
    n_holdout_reference: int = 30  # real held-out minority frames compared with training frames (what close means)
    n_closest_pairs: int = 8  # closest synthetic-training pairs listed and shown
    kid_subset: int = 50  # images per KID subset (at most the images per side)
    kid_subsets: int = 100  # KID subsets averaged (their 2.5-97.5 % range is the interval)
    c2st_folds: int = 5  # cross-validation folds of the classifier two-sample test
    feature_extractor: str = choice("random_cnn", FEATURE_EXTRACTORS)  # feature space of the second opinion's KID and C2ST (random_cnn: seeded random CNN, fixed across conditions); the ultrasound encoder decides realism
    feature_run_dir: str = planned("", "grid (its first baseline run)")  # baseline classifier run folder (real data only) for classifier features, relative to out_dir or absolute; empty: none
    audit_seed: int = 0  # seed of the subsets and reference frames
    encoder_size: int = 32  # side in px at which the ultrasound encoder reads frames (structure realism; the generators' resolution in quick)
    encoder_steps: int = 300  # optimizer steps of the ultrasound encoder, trained once per split on the other classes' training frames
    structure_neighbours: int = 3  # k of density and coverage's k-NN balls (Naeem et al. 2020: 5 for thousands of images; sets here hold 10-100)
    structure_permutations: int = 1000  # relabellings of the structure permutation test (its smallest p is 1 / (1 + this))

    def check(self) -> None:
        require(self.min_std >= 0 and self.min_entropy >= 0, "min_std/min_entropy", "must be >= 0")
        require(-1 <= self.memorization_threshold <= 1, "memorization_threshold", "must lie in [-1, 1]")
        require(-1 <= self.ssim_threshold <= 1, "ssim_threshold", "must lie in [-1, 1]")
        require(self.audit_size >= 16, "audit_size", "must be >= 16 (SSIM needs a 7-px window)")
        require(self.ssim_candidates >= 1, "ssim_candidates", "must be >= 1")
        require(self.n_holdout_reference >= 0 and self.n_closest_pairs >= 0,
                "n_holdout_reference/n_closest_pairs", "must be >= 0")
        require(self.kid_subset >= 2 and self.kid_subsets >= 1, "kid_subset/kid_subsets", "must be >= 2 and >= 1")
        require(self.c2st_folds >= 2, "c2st_folds", "must be >= 2")
        require(0 <= self.gate_quantile < 0.5 and self.gate_margin >= 0, "gate_quantile/gate_margin",
                "must lie in [0, 0.5) and be >= 0")
        require(self.audit_seed >= 0, "audit_seed", "must be >= 0")
        require(self.encoder_size >= 16, "encoder_size", "must be >= 16 (the encoder pools three times)")
        require(self.encoder_steps >= 1, "encoder_steps", "must be >= 1")
        require(self.structure_neighbours >= 1, "structure_neighbours", "must be >= 1")
        require(self.structure_permutations >= 19, "structure_permutations",
                "must be >= 19 (fewer cannot give p <= 0.05)")


@dataclass
class OriginalReplicaParams:
    """The original study's recipe (`grid.seed_replica`, section `seed_replica`): one DDPM trained as section
    `ddpm` says on three viral frames chosen whatever their split (its hand-picked folder), then sampled and gated
    its way: these two mappings overlay the `ddpm` and `audit` keys for that generator alone. Its classifier
    conditions run on its video split, tested at their last epoch: `seed_replica` (no synthetic image) and
    `seed_replica_ddpm_seed_3_mixed@1fraction` (every image that passed its gate), with the `train` section."""

    ddpm: dict = mapping({"sampler": "ddpm", "sampling_steps": 100, "n_samples": 32, "gate_retries": 2})  # over section ddpm: its DDPM sampler (500 steps there, fewer on a CPU), its tries (1000 there) and its redraw loop (unbounded there)
    audit: dict = mapping({"gate": "seed", "min_std": 30.0, "min_entropy": 4.7})  # over section audit: its std/entropy gate (30 and 4.7 there)

    def check(self) -> None:
        for name, cls in (("ddpm", DDPMParams), ("audit", AuditParams)):
            try:
                build(cls, self.ddpm if name == "ddpm" else self.audit, f"seed_replica.{name}", profile=True)
            except ParamError as err:
                raise ParamError(str(err)) from None

    def overrides(self) -> dict:
        """The replica's generator's parameters over the ddpm and audit sections' (variant included)."""
        return {**self.ddpm, **self.audit, "variant": DDPM_ORIGINAL_VARIANT}


@dataclass
class TextualInversionRunsParams:
    base_models: list[str] = listof(["domain"])  # one notebook 04 run per base model (tiny, domain, hub id or folder)

    def check(self) -> None:
        require(len(self.base_models) >= 1 and len(set(self.base_models)) == len(self.base_models),
                "base_models", "must list at least one base model, none twice")
        require(all(b.strip() for b in self.base_models), "base_models", "must not hold an empty name")


@dataclass
class TextualInversionParams:
    base_model: str = planned("tiny", "textual_inversion_runs.base_models")  # tiny (offline test pipeline: noise), domain (study-trained), hub id or diffusers folder
    split_column: str = planned("split", "data.protocol (each fold and repeat)")  # frames.csv column whose training part the token (and a domain base model) learns from (split: hold-out, cv_r<r>_f<f>: a fold)
    set_tag: str = planned("", "textual_inversion_runs (base model)")  # base-model tag in the set families (ti_txt2img_TAG), so base models sit side by side
    placeholder_token: str = "<viral-pneumonia-ultrasound>"  # the new token learned for the minority class
    initializer_token: str = "pneumonia"  # one existing token whose embedding the new one starts from
    num_vectors: int = 1  # embedding vectors behind the token
    learnable_property: str = choice("object", ("object", "style", "ultrasound"))  # training prompt templates
    train_frames: str = choice("3_mixed", TI_TRAIN_FRAMES)  # minority training frames: 3 or 6 spread over videos, or all
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

    def check(self) -> None:
        require(bool(self.base_model.strip()), "base_model", "must be tiny, domain, a hub id or a folder")
        require(bool(self.split_column.strip()), "split_column", "must name a frames.csv split column")
        require(bool(self.placeholder_token.strip()) and " " not in self.placeholder_token, "placeholder_token",
                "must be one word without spaces, e.g. <viral-pneumonia-ultrasound>")
        require(bool(self.initializer_token.strip()), "initializer_token", "must be an existing word")
        require(self.num_vectors >= 1, "num_vectors", "must be >= 1")
        require(self.seed >= 0, "seed", "must be >= 0")
        require(self.lr > 0, "lr", "must be > 0")
        require(self.steps >= 1 and self.batch_size >= 1 and self.gradient_accumulation >= 1,
                "steps/batch_size/gradient_accumulation", "must be >= 1")
        require(self.resolution == 0 or (self.resolution >= 16 and self.resolution % 8 == 0), "resolution",
                "must be 0 (native) or a multiple of 8 >= 16")
        require(self.checkpoint_every >= 1 and self.n_checkpoint_images >= 1,
                "checkpoint_every/n_checkpoint_images", "must be >= 1")
        require(self.prompt.count("{}") == 1, "prompt", "must hold exactly one {} for the learned token")
        require(self.n_txt2img >= 0 and self.n_img2img >= 0 and self.n_txt2img + self.n_img2img >= 1,
                "n_txt2img/n_img2img", "must be >= 0 and not both 0")
        require(0 < self.strength <= 1, "strength", "must lie in (0, 1]")
        require(1 <= self.sampling_steps <= 1000, "sampling_steps", "must lie in [1, 1000]")
        require(self.guidance_scale >= 1, "guidance_scale", "must be >= 1 (1: no guidance)")
        require(self.sample_batch_size >= 1, "sample_batch_size", "must be >= 1")
        require(self.output_size >= 8, "output_size", "must be >= 8")
        require(self.set_tag == "" or self.set_tag.replace("_", "").replace("-", "").isalnum(), "set_tag",
                "must be empty or letters, digits, - and _")


@dataclass
class DomainBaseModelParams:
    """The `domain` base model of textual inversion: a small latent-diffusion model trained on the split's
    training frames of the other classes, captioned from the metadata (section `domain_base_model`; its keys keep their `domain_` prefix because a
    notebook's parameters share one namespace with textual inversion's own `steps`, `lr`, ...)."""

    domain_resolution: int = 64  # image side in px (multiple of 16)
    domain_width: int = 16  # channels of the first UNet level (then x2, x4)
    domain_vae_steps: int = 300  # autoencoder training steps
    domain_steps: int = 1500  # text encoder + UNet training steps
    domain_batch_size: int = 16  # frames per step
    domain_lr: float = 0.001  # AdamW learning rate
    domain_caption_dropout: float = 0.1  # share of empty captions (for guidance)

    def check(self) -> None:
        require(self.domain_resolution >= 16 and self.domain_resolution % 16 == 0, "domain_resolution",
                "must be a multiple of 16")
        require(self.domain_width >= 8 and self.domain_width % 8 == 0, "domain_width",
                "must be a positive multiple of 8")
        require(self.domain_vae_steps >= 1 and self.domain_steps >= 1 and self.domain_batch_size >= 1,
                "domain_vae_steps/domain_steps/domain_batch_size", "must be >= 1")
        require(self.domain_lr > 0, "domain_lr", "must be > 0")
        require(0 <= self.domain_caption_dropout < 1, "domain_caption_dropout", "must lie in [0, 1)")
