"""Frames as tensors: decoded once into a uint8 (N,3,S,S) tensor held in memory and cached on disk by the
files' names, sizes and modification times and S, so batches are slices of a tensor and no loader process
is ever the bottleneck."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from lus_utils.images import load_image
from lus_utils.paths import cache_dir
from lus_utils.provenance import atomic_path, stable_hash


def _decode(paths: list[str], image_size: int, workers: int) -> np.ndarray:
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        arrays = list(tqdm(pool.map(lambda p: load_image(p, image_size), paths), total=len(paths),
                           desc=f"decoding frames at {image_size} px", unit="frame", leave=False, mininterval=5.0))
    return np.stack(arrays).transpose(0, 3, 1, 2).copy() if arrays else np.zeros((0, 3, image_size, image_size),
                                                                                   np.uint8)


def load_images(paths: list[str], image_size: int, workers: int = 2, cache: bool = True) -> torch.Tensor:
    """uint8 (N,3,S,S) RGB frames; cached on disk by file names, sizes and modification times, and S."""
    if not cache or not paths:
        return torch.from_numpy(_decode(list(paths), image_size, workers))
    stats = [(p, Path(p).stat().st_size, Path(p).stat().st_mtime_ns) for p in paths]
    target = cache_dir() / "decoded" / f"{image_size}px-{stable_hash(stats, 24)}.npy"
    if target.is_file():
        return torch.from_numpy(np.load(target))
    array = _decode(list(paths), image_size, workers)
    with atomic_path(target) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array)
    return torch.from_numpy(array)


def table_images(table: pd.DataFrame, image_size: int, workers: int) -> torch.Tensor:
    """Images for every row of a run table: each distinct real frame once through the cache (oversampled copies
    share it), synthetic ones decoded."""
    real = ~table["synthetic"].to_numpy(bool)
    out = torch.empty((len(table), 3, image_size, image_size), dtype=torch.uint8)
    paths = table.loc[real, "abspath"]
    distinct = list(dict.fromkeys(paths))
    where = {p: i for i, p in enumerate(distinct)}
    decoded = load_images(distinct, image_size, workers)
    out[torch.tensor(real)] = decoded[torch.tensor([where[p] for p in paths], dtype=torch.long)]
    if (~real).any():
        out[torch.tensor(~real)] = load_images(table.loc[~real, "abspath"].tolist(), image_size, workers,
                                                   cache=False)
    return out
