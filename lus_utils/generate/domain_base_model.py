"""The study's own small text-conditional base model: a Stable-Diffusion pipeline trained on our frames.

Textual inversion needs a text-conditional diffusion model that already knows the domain. Without
internet (or a GPU for Stable Diffusion v1.5) the study trains one itself, small enough for a CPU:
a tiny `AutoencoderKL` (trained briefly as an autoencoder on the frames, its latent scale set from the
data as Stable Diffusion's was), a tiny CLIP text encoder over CLIP's real tokenizer, and a small
`UNet2DConditionModel`, trained together (text encoder and UNet) on captions built from each frame's
label and findings. The result is an ordinary `StableDiffusionPipeline`, so the same textual-inversion
code runs on it, on the tiny test pipeline and on Stable Diffusion v1.5.

It learns from the NON-minority training frames only: it never sees a viral frame, so whatever it
knows about viral pneumonia afterwards comes from textual inversion on the minority training frames.
Captions drop to "" with a small probability so classifier-free guidance works.

Trained models are cached by their inputs (settings, training frame paths, this code) under
`<out>/generators/domain_base_model/<key>/`; a second call with the same inputs loads the cache.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from tqdm.auto import tqdm
from transformers import CLIPTextModel

from lus_utils.generate import tiny_sd
from lus_utils.images import load_images
from lus_utils.config.generate import DomainBaseModelParams
from lus_utils.paths import OutLayout
from lus_utils.provenance import (atomic_dir, code_hash, fingerprint_files, provenance, stable_hash, write_csv_atomic,
                                  write_json_atomic)
from lus_utils.reproducibility import seed_everything
from lus_utils.vocabulary import VIRAL as MINORITY_CLASS

LABEL_PHRASES = {"covid": "covid-19 pneumonia", "pneumonia": "bacterial pneumonia", "regular": "a healthy lung",
                 "viral": "viral pneumonia"}
FINDINGS = (("b_lines", "B-lines"), ("consolidations", "consolidations"), ("pleural_irregularities",
            "pleural irregularities"), ("effusion", "pleural effusion"), ("a_lines", "A-lines"))
POSITIVE = {"1", "1.0", "true", "yes"}
VAE_KL_WEIGHT = 1e-6  # small KL term: a near-deterministic autoencoder whose latents stay well scaled


def _code_version() -> str:
    """Hash of the code that decides what the model is (this file and the pipeline builder), by what it means:
    a comment or docstring edit keeps the cached model."""
    return fingerprint_files([Path(__file__), Path(tiny_sd.__file__)], file_hash=code_hash)


def caption(row: Any) -> str:
    """'a convex lung ultrasound frame of covid-19 pneumonia with B-lines and pleural irregularities'."""
    label = str(row["label"])
    if label not in LABEL_PHRASES:
        raise ValueError(f"no caption phrase for label '{label}'; known: {sorted(LABEL_PHRASES)}")
    probe = str(row.get("probe", "")).strip()
    text = f"a {probe + ' ' if probe else ''}lung ultrasound frame of {LABEL_PHRASES[label]}"
    found = [name for column, name in FINDINGS if str(row.get(column, "")).strip().lower() in POSITIVE]
    if found:
        text += " with " + (found[0] if len(found) == 1 else ", ".join(found[:-1]) + " and " + found[-1])
    return text


def training_frames(frames: pd.DataFrame, split_column: str, minority: str = MINORITY_CLASS) -> pd.DataFrame:
    """The frames the domain model learns from: training split, every class but the minority."""
    if split_column not in frames.columns:
        raise KeyError(f"frames have no column '{split_column}' (folds in frames.csv: "
                       f"{[c for c in frames.columns if c.startswith('split')]})")
    chosen = frames[(frames[split_column] == "train") & (frames["label"] != minority)]
    if chosen.empty:
        raise ValueError(f"no non-{minority} training frames in '{split_column}' to train the domain base model")
    return chosen.sort_values("path").reset_index(drop=True)


def settings(domain: DomainBaseModelParams, seed: int, threads: int) -> dict[str, Any]:
    """The knobs of the domain model (section domain_base_model), its seed and threads (they make the cache key)."""
    return {"seed": seed, "resolution": domain.domain_resolution, "width": domain.domain_width,
            "vae_steps": domain.domain_vae_steps, "steps": domain.domain_steps,
            "batch_size": domain.domain_batch_size, "lr": domain.domain_lr,
            "caption_dropout": domain.domain_caption_dropout, "num_threads": threads}


def architecture(width: int, resolution: int) -> dict[str, Any]:
    """VAE downsampling by 4; UNet of three levels (cross-attention in the lower two); text width 2*width."""
    if resolution % 16:
        raise ValueError(f"domain_resolution must be a multiple of 16, got {resolution}")
    text_width = 2 * width
    return {"vae": tiny_sd.vae_config((max(8, width // 2), width, 2 * width)),
            "unet": tiny_sd.unet_config(resolution // 4, (width, 2 * width, 4 * width), text_width,
                                        head_dim=min(32, text_width)),
            "text": dict(hidden_size=text_width, layers=2, heads=max(1, text_width // 32))}


def load_frames_tensor(paths: list[str], resolution: int) -> torch.Tensor:
    """Frames as an (N, 3, r, r) float tensor in [-1, 1], the range Stable Diffusion's VAE expects."""
    return torch.from_numpy(load_images(paths, resolution)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def _batches(n: int, batch_size: int, steps: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Indices for `steps` batches: seeded reshuffles of all items (epochs), never a partial batch mix-up."""
    order: list[int] = []
    while len(order) < steps * batch_size:
        order += torch.randperm(n, generator=generator).tolist()
    return [torch.tensor(order[i * batch_size:(i + 1) * batch_size]) for i in range(steps)]


def _flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def train_vae(images: torch.Tensor, config: dict, knobs: dict, generator: torch.Generator):
    """A tiny AutoencoderKL fitted by reconstruction (plus a tiny KL) on random half-size crops of the frames;
    its latent scale is then set to 1 / std of the full frames' latents, as Stable Diffusion's was."""
    vae = AutoencoderKL(**config)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=knobs["lr"], weight_decay=0.0)
    losses = []
    vae.train()
    crop = images.shape[-1] // 2
    for index in tqdm(_batches(len(images), knobs["batch_size"], knobs["vae_steps"], generator),
                      desc="domain VAE", unit="step"):
        # Random half-size crops: the autoencoder is convolutional, and crops cost a quarter of the compute.
        top, left = torch.randint(0, images.shape[-1] - crop + 1, (2,), generator=generator).tolist()
        x = _flip(images[index, :, top:top + crop, left:left + crop], generator)
        posterior = vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=generator)
        loss = F.mse_loss(vae.decode(z).sample, x) + VAE_KL_WEIGHT * posterior.kl().mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
    vae.eval()
    vae.requires_grad_(False)
    with torch.no_grad():
        latents = torch.cat([vae.encode(images[i:i + 64]).latent_dist.mean for i in range(0, len(images), 64)])
    vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
    return vae, losses


def train_denoiser(latent_mean: torch.Tensor, latent_std: torch.Tensor, captions: list[str], tokenizer,
                   arch: dict, knobs: dict, generator: torch.Generator):
    """Text encoder and UNet trained together on noise prediction, as Stable Diffusion was trained."""
    text_encoder = CLIPTextModel(tiny_sd.text_encoder_config(**arch["text"]))
    unet = UNet2DConditionModel(**arch["unet"])
    scheduler = DDPMScheduler(**tiny_sd.scheduler_config())
    ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    empty = tokenizer([""], padding="max_length", max_length=tokenizer.model_max_length,
                      return_tensors="pt").input_ids
    parameters = list(unet.parameters()) + list(text_encoder.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=knobs["lr"], weight_decay=0.0)
    losses = []
    unet.train()
    text_encoder.train()
    for index in tqdm(_batches(len(ids), knobs["batch_size"], knobs["steps"], generator),
                      desc="domain UNet", unit="step"):
        mean, std = latent_mean[index], latent_std[index]
        latents = mean + std * torch.randn(mean.shape, generator=generator)
        drop = torch.rand(len(index), generator=generator) < knobs["caption_dropout"]
        batch_ids = torch.where(drop[:, None], empty.expand(len(index), -1), ids[index])
        noise = torch.randn(latents.shape, generator=generator)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (len(index),), generator=generator)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        prediction = unet(noisy, timesteps, text_encoder(batch_ids)[0]).sample
        loss = F.mse_loss(prediction, noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
    for model in (unet, text_encoder):
        model.eval()
        model.requires_grad_(False)
    return unet, text_encoder, losses


def train(frames: pd.DataFrame, knobs: dict, tokenizer_dir: Path | None = None):
    """Train the whole pipeline on `frames` (already the non-minority training frames)."""
    if (frames["label"] == MINORITY_CLASS).any():
        raise ValueError(f"the domain base model must never see {MINORITY_CLASS} frames")
    seed_everything(knobs["seed"], knobs["num_threads"])
    generator = torch.Generator().manual_seed(knobs["seed"])
    arch = architecture(knobs["width"], knobs["resolution"])
    images = load_frames_tensor(list(frames["abspath"]), knobs["resolution"])
    vae, vae_losses = train_vae(images, arch["vae"], knobs, generator)
    with torch.no_grad():
        # Latent distributions of each frame and its mirror image: the denoiser samples from them.
        both = torch.cat([images, images.flip(-1)])
        dists = [vae.encode(both[i:i + 64]).latent_dist for i in range(0, len(both), 64)]
        scale = vae.config.scaling_factor
        latent_mean = torch.cat([d.mean for d in dists]) * scale
        latent_std = torch.cat([d.std for d in dists]) * scale
    captions = [caption(row) for _, row in frames.iterrows()]
    tokenizer = tiny_sd.clip_tokenizer(tokenizer_dir)
    unet, text_encoder, unet_losses = train_denoiser(latent_mean, latent_std, captions * 2, tokenizer, arch,
                                                     knobs, generator)
    pipe = tiny_sd.build_pipeline(unet, vae, text_encoder, tokenizer)
    return pipe, {"vae_loss": vae_losses, "unet_loss": unet_losses, "captions": captions}


def model_dir(out_dir: Path, key: str) -> Path:
    return OutLayout(Path(out_dir)).generators / "domain_base_model" / key


def load_or_train(frames: pd.DataFrame, split_column: str, domain: DomainBaseModelParams, seed: int, threads: int,
                  out_dir: Path, tokenizer_dir: Path | None = None) -> tuple[Any, dict[str, Any]]:
    """The domain base model for this split: loaded from its cache folder, or trained and saved there.

    Returns the pipeline and an info dict (folder, key, cached, training_frames, captions file).
    """
    chosen = training_frames(frames, split_column)
    knobs = settings(domain, seed, threads)
    paths = list(chosen["path"])
    key = stable_hash({"settings": knobs, "training_frames": paths, "code": _code_version()})
    folder = model_dir(out_dir, key)
    info = {"folder": str(folder), "key": key, "split_column": split_column, "training_frames": paths,
            "n_frames": len(paths), "frames_per_class": chosen["label"].value_counts().sort_index().to_dict()}
    if (folder / "provenance.json").is_file():
        pipe = StableDiffusionPipeline.from_pretrained(folder, local_files_only=True, safety_checker=None,
                                                       requires_safety_checker=False, low_cpu_mem_usage=False)
        pipe.set_progress_bar_config(disable=True)
        return pipe, {**info, "cached": True}
    pipe, history = train(chosen, knobs, tokenizer_dir)
    with atomic_dir(folder) as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
        write_csv_atomic(tmp / "captions.csv", pd.DataFrame({"path": paths, "label": chosen["label"],
                                                             "caption": history["captions"]}))
        write_csv_atomic(tmp / "losses.csv", pd.DataFrame(
            [{"stage": "vae", "step": i + 1, "loss": v} for i, v in enumerate(history["vae_loss"])]
            + [{"stage": "unet", "step": i + 1, "loss": v} for i, v in enumerate(history["unet_loss"])]))
        write_json_atomic(tmp / "provenance.json", provenance(
            knobs, training_frames=paths, split_column=split_column, code=_code_version(),
            architecture=architecture(knobs["width"], knobs["resolution"]),
            frames_per_class=info["frames_per_class"], excluded_class=MINORITY_CLASS))
    return pipe, {**info, "cached": False}
