"""Textual inversion: learn a token for the minority class on a Stable-Diffusion-style model.

Follows diffusers' `examples/textual_inversion/textual_inversion.py` (Gal et al. 2022): a new
placeholder token (`<viral-pneumonia-ultrasound>`, optionally several vectors) is added to the tokenizer,
its embedding row starts as a copy of an initializer token's, and only that row is trained, with the
denoising loss of the frozen UNet on the minority training frames captioned with the usual prompt
templates ("a photo of a {}", ...). Every other embedding row is restored after each step
(`index_no_updates`), so the text encoder, UNet and VAE come out bit-identical. The learned row is
saved as `learned_embeds.safetensors` ({placeholder token: tensor}), the file
`StableDiffusionPipeline.load_textual_inversion` reads.

The base model is `textual_inversion_base_model`'s; generating with the token, `textual_inversion_sampling`;
writing the gated sets, `textual_inversion_set`.
"""
from __future__ import annotations

import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from safetensors.torch import save_file
from tqdm.auto import tqdm

from lus_utils.data import splits
from lus_utils.generate import domain_base_model
from lus_utils.generate.textual_inversion_base_model import loadable_base_model
from lus_utils.generate.textual_inversion_sampling import autocast, set_sampler, txt2img
from lus_utils.images import load_image
from lus_utils.config.generate import TextualInversionParams
from lus_utils.paths import OutLayout
from lus_utils.provenance import atomic_dir, provenance, write_csv_atomic, write_json_atomic
from lus_utils.reproducibility import seed_everything
from lus_utils.vocabulary import VIRAL, SetRef

# Prompt templates of diffusers' textual_inversion example (from the original paper's code).
IMAGENET_TEMPLATES = [
    "a photo of a {}", "a rendering of a {}", "a cropped photo of the {}", "the photo of a {}",
    "a photo of a clean {}", "a photo of a dirty {}", "a dark photo of the {}", "a photo of my {}",
    "a photo of the cool {}", "a close-up photo of a {}", "a bright photo of the {}", "a cropped photo of a {}",
    "a photo of the {}", "a good photo of the {}", "a photo of one {}", "a close-up photo of the {}",
    "a rendition of the {}", "a photo of the clean {}", "a rendition of a {}", "a photo of a nice {}",
    "a good photo of a {}", "a photo of the nice {}", "a photo of the small {}", "a photo of the weird {}",
    "a photo of the large {}", "a photo of a cool {}", "a photo of a small {}",
]
IMAGENET_STYLE_TEMPLATES = [
    "a painting in the style of {}", "a rendering in the style of {}", "a cropped painting in the style of {}",
    "the painting in the style of {}", "a clean painting in the style of {}", "a dirty painting in the style of {}",
    "a dark painting in the style of {}", "a picture in the style of {}", "a cool painting in the style of {}",
    "a close-up painting in the style of {}", "a bright painting in the style of {}",
    "a cropped painting in the style of {}", "a good painting in the style of {}",
    "a close-up painting in the style of {}", "a rendition in the style of {}", "a nice painting in the style of {}",
    "a small painting in the style of {}", "a weird painting in the style of {}", "a large painting in the style of {}",
]
# The study's own templates, worded like the domain base model's captions.
ULTRASOUND_TEMPLATES = [
    "a lung ultrasound frame of {}", "a convex lung ultrasound frame of {}", "a linear lung ultrasound frame of {}",
    "an ultrasound image of {}", "a lung ultrasound of {}", "a frame of {}",
]
TEMPLATES = {"object": IMAGENET_TEMPLATES, "style": IMAGENET_STYLE_TEMPLATES, "ultrasound": ULTRASOUND_TEMPLATES}
MIN_FRAMES = {"3_mixed": 3, "6_mixed": 6, "all": 1}
ADAM_WEIGHT_DECAY = 1e-2  # diffusers example default


class TokenError(ValueError):
    """A placeholder token already known to the tokenizer, or an initializer that is not one token."""


def generator_dir(layout: OutLayout, refs: tuple[SetRef, ...]) -> Path:
    """The token's folder, named for its txt2img set (`ti_txt2img_domain_r0_fold1` -> `textual_inversion_domain_r0_fold1`)."""
    return layout.generators / refs[0].name.replace("ti_txt2img", "textual_inversion", 1)


