"""Does the original study's quality gate reject the real viral frames, computed exactly as the original study computed it?

The seed (lamitay/uls_inversion, textual_inversion/generate_dataset_from_ddpm.py:12-18, 59-62) kept a DDPM
sample when `np.std(a) > 30` and `scipy.stats.entropy(np.histogram(a.flatten(), bins=256, range=[0, 256])[0]
/ n) > 4.7`, where `a = np.array(pil_image)` is the 128-px RGB uint8 sample (all three channels flattened,
natural log). Its own check of real frames (original_viral_pneumonia_stats.py there) ran the same functions
on `np.array(Image.open(path))` at the frames' native size. This script rebuilds the study's frames
(`data.dataset.build_frames`, 1 worker, into a temporary folder unless --out is given) and applies, to every
real viral frame:

- seed RGB, native size: the original study's functions on the RGB array at the frame's own size;
- seed RGB, 128 px: the same after resizing to 128 x 128 (PIL bilinear, like the original study's DDPM input);
- ours grey, native / 128 / 224 px: `synthetic.gate` (grey luma, `images.intensity_stats`), the study's gate.

    python benchmarks/original_gate_check.py [--data-root PATH] [--out DIR] [--min-std 30] [--min-entropy 4.7]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy.stats import entropy

from lus_utils.data import dataset
from lus_utils.generate import synthetic
from lus_utils.config.data import DataParams
from lus_utils.paths import OutLayout


def seed_stats(array: np.ndarray) -> tuple[float, float]:
    """The original study's std and entropy of an array, as its calculate_std / calculate_entropy computed them."""
    hist = np.histogram(array.flatten(), bins=256, range=[0, 256])[0]
    return float(np.std(array)), float(entropy(hist / hist.sum()))


def measures(path: Path) -> dict[str, tuple[float, float]]:
    rgb = Image.open(path).convert("RGB")
    small = rgb.resize((128, 128), Image.Resampling.BILINEAR)
    out = {"seed RGB, native size": seed_stats(np.array(rgb)), "seed RGB, 128 px": seed_stats(np.array(small))}
    for label, image in (("ours grey, native size", rgb), ("ours grey, 128 px", small),
                         ("ours grey, 224 px", rgb.resize((224, 224), Image.Resampling.BILINEAR))):
        verdict = synthetic.gate(np.array(image), 0.0, 0.0)
        out[label] = (verdict["std"], verdict["entropy"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None, help="dataset data/ folder (else $LUS_DATA_ROOT)")
    parser.add_argument("--out", type=Path, default=None, help="folder for frames.csv and the frames (default: tmp)")
    parser.add_argument("--min-std", type=float, default=30.0, help="the original study's std threshold")
    parser.add_argument("--min-entropy", type=float, default=4.7, help="the original study's entropy threshold (nats)")
    parser.add_argument("--label", default="viral", help="class whose real frames are gated")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "out"
        frames = dataset.build_frames(args.data_root, out, DataParams(n_workers=1))
        data_dir = OutLayout(out).data
        chosen = frames[frames.label == args.label]
        rows = []
        for frame in chosen.itertuples():
            for method, (std, ent) in measures(data_dir / frame.path).items():
                rows.append({"method": method, "video_id": frame.video_id, "std": std, "entropy": ent})
    table = pd.DataFrame(rows)
    table["std_ok"] = table["std"] > args.min_std
    table["entropy_ok"] = table["entropy"] > args.min_entropy
    table["passed"] = table.std_ok & table.entropy_ok
    summary = table.groupby("method", sort=False).agg(
        frames=("passed", "size"), pass_std=("std_ok", "sum"), pass_entropy=("entropy_ok", "sum"),
        pass_both=("passed", "sum"), std_median=("std", "median"), std_max=("std", "max"),
        entropy_median=("entropy", "median"), entropy_max=("entropy", "max"))
    print(f"{len(chosen)} real '{args.label}' frames from {chosen.video_id.nunique()} files; gate: std > "
          f"{args.min_std} and entropy > {args.min_entropy} nats")
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.precision", 3):
        print(summary.to_string())
        seed = table[table.method == "seed RGB, native size"]
        print("\nper file (seed RGB, native size):")
        print(seed.groupby("video_id").agg(frames=("passed", "size"), pass_both=("passed", "sum"),
                                            std_median=("std", "median"),
                                            entropy_max=("entropy", "max")).to_string())


if __name__ == "__main__":
    main()
