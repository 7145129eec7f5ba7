"""Throughput of the classifier training loop against a bare model step.

The real loop (`classify.loop.train_one_epoch`: index a uint8 tensor, augment per frame, normalise, forward,
backward, AdamW step) is timed against a bare step on a ready float tensor of the same shape. Goal: the
loop reaches >= 90% of the bare step's images/s, i.e. data handling is never the bottleneck.

    python benchmarks/bench_classifier.py                      # resnet50 and vit_base at 128 px
    python benchmarks/bench_classifier.py --arch resnet18 vit_tiny_patch16_224 --image-size 64
    python benchmarks/bench_classifier.py --arch resnet18 --image-size 48 --threads 1 [--bf16]   # CPU bf16

Measured (2-core shared CPU with AMX, 1 thread, resnet18, batch 32, bare step): 48 px fp32 37.8 img/s, bf16
65.3 img/s; 64 px fp32 38.2, bf16 59.8: bf16 autocast is kept on cpu (`train.amp`).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from lus_utils.classify import loop as training_loop
from lus_utils.classify import models
from lus_utils.params import ARCHS
from lus_utils.reproducibility import resolve_device, seed_everything


def bare(model: torch.nn.Module, batch_size: int, image_size: int, n_batches: int, device: torch.device,
         amp: bool) -> float:
    """images/s of forward + backward + AdamW step on one ready float batch."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch_size, 3, image_size, image_size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 4, (batch_size,), device=device)
    model.train()
    _sync(device)
    start = time.perf_counter()
    for _ in range(n_batches):
        with models.autocast(device, amp):
            logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    _sync(device)
    return n_batches * batch_size / (time.perf_counter() - start)


def loop(model: torch.nn.Module, batch_size: int, image_size: int, n_batches: int, device: torch.device,
         amp: bool, augment: bool) -> float:
    """images/s of the study's own training loop (uint8 frames in memory, per-frame augmentation)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    n = batch_size * n_batches
    images = torch.randint(0, 256, (n, 3, image_size, image_size), dtype=torch.uint8)
    labels = torch.randint(0, 4, (n,))
    if device.type == "cuda":
        images, labels = images.to(device), labels.to(device)
    batches = training_loop.epoch_batches("none", labels.cpu().numpy(), batch_size, torch.Generator().manual_seed(0))
    augmentation = training_loop.Augmentation() if augment else None
    _sync(device)
    start = time.perf_counter()
    training_loop.train_one_epoch(model, images, labels, batches, optimizer, torch.nn.CrossEntropyLoss(), augmentation,
                             torch.Generator().manual_seed(1), amp, desc="loop")
    _sync(device)
    return n / (time.perf_counter() - start)


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
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast on cpu too (compare with and without)")
    args = parser.parse_args()

    seed_everything(0, args.threads)
    device = resolve_device(args.device)
    amp = device.type == "cuda" or args.bf16
    print(f"device {device}, {torch.get_num_threads()} threads, batch {args.batch_size}, {args.batches} batches "
          f"x {args.repeats} repeats, image size {args.image_size}")
    print(f"{'arch':<22} {'bare img/s':>11} {'loop img/s':>11} {'loop+aug':>11} {'loop/bare':>10} {'+aug/bare':>10}")
    for arch in args.arch:
        model = models.prepare(models.build_model(arch, 4, args.image_size), device)
        bare(model, args.batch_size, args.image_size, 1, device, amp)  # warm-up
        results: dict[str, list[float]] = {"bare": [], "loop": [], "aug": []}
        for _ in range(args.repeats):
            results["bare"].append(bare(model, args.batch_size, args.image_size, args.batches, device, amp))
            results["loop"].append(loop(model, args.batch_size, args.image_size, args.batches, device, amp, False))
            results["aug"].append(loop(model, args.batch_size, args.image_size, args.batches, device, amp, True))
        med = {k: statistics.median(v) for k, v in results.items()}
        print(f"{arch:<22} {med['bare']:>11.1f} {med['loop']:>11.1f} {med['aug']:>11.1f} "
              f"{med['loop'] / med['bare']:>9.0%} {med['aug'] / med['bare']:>9.0%}", flush=True)


if __name__ == "__main__":
    main()
