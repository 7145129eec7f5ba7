"""Sampling a trained DDPM: the samplers, one seed per image, and the original study's redraw loop.

Every random draw of a DDPM generator, in training and in sampling, comes from a generator seeded by
(seed, stream, index) (`seed_for`), so an image can be regenerated alone, whatever the batch it was made
in, and a resumed training ends with the same weights as an uninterrupted one.

A class-conditional UNet (the `class_conditional` variant) is sampled for one class with classifier-free
guidance (Ho & Salimans 2022): eps = eps_u + w (eps_c - eps_u), the unconditional prediction eps_u made with
the null label (the last class embedding) and w the guidance scale; its class names sit beside the saved
pipeline in `class_labels.json`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMPipeline, DDPMScheduler, DPMSolverMultistepScheduler
from tqdm.auto import tqdm

from lus_utils.config.generate import AuditParams, DDPMParams
from lus_utils.generate import realism
from lus_utils.provenance import read_json
from lus_utils.reproducibility import resolve_device, resolve_precision
from lus_utils.synthetic_sets import original_gate

SAMPLERS = ("ddpm", "ddim", "dpmsolver", "dpmsolver_ode")
ORIGINAL_REDRAW_OFFSET = 1000  # the original study's redraw: seed + 1000 x attempt (textual_inversion/generate_dataset_from_ddpm.py:54-71)
# Keys of the random streams of training and sampling, kept in one place so that streams never coincide.
STREAM_BATCH_ORDER, STREAM_STEP, STREAM_SAMPLE, STREAM_GRID, STREAM_CONDITIONAL_STEP = 1, 2, 3, 4, 5
CLASS_LABELS_FILE = "class_labels.json"  # in a class-conditional pipeline's folder: the class of each label index


def seed_for(seed: int, stream: int, index: int) -> int:
    """A 63-bit seed for one draw of one stream: independent of everything that ran before."""
    return int(np.random.SeedSequence([seed, stream, index]).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))


def load_pipeline(pipeline_dir: Path, device: str | torch.device = "cpu"):
    """The saved DDPMPipeline (EMA weights), reloaded with `from_pretrained`."""
    pipeline_dir = Path(pipeline_dir)
    if not (pipeline_dir / "model_index.json").is_file():
        raise FileNotFoundError(f"{pipeline_dir} is not a saved pipeline (no model_index.json): train it first "
                                "(notebook 05 or ddpm_training.train_ddpm)")
    device = resolve_device(device) if isinstance(device, str) else device
    return DDPMPipeline.from_pretrained(pipeline_dir).to(device)


def class_labels(pipeline_dir: Path) -> list[str]:
    """A class-conditional pipeline's classes, label index i = class i (the null label is their count)."""
    path = Path(pipeline_dir) / CLASS_LABELS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{pipeline_dir} holds no {CLASS_LABELS_FILE}: it is not a class-conditional "
                                "pipeline (train it with the class_conditional variant)")
    return list(read_json(path)["classes"])


def class_index(pipeline_dir: Path, label: str) -> int:
    classes = class_labels(pipeline_dir)
    if label not in classes:
        raise ValueError(f"class '{label}' is not one of the pipeline's classes {classes}")
    return classes.index(label)


def make_sampler(pipeline, sampler: str):
    """A scheduler for `sampler` on the pipeline's training noise schedule (`from_config`: betas, 1000 steps,
    epsilon prediction).

    - ddpm: ancestral DDPM, the training scheduler itself (x0 clipped to [-1, 1], the original study's sampler);
    - ddim: deterministic DDIM on trailing timesteps (the first step starts at t = 999, pure noise);
    - dpmsolver: SDE-DPM-Solver++ (2nd order), trailing timesteps, x0 clipped to [-1, 1] (thresholding with
      sample_max_value 1), fresh noise at every step like DDPM;
    - dpmsolver_ode: the deterministic DPM-Solver++ with the same settings (the old default).
    The deterministic solvers follow the probability-flow ODE; a generator trained briefly on few frames
    predicts noise too poorly for it and their samples stay noisy or grey (bench_ddpm measures this).
    """
    config = pipeline.scheduler.config
    if sampler == "ddpm":
        return DDPMScheduler.from_config(config)
    if sampler == "ddim":
        return DDIMScheduler.from_config(config, timestep_spacing="trailing")
    if sampler in ("dpmsolver", "dpmsolver_ode"):
        algorithm = "sde-dpmsolver++" if sampler == "dpmsolver" else "dpmsolver++"
        return DPMSolverMultistepScheduler.from_config(config, algorithm_type=algorithm, solver_order=2,
                                                       thresholding=True, sample_max_value=1.0,
                                                       timestep_spacing="trailing")
    raise ValueError(f"unknown sampler '{sampler}'; known: {', '.join(SAMPLERS)}")


def fails_both_original_criteria(image: np.ndarray, audit: AuditParams) -> bool:
    """The original study's redraw condition: std and entropy both at or below their thresholds (an image failing
    only one of them ended its loop unsaved, so it is written here as rejected, not redrawn)."""
    verdict = original_gate(image, audit.min_std, audit.min_entropy)
    return verdict["std"] <= audit.min_std and verdict["entropy"] <= audit.min_entropy


