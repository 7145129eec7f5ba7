"""Generating with a learned token: text-to-image, and image-to-image from real training frames.

- text-to-image with the learned token (DPM-Solver++ by default);
- image-to-image from the real minority training frames at `strength` (DA-Fusion, Trabucco et al. 2023),
  with a `StableDiffusionImg2ImgPipeline` built from the same components. Its sources are training
  frames too, and are listed as such in the provenance (`textual_inversion_set`).
Image i is seeded with seed + i, whatever the batch it is made in.
"""
from __future__ import annotations

import time
from contextlib import nullcontext
from typing import Any

import numpy as np
import pandas as pd
import torch
from diffusers import (DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, PNDMScheduler,
                       StableDiffusionImg2ImgPipeline)

from lus_utils.images import load_image, load_images, resize, to_grey
from lus_utils.config.generate import TextualInversionParams


def autocast(device: torch.device, dtype: torch.dtype):
    """fp16 autocast on a GPU (text encoder fp32, UNet/VAE fp16, as the diffusers example samples)."""
    return torch.autocast("cuda", dtype=dtype) if device.type == "cuda" and dtype != torch.float32 else nullcontext()


def set_sampler(pipe: Any, sampler: str) -> Any:
    """Swap the pipeline's scheduler for the sampler, built from the training schedule (`from_config`)."""
    classes = {"dpmsolver": DPMSolverMultistepScheduler, "ddim": DDIMScheduler, "euler": EulerDiscreteScheduler,
               "pndm": PNDMScheduler}
    if sampler not in classes:
        raise ValueError(f"sampler '{sampler}' unknown; allowed: {sorted(classes)}")
    # SD v1.5 ships PNDM with skip_prk_steps (its scheduler_config.json); a pipeline built here with a DDPM
    # schedule lacks the key, and PNDM's Runge-Kutta warm-up would then need at least 4 steps.
    extra = {"skip_prk_steps": True} if sampler == "pndm" else {}
    pipe.scheduler = classes[sampler].from_config(pipe.scheduler.config, **extra)
    return pipe


def _to_uint8(images: np.ndarray, output_size: int) -> list[np.ndarray]:
    """Pipeline outputs (floats in [0, 1]) as grey uint8 images of `output_size` px.

    Ultrasound frames are grey: the RGB output is turned to luma like any coloured frame would be, so
    colour noise of a small model's three channels never reaches the classifier or the gate.
    """
    return [resize(to_grey(np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)), output_size)
            for image in images]


def _generators(seed: int, indices: range) -> list[torch.Generator]:
    """One generator per image (seed + index): image i is the same whatever the batch size."""
    return [torch.Generator(device="cpu").manual_seed(seed + i) for i in indices]


def txt2img(pipe: Any, prompt: str, n: int, params: TextualInversionParams, seed: int, device: torch.device,
            dtype: torch.dtype, output_size: int | None = None) -> list[np.ndarray]:
    """`n` text-to-image samples of `prompt` (grey uint8), image i seeded with seed + i."""
    images: list[np.ndarray] = []
    for start in range(0, n, params.sample_batch_size):
        batch = range(start, min(n, start + params.sample_batch_size))
        with torch.no_grad(), autocast(device, dtype):
            out = pipe([prompt] * len(batch), num_inference_steps=params.sampling_steps,
                       guidance_scale=params.guidance_scale, generator=_generators(seed, batch),
                       output_type="np").images
        images += _to_uint8(out, output_size or out.shape[1])
    return images


def img2img(pipe: Any, prompt: str, sources: pd.DataFrame, n: int, params: TextualInversionParams, seed: int,
            device: torch.device, dtype: torch.dtype, output_size: int | None = None) -> tuple[list[np.ndarray], list[str]]:
    """`n` image-to-image samples, the sources (real training frames) taken in turn; returns images and sources."""
    editor = StableDiffusionImg2ImgPipeline(**{**pipe.components, "safety_checker": None},
                                            requires_safety_checker=False)
    editor.set_progress_bar_config(disable=True)
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    paths = [sources["abspath"].iloc[i % len(sources)] for i in range(n)]
    images: list[np.ndarray] = []
    for start in range(0, n, params.sample_batch_size):
        batch = range(start, min(n, start + params.sample_batch_size))
        init = torch.from_numpy(load_images([paths[i] for i in batch], size)).permute(0, 3, 1, 2)
        with torch.no_grad(), autocast(device, dtype):
            out = editor([prompt] * len(batch), image=init.float() / 255.0, strength=params.strength,
                         num_inference_steps=params.sampling_steps, guidance_scale=params.guidance_scale,
                         generator=_generators(seed, batch), output_type="np").images
        images += _to_uint8(out, output_size or out.shape[1])
    return images, [sources["path"].iloc[i % len(sources)] for i in range(n)]


def generate(pipe: Any, mode: str, train_frames: pd.DataFrame, params: TextualInversionParams,
             device: torch.device) -> tuple[list[np.ndarray], list[str], float]:
    """Images of one mode (txt2img or img2img) with the learned token, and their sources, and seconds taken."""
    set_sampler(pipe, params.sampler)
    prompt = params.prompt.format(params.placeholder_token)
    dtype = pipe.unet.dtype
    if device.type == "cuda" and dtype != torch.float32:
        pipe.text_encoder.to(dtype=dtype)
    start = time.perf_counter()
    if mode == "txt2img":
        images = txt2img(pipe, prompt, params.n_txt2img, params, params.seed, device, dtype, params.output_size)
        sources: list[str] = []
    else:
        images, sources = img2img(pipe, prompt, train_frames, params.n_img2img, params, params.seed + 100_000,
                                  device, dtype, params.output_size)
    return images, sources, time.perf_counter() - start


def source_images(frames: pd.DataFrame, paths: list[str], size: int) -> list[np.ndarray]:
    """The real frames (by frames.csv `path`) the img2img images started from, at `size` px."""
    abspath = dict(zip(frames["path"], frames["abspath"]))
    return [load_image(abspath[p], size=size) for p in paths]
