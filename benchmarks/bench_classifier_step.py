"""The classifier's training step at one shape against this CPU's limit: precision, layout, torch.compile, threads.

A bare step (forward, backward, AdamW step on a ready float batch, as bench_classifier.py's `bare`) is timed
for every combination of fp32 / bf16 autocast, contiguous / channels_last and eager / torch.compile
(inductor's CPU backend), on 1 and 2 threads, for the RGB and the grey stem. Against it: the model's FLOPs
per image (forward + backward, torch.utils.flop_counter) and this CPU's matmul peak (a large torch.matmul in
fp32 and bf16), so achieved FLOP/s / peak says how far the step is from the limit.

    python benchmarks/bench_classifier_step.py --size 32 --csv step.csv          # every cell at 32 px
    python benchmarks/bench_classifier_step.py --size 32 --small-input --precisions fp32 --compile eager
    python benchmarks/bench_classifier_step.py --peak-only

img/s is wall-clock images per second of the median repeat (the machine's load is printed: other processes
share it); ms CPU/img is time.process_time per image (all threads' time), the cost a training pays; the share
of the peak compares FLOPs per CPU-second (step and matmul alike), which a shared machine disturbs least.
"""
from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from lus_utils.classify import models
from lus_utils.provenance import machine_line


def matmul_peak(dtype: torch.dtype, n: int, repeats: int = 3) -> tuple[float, float]:
    """(FLOP per wall second, FLOP per CPU-second) of the fastest of `repeats` n x n matmuls (2 n^3 FLOPs)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.matmul(a, b)
    runs = [_timed(lambda: torch.matmul(a, b)) for _ in range(repeats)]
    return 2 * n ** 3 / min(r[0] for r in runs), 2 * n ** 3 / min(r[1] for r in runs)


def _timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def make_model(a: argparse.Namespace, in_chans: int, channels_last: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    model = models.build_model("resnet18", 3, a.size, in_chans=in_chans, small_input=a.small_input)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def step_fn(model: torch.nn.Module, a: argparse.Namespace, in_chans: int, bf16: bool, channels_last: bool,
            compiled: bool):
    """A closure running one training step on a fixed batch."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(a.batch_size, in_chans, a.size, a.size)
    x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    y = torch.randint(0, 3, (a.batch_size,))
    forward = torch.compile(model) if compiled else model
    model.train()

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = forward(x)
        loss = torch.nn.functional.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def flops_per_image(a: argparse.Namespace, in_chans: int) -> tuple[float, float]:
    """(forward, forward + backward) FLOPs per image, as torch's flop counter counts them (matmuls and convs)."""
    model = make_model(a, in_chans, False)
    x = torch.randn(a.batch_size, in_chans, a.size, a.size)
    with FlopCounterMode(display=False) as forward:
        model(x)
    with FlopCounterMode(display=False) as both:
        model(x).sum().backward()
    return forward.get_total_flops() / a.batch_size, both.get_total_flops() / a.batch_size


def measure(a: argparse.Namespace, in_chans: int, bf16: bool, channels_last: bool, compiled: bool,
            threads: int) -> dict:
    torch.set_num_threads(threads)
    if compiled:
        torch._dynamo.reset()
    step = step_fn(make_model(a, in_chans, channels_last), a, in_chans, bf16, channels_last, compiled)
    warm_wall, _ = _timed(lambda: [step() for _ in range(2)])  # compiles, when compiled
    runs = [_timed(lambda: [step() for _ in range(a.batches)]) for _ in range(a.repeats)]
    wall = statistics.median(r[0] for r in runs)
    cpu = statistics.median(r[1] for r in runs)
    n = a.batches * a.batch_size
    return {"in_chans": in_chans, "threads": threads, "precision": "bf16" if bf16 else "fp32",
            "layout": "channels_last" if channels_last else "contiguous",
            "compile": "inductor" if compiled else "eager",
            "img_s": n / wall, "cpu_s_per_img": cpu / n, "warmup_s": warm_wall, "load": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--small-input", action="store_true")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=3, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--in-chans", type=int, nargs="+", default=[3, 1])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=("fp32", "bf16"))
    parser.add_argument("--layouts", nargs="+", default=["contiguous", "channels_last"],
                        choices=("contiguous", "channels_last"))
    parser.add_argument("--compile", nargs="+", default=["eager", "inductor"], choices=("eager", "inductor"))
    parser.add_argument("--peak-only", action="store_true")
    parser.add_argument("--peak-n", type=int, default=2048, help="matmul side for fp32 (bf16: half, it is slow)")
    parser.add_argument("--csv", default="", help="also write the step table here")
    a = parser.parse_args()

    torch.manual_seed(0)
    print(f"CPU: {machine_line('cpu')}; torch {torch.__version__}, "
          f"capability {torch.backends.cpu.get_cpu_capability()}, load {os.getloadavg()}")
    peak = {}
    for threads, dtype in itertools.product(a.threads, (torch.float32, torch.bfloat16)):
        torch.set_num_threads(threads)
        wall, cpu = matmul_peak(dtype, a.peak_n if dtype == torch.float32 else a.peak_n // 2)
        peak[threads, dtype] = cpu
        print(f"matmul peak, {threads} thread(s), {str(dtype)[6:]}: {wall / 1e9:.1f} GFLOP/s wall, "
              f"{cpu / 1e9:.1f} GFLOP per CPU-second (load {os.getloadavg()[0]:.1f})", flush=True)
    if a.peak_only:
        return
    stem = f"resnet18{' small-input' if a.small_input else ''} at {a.size} px, batch {a.batch_size}"
    flops = {c: flops_per_image(a, c) for c in a.in_chans}
    for c, (fwd, both) in flops.items():
        print(f"{stem}, {c} channel(s): {fwd / 1e6:.1f} MFLOP forward, {both / 1e6:.1f} MFLOP forward+backward "
              "per image")
    rows = []
    for c, threads, bf16, channels_last, compiled in itertools.product(
            a.in_chans, a.threads, [p == "bf16" for p in a.precisions], [x == "channels_last" for x in a.layouts],
            [x == "inductor" for x in a.compile]):
        try:
            row = measure(a, c, bf16, channels_last, compiled, threads)
        except Exception as err:  # a backend that cannot build this combination is reported, not fatal
            print(f"{c} ch, {threads} thr, bf16={bf16}, cl={channels_last}, compile={compiled}: failed ({err})")
            continue
        row["gflop_per_cpu_s"] = flops[c][1] / row["cpu_s_per_img"] / 1e9
        row["of_fp32_peak"] = row["gflop_per_cpu_s"] * 1e9 / peak[threads, torch.float32]
        row["of_bf16_peak"] = row["gflop_per_cpu_s"] * 1e9 / peak[threads, torch.bfloat16]
        rows.append(row)
        print(f"{c} ch  {threads} thr  {row['precision']}  {row['layout']:<13} {row['compile']:<8} "
              f"{row['img_s']:7.1f} img/s  {row['cpu_s_per_img'] * 1e3:6.2f} ms CPU/img  "
              f"{row['gflop_per_cpu_s']:5.1f} GFLOP/CPU-s ({row['of_fp32_peak']:.0%} of fp32 peak, "
              f"{row['of_bf16_peak']:.0%} of bf16's)  warm-up {row['warmup_s']:.0f} s  load {row['load']:.1f}",
              flush=True)
    if a.csv:
        import pandas as pd

        pd.DataFrame(rows).assign(size=a.size, small_input=a.small_input, batch_size=a.batch_size,
                                  cpu=machine_line("cpu")).to_csv(a.csv, index=False)


if __name__ == "__main__":
    main()