def select_training_frames(frames: pd.DataFrame, split_column: str, mode: str, seed: int,
                           label: str = VIRAL) -> pd.DataFrame:
    """The minority training frames the token learns from: `3_mixed`/`6_mixed` (spread over distinct
    training videos in a seeded round robin) or `all`. Stops with the counts when there are too few."""
    if mode not in MIN_FRAMES:
        raise ValueError(f"train_frames '{mode}' unknown; allowed: {sorted(MIN_FRAMES)}")
    if split_column not in frames.columns:
        raise KeyError(f"frames have no column '{split_column}' (was frames.csv built with enough folds?)")
    minority = frames[frames["label"] == label]
    needed = MIN_FRAMES[mode]
    pool = splits.minority_training_pool(minority, split_column, needed, f"train_frames={mode}",
                                         "Use another fold or fewer frames (3_mixed).")
    if mode == "all":
        return pool.sort_values("path")
    rng = np.random.default_rng([seed, 4])
    picks = splits.spread_over_videos(pool, needed, rng)
    return frames.loc[picks]


def placeholder_tokens(placeholder: str, num_vectors: int) -> list[str]:
    """`<tok>`, `<tok>_1`, ...: the names `load_textual_inversion` gives a multi-vector embedding."""
    return [placeholder] + [f"{placeholder}_{i}" for i in range(1, num_vectors)]


def add_placeholder_tokens(tokenizer: Any, text_encoder: Any, placeholder: str, initializer: str,
                           num_vectors: int = 1) -> list[int]:
    """Add the placeholder token(s), grow the embedding table, start each new row at the initializer's."""
    tokens = placeholder_tokens(placeholder, num_vectors)
    known = [t for t in tokens if t in tokenizer.get_vocab()]
    if known:
        raise TokenError(f"the tokenizer already contains {known}: pick a placeholder_token that is not a known "
                         "token (e.g. <viral-pneumonia-ultrasound-2>)")
    init_ids = tokenizer.encode(initializer, add_special_tokens=False)
    if len(init_ids) != 1:
        raise TokenError(f"initializer_token '{initializer}' is {len(init_ids)} tokens "
                         f"({tokenizer.convert_ids_to_tokens(init_ids)}); it must be a single token")
    added = tokenizer.add_tokens(tokens)
    if added != num_vectors:
        raise TokenError(f"adding {tokens} to the tokenizer added {added} tokens, expected {num_vectors}")
    ids = tokenizer.convert_tokens_to_ids(tokens)
    text_encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    weight = text_encoder.get_input_embeddings().weight
    with torch.no_grad():
        for token_id in ids:
            weight[token_id] = weight[init_ids[0]].clone()
    return ids


def learned_embeds(text_encoder: Any, token_ids: list[int]) -> torch.Tensor:
    return text_encoder.get_input_embeddings().weight[min(token_ids):max(token_ids) + 1].detach().float().cpu()


def save_learned_embeds(text_encoder: Any, token_ids: list[int], placeholder: str, path: Path) -> Path:
    """`{placeholder: (num_vectors, dim)}` in safetensors, as diffusers' example saves it."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(path).with_name(f".{Path(path).name}.tmp")
    save_file({placeholder: learned_embeds(text_encoder, token_ids).contiguous()}, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, path)
    return Path(path)


def load_learned_embeds(pipe: Any, path: Path, token: str | None = None) -> Any:
    """Load a learned token into a pipeline with diffusers' own loader (`load_textual_inversion`)."""
    pipe.load_textual_inversion(str(path), token=token)
    return pipe


@dataclass
class TrainResult:
    """What a textual-inversion run left in its folder."""

    folder: Path
    placeholder_tokens: list[str]
    token_ids: list[int]
    losses: pd.DataFrame
    checkpoints: list[dict[str, Any]] = field(default_factory=list)  # {step, grid, embeds}: names in folder
    seconds: float = 0.0  # training time, checkpoint grids included
    seconds_per_step: float = 0.0  # optimizer steps only

    @property
    def embeds_path(self) -> Path:
        return self.folder / "learned_embeds.safetensors"

    @property
    def grids(self) -> list[tuple[int, Path]]:
        """(step, sample grid PNG) at every checkpoint, step 0 being the initializer token's embedding."""
        return [(c["step"], self.folder / c["grid"]) for c in self.checkpoints]


def _templates_ids(tokenizer: Any, templates: list[str], token_string: str) -> torch.Tensor:
    return tokenizer([t.format(token_string) for t in templates], padding="max_length", truncation=True,
                     max_length=tokenizer.model_max_length, return_tensors="pt").input_ids


