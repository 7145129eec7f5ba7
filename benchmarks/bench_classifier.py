"""Throughput of the classifier training loop against a bare model step.

The real loop (`classify.loop.train_one_epoch`: index a uint8 tensor, augment per frame, normalise, forward,
backward, AdamW step) is timed against a bare step on a ready float tensor of the same shape. Goal: the
loop reaches >= 90% of the bare step's images/s, i.e. data handling is never the bottleneck.

    python benchmarks/bench_classifier.py                      # resnet50 and vit_base at 128 px
    python benchmarks/bench_classifier.py --arch resnet18 vit_tiny_patch16_224 --image-size 64
    python benchmarks/bench_classifier.py --arch resnet18 --image-size 32 --threads 1 --cpu-time \
        [--in-chans 1] [--small-input] [--precision bf16]

`--cpu-time` counts images per CPU-second (time.process_time, every thread of this process): on a CPU shared
with other jobs that is what a training costs, and it moves less with their load than wall time does.
Figures, the command and the load: benchmarks/RESULTS.md (the loop/bare ratio on this AVX2 CPU was not
measured there yet).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from lus_utils.classify import loop as training_loop
from lus_utils.classify import models
from lus_utils.config.classify import ARCHS
from lus_utils.config.runtime import PRECISIONS
from lus_utils.reproducibility import resolve_device, resolve_precision, seed_everything


def bare(model: torch.nn.Module, batch_size: int, image_size: int, n_batches: int, device: torch.device,
         precision: str, clock=time.perf_counter) -> float:
    """images/s of forward + backward + AdamW step on one ready float batch."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    channels = models.input_channels(model)
    x = torch.randn(batch_size, channels, image_size, image_size, device=device)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 4, (batch_size,), device=device)
    model.train()
    _sync(device)
    start = clock()
    for _ in range(n_batches):
        with models.autocast(device, precision):
            logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    _sync(device)
    return n_batches * batch_size / (clock() - start)


def loop(model: torch.nn.Module, batch_size: int, image_size: int, n_batches: int, device: torch.device,
         precision: str, augment: bool, clock=time.perf_counter) -> float:
    """images/s of the study's own training loop (uint8 frames in memory, per-frame augmentation)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    n = batch_size * n_batches
    # A grey stem trains on grey frames, made once by `fit`, as here.
    images = torch.randint(0, 256, (n, models.input_channels(model), image_size, image_size), dtype=torch.uint8)
    labels = torch.randint(0, 4, (n,))
    if device.type == "cuda":
        images, labels = images.to(device), labels.to(device)
    batches = training_loop.epoch_batches("none", labels.cpu().numpy(), batch_size, torch.Generator().manual_seed(0))
    augmentation = training_loop.Augmentation() if augment else None
    _sync(device)
    start = clock()
    training_loop.train_one_epoch(model, images, labels, batches, optimizer, torch.nn.CrossEntropyLoss(), augmentation,
                                  torch.Generator().manual_seed(1), precision, desc="loop")
    _sync(device)
    return n / (clock() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=["resnet50", "vit_base_patch16_224"], choices=ARCHS)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=4, help="timed batches per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="alternating measurements; the median is kept")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="autocast, as runtime.precision (auto: bf16 where it is native, else fp32)")
    parser.add_argument("--in-chans", type=int, default=3, choices=(1, 3), help="1: the grey stem")
    parser.add_argument("--small-input", action="store_true", help="resnets: the CIFAR-style stem")
    parser.add_argument("--cpu-time", action="store_true",
                        help="images per CPU-second (time.process_time): on a shared CPU, what a training costs")
    args = parser.parse_args()

    seed_everything(0, args.threads)
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    clock = time.process_time if args.cpu_time else time.perf_counter
    print(f"device {device}, {torch.get_num_threads()} threads, batch {args.batch_size}, {args.batches} batches "
          f"x {args.repeats} repeats, image size {args.image_size}, {args.in_chans} channel(s)"
          f"{', small-input stem' if args.small_input else ''}, {precision}, "
          f"{'per CPU-second' if args.cpu_time else 'per wall second'}, load {os.getloadavg()}")
    print(f"{'arch':<22} {'bare img/s':>11} {'loop img/s':>11} {'loop+aug':>11} {'loop/bare':>10} {'+aug/bare':>10}")
    for arch in args.arch:
        model = models.prepare(models.build_model(arch, 4, args.image_size, in_chans=args.in_chans,
                                                  small_input=args.small_input), device)
        bare(model, args.batch_size, args.image_size, 1, device, precision)  # warm-up
        results: dict[str, list[float]] = {"bare": [], "loop": [], "aug": []}
        for _ in range(args.repeats):
            results["bare"].append(bare(model, args.batch_size, args.image_size, args.batches, device, precision,
                                        clock))
            results["loop"].append(loop(model, args.batch_size, args.image_size, args.batches, device, precision,
                                        False, clock))
            results["aug"].append(loop(model, args.batch_size, args.image_size, args.batches, device, precision,
                                       True, clock))
        med = {k: statistics.median(v) for k, v in results.items()}
        print(f"{arch:<22} {med['bare']:>11.1f} {med['loop']:>11.1f} {med['aug']:>11.1f} "
              f"{med['loop'] / med['bare']:>9.0%} {med['aug'] / med['bare']:>9.0%}  load {os.getloadavg()[0]:.1f}",
              flush=True)


if __name__ == "__main__":
    main()
