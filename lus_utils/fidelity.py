"""How the profiles stand to the original study: its settings as data, each mapped to the keys that hold ours.

The original study is lamitay/uls_inversion (commit `ORIGINAL_COMMIT`); every `Setting` names the file and line a
value comes from there. `python -m lus_utils.fidelity` renders `docs/fidelity.md` from these records and
the current profiles (`full` and `quick`), so the table follows the profiles; a test checks that the
committed page is what the command renders and that every mapped key exists.

A key is a profile key (`train.lr`) or a code constant (`lus_utils.generate.ddpm_training:ADAM_BETAS`, the same in
every profile). A setting with `original_value` is compared with `full`'s value of its one key; a setting
without one says in `same` whether `full` does what the original study did. Where `full` differs, `why` says why.
"""
from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lus_utils.config.profiles import Profile, load_profile
from lus_utils.paths import PROJECT_ROOT
from lus_utils.provenance import write_text_atomic

ORIGINAL_REPO = "lamitay/uls_inversion"
ORIGINAL_COMMIT = "0753d645b253d3d27c0924adf0546dd2229301c3"
DOC_PATH = PROJECT_ROOT / "docs" / "fidelity.md"
PROFILES = ("full", "quick")
_UNSET = object()


@dataclass(frozen=True)
class Setting:
    stage: str
    name: str
    original: str  # what the original study did, in words
    source: str  # file:line in the original study's repository
    keys: tuple[str, ...] = ()  # profile keys or module:CONSTANT holding ours
    original_value: Any = _UNSET  # the original study's value of the one key, when it compares directly
    same: bool | None = None  # for settings without original_value: does full do what the original study did?
    ours: str = ""  # what our code does where no key holds it
    why: str = ""  # why full differs


MC = "classifier/main_classifier.py"
DS = "classifier/dataset.py"
TR = "classifier/trainer.py"
CD = "classifier/create_data_df.py"
BT = "textual_inversion/basic_training_script.py"
GD = "textual_inversion/generate_dataset_from_ddpm.py"
NB = "textual_inversion/nb_textual_inversion.ipynb"
TI = "textual_inversion/textual_inversion.py"
IT = "textual_inversion/inference_textual_inversion.py"
LOG = "classifier/log_resnet_pretrained.txt (commit 87010db)"