def sample_grid(pipe: Any, prompt: str, n: int, params: TextualInversionParams, seed: int, device: torch.device,
                dtype: torch.dtype) -> np.ndarray:
    """`n` grey images of `prompt` side by side (uint8), with fixed per-image seeds: one checkpoint's view."""
    images = txt2img(pipe, prompt, n, params, seed, device, dtype)
    return np.concatenate(list(images), axis=1)


def freeze_all_but_token(pipe: Any, params: TextualInversionParams) -> tuple[list[int], torch.Tensor, torch.Tensor]:
    """Add the placeholder token(s) and leave only the input-embedding table trainable (models in eval mode:
    no dropout, so the run is deterministic). Returns the token ids, the table as it was, and the rows to keep."""
    token_ids = add_placeholder_tokens(pipe.tokenizer, pipe.text_encoder, params.placeholder_token,
                                       params.initializer_token, params.num_vectors)
    for model in (pipe.vae, pipe.unet, pipe.text_encoder):
        model.requires_grad_(False)
        model.eval()
    embeddings = pipe.text_encoder.get_input_embeddings()
    pipe.text_encoder.to(dtype=torch.float32)
    embeddings.weight.requires_grad_(True)
    original = embeddings.weight.detach().clone()
    keep = torch.ones(len(pipe.tokenizer), dtype=torch.bool, device=original.device)
    keep[min(token_ids):max(token_ids) + 1] = False
    return token_ids, original, keep


