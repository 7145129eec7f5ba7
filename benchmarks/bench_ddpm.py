"""DDPM: training steps per second at the profile sizes, and seconds per image and quality of each sampler.

    python benchmarks/bench_ddpm.py [--data-root PATH] [--n 64] [--train-steps 300] [--feature-run-dir RUN]
        [--profiles smoke quick full]

Samplers are compared on one tiny model trained quickly on the real minority training frames: seconds per
image, and Fréchet distance / KID (pixel features, or a baseline classifier's with --feature-run-dir)
against the real minority frames and against a 1000-step DDPM sample set. The noise floor is the distance
between two DDPM sample sets with different seeds: a fast sampler whose distance to DDPM stays within it
is as good as DDPM at this sample size.
"""
from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from lus_utils.data import dataset
from lus_utils.generate import ddpm, synthetic, synthetic_audit
from lus_utils.params import MINORITY_CLASS, DataParams, DDPMParams, build
from lus_utils.paths import PARAMS_DIR

SAMPLERS = [("ddpm", 1000), ("ddpm", 500), ("ddim", 50), ("dpmsolver", 20), ("dpmsolver", 10)]


def train_speed(p: DDPMParams, batch: int, steps: int) -> tuple[float, float]:
    """Wall and CPU seconds per optimizer step (forward, backward, AdamW) at batch `batch`, after a warm-up step.

    CPU seconds (all threads) show what a step costs when other processes share the cores.
    """
    torch.manual_seed(0)
    model = ddpm.build_unet(p)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, 1, p.image_size, p.image_size)
    t = torch.randint(0, 1000, (batch,))
    wall, cpu = [], []
    for i in range(steps + 1):
        start, start_cpu = time.perf_counter(), time.process_time()
        loss = torch.nn.functional.mse_loss(model(x, t).sample, x)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if i:
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    return float(np.median(wall)), float(np.median(cpu))


def profile_ddpm(name: str) -> DDPMParams:
    raw = yaml.safe_load((PARAMS_DIR / f"{name}.yaml").read_text())
    return build(DDPMParams, raw["ddpm"], f"{name}.yaml [ddpm]")


def features_of(images: np.ndarray, extract, folder: Path) -> np.ndarray:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        paths.append(str(folder / f"{i:04d}.png"))
        cv2.imwrite(paths[-1], image)
    return extract(paths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None, help="dataset data/ folder (else $LUS_DATA_ROOT)")
    parser.add_argument("--n", type=int, default=64, help="images per sampler")
    parser.add_argument("--train-steps", type=int, default=300, help="optimizer steps of the tiny model")
    parser.add_argument("--speed-steps", type=int, default=3, help="timed steps per profile size")
    parser.add_argument("--feature-run-dir", default="", help="baseline classifier run for FD/KID features")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--pipeline", default="", help="a saved DDPM pipeline to compare samplers on (skips training)")
    parser.add_argument("--profiles", nargs="+", default=["smoke", "quick"],
                        help="profiles whose training speed is timed (full: the seed's 128 px UNet, slow on a CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        frames = dataset.build_frames(args.data_root, tmp / "out", DataParams())
        minority = frames[frames.label == MINORITY_CLASS]
        n_train = int((minority.split == "train").sum())

        print("== training speed at the profile sizes (CPU, {} threads)".format(args.threads))
        rows = []
        for name in args.profiles:
            p = profile_ddpm(name)
            steps = 1 if name == "full" else args.speed_steps
            for variant, batch, epochs in (("3_mixed", 3, p.epochs_3_mixed),
                                           ("train_all", p.batch_size, p.epochs_train_all)):
                seconds, cpu_seconds = train_speed(p, min(batch, p.batch_size), steps)
                total = epochs * (1 if variant == "3_mixed" else math.ceil(n_train / p.batch_size))
                rows.append({"profile": name, "px": p.image_size, "variant": variant, "batch": min(batch, p.batch_size),
                             "s/step": round(seconds, 3), "cpu s/step": round(cpu_seconds, 3),
                             "steps/s": round(1 / seconds, 2), "steps": total,
                             "train min (est.)": round(total * seconds / 60, 1)})
        print(pd.DataFrame(rows).to_string(index=False))

        if args.pipeline:
            print(f"\n== samplers on the pipeline {args.pipeline}")
            pipeline = ddpm.load_pipeline(Path(args.pipeline))
        else:
            print(f"\n== samplers on one tiny model ({args.train_steps} steps on {n_train} minority training frames)")
            p = build(DDPMParams, {"variant": "train_all", "image_size": 32, "block_out_channels": [16, 32, 64],
                                   "layers_per_block": 1, "attention_levels": [], "batch_size": 16, "lr": 3e-3,
                                   "warmup_steps": 30, "ema_decay": 0.999, "num_threads": args.threads,
                                   "device": "cpu", "sample_grids": 0, "checkpoint_every": 10 ** 6,
                                   "epochs_train_all": math.ceil(args.train_steps / math.ceil(n_train / 16))},
                      "bench")
            selected = ddpm.select_training_frames(frames, "train_all", "split", 0)
            start = time.perf_counter()
            result = ddpm.train_ddpm(selected, p, tmp / "gen", progress=False)
            print(f"trained {result.total_steps} steps in {time.perf_counter() - start:.1f} s "
                  f"(final loss {result.log.loss.tail(20).mean():.4f})")
            pipeline = ddpm.load_pipeline(result.pipeline_dir)
        extract, space = synthetic_audit.feature_function("classifier" if args.feature_run_dir else "pixels",
                                                          args.feature_run_dir)
        real = extract(minority.abspath.tolist())
        sets, timing, kept = {}, {}, {}
        for sampler, steps in SAMPLERS + [("ddpm", 1000)]:
            key = f"{sampler} x{steps}" + (" (2nd seed)" if f"{sampler} x{steps}" in sets else "")
            seed = 1 if "2nd" in key else 0
            start = time.perf_counter()
            images, _ = ddpm.sample_images(pipeline, sampler, steps, args.n, args.n, seed, progress=False)
            timing[key] = (time.perf_counter() - start) / args.n
            kept[key] = float(np.mean([synthetic.gate(image)["passed_gate"] for image in images]))
            sets[key] = features_of(images, extract, tmp / "samples" / key.replace(" ", "_"))
        reference = sets["ddpm x1000"]
        floor = synthetic_audit.frechet_distance(sets["ddpm x1000 (2nd seed)"], reference)
        rows = []
        for key, feats in sets.items():
            kid = synthetic_audit.kernel_inception_distance(feats, real, 50, 50, 0)
            rows.append({"sampler": key, "s/image": round(timing[key], 4),
                         "speed-up vs ddpm x1000": round(timing["ddpm x1000"] / timing[key], 1),
                         "gate pass": round(kept[key], 2),
                         "FD to real": round(synthetic_audit.frechet_distance(feats, real), 2),
                         "KID to real": round(kid["mean"], 4),
                         "FD to ddpm x1000": round(synthetic_audit.frechet_distance(feats, reference), 2)
                         if key != "ddpm x1000" else 0.0})
        print(f"feature space: {space}; {args.n} images per sampler; {len(real)} real minority frames")
        print(pd.DataFrame(rows).to_string(index=False))
        print(f"noise floor: FD between two 1000-step DDPM sets (seeds 0, 1) = {floor:.2f}")


if __name__ == "__main__":
    main()