SETTINGS: tuple[Setting, ...] = (
    # --- data and split
    Setting("data", "frames", "the data set's pre-extracted `image_dataset` folder (1880/495/444 train/val/test "
            "frames in its logs)", f"{CD}:110; {LOG}", ("data.sample_hz", "data.max_frames_per_video"), same=False,
            why="the original study's frame folder is not in its repository; we extract frames from the videos at "
                "POCOVID's published rate (3 Hz, at most 30 per video)"),
    Setting("data", "split unit", "videos (`seq_name`), shuffled per class with unseeded numpy", f"{CD}:38-72",
            (), same=False, ours="patients (`dataset_metadata.csv`), seeded (`data.split_seed`)",
            why="a patient's videos are near duplicates: a video split puts one patient in train and test "
                "(leakage)"),
    Setting("data", "small-class rule", "a class with <= 3 videos: 1 to train, 1 to val, the rest to test",
            f"{CD}:58-63", ("data.few_patients",), original_value=4,
            why="counted in patients, not videos (fewer than 4 patients is <= 3)"),
    Setting("data", "split fractions", "train int(0.7 n), val int(0.15 n), the rest test", f"{CD}:66-71, 100",
            ("data.val_fraction", "data.test_fraction"), same=True),
    Setting("data", "protocol", "one hold-out split", f"{CD}:100", ("data.protocol",), original_value="holdout",
            why="one split leaves one minority training patient and two test patients: cross-validation tests "
                "every minority patient once and gives paired replicates"),
    # --- classifier
    Setting("classify", "architectures", "torchvision `resnet50` and `vit_b_16`, ImageNet-1k weights "
            "(IMAGENET1K_V1)", f"{MC}:114-124; {LOG}", ("grid.archs",), same=True,
            why="timm names: `resnet50.tv_in1k` is torchvision's IMAGENET1K_V1; timm has no torchvision ViT-B/16, "
                "`augreg_in1k` is its ImageNet-1k-only ViT-B/16"),
    Setting("classify", "pretrained", "yes (runs named `pretrained_True`)", f"{MC}:186; {LOG}",
            ("train.pretrained",), original_value=True),
    Setting("classify", "input size", "224 x 224, plain resize (aspect not kept)", f"{MC}:70, 76",
            ("train.image_size",), original_value=224),
    Setting("classify", "normalisation", "ImageNet mean and std", f"{MC}:71, 78", (), same=True,
            ours="the weights' own mean and std (timm `pretrained_cfg`: ImageNet for `resnet50.tv_in1k`, 0.5 / 0.5 "
                 "for the AugReg ViT)",
            why="each set of weights gets the normalisation it was trained with, as in the seed"),
    Setting("classify", "channel order", "BGR (`cv2.imread`) fed to RGB ImageNet weights", f"{DS}:79; {MC}:75",
            (), same=False, ours="RGB", why="a slip in the seed: the weights expect RGB"),
    Setting("classify", "augmentation", "none", f"{MC}:74-79", (), same=True,
            ours="none in the unaugmented conditions and the original replica; classical augmentation is a condition "
                 "of its own (`+augment`, grid.augment_strategies)"),
    Setting("classify", "batch size", "32", f"{MC}:182", ("train.batch_size",), original_value=32),
    Setting("classify", "epochs", "at most 50", f"{MC}:183", ("train.epochs",), original_value=50),
    Setting("classify", "learning rate", "AdamW, 1e-5 (default 1e-4 until the last commit; runs named `lr_1e-05`)",
            f"{MC}:151, 190; {LOG}", ("train.lr",), original_value=1e-5),
    Setting("classify", "weight decay", "AdamW's default, 0.01", f"{MC}:151", ("train.weight_decay",),
            original_value=0.01),
    Setting("classify", "LR scheduler patience", "ReduceLROnPlateau on validation loss, patience 3", f"{MC}:166",
            ("train.lr_patience",), original_value=3),
    Setting("classify", "LR scheduler factor", "ReduceLROnPlateau's default, 0.1 (log: 1e-5 -> 1e-6 -> 1e-7)",
            f"{MC}:166; {LOG}", ("train.lr_factor",), original_value=0.1),
    Setting("classify", "early stopping", "10 epochs without a lower validation loss", f"{MC}:189; {TR}:113-126",
            ("train.patience",), original_value=10),
    Setting("classify", "checkpoint tested", "the last epoch (newest file; log: best epoch 12, tested epoch 22); "
            "the last commit tests a hard-coded checkpoint of another run", f"{TR}:68, 128, 140; {MC}:173; {LOG}",
            (), same=False, ours="the epoch with the lowest validation loss",
            why="selection on validation is the usual leak-free rule; the original study's last epoch is by construction "
                "`patience` epochs past the best (the `seed_replica` conditions carry it: `checkpoint: last`)"),
    Setting("classify", "class weights (weighted loss)", "total / count from hard-coded counts "
            "[814, 571, 468, 27] listed as regular, covid, pneumonia, viral, while the trainer orders classes "
            "covid, pneumonia, regular, viral", f"{MC}:153-162; {TR}:28", ("grid.strategies",), same=False,
            ours="inverse frequency of the run's real training frames (scikit-learn 'balanced'; same ratios)",
            why="computed from each split, so the weights follow the frames and the class order"),
    Setting("classify", "seeds", "one fixed seed (42) for torch and random; numpy unseeded", f"{MC}:23-25",
            ("grid.seeds",), same=False, why="several seeds measure run-to-run variation"),
    # --- synthetic data in the classifier
    Setting("synthetic", "amount added", "`synthetic_perc` % of the synthetic set, 100 in the final runs "
            "(all ~1000 images, about 37x the 27 real viral training frames)", f"{DS}:18-40; {MC}:173, 204",
            ("grid.synthetic_amounts",), same=False,
            why="amounts in units of the real minority frames compare across folds and give a dose-response; "
                "the original study's ~37x (all of the set) is above the largest amount here; the original study's replica adds all of its "
                "set (`seed_replica_ddpm_seed_3_mixed@1fraction`)"),
    Setting("synthetic", "subsample", "without replacement, unseeded numpy", f"{DS}:25", (), same=False,
            ours="seeded by the run's seed", why="same seed, same numbers"),
    # --- DDPM
    Setting("ddpm", "resolution", "128 px", f"{BT}:6", ("ddpm.image_size",), original_value=128),
    Setting("ddpm", "channels", "3 (RGB) in and out", f"{BT}:68-69", (), same=False,
            ours="1 (grey; the classifier reads it as 3 equal channels)",
            why="ultrasound frames are grey; one channel is the same content at a third of the input"),
    Setting("ddpm", "UNet channels", "(128, 128, 256, 256, 512, 512)", f"{BT}:71", ("ddpm.block_out_channels",),
            original_value=[128, 128, 256, 256, 512, 512]),
    Setting("ddpm", "layers per block", "2", f"{BT}:70", ("ddpm.layers_per_block",), original_value=2),
    Setting("ddpm", "attention", "level 4 (AttnDownBlock2D / AttnUpBlock2D)", f"{BT}:72-87",
            ("ddpm.attention_levels",), original_value=[4]),
    Setting("ddpm", "training frames", "3 mixed viral frames, or the viral training sequence",
            f"{BT}:28-30; {GD}:79-80", ("ddpm_runs.variants",), same=True,
            why="`3_mixed_any_split` is our explicit leakage ablation, not a seed setting"),
    Setting("ddpm", "epochs (3 frames)", "3000", f"{BT}:9, 16", ("ddpm.epochs_3_mixed",), original_value=3000),
    Setting("ddpm", "epochs (training sequence)", "2000 (model `ddpm-viral_uls-128_2000_epochs`)", f"{GD}:80",
            ("ddpm.epochs_train_all",), original_value=2000),
    Setting("ddpm", "batch size", "16", f"{BT}:7", ("ddpm.batch_size",), original_value=16),
    Setting("ddpm", "learning rate", "1e-4, cosine with 500 warm-up steps", f"{BT}:11-12, 98-102",
            ("ddpm.lr", "ddpm.warmup_steps"), same=True),
    Setting("ddpm", "optimiser", "AdamW defaults: betas (0.9, 0.999), weight decay 0.01", f"{BT}:97",
            ("lus_utils.generate.ddpm_training:ADAM_BETAS", "lus_utils.generate.ddpm_training:ADAM_WEIGHT_DECAY"),
            same=True),
    Setting("ddpm", "EMA", "none: the raw weights are saved", f"{BT}:212, 221", ("ddpm.ema_decay",), same=False,
            why="EMA weights give cleaner samples at the same training cost (diffusers' unconditional "
                "training default); no key turns it off"),
    Setting("ddpm", "mixed precision", "fp16", f"{BT}:15", ("runtime.precision",), original_value="fp16",
            why="bf16 has fp32's range (no loss scaling, no overflow) at fp16's speed on current GPUs, and runs on "
                "CPUs with AMX"),
    Setting("ddpm", "augmentation", "random horizontal flip", f"{BT}:46", (), same=True, ours="random horizontal flip"),
    Setting("ddpm", "gradient clipping", "norm 1.0", f"{BT}:199", ("lus_utils.generate.ddpm_training:MAX_GRAD_NORM",),
            original_value=1.0),
    Setting("ddpm", "noise schedule", "DDPMScheduler, 1000 steps, linear betas", f"{BT}:129",
            ("lus_utils.generate.ddpm_training:NUM_TRAIN_TIMESTEPS",), original_value=1000),
    Setting("ddpm", "sampler", "DDPM (the pipeline's own scheduler)", f"{GD}:42", ("ddpm.sampler",),
            original_value="ddpm"),
    Setting("ddpm", "sampling steps", "500", f"{GD}:84", ("ddpm.sampling_steps",), original_value=500),
    Setting("ddpm", "images", "1000 tries, each retried with a new seed", f"{GD}:47-71, 85", ("ddpm.n_samples",),
            original_value=1000),
    Setting("ddpm", "output size", "224 px (Lanczos)", f"{GD}:63, 87", ("train.image_size",), original_value=224,
            why="written at the classifier's input size (the runner sets ddpm.output_size from it)"),
    # --- quality gate
    Setting("gate", "rule", "fixed thresholds on std and entropy", f"{GD}:54-62", ("audit.gate",),
            original_value="seed",
            why="the original study's fixed thresholds reject most real viral frames (benchmarks/original_gate_check.py); "
                "real_range keeps images whose statistics lie in the fold's real training frames' range"),
    Setting("gate", "thresholds", "std > 30 and entropy > 4.7", f"{GD}:88-89, 62",
            ("audit.min_std", "audit.min_entropy"), same=True, why="used when audit.gate is seed"),
    Setting("gate", "computed on", "the 128-px RGB uint8 sample (all channels flattened) before resizing: "
            "`np.std`, and `scipy.stats.entropy` (nats) of a 256-bin histogram over [0, 256)", f"{GD}:12-18, 59-61",
            (), same=True, ours="the generated pixels before resizing (128 px for the DDPM), as grey luma "
                                "(`images.intensity_stats`)",
            why="the DDPM samples are grey, where grey and the original study's RGB statistics are equal; on real (partly "
                "coloured) frames they differ, see benchmarks/original_gate_check.py"),
    Setting("gate", "rejected images", "while std and entropy both fail, retry with seed + 1000 x attempt; an "
            "image failing only one of them ends the loop with nothing saved", f"{GD}:54-71", (), same=False,
            ours="every image written, kept and rejected alike; only kept ones are added; a shortfall is recorded",
            why="the gate's effect stays visible and the set does not depend on a retry loop (the original study's replica's "
                "generator runs the loop, below)"),
    # --- the original study's replica (grid.seed_replica): the original study's recipe, run as it was
    Setting("seed_replica", "split", "by video, the small-class rule and int(0.7 n) / int(0.15 n) shares",
            f"{CD}:38-72", (), same=True, ours="the same rule by video, seeded per repeat (`seed_video_r<repeat>` "
                                               "in frames.csv; patients may straddle parts)"),
    Setting("seed_replica", "generator frames", "a hand-picked folder of 3 viral frames, made apart from the "
            "classifier's split", f"{BT}:28-30", (), same=True,
            ours="three frames of three viral videos whatever their split (`seed_3_mixed`, marked leaky)"),
    Setting("seed_replica", "sampling steps", "DDPM, 500 steps", f"{GD}:42, 84", ("seed_replica.ddpm.sampling_steps",),
            original_value=500),
    Setting("seed_replica", "tries", "1000", f"{GD}:85", ("seed_replica.ddpm.n_samples",), original_value=1000),
    Setting("seed_replica", "gate", "std > 30 and entropy > 4.7", f"{GD}:88-89, 62",
            ("seed_replica.audit.min_std", "seed_replica.audit.min_entropy"), same=True),
    Setting("seed_replica", "redraw loop", "unbounded while both criteria fail, seed + 1000 x attempt",
            f"{GD}:54-71", ("seed_replica.ddpm.gate_retries",), same=False,
            why="a bound ends the loop on a generator whose images never pass; within it, the original study's seeds"),
    Setting("seed_replica", "classifier", "the original study's optimiser, split, last epoch; no synthetic images vs all of "
            "them (its tested synthetic checkpoint is named `pretrained_False`)", f"{MC}:173, 186-204",
            ("train.lr", "train.pretrained"), same=True,
            ours="the profile's train section (in full, the original study's optimiser with ImageNet weights) for both",
            why="both seed-replica conditions share one setup, so their difference is the synthetic set's"),
    # --- textual inversion
    Setting("textual_inversion", "base model", "runwayml/stable-diffusion-v1-5", f"{NB} cell 3",
            ("textual_inversion_runs.base_models",), same=True,
            why="the same weights under their current hub id; `domain` (our own base model) is added"),
    Setting("textual_inversion", "placeholder token", "<viral-pneumonia-ultrasound>", f"{NB} cell 3",
            ("textual_inversion.placeholder_token",), original_value="<viral-pneumonia-ultrasound>"),
    Setting("textual_inversion", "initializer token", "ultrasound", f"{NB} cell 3",
            ("textual_inversion.initializer_token",), original_value="ultrasound"),
    Setting("textual_inversion", "learnable property", "object (style tried once)", f"{NB} cells 3, 8",
            ("textual_inversion.learnable_property",), original_value="object"),
    Setting("textual_inversion", "training frames", "3 or 6 mixed viral frames, or the training sequence",
            f"{NB} cells 3, 5, 8", ("textual_inversion.train_frames",), same=True),
    Setting("textual_inversion", "resolution", "512 (SD v1.5's native size)", f"{NB} cell 3",
            ("textual_inversion.resolution",), same=True, why="0 means the base model's native size"),
    Setting("textual_inversion", "batch", "1 image x 4 accumulated steps", f"{NB} cell 3",
            ("textual_inversion.batch_size", "textual_inversion.gradient_accumulation"), same=True),
    Setting("textual_inversion", "steps", "3000", f"{NB} cell 3", ("textual_inversion.steps",), original_value=3000),
    Setting("textual_inversion", "learning rate", "5e-4 with `--scale_lr` (x 4 x 1 x 1 = 2e-3), constant",
            f"{NB} cell 3; {TI}:702-705", ("textual_inversion.lr",), original_value=0.002),
    Setting("textual_inversion", "precision", "fp32 training (accelerate's default config); fp16 sampling",
            f"{NB} cell 1; {TI}:332; {IT}:25", ("runtime.precision",), same=False,
            why="one key sets both; on a GPU the frozen weights are half precision (bf16 in full), which halves "
                "memory and time, and the learned embedding stays fp32"),
    Setting("textual_inversion", "sampler", "SD v1.5's own (PNDM), 50 steps, guidance 7.5", f"{IT}:25-28",
            ("textual_inversion.sampler", "textual_inversion.sampling_steps", "textual_inversion.guidance_scale"),
            same=True),
    Setting("textual_inversion", "prompt", "A <token> ultrasound image", f"{IT}:36",
            ("textual_inversion.prompt",), original_value="A {} ultrasound image"),
    Setting("textual_inversion", "images", "10 samples looked at; none used to train a classifier",
            f"{IT}:70-78; {MC}:197-202", ("textual_inversion.n_txt2img", "textual_inversion.n_img2img"),
            same=False, why="we test textual inversion as a synthetic source, which the original study did not"),
)