def encode_frames(pipe: Any, paths: list[str], size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Latent mean and std of each frame and its mirror image (the VAE is frozen: encoded once, sampled each step)."""
    pixels = domain_base_model.load_frames_tensor(paths, size).to(device, dtype=pipe.vae.dtype)
    with torch.no_grad():
        both = torch.cat([pixels, pixels.flip(-1)])
        dists = [pipe.vae.encode(both[i:i + 8]).latent_dist for i in range(0, len(both), 8)]
        return torch.cat([d.mean for d in dists]).float(), torch.cat([d.std for d in dists]).float()


def denoising_loss(pipe: Any, noise_scheduler: Any, latents: tuple[torch.Tensor, torch.Tensor],
                   template_ids: torch.Tensor, params: TextualInversionParams, rngs: tuple[torch.Generator, random.Random],
                   device: torch.device) -> torch.Tensor:
    """The diffusion loss of one micro-batch: random frames (or mirrors), noise, timesteps and prompt templates."""
    latent_mean, latent_std = latents
    generator, picker = rngs
    weight_dtype = pipe.unet.dtype
    index = torch.randint(0, len(latent_mean), (params.batch_size,), generator=generator)
    clean = latent_mean[index] + latent_std[index] * torch.randn(latent_mean[index].shape, generator=generator).to(device)
    clean = clean * pipe.vae.config.scaling_factor
    noise = torch.randn(clean.shape, generator=generator).to(device)
    timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (params.batch_size,),
                              generator=generator).to(device)
    noisy = noise_scheduler.add_noise(clean, noise, timesteps)
    ids = template_ids[[picker.randrange(len(template_ids)) for _ in range(params.batch_size)]]
    hidden = pipe.text_encoder(ids)[0].to(dtype=weight_dtype)
    with autocast(device, weight_dtype):
        prediction = pipe.unet(noisy.to(weight_dtype), timesteps, hidden).sample
    kind = noise_scheduler.config.prediction_type
    if kind == "epsilon":
        target = noise
    elif kind == "v_prediction":
        target = noise_scheduler.get_velocity(clean, noise, timesteps)
    else:
        raise ValueError(f"unknown prediction type {kind}")
    return F.mse_loss(prediction.float(), target.float()) / params.gradient_accumulation


def save_checkpoint(pipe: Any, token_ids: list[int], params: TextualInversionParams, folder: Path, step: int,
                    device: torch.device) -> dict[str, Any]:
    """A sample grid and the embedding at `step`, in `folder/checkpoints`; returns their names."""
    grid = sample_grid(pipe, params.prompt.format(params.placeholder_token), params.n_checkpoint_images, params,
                       params.seed, device, pipe.unet.dtype)
    names = {"step": step, "grid": f"checkpoints/samples-step-{step:05d}.png",
             "embeds": f"checkpoints/learned_embeds-steps-{step}.safetensors"}
    cv2.imwrite(str(folder / names["grid"]), grid)
    save_learned_embeds(pipe.text_encoder, token_ids, params.placeholder_token, folder / names["embeds"])
    return names


def train_token(pipe: Any, train_frames: pd.DataFrame, params: TextualInversionParams, folder: Path,
                device: torch.device, resolution: int = 0, threads: int = 1) -> TrainResult:
    """Learn the placeholder token on `train_frames`; write embeddings, checkpoint grids and losses to `folder`.

    Only the new embedding row(s) change: the optimizer sees the whole input-embedding table (as in
    the diffusers example), and every other row is copied back from the original after each step.
    """
    seed_everything(params.seed, threads)
    token_ids, original, keep = freeze_all_but_token(pipe, params)
    embeddings = pipe.text_encoder.get_input_embeddings()
    optimizer = torch.optim.AdamW(embeddings.parameters(), lr=params.lr, weight_decay=ADAM_WEIGHT_DECAY)
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    set_sampler(pipe, params.sampler)  # for the checkpoint grids
    size = resolution or params.resolution or pipe.unet.config.sample_size * pipe.vae_scale_factor
    latents = encode_frames(pipe, list(train_frames["abspath"]), size, device)
    tokens = placeholder_tokens(params.placeholder_token, params.num_vectors)
    template_ids = _templates_ids(pipe.tokenizer, TEMPLATES[params.learnable_property], " ".join(tokens)).to(device)
    rngs = (torch.Generator().manual_seed(params.seed), random.Random(params.seed))
    folder = Path(folder)
    (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
    checkpoints = [save_checkpoint(pipe, token_ids, params, folder, 0, device)]
    losses, grid_seconds, start = [], 0.0, time.perf_counter()
    progress = tqdm(range(1, params.steps + 1), desc="textual inversion", unit="step")
    for step in progress:
        step_loss = 0.0
        for _ in range(params.gradient_accumulation):
            loss = denoising_loss(pipe, noise_scheduler, latents, template_ids, params, rngs, device)
            loss.backward()
            step_loss += float(loss.detach())
        optimizer.step()
        optimizer.zero_grad()
        with torch.no_grad():
            embeddings.weight[keep] = original[keep]
        losses.append({"step": step, "loss": step_loss})
        progress.set_postfix(loss=f"{step_loss:.4f}")
        if step % params.checkpoint_every == 0 or step == params.steps:
            tick = time.perf_counter()
            checkpoints.append(save_checkpoint(pipe, token_ids, params, folder, step, device))
            grid_seconds += time.perf_counter() - tick
    seconds = time.perf_counter() - start
    embeddings.weight.requires_grad_(False)
    save_learned_embeds(pipe.text_encoder, token_ids, params.placeholder_token, folder / "learned_embeds.safetensors")
    table = pd.DataFrame(losses)
    write_csv_atomic(folder / "losses.csv", table)
    write_json_atomic(folder / "checkpoints.json", checkpoints)
    return TrainResult(folder, tokens, token_ids, table, checkpoints, seconds, (seconds - grid_seconds) / params.steps)


def train_and_save(pipe: Any, train_frames: pd.DataFrame, params: TextualInversionParams, folder: Path,
                   base_info: dict[str, Any], split_column: str, device: torch.device, threads: int = 1) -> TrainResult:
    """`train_token` into a temporary folder renamed into place, with the run's provenance beside it.

    The folder stands on its own: `base_model_path` (relative to it, or a hub id) loads with
    `StableDiffusionPipeline.from_pretrained`, and `learned_embeds.safetensors` then with `load_textual_inversion`.
    """
    with atomic_dir(folder) as tmp:
        base_path = loadable_base_model(params, base_info, tmp, pipe)  # before the token changes the pipeline
        result = train_token(pipe, train_frames, params, tmp, device, threads=threads)
        write_csv_atomic(tmp / "training_frames.csv", train_frames.drop(columns=["abspath"], errors="ignore"))
        write_json_atomic(tmp / "provenance.json", provenance(
            asdict(params), base_model=params.base_model, base_model_path=base_path,
            learned_embeds=result.embeds_path.name, placeholder_token=params.placeholder_token,
            base_model_info={k: v for k, v in base_info.items() if k != "training_frames"},
            split_column=split_column, training_frames=list(train_frames["path"]),
            base_model_training_frames=base_info["training_frames"], seconds=round(result.seconds, 2),
            seconds_per_step=round(result.seconds_per_step, 4)))
    result.folder = Path(folder)
    return result


def preview(selected: pd.DataFrame, split_column: str, size: int = 96, max_frames: int = 18
            ) -> tuple[list[np.ndarray], list[str]]:
    """Images and titles (video, part) of the first `max_frames` frames, for `plots.image_grid`."""
    shown = selected.head(max_frames)
    images = [load_image(p, size=size) for p in shown["abspath"]]
    return images, [f"{v[:18]} ({part})" for v, part in zip(shown["video_id"], shown[split_column])]
