"""A rehearsal of a profile (`--profile full+rehearsal`, or `--rehearse`): the overlay `params/rehearsal.yaml`
cuts every loop to one or two steps and keeps every model and image shape; here, hub base models of textual
inversion are replaced by a Stable-Diffusion-v1.5-sized pipeline with random weights, written once into the
output folder (and named relative to it, so a moved rehearsal stays cached), since nothing may be downloaded.
It proves the wiring, memory and dtypes of the profile's code path without its cost; its numbers mean nothing.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from lus_utils.config.profiles import Profile
from lus_utils.provenance import atomic_dir

OVERLAY = "rehearsal"  # params/rehearsal.yaml
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


def is_rehearsal(profile: Profile) -> bool:
    return any(Path(f).stem == OVERLAY for f in profile.files)


def with_sd_sized_base(profile: Profile) -> Profile:
    """A rehearsal's hub base models replaced by the SD-v1.5-sized random pipeline (see `write_sd_sized_base`),
    named by its folder relative to the output folder; tiny, domain and local folders kept."""
    runs = profile.textual_inversion_runs
    bases = [b if b in ("tiny", "domain", SD_FOLDER) or Path(b).exists() else SD_FOLDER for b in runs.base_models]
    sections = {**profile.sections, "textual_inversion_runs": dataclasses.replace(
        runs, base_models=list(dict.fromkeys(bases)))}
    return dataclasses.replace(profile, sections=sections)


def needs_sd_sized_base(profile: Profile, stages: list[str] | None = None) -> bool:
    """Whether notebook 04 will run with the SD-sized stand-in (so it must be written first)."""
    return "04" in (stages or profile.study.stages) and SD_FOLDER in profile.textual_inversion_runs.base_models


def sd_sized_pipeline(seed: int = 0):
    """A `StableDiffusionPipeline` with Stable Diffusion v1.5's shapes and random weights (CLIP's real
    tokenizer), built from configs: nothing is downloaded."""
    # Lazy: the runner imports this module to plan; torch, diffusers and transformers load only when the
    # rehearsal writes its SD-sized base model.
    import torch  # lazy: only --rehearse builds the SD-sized stand-in (torch, diffusers, transformers)
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
