"""Frame extraction on the real data: cold (empty cache) and cached, wall seconds.

    python benchmarks/bench_data.py [--data-root PATH] [--workers 2]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from lus_utils.data import dataset
from lus_utils.config.data import DataParams


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None, help="dataset data/ folder (else $LUS_DATA_ROOT)")
    parser.add_argument("--workers", type=int, default=2, help="decoding processes")
    args = parser.parse_args()
    params = DataParams(n_workers=args.workers)
    with tempfile.TemporaryDirectory() as tmp:
        cache, out = Path(tmp) / "cache", Path(tmp) / "out"
        timings = {}
        for label in ("cold", "cached"):
            start = time.perf_counter()
            frames = dataset.build_frames(args.data_root, out, params, cache_root=cache)
            timings[label] = time.perf_counter() - start
    print(f"frames: {len(frames)} from {frames.video_id.nunique()} files, workers={args.workers}")
    for label, seconds in timings.items():
        print(f"{label:>7}: {seconds:6.2f} s")
    print(f"cached / cold: {timings['cached'] / timings['cold']:.1%}")


if __name__ == "__main__":
    main()
