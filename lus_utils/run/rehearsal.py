"""A rehearsal of a profile: every model and image shape kept, every loop cut to one or two steps.

`python run_all.py --profile full --rehearse` runs the study with `rehearse(profile)`: the same
architectures, image sizes, UNet widths and base-model sizes as the profile, but one epoch, one seed, one
amount, one strategy with each synthetic set (every strategy still runs without one), one or two optimiser
and denoising steps and a few images, and random weights instead of
downloaded ones (ImageNet weights off; a Stable-Diffusion-v1.5-sized pipeline built from its published
architecture with random weights, written once into the output folder, stands in for a hub base model).
One hold-out split stands for the folds. It proves the wiring, memory and dtypes of the profile's code path
without its cost; its numbers mean nothing. Rehearsal outputs go to their own folder (`outputs/<profile>-rehearsal`).
"""
from __future__ import annotations

import copy
import dataclasses
import os
from pathlib import Path

from lus_utils import params as P
from lus_utils.provenance import atomic_dir

SD_FOLDER = "rehearsal_sd_v1_5_random"  # inside the output folder
# Stable Diffusion v1.5's architecture (its model_index components' configs); the weights here are random.
SD15_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280, 1280),
                 down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                   "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                 cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32)
SD15_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                layers_per_block=2, norm_num_groups=32, sample_size=512)
SD15_TEXT = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                 projection_dim=768)

THREADS = min(8, os.cpu_count() or 1)  # the profile's thread count, or this machine's cores when fewer

# Loop lengths of a rehearsal, by section (every other key keeps the profile's value). The fold loop is cut
# too: one hold-out split instead of one fold per minority patient (each generator and classifier runs once;
# the cv protocol's wiring is exercised on every CI run by the smoke profile). Three frames per video leave
# the hold-out's minority training video the three frames a 3-frame generator needs.
CUTS: dict[str, dict] = {
    "data": dict(repeats=1, protocol="holdout", max_frames_per_video=3),
    "explore": dict(n_sample_frames=1, n_intensity_frames=10),
    "train": dict(epochs=1, patience=1, lr_patience=0, pretrained=False, n_boot=20, max_steps_per_epoch=2,
                  num_threads=THREADS),
    "ddpm": dict(epochs_3_mixed=1, epochs_train_all=1, checkpoint_every=1, sample_grids=1, sampling_steps=2,
                 n_samples=4, sample_batch_size=4, num_threads=THREADS),
    # Generators trained for a step make noise, which the gates rightly reject; a rehearsal keeps every image
    # (the real-range gate still runs, with its range widened a thousandfold) so the classifier path runs too.
    "audit": dict(n_holdout_reference=2, n_closest_pairs=2, kid_subset=2, kid_subsets=1, c2st_folds=2,
                  gate_margin=1000.0),
    "textual_inversion": dict(steps=2, checkpoint_every=2, n_checkpoint_images=1, n_txt2img=1, n_img2img=1,
                              sampling_steps=2, sample_batch_size=2, domain_vae_steps=2, domain_steps=2,
                              num_threads=THREADS),
    "seed_replica": dict(sampling_steps=2, n_samples=4, gate_retries=1, min_std=0.0, min_entropy=0.0),
    "compare": dict(n_boot=100, n_example_pairs=1),
}


def rehearsal_name(name: str) -> str:
    return f"{name}-rehearsal"


def _first(values: list) -> list:
    return values[:1]


def rehearse(profile: P.Profile, out_dir: Path) -> P.Profile:
    """`profile` with every loop cut (`CUTS`, one seed, one synthetic amount) and hub base models replaced
    by the SD-v1.5-sized random pipeline in `out_dir` (see `write_sd_sized_base`); shapes unchanged."""
    sections = {name: copy.deepcopy(section) for name, section in profile.sections.items()}
    for name, cuts in CUTS.items():
        values = {**dataclasses.asdict(sections[name]), **cuts}
        sections[name] = P.build(type(sections[name]), values, f"rehearsal of {profile.path} [{name}]")
    grid = sections["grid"]
    sections["grid"] = P.build(P.GridParams, {**dataclasses.asdict(grid), "seeds": _first(grid.seeds),
                                              "synthetic_amounts": _first(grid.synthetic_amounts),
                                              "synthetic_strategies": _first(grid.synthetic_strategies)},
                               f"rehearsal of {profile.path} [grid]")
    runs = sections["textual_inversion_runs"]
    sd_folder = str(Path(out_dir) / SD_FOLDER)
    bases = [b if b in ("tiny", "domain") or Path(b).exists() else sd_folder for b in runs.base_models]
    sections["textual_inversion_runs"] = P.build(
        P.TextualInversionRunsParams, {**dataclasses.asdict(runs), "base_models": list(dict.fromkeys(bases))},
        f"rehearsal of {profile.path} [textual_inversion_runs]")
    return P.Profile(name=rehearsal_name(profile.name), path=profile.path,
                     description=f"Rehearsal of {profile.name} (shapes kept, loops cut): {profile.description}",
                     sections=sections)


def needs_sd_sized_base(profile: P.Profile, out_dir: Path, stages: list[str] | None = None) -> bool:
    """Whether notebook 04 will run with the SD-sized stand-in (so it must be written first)."""
    return ("04" in (stages or profile.study.stages)
            and str(Path(out_dir) / SD_FOLDER) in profile.textual_inversion_runs.base_models)


def sd_sized_pipeline(seed: int = 0):
    """A `StableDiffusionPipeline` with Stable Diffusion v1.5's shapes and random weights (CLIP's real
    tokenizer), built from configs: nothing is downloaded."""
    # Lazy: the runner imports this module to plan; torch, diffusers and transformers load only when the
    # rehearsal writes its SD-sized base model.
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    from lus_utils.generate import tiny_sd

    torch.manual_seed(seed)
    config = tiny_sd.text_encoder_config()
    for key, value in SD15_TEXT.items():
        setattr(config, key, value)
    text_encoder = CLIPTextModel(config)
    vae = AutoencoderKL(**SD15_VAE)
    unet = UNet2DConditionModel(**SD15_UNET)
    return tiny_sd.build_pipeline(unet, vae, text_encoder, tiny_sd.clip_tokenizer())


def write_sd_sized_base(out_dir: Path) -> Path:
    """Write the SD-v1.5-sized random pipeline into `out_dir` once (diffusers layout); return its folder."""
    folder = Path(out_dir) / SD_FOLDER
    if not (folder / "model_index.json").is_file():
        with atomic_dir(folder) as tmp:
            sd_sized_pipeline().save_pretrained(str(tmp))
    return folder