def sample_set(pipeline, p: DDPMParams, audit: AuditParams, device: str | torch.device = "cpu",
               progress: bool = True, precision: str = "fp32",
               class_label: int | None = None) -> tuple[np.ndarray, list[int], list[int]]:
    """`p.n_samples` images with the profile's sampler (the UNet at `precision`, runtime.sampling_precision),
    their seeds and redraw counts; of class index `class_label` with guidance `p.guidance_scale` for a
    class-conditional pipeline.

    Under the original study's gate with `p.gate_retries`, an image failing both of its criteria is drawn again
    from seed + 1000 x attempt (added up over attempts, as it did) until it does not or the retries are spent;
    the image kept in its slot is the last one drawn."""
    guidance = {"class_label": class_label, "guidance_scale": p.guidance_scale}
    samples, seeds = sample_images(pipeline, p.sampler, p.sampling_steps, p.n_samples, p.sample_batch_size, p.seed,
                                   device, progress=progress, precision=precision, **guidance)
    seeds, attempts = list(seeds), [0] * len(seeds)
    if audit.gate != realism.ORIGINAL_GATE:
        return samples, seeds, attempts
    for attempt in range(1, p.gate_retries + 1):
        redo = [i for i, image in enumerate(samples) if fails_both_original_criteria(image, audit)]
        if not redo:
            break
        new_seeds = [seeds[i] + ORIGINAL_REDRAW_OFFSET * attempt for i in redo]
        images, _ = sample_images(pipeline, p.sampler, p.sampling_steps, len(redo), p.sample_batch_size, new_seeds,
                                  device, progress=progress, precision=precision, **guidance)
        for i, new_seed, image in zip(redo, new_seeds, images, strict=True):
            samples[i], seeds[i], attempts[i] = image, new_seed, attempt
        print(f"the original study's gate, redraw {attempt}: {len(redo)} image(s) failed both criteria and were "
              "drawn again")
    return samples, seeds, attempts


def sample_seeds(seed: int, n: int) -> list[int]:
    """One seed per image: any image can be regenerated alone, whatever the batch size."""
    return [seed_for(seed, STREAM_SAMPLE, i) for i in range(n)]


def null_label(unet) -> int:
    """The unconditional label of a class-conditional UNet: its last class embedding."""
    return int(unet.config.num_class_embeds) - 1


def guided_noise(unet, x: torch.Tensor, t, class_label: int | None, guidance_scale: float = 1.0) -> torch.Tensor:
    """The noise prediction: unconditional for an unconditional UNet (`class_label` None), else classifier-free
    guided, eps_u + w (eps_c - eps_u); w = 1 evaluates the conditional branch alone and w = 0 the
    unconditional one (the other would be multiplied by 0)."""
    if class_label is None:
        return unet(x, t).sample
    if not 0 <= class_label < null_label(unet):
        raise ValueError(f"class index {class_label} outside the UNet's {null_label(unet)} classes")
    labels = torch.full((len(x),), class_label, dtype=torch.long, device=x.device)
    null = torch.full_like(labels, null_label(unet))
    if guidance_scale in (0, 1):
        return unet(x, t, class_labels=labels if guidance_scale == 1 else null).sample
    conditional, unconditional = unet(torch.cat([x, x]), t, class_labels=torch.cat([labels, null])).sample.chunk(2)
    return unconditional + guidance_scale * (conditional - unconditional)


@torch.no_grad()
def sample_images(pipeline, sampler: str, steps: int, n: int, batch_size: int, seed: int | list[int],
                  device: str | torch.device = "cpu", progress: bool = True, precision: str = "fp32",
                  class_label: int | None = None, guidance_scale: float = 1.0) -> tuple[np.ndarray, list[int]]:
    """`n` grey uint8 images (n, H, W) and the seed of each, denoised `batch_size` at a time.

    `seed` is a base seed (per-image seeds derived with `sample_seeds`) or the list of per-image seeds;
    every random draw of an image (start noise, the stochastic samplers' noise) comes from its own
    generator, so an image does not depend on the batch it was made in. `precision` "bf16" runs the UNet
    under bfloat16 autocast (the scheduler's arithmetic stays fp32). A class-conditional UNet makes class
    index `class_label` with `guidance_scale` (`guided_noise`).
    """
    device = resolve_device(device) if isinstance(device, str) else device
    precision = resolve_precision(precision, device)
    seeds = sample_seeds(seed, n) if isinstance(seed, int) else list(seed)
    if len(seeds) != n:
        raise ValueError(f"{len(seeds)} seeds given for {n} images")
    unet = pipeline.unet.to(device).eval()
    shape = (1, unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
    out = []
    for start in tqdm(range(0, n, batch_size), desc=f"sample {sampler} x{steps}", unit="batch",
                      disable=not progress):
        generators = [torch.Generator().manual_seed(s) for s in seeds[start:start + batch_size]]
        scheduler = make_sampler(pipeline, sampler)
        scheduler.set_timesteps(steps)
        x = torch.cat([torch.randn(shape, generator=g) for g in generators]).to(device)
        for t in scheduler.timesteps:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                eps = guided_noise(unet, x, t, class_label, guidance_scale)
            x = _step(scheduler, eps.float(), t, x, generators)
        images = (x / 2 + 0.5).clamp(0, 1).cpu().numpy()[:, 0]
        out.append(np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8))
    return np.concatenate(out), seeds


def _step(scheduler, eps: torch.Tensor, t: torch.Tensor, x: torch.Tensor,
          generators: list[torch.Generator]) -> torch.Tensor:
    """One scheduler step; stochastic steps draw each image's noise from that image's generator."""
    if getattr(scheduler.config, "algorithm_type", "").startswith("sde-"):
        noise = torch.cat([torch.randn((1, *x.shape[1:]), generator=g) for g in generators]).to(x.device)
        return scheduler.step(eps, t, x, variance_noise=noise).prev_sample
    return scheduler.step(eps, t, x, generator=generators).prev_sample

