"""DDPM on a CPU: training and sampling cost (fp32 vs bf16, UNet sizes, batch, threads), and the samplers'
quality on a generator trained on the real minority frames.

    python benchmarks/bench_ddpm.py speed [--threads 1]
    python benchmarks/bench_ddpm.py samplers --checkpoint GEN/checkpoints/checkpoint-N [--n 32] [--n-slow 8]
        [--data-root PATH] [--fold 0] [--grid outputs/bench/sampler_grid.png]

`speed` times one optimizer step (CPU seconds, median of a few, after a warm-up) per UNet, batch and precision,
and one UNet forward per image while sampling. `samplers` loads a checkpoint's EMA weights (or --pipeline, a
saved pipeline) and compares each sampler with 1000-step DDPM on the same noise seeds: CPU seconds per image,
the quality gate's pass rate (real_range and the original study's), KID and C2ST AUROC against held-out real minority
frames of the fold (patients the generator never saw; random-CNN features), and KID to the 1000-step DDPM set
beside the noise floor (KID between two 1000-step DDPM sets with different seeds). CPU seconds rather than wall
time, since the machine's cores are shared.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lus_utils.data import dataset, splits
from lus_utils.generate import ddpm_sampling, ddpm_training, realism, synthetic
from lus_utils.images import load_image
from lus_utils.params import MINORITY_CLASS, DataParams, DDPMParams, build

UNETS = {"quick (16-32-64-128, attn 3)": ([16, 32, 64, 128], [3]), "no attention": ([16, 32, 64, 128], []),
         "wider (32-64-128-128, attn 3)": ([32, 64, 128, 128], [3])}
SAMPLERS = [("ddpm", 1000, "fp32"), ("ddpm", 500, "fp32"), ("ddim", 50, "fp32"), ("dpmsolver_ode", 20, "fp32"),
            ("dpmsolver", 20, "fp32"), ("dpmsolver", 20, "bf16"), ("dpmsolver", 50, "fp32")]
SLOW = 200  # samplers with at least this many steps get --n-slow images


def unet_params(channels: list[int], attention: list[int], size: int = 64) -> DDPMParams:
    return build(DDPMParams, {"image_size": size, "block_out_channels": channels, "attention_levels": attention}, "bench")


def step_seconds(p: DDPMParams, batch: int, bf16: bool, train: bool, steps: int = 3) -> float:
    """Median CPU seconds of one optimizer step (train) or one no-grad forward (sampling) after a warm-up."""
    torch.manual_seed(0)
    model = ddpm_training.build_unet(p)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, 1, p.image_size, p.image_size)
    t = torch.randint(0, 1000, (batch,))
    cpu = []
    for i in range(steps + 1):
        start = time.process_time()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16), torch.set_grad_enabled(train):
            out = model(x, t).sample
        if train:
            torch.nn.functional.mse_loss(out.float(), x).backward()
            optimizer.step()
            optimizer.zero_grad()
        if i:
            cpu.append(time.process_time() - start)
    return float(np.median(cpu))


def speed(args: argparse.Namespace) -> None:
    rows = []
    for name, (channels, attention) in UNETS.items():
        p = unet_params(channels, attention)
        for batch in (3, 16):
            fp32, bf16 = step_seconds(p, batch, False, True), step_seconds(p, batch, True, True)
            rows.append({"unet": name, "what": f"train step, batch {batch}", "fp32 cpu-s": round(fp32, 3),
                         "bf16 cpu-s": round(bf16, 3), "bf16 speed-up": round(fp32 / bf16, 2)})
    p = unet_params(*UNETS["quick (16-32-64-128, attn 3)"])
    for batch in (8, 32, 64):
        fp32, bf16 = step_seconds(p, batch, False, False), step_seconds(p, batch, True, False)
        rows.append({"unet": "quick (16-32-64-128, attn 3)", "what": f"sampling forward, batch {batch} (per image)",
                     "fp32 cpu-s": round(fp32 / batch, 4), "bf16 cpu-s": round(bf16 / batch, 4),
                     "bf16 speed-up": round(fp32 / bf16, 2)})
    print(f"CPU seconds (torch threads {torch.get_num_threads()}), 64 px grey UNets")
    print(pd.DataFrame(rows).to_string(index=False))


def load_unet(args: argparse.Namespace):
    """The EMA UNet of a checkpoint (or of a saved pipeline) wrapped as a pipeline for ddpm_sampling.sample_images."""
    if args.pipeline:
        return ddpm_sampling.load_pipeline(Path(args.pipeline))
    from diffusers import UNet2DModel
    from diffusers.training_utils import EMAModel

    checkpoint = Path(args.checkpoint)
    unet = UNet2DModel.from_pretrained(checkpoint / "unet")
    ema = EMAModel(unet.parameters())
    ema.load_state_dict(torch.load(checkpoint / "training_state.pt", weights_only=False, map_location="cpu")["ema"])
    ema.copy_to(unet.parameters())
    return ddpm_training.make_pipeline(unet.eval())


def samplers(args: argparse.Namespace) -> None:
    import cv2

    out = Path(args.out)
    frames = dataset.build_frames(args.data_root, out / "out", DataParams(n_workers=1))
    column = splits.split_column(args.fold)  # repeat 0: a fold's minority frames are the same in every repeat
    minority = frames[frames.label == MINORITY_CLASS]

    def grey(paths: list[str]) -> np.ndarray:
        return np.stack([load_image(p, size=64, grayscale=True) for p in paths])

    calibration = realism.calibrate_gate(grey(realism.calibration_paths(frames, column, 0)), 0.005, 0.25)
    cnn = realism.RandomCNN()
    holdout = cnn(grey(minority.loc[minority[column] != "train", "abspath"].tolist()))
    train = cnn(grey(minority.loc[minority[column] == "train", "abspath"].tolist()))
    pipeline = load_unet(args)
    sets, rows, strips = {}, [], []
    for sampler, steps, precision in SAMPLERS + [("ddpm", 1000, "fp32")]:
        key = f"{sampler} x{steps} {precision}"
        seed = 0
        if key in sets:
            key, seed = key + " (2nd seeds)", 1
        n = args.n_slow if steps >= SLOW else args.n
        start = time.process_time()
        images, _ = ddpm_sampling.sample_images(pipeline, sampler, steps, n, min(n, 32), seed, progress=False,
                                                precision=precision)
        cpu = (time.process_time() - start) / n
        features = cnn(images)
        sets[key] = features
        strips.append(np.concatenate(list(images[:8]), axis=1))
        versus = realism.compare_sets(features, train, holdout, 50, 100, 0, c2st_folds=min(5, len(features)))
        rows.append({"sampler": key, "n": n, "cpu s/image": round(cpu, 3),
                     "gate pass": float(np.mean([v["passed_gate"] for v in realism.apply_gate(images, calibration)])),
                     "seed gate pass": float(np.mean([synthetic.gate(i)["passed_gate"] for i in images])),
                     "KID held-out": versus["synthetic_vs_holdout"]["kid"]["mean"],
                     "KID low": versus["synthetic_vs_holdout"]["kid"]["ci_low"],
                     "KID high": versus["synthetic_vs_holdout"]["kid"]["ci_high"],
                     "C2ST AUROC": versus["synthetic_vs_holdout"]["c2st"]["auroc"]})
        print(rows[-1], flush=True)
    reference = sets["ddpm x1000 fp32"]
    table = pd.DataFrame(rows)
    base = table.set_index("sampler").loc["ddpm x1000 fp32", "cpu s/image"]
    table["speed-up vs ddpm x1000"] = (base / table["cpu s/image"]).round(1)
    table["KID to ddpm x1000"] = [realism.kid(f, reference, 50, 100, 0)["mean"] if k != "ddpm x1000 fp32" else 0.0
                                  for k, f in sets.items()]
    real_ref = realism.compare_sets(train, train, holdout, 50, 100, 0)["real_train_vs_holdout"]
    print(table.round(4).to_string(index=False))
    print(f"noise floor: KID between two 1000-step DDPM sets (seeds 0 and 1, {args.n_slow} images each) = "
          f"{table['KID to ddpm x1000'].iloc[-1]:.4f}; real reference (minority training vs held-out frames): "
          f"KID {real_ref['kid']['mean']:.4f} [{real_ref['kid']['ci_low']:.4f}, {real_ref['kid']['ci_high']:.4f}], "
          f"C2ST AUROC {real_ref['c2st']['auroc']:.2f}")
    width = max(s.shape[1] for s in strips)
    grid = np.concatenate([np.pad(s, ((0, 0), (0, width - s.shape[1]))) for s in strips])
    Path(args.grid).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(args.grid, grid)
    print(f"grid (one row per sampler, in the table's order): {args.grid}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["speed", "samplers"])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--checkpoint", default="", help="a training checkpoint folder (its EMA weights are used)")
    parser.add_argument("--pipeline", default="", help="a saved DDPM pipeline instead of a checkpoint")
    parser.add_argument("--data-root", default=None, help="dataset data/ folder (else $LUS_DATA_ROOT)")
    parser.add_argument("--fold", type=int, default=0, help="fold whose held-out minority frames are the reference")
    parser.add_argument("--n", type=int, default=32, help="images per fast sampler")
    parser.add_argument("--n-slow", type=int, default=8, help="images per sampler of >= 200 steps")
    parser.add_argument("--out", default="outputs/bench", help="scratch folder (frames table)")
    parser.add_argument("--grid", default="outputs/bench/sampler_grid.png", help="sample grid PNG")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.what == "speed":
        speed(args)
    else:
        if not (args.checkpoint or args.pipeline):
            parser.error("samplers needs --checkpoint or --pipeline")
        samplers(args)


if __name__ == "__main__":
    main()
