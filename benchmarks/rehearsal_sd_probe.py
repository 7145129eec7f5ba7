"""The rehearsal's Stable-Diffusion-sized textual-inversion path on CPU: wall time per phase and peak memory.

Writes the SD-v1.5-sized random base model (`run.rehearsal.write_sd_sized_base`), loads it as a notebook-04
run does (`textual_inversion_base_model.load_base_model`, a diffusers folder), learns the token for one step on one
real minority training frame at SD's native 512 px, and samples one text-to-image image in two steps.

    python benchmarks/rehearsal_sd_probe.py --frames-csv OUT/data/frames.csv [--threads 2] [--work DIR]
"""
from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from lus_utils import params as P
from lus_utils.generate import textual_inversion_base_model, textual_inversion_sampling, textual_inversion_training
from lus_utils.run import rehearsal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames-csv", type=Path, required=True, help="frames.csv of a built study")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--work", type=Path, default=None, help="folder for the base model (default: tmp)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    frames = pd.read_csv(args.frames_csv)
    frames["abspath"] = [str(args.frames_csv.parent / p) for p in frames["path"]]
    one = frames[(frames.label == P.MINORITY_CLASS) & (frames.split == "train")].head(1)
    timings = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        tick = time.perf_counter()
        folder = rehearsal.write_sd_sized_base(work)
        timings["write base model"] = time.perf_counter() - tick
        params = P.TextualInversionParams(base_model=str(folder), steps=1, gradient_accumulation=1, batch_size=1,
                                          checkpoint_every=1, n_checkpoint_images=1, sampling_steps=2,
                                          sample_batch_size=1, num_threads=args.threads)
        device = torch.device("cpu")
        tick = time.perf_counter()
        pipe, info = textual_inversion_base_model.load_base_model(params, frames, "split", work / "out", device)
        timings["load (diffusers folder)"] = time.perf_counter() - tick
        tick = time.perf_counter()
        result = textual_inversion_training.train_token(pipe, one, params, work / "token", device)
        timings["train 1 step (with 2 checkpoint grids)"] = time.perf_counter() - tick
        tick = time.perf_counter()
        images = textual_inversion_sampling.txt2img(pipe, params.prompt.format(params.placeholder_token), 1, params, 0,
                                                    device, torch.float32)
        timings["txt2img 1 image, 2 steps"] = time.perf_counter() - tick
    print(f"base model {info['kind']} at {info['resolution']} px, {info['dtype']}; UNet "
          f"{sum(p.numel() for p in pipe.unet.parameters()):,} parameters; threads {args.threads}")
    print(f"step seconds {result.seconds_per_step:.1f}; image {images[0].shape} {images[0].dtype}")
    for name, seconds in timings.items():
        print(f"{name:45s} {seconds:8.1f} s")
    print(f"peak resident memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20:.2f} GiB")


if __name__ == "__main__":
    main()
