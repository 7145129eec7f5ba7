"""Figures any stage draws with: a grid of images. Each function returns its matplotlib Figure and draws nothing else.

The stages' own figures live beside them (`data.figures`, `classify.figures`, `generate.figures`, `compare.figures`).
"""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np


def image_grid(images: Sequence[np.ndarray], titles: Sequence[str] | None = None, ncols: int = 6,
               cell_inches: float = 1.8, suptitle: str | None = None) -> plt.Figure:
    """A grid of uint8 images (grey or RGB) with optional small titles."""
    n = max(1, len(images))
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * cell_inches, nrows * cell_inches + 0.3),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, image in enumerate(images):
        ax = axes.ravel()[i]
        ax.imshow(image, cmap="gray" if np.asarray(image).ndim == 2 else None, vmin=0, vmax=255)
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=7)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig
