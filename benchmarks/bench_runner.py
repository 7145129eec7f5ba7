"""Runner benchmark: wall time of a whole profile per stage, then of a second, fully cached invocation.

    python benchmarks/bench_runner.py --profile smoke [--out DIR] [--executor local] [--jobs 2] [--keep]
    python benchmarks/bench_runner.py --fake 6      # runner overhead alone, on tiny generated notebooks
    python benchmarks/bench_runner.py --kernel-race 4 8   # 4 processes x 8 kernel starts, TCP and IPC

The profile mode runs `run_all.py` twice as a user would (fresh output folder unless --out is given) and
reads `<out>/logs/runner_summary.json` for the per-run times; the goal is a cached invocation that costs at
most 5% of the first. The fake mode needs no data: N tiny notebooks in a chain of levels, executed then
cached, to show what the runner itself costs per run (papermill kernel start dominates a real run). The
kernel-race mode starts kernels from P processes at once, K each, over jupyter's default TCP transport and
over the runner's IPC sockets, and counts the kernels that died (TCP: a port picked by one process and
taken by another before its kernel binds it, "Address already in use").
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_profile(profile: str, out: Path, executor: str, jobs: int) -> tuple[float, dict]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "run_all.py"), "--profile", profile, "--out", str(out),
                           "--executor", executor, "--jobs", str(jobs)], cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"run_all.py --profile {profile} failed (exit {proc.returncode}); see above")
    return seconds, json.loads((out / "logs" / "runner_summary.json").read_text())


def per_stage(summary: dict) -> dict[str, tuple[int, int, float]]:
    stages: dict[str, list] = defaultdict(lambda: [0, 0, 0.0])
    for run in summary["runs"]:
        entry = stages[run["stage"]]
        entry[0] += run["status"] == "ran"
        entry[1] += run["status"] == "cached"
        entry[2] += run["seconds"]
    return {k: tuple(v) for k, v in sorted(stages.items())}


def bench_profile(args: argparse.Namespace) -> None:
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix=f"bench_runner_{args.profile}_"))
    try:
        first, summary = run_profile(args.profile, out, args.executor, args.jobs)
        second, cached = run_profile(args.profile, out, args.executor, args.jobs)
        print(f"profile {args.profile}, executor {args.executor}, output {out}")
        print(f"{'stage':<6} {'ran':>4} {'cached':>6} {'seconds':>9}")
        for stage, (ran, hit, seconds) in per_stage(summary).items():
            print(f"{stage:<6} {ran:>4} {hit:>6} {seconds:>9.1f}")
        n_cached = sum(r["status"] == "cached" for r in cached["runs"])
        print(f"first invocation:  {first:8.1f} s wall ({len(summary['runs'])} runs)")
        print(f"second invocation: {second:8.1f} s wall ({n_cached} of {len(cached['runs'])} cached)")
        print(f"cached / first:    {second / first:8.1%} (goal <= 5%)")
    finally:
        if not args.out and not args.keep:
            shutil.rmtree(out, ignore_errors=True)


def bench_fake(n: int) -> None:
    import nbformat

    from lus_utils.run.planning import Run
    from lus_utils.run.study import execute_study

    with tempfile.TemporaryDirectory(prefix="bench_runner_fake_") as tmp:
        notebooks, out = Path(tmp) / "notebooks", Path(tmp) / "out"
        notebooks.mkdir()
        nb = nbformat.v4.new_notebook(cells=[
            nbformat.v4.new_code_cell('x: int = 1  # a number\nout_dir: str = ""  # output folder',
                                      metadata={"tags": ["parameters"]}),
            nbformat.v4.new_code_cell("y = sum(range(10_000)) * x")])
        nbformat.write(nb, notebooks / "tiny.ipynb")
        runs = [Run("02", "tiny", f"run{i}", {"x": i, "out_dir": str(out)}, after=[f"run{i - 2}"] if i >= 2 else [])
                for i in range(n)]
        timings = []
        for _ in range(2):
            started = time.perf_counter()
            result = execute_study(runs, out, notebooks_dir=notebooks, progress=False, echo=lambda s: None)
            timings.append((time.perf_counter() - started, len(result.of("ran")), len(result.of("cached"))))
        (first, ran, _), (second, _, hit) = timings
        print(f"fake study: {n} tiny notebooks in {(n + 1) // 2} levels")
        print(f"first invocation:  {first:7.2f} s ({ran} ran, {first / max(ran, 1):.2f} s per run)")
        print(f"second invocation: {second:7.3f} s ({hit} cached, {1000 * second / max(hit, 1):.1f} ms per run)")
        print(f"cached / first:    {second / first:7.1%} (goal <= 5%)")


def _start_kernels(folder: str, k: int, transport: str) -> list[str]:
    import papermill

    from lus_utils.run.executors import kernel_config

    failures = []
    for i in range(k):
        with kernel_config() as config, open(Path(folder) / f"stderr_{i}.log", "w") as err:
            try:
                papermill.execute_notebook(str(Path(folder).parent / "tiny.ipynb"), str(Path(folder) / "out.ipynb"),
                                           kernel_name="python3", progress_bar=False, stderr_file=err,
                                           **({"config": config} if transport == "ipc" else {}))
            except Exception as exc:  # noqa: BLE001 - counted and shown, that is the point
                failures.append(f"{type(exc).__name__}: {exc}")
    return failures


def bench_kernel_race(processes: int, k: int) -> None:
    import multiprocessing

    import nbformat

    with tempfile.TemporaryDirectory(prefix="bench_kernel_race_") as tmp:
        nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")]), Path(tmp) / "tiny.ipynb")
        for transport in ("tcp", "ipc"):
            folders = [Path(tmp) / f"{transport}{p}" for p in range(processes)]
            for folder in folders:
                folder.mkdir()
            started = time.perf_counter()
            with multiprocessing.get_context("spawn").Pool(processes) as pool:
                failures = sum(pool.starmap(_start_kernels, [(str(f), k, transport) for f in folders]), [])
            print(f"{transport}: {processes * k} kernel starts from {processes} processes, {len(failures)} died "
                  f"({time.perf_counter() - started:.0f} s){': ' + failures[0] if failures else ''}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--out", default=None, help="output folder (default: a fresh temporary one)")
    parser.add_argument("--executor", default="local", choices=("local", "slurm", "submitit-local"))
    parser.add_argument("--jobs", type=int, default=2, help="local executor: notebooks at once")
    parser.add_argument("--keep", action="store_true", help="keep the temporary output folder")
    parser.add_argument("--fake", type=int, default=0, metavar="N", help="benchmark the runner alone on N tiny notebooks")
    parser.add_argument("--kernel-race", type=int, nargs=2, default=None, metavar=("P", "K"),
                        help="P processes start K kernels each at once, over TCP and over IPC; count deaths")
    args = parser.parse_args()
    if args.kernel_race:
        bench_kernel_race(*args.kernel_race)
    elif args.fake:
        bench_fake(args.fake)
    else:
        bench_profile(args)


if __name__ == "__main__":
    main()
