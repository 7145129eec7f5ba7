"""Seconds per training step and per generated image: domain base model and tiny pipeline, on CPU.

Runs the study's own code (domain_base_model.train_vae / train_denoiser, textual_inversion.train_token,
txt2img, img2img) on random frames written to a temporary folder, with small counts; prints wall and
process-CPU seconds (on a shared machine the CPU figure is the steadier one).

    python benchmarks/bench_textual_inversion.py [--threads 1] [--resolution 64] [--width 16]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lus_utils.generate import domain_base_model, tiny_sd
from lus_utils.generate import textual_inversion_sampling as ti_sampling
from lus_utils.generate import textual_inversion_training as ti_training
from lus_utils.params import TextualInversionParams
from lus_utils.reproducibility import seed_everything

CPU = torch.device("cpu")


def timed(fn, count: int) -> tuple[float, float, object]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return (time.perf_counter() - wall) / count, (time.process_time() - cpu) / count, out


def fake_frames(folder: Path, n: int, size: int) -> pd.DataFrame:
    import cv2

    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        path = folder / f"frame_{i}.png"
        cv2.imwrite(str(path), rng.integers(0, 255, (size, size), dtype=np.uint8))
        rows.append({"path": path.name, "abspath": str(path), "video_id": f"v{i % 3}", "label": "viral"})
    return pd.DataFrame(rows)


def bench_generation(name: str, pipe, frames: pd.DataFrame, params: TextualInversionParams, n: int) -> list[dict]:
    prompt = params.prompt.format(params.placeholder_token)
    ti_sampling.set_sampler(pipe, params.sampler)
    rows = []
    wall, cpu, _ = timed(lambda: ti_sampling.txt2img(pipe, prompt, n, params, 0, CPU, torch.float32,
                                                     params.output_size), n)
    rows.append({"model": name, "what": f"txt2img image ({params.sampler} x{params.sampling_steps}, "
                                        f"batch {params.sample_batch_size})", "wall s": wall, "cpu s": cpu})
    wall, cpu, _ = timed(lambda: ti_sampling.img2img(pipe, prompt, frames, n, params, 0, CPU, torch.float32,
                                                     params.output_size), n)
    rows.append({"model": name, "what": f"img2img image (strength {params.strength})", "wall s": wall, "cpu s": cpu})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--resolution", type=int, default=64, help="domain model image side (px)")
    parser.add_argument("--width", type=int, default=16, help="domain model first UNet level channels")
    parser.add_argument("--steps", type=int, default=8, help="training steps timed per model")
    parser.add_argument("--images", type=int, default=16, help="images generated per mode")
    args = parser.parse_args()
    seed_everything(0, args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        frames = fake_frames(tmp, 64, args.resolution)
        params = replace(TextualInversionParams(), domain_resolution=args.resolution, domain_width=args.width,
                         domain_vae_steps=args.steps, domain_steps=args.steps, num_threads=args.threads,
                         steps=args.steps, batch_size=4, checkpoint_every=10 ** 6, n_checkpoint_images=1,
                         sampling_steps=20, sample_batch_size=16, output_size=64, learnable_property="ultrasound")
        knobs = domain_base_model.settings(params)
        arch = domain_base_model.architecture(args.width, args.resolution)
        tokenizer = tiny_sd.clip_tokenizer(tmp / "tokenizer")
        images = domain_base_model.load_frames_tensor(list(frames["abspath"]), args.resolution)
        generator = torch.Generator().manual_seed(0)
        wall, cpu, (vae, _) = timed(lambda: domain_base_model.train_vae(images, arch["vae"], knobs, generator),
                                    args.steps)
        rows.append({"model": "domain", "what": f"VAE step (batch {knobs['batch_size']}, "
                                                f"{args.resolution // 2} px crops)", "wall s": wall, "cpu s": cpu})
        with torch.no_grad():
            dist = vae.encode(images).latent_dist
        captions = ["a convex lung ultrasound frame of covid-19 pneumonia with B-lines"] * len(images)
        wall, cpu, (unet, text_encoder, _) = timed(lambda: domain_base_model.train_denoiser(
            dist.mean, dist.std, captions, tokenizer, arch, knobs, generator), args.steps)
        rows.append({"model": "domain", "what": f"UNet + text encoder step (batch {knobs['batch_size']}, "
                                                f"{args.resolution} px)", "wall s": wall, "cpu s": cpu})
        pipelines = {"domain": tiny_sd.build_pipeline(unet, vae, text_encoder, tokenizer),
                     "tiny": tiny_sd.tiny_pipeline(0, tokenizer_dir=tmp / "tokenizer")}
        for name, pipe in pipelines.items():
            selected = frames.head(6)
            wall, cpu, _ = timed(lambda: ti_training.train_token(pipe, selected, params, tmp / f"ti_{name}", CPU),
                                 args.steps)
            size = pipe.unet.config.sample_size * pipe.vae_scale_factor
            rows.append({"model": name, "what": f"textual-inversion step (batch {params.batch_size}, {size} px; "
                                                "includes 2 one-image checkpoint grids)", "wall s": wall,
                         "cpu s": cpu})
            rows += bench_generation(name, pipe, selected, params, args.images)
    table = pd.DataFrame(rows)
    print(f"torch threads: {args.threads}; domain model {args.resolution} px, width {args.width}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
