"""The synthetic images, shown so a reader judges them: per family a grid of RANDOM kept images beside real frames
of the class at the same resolution (not only the nearest ones), and the images closest to a training frame
beside that frame, again at the synthetic image's resolution (`synthetic_grid.png`, `example_pairs.png`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lus_utils import synthetic_sets
from lus_utils.compare.audit_tables import example_pairs
from lus_utils.compare.figures import placeholder, save_figure
from lus_utils.compare.labels import family_label
from lus_utils.images import load_image, resize
from lus_utils.paths import OutLayout


def _at(path: Path, size: tuple[int, int]) -> np.ndarray:
    """A grey image at `size` (h, w): a real frame shown at the resolution the synthetic images have."""
    image = load_image(path, grayscale=True)
    return resize(image, size[1]) if image.shape != size else image


def family_sets(audits: pd.DataFrame) -> dict[str, str]:
    """The first set folder of each family (its first fold or draw), in the audits' order."""
    if audits.empty:
        return {}
    return dict(audits.drop_duplicates("family")[["family", "synthetic_set"]].itertuples(index=False))


def synthetic_grid_plot(out_dir: Path, audits: pd.DataFrame, folder: Path, n: int = 8, seed: int = 0) -> Any:
    """Per family (its first set): `n` random kept images, and below them `n` random real frames of the same class
    from the frames its generator learned from, at the same resolution."""
    layout = OutLayout(Path(out_dir))
    frames = pd.read_csv(layout.frames_csv, usecols=["path", "label"], dtype=str) if layout.frames_csv.is_file() \
        else pd.DataFrame(columns=["path", "label"])
    rows = []
    rng = np.random.default_rng([seed, 77])
    for family, name in family_sets(audits).items():
        set_dir = layout.synthetic / name
        try:
            manifest = synthetic_sets.read_manifest(set_dir)
            record = synthetic_sets.read_provenance(set_dir)
        except synthetic_sets.SyntheticSetError:
            continue
        kept = manifest[synthetic_sets.passed_gate(manifest)]
        if kept.empty:
            continue
        label = str(kept["label"].iloc[0])
        chosen = kept.iloc[np.sort(rng.choice(len(kept), size=min(n, len(kept)), replace=False))]
        images = [load_image(p, grayscale=True) for p in chosen["abspath"]]
        seen = frames[frames["path"].isin(record.get("training_frames", [])) & (frames["label"] == label)]["path"]
        real_paths = [layout.data / p for p in seen]
        real_paths = [real_paths[i] for i in np.sort(rng.choice(len(real_paths), size=min(n, len(real_paths)),
                                                                replace=False))] if real_paths else []
        rows.append((f"{family_label(family)}\n({name}, {len(kept)} kept)", images,
                     [_at(p, images[0].shape) for p in real_paths if p.is_file()], label))
    if not rows:
        return placeholder("no synthetic set with a kept image", folder, "synthetic_grid")
    fig, axes = plt.subplots(2 * len(rows), n, figsize=(1.25 * n, 2.7 * len(rows) + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for r, (title, images, real, label) in enumerate(rows):
        for row, pictures, what in ((2 * r, images, "synthetic"), (2 * r + 1, real, f"real {label}")):
            for i, picture in enumerate(pictures):
                axes[row][i].imshow(picture, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            axes[row][0].set_title(f"{title} · {what}" if row == 2 * r else what, fontsize=7, loc="left")
    fig.suptitle("Random kept synthetic images (upper row) and real frames its generator learned from, at the same "
                 "resolution (lower row)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, folder, "synthetic_grid")
    return fig


def example_pairs_plot(out_dir: Path, audits: pd.DataFrame, n: int, folder: Path) -> Any:
    """Per family (its first set), its images closest to a training frame, each beside that frame at the synthetic
    image's resolution (what memorization would look like)."""
    found = {family: pairs for family, name in family_sets(audits).items() if (pairs := example_pairs(out_dir, name, n))}
    if not found:
        return placeholder("no synthetic images with a recorded nearest training frame", folder, "example_pairs")
    ncols = 2 * max(len(p) for p in found.values())
    fig, axes = plt.subplots(len(found), ncols, figsize=(1.5 * ncols, 1.9 * len(found) + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for row, (family, pairs) in enumerate(found.items()):
        for i, (synthetic, train, similarity) in enumerate(pairs):
            made = load_image(synthetic, grayscale=True)
            for j, (picture, title) in enumerate(((made, f"synthetic\nsim {similarity:.2f}"),
                                                  (_at(train, made.shape), "nearest train"))):
                ax = axes[row][2 * i + j]
                ax.imshow(picture, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
                ax.set_title(title, fontsize=7)
        axes[row][0].text(-0.1, 0.5, family_label(family), transform=axes[row][0].transAxes, rotation=90,
                          ha="right", va="center", fontsize=7)
    fig.suptitle("Synthetic images closest to a training frame (left) and that frame at the same resolution (right)",
                 fontsize=9)
    fig.tight_layout()
    save_figure(fig, folder, "example_pairs")
    return fig