def key_value(profile: Profile, key: str) -> Any:
    """The value of a profile key (`section.field`) or a code constant (`module:NAME`)."""
    if ":" in key:
        module, name = key.split(":", 1)
        return getattr(importlib.import_module(module), name)
    section, name, *inner = key.split(".")
    value = getattr(profile.sections[section], name)
    for part in inner:  # a key inside a mapping (the original replica's overlay: seed_replica.ddpm.sampler)
        value = value[part]
    return value


def full_matches(setting: Setting, full: Profile) -> bool:
    if setting.original_value is not _UNSET:
        (key,) = setting.keys
        value = key_value(full, key)
        return list(value) == list(setting.original_value) if isinstance(value, (list, tuple)) else value == setting.original_value
    if setting.same is None:
        raise ValueError(f"setting '{setting.name}' needs original_value or same")
    return setting.same


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _values(setting: Setting, profile: Profile) -> str:
    if not setting.keys:
        return f"{setting.ours} (code)"
    parts = []
    for key in setting.keys:
        name = f"`{key.split(':')[1]}`" if ":" in key else f"`{key}`"
        suffix = " (code)" if ":" in key else ""
        parts.append(f"{name} = `{key_value(profile, key)!r}`{suffix}")
    return "; ".join(parts)


def render(profiles: dict[str, Profile] | None = None) -> str:
    profiles = profiles or {name: load_profile(name) for name in PROFILES}
    full = profiles["full"]
    lines = [
        "# Fidelity to the original study",
        "",
        f"Generated by `python -m lus_utils.fidelity` from `lus_utils/fidelity.py` and `params/{{full,quick}}.yaml`;",
        "do not edit by hand (a test checks this page is what the command renders).",
        f"Original study: [{ORIGINAL_REPO}](https://github.com/{ORIGINAL_REPO}) at commit `{ORIGINAL_COMMIT[:7]}`; sources are",
        "file:line there. A row marked `=` is one where `full` does what the original study did.",
        "",
        "| stage | setting | seed (source) | full | quick | why we differ |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for s in SETTINGS:
        mark = "=" if full_matches(s, full) else "differs"
        why = s.why if s.why else ""
        lines.append("| " + " | ".join(_cell(c) for c in (
            s.stage, s.name, f"{s.original} ({s.source})", f"{mark}: {_values(s, full)}",
            _values(s, profiles["quick"]), why)) + " |")
    n_diff = sum(not full_matches(s, full) for s in SETTINGS)
    lines += ["", f"{len(SETTINGS)} settings; `full` differs from the original study in {n_diff}, each with its reason."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lus_utils.fidelity", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DOC_PATH, help=f"page to write (default {DOC_PATH})")
    args = parser.parse_args(argv)
    write_text_atomic(args.out, render())
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
