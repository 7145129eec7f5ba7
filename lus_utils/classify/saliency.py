"""Where a classifier looks: Grad-CAM maps of test frames, and how much of each map lies inside the ultrasound sector.

Why: the minority class differs from the others in probe and frame size, so a classifier may rank viral
frames by the sector's shape or the frame border instead of the lung. A Grad-CAM map (the `grad-cam`
package) shows which part of the input raised the target class's score; the share of the map's mass inside
the image's ultrasound sector (the non-black region) turns that into a number per frame. `sector_fraction`
(the sector's share of the image) is what a map spread evenly would give, so `share_inside` well below it
means the map sits on the black surround or the border.

Every frame is explained by the model that did not train on it: the model of the fold whose test part holds
it (the hold-out model under the hold-out protocol). The sample is fixed by a seed and drawn from the whole
predictions table by class, so runs on the same frames (conditions of one study) show the same frames.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import cv2
import numpy as np
import pandas as pd
import torch
from matplotlib import pyplot as plt
from PIL import Image
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.reshape_transforms import vit_reshape_transform
from scipy import ndimage
from skimage.morphology import convex_hull_image, disk

from lus_utils import records
from lus_utils.classify import models
from lus_utils.classify.training import load_run_model
from lus_utils.data.dataset import read_frames
from lus_utils.images import load_image, to_grey
from lus_utils.paths import OutLayout
from lus_utils.plots import image_grid
from lus_utils.provenance import atomic_path, sha256_file, write_csv_atomic, write_json_atomic
from lus_utils.vocabulary import Split

SECTOR_THRESHOLD = 5  # grey level above which a pixel belongs to the image (compression noise in the black stays below)
SECTOR_CLOSING = 0.03  # closing radius, as a share of the frame's shorter side (bridges dark speckle)
MIN_CAM_CELLS = 3  # a ResNet stage is used for Grad-CAM only if its map is at least this many cells a side
CAM_PER_CLASS, CAM_SEED = 4, 0  # the sample: frames per class, and its seed (fixed, so every condition shows the same)
CAM_DIR = "cam"  # a run folder's subfolder holding its Grad-CAM overlays and table
CAM_RECORD = "cam_run.json"  # written last in CAM_DIR: what the maps were drawn from (their presence means complete)


# --- the ultrasound sector ------------------------------------------------------------------------------------
def sector_mask(image: np.ndarray, threshold: int = SECTOR_THRESHOLD, closing: float = SECTOR_CLOSING,
                hull: bool = True) -> np.ndarray:
    """Boolean mask of the ultrasound sector: bright pixels, closed, the largest component, holes filled.

    With `hull`, the component's convex hull: dark regions inside the sector that touch its edge (an
    effusion, the far field) still count as sector. Text and markers in the black surround are smaller
    components and drop out.
    """
    grey = to_grey(image)
    bright = grey > threshold
    if not bright.any():
        raise ValueError("the frame is black everywhere: it has no ultrasound sector")
    radius = max(1, int(round(closing * min(grey.shape))))
    padded = np.pad(bright, radius)  # closing near the border must not shrink the sector there
    # OpenCV's closing equals scipy's binary_closing on the padded frame and is ~20x faster at native size
    closed = cv2.morphologyEx(padded.astype(np.uint8), cv2.MORPH_CLOSE,
                              disk(radius).astype(np.uint8))[radius:-radius, radius:-radius].astype(bool)
    labels, n = ndimage.label(closed)
    sizes = ndimage.sum_labels(closed, labels, index=np.arange(1, n + 1))
    largest = labels == (int(np.argmax(sizes)) + 1)
    filled = ndimage.binary_fill_holes(largest)
    return convex_hull_image(filled) if hull else filled


def inside_share(cam: np.ndarray, mask: np.ndarray) -> float:
    """Share of a non-negative map's mass inside `mask` (NaN for an all-zero map: it points nowhere)."""
    cam = np.asarray(cam, dtype=np.float64)
    if cam.shape != mask.shape:
        raise ValueError(f"map {cam.shape} and mask {mask.shape} differ in shape: resize the map to the frame first")
    if (cam < 0).any():
        raise ValueError("a saliency map must be non-negative (Grad-CAM maps are, after their ReLU)")
    total = cam.sum()
    return float(cam[mask].sum() / total) if total > 0 else math.nan


# --- Grad-CAM on timm models ------------------------------------------------------------------------------------
def vit_reshape(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """grad-cam's ViT reshape transform for this model's patch grid (tokens -> channels x grid)."""
    if getattr(model, "num_prefix_tokens", 1) != 1:
        raise ValueError(f"ViT with {model.num_prefix_tokens} prefix tokens: vit_reshape_transform drops one only")
    height, width = model.patch_embed.grid_size
    return partial(vit_reshape_transform, height=height, width=width)


def cam_layer(model: torch.nn.Module, image_size: int) -> tuple[torch.nn.Module, Callable | None]:
    """The layer Grad-CAM reads, and the reshape transform it needs (ViT: tokens to a grid).

    ResNet: the last block of the deepest stage whose map has at least MIN_CAM_CELLS cells a side at
    `image_size` (layer4 at 96 px and up; at small inputs its map is one or two cells, a constant).
    ViT: the first norm of the last block (the recipe of the grad-cam documentation).
    """
    if hasattr(model, "blocks") and hasattr(model, "patch_embed"):
        return model.blocks[-1].norm1, vit_reshape(model)
    if all(hasattr(model, f"layer{i}") for i in range(1, 5)):
        for stage, stride in ((4, 32), (3, 16), (2, 8)):
            if math.ceil(image_size / stride) >= MIN_CAM_CELLS or stage == 2:
                return getattr(model, f"layer{stage}")[-1], None
    raise ValueError(f"no Grad-CAM layer rule for {type(model).__name__}: pass `layer` (and `reshape`) yourself")


def grad_cam(model: torch.nn.Module, images: torch.Tensor, targets: Sequence[int], layer: torch.nn.Module,
             reshape: Callable | None = None, batch_size: int = 16) -> np.ndarray:
    """Grad-CAM maps (N x H x W, each scaled to 0-1 by grad-cam; all zero where nothing raises the target)
    of uint8 (N,3,H,W) frames, for the class index `targets[i]` of frame i."""
    if len(images) != len(targets):
        raise ValueError(f"{len(images)} images but {len(targets)} targets")
    model.eval()
    device = models.model_device(model)
    out = []
    with GradCAM(model=model, target_layers=[layer], reshape_transform=reshape) as cam:
        for start in range(0, len(images), batch_size):
            batch = models.to_input(model, images[start:start + batch_size].to(device))
            chosen = [ClassifierOutputTarget(int(t)) for t in targets[start:start + batch_size]]
            out.append(cam(input_tensor=batch, targets=chosen))
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, *images.shape[2:]), np.float32)


def overlay(image: np.ndarray, cam: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """uint8 RGB frame with its map as a heat map on top, and the sector's outline in white."""
    rgb = np.asarray(image)
    rgb = np.repeat(rgb[..., None], 3, axis=2) if rgb.ndim == 2 else rgb[..., :3]
    cam = cv2.resize(np.asarray(cam, np.float32), (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)
    picture = show_cam_on_image(rgb.astype(np.float32) / 255.0, np.clip(cam, 0, 1), use_rgb=True, image_weight=0.6)
    if mask is not None:
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(picture, contours, -1, (255, 255, 255), max(1, min(rgb.shape[:2]) // 150))
    return picture


# --- a run's test frames ------------------------------------------------------------------------------------------
def sample_frames(predictions: pd.DataFrame, classes: Sequence[str], per_class: int, seed: int) -> pd.DataFrame:
    """Up to `per_class` predicted frames of every class, from distinct videos where there are enough.

    Drawn from the table sorted by path, so the draw depends on the frames and the seed, not the row order.
    """
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    rng = np.random.default_rng(seed)
    table = predictions.sort_values("path").reset_index(drop=True)
    picks = []
    for label in classes:
        group = table[table["label"] == label]
        if group.empty:
            continue
        firsts = group.iloc[rng.permutation(len(group))].drop_duplicates("video_id")
        rest = group.drop(index=firsts.index)
        picks.append(pd.concat([firsts, rest.iloc[rng.permutation(len(rest))]]).head(per_class))
    if not picks:
        raise ValueError(f"no predicted frame has a class among {list(classes)}")
    return pd.concat(picks).reset_index(drop=True)


def has_network(run_dir: str | Path) -> bool:
    """Whether a run trained a network (the metadata reference trains none: it has no checkpoint, no map)."""
    return any(Path(run_dir).glob("best*.pt"))


@dataclass
class RunSaliency:
    """Grad-CAM of one run's sampled test frames: one table row per frame, and the overlays in sample order."""

    run_id: str
    arch: str
    table: pd.DataFrame
    overlays: list[np.ndarray]


def run_saliency(run_dir: str | Path, frames: pd.DataFrame, per_class: int = CAM_PER_CLASS, seed: int = CAM_SEED,
                 target: str = "label", threads: int = 1) -> RunSaliency:
    """Grad-CAM maps of a seeded sample of a run's test frames, each from the model that did not train on it.

    `target`: which class's score is explained: "label" (the true class), "pred" (the predicted one) or
    a class name. `frames` is the study's frames.csv table (it locates each frame's file).
    """
    run_dir = Path(run_dir)
    _, record = records.read_run_record(run_dir / "metrics.json")
    predictions = records.read_predictions(run_dir / "predictions.csv", record["classes"])
    located = predictions.merge(frames[["path", "abspath"]].drop_duplicates("path"), on="path", how="left")
    if located["abspath"].isna().any():
        raise ValueError(f"{int(located['abspath'].isna().sum())} frames of {run_dir / 'predictions.csv'} are not in "
                         "the frames table given: pass the frames.csv the run was trained on")
    # Which of the run's models predicted each frame: its split column, by fold (or draw in a simulated run).
    model_of = {Split.from_column(c).unit: c for c in record["splits"]}
    located["split"] = [model_of[draw if draw >= 0 else fold] for fold, draw in zip(located["fold"], located["draw"])]
    classes = [c[len("prob_"):] for c in located.columns if c.startswith("prob_")]
    sample = sample_frames(located, classes, per_class, seed)
    torch.set_num_threads(threads)
    rows, pictures, arch = [], {}, ""
    for split, chosen in sample.groupby("split", sort=True):
        model, model_classes, image_size = load_run_model(run_dir, split)
        arch = model.pretrained_cfg.get("architecture", type(model).__name__)
        if model_classes != classes:
            raise ValueError(f"the checkpoint of {split} has classes {model_classes}, predictions.csv {classes}")
        targets = [_target_index(r, target, classes) for r in chosen.itertuples()]
        resized = torch.from_numpy(np.stack([load_image(p, image_size) for p in chosen["abspath"]])
                                   .transpose(0, 3, 1, 2).copy())
        layer, reshape = cam_layer(model, image_size)
        cams = grad_cam(model, resized, targets, layer, reshape)
        for index, record, cam, t in zip(chosen.index, chosen.itertuples(), cams, targets):
            row, pictures[index] = _frame_row(record, load_image(record.abspath), cam, classes[t])
            rows.append((index, row))
    table = pd.DataFrame([row for _, row in sorted(rows, key=lambda item: item[0])])
    return RunSaliency(run_id=run_dir.name, arch=arch, table=table, overlays=[pictures[i] for i in sorted(pictures)])


def _target_index(record: object, target: str, classes: list[str]) -> int:
    name = {"label": getattr(record, "label"), "pred": getattr(record, "pred", None)}.get(target, target)
    if name not in classes:
        raise ValueError(f"Grad-CAM target '{target}' gives class '{name}', not one of {classes}; use 'label', "
                         "'pred' or a class name")
    return classes.index(name)


def _frame_row(record: object, image: np.ndarray, cam: np.ndarray, target: str) -> tuple[dict, np.ndarray]:
    """One frame's table row (map resized to the native frame, where the sector is found) and its overlay."""
    mask = sector_mask(image)
    full = cv2.resize(cam, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR).clip(0, None)
    share = inside_share(full, mask)
    fraction = float(mask.mean())
    row = {"path": record.path, "video_id": record.video_id, "label": record.label,
            "probe": record.probe, "split": record.split, "pred": getattr(record, "pred", ""),
            "target": target, "share_inside": share, "sector_fraction": fraction,
            "enrichment": share / fraction if fraction > 0 else math.nan}
    return row, overlay(image, full, mask)


def class_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per class: frames, mean share of saliency inside the sector, mean sector area, frames pointing nowhere."""
    return table.groupby("label").agg(frames=("path", "size"), share_inside=("share_inside", "mean"),
                                      sector_fraction=("sector_fraction", "mean"),
                                      enrichment=("enrichment", "mean"),
                                      empty_maps=("share_inside", lambda s: int(s.isna().sum())))


# --- figures and files ----------------------------------------------------------------------------------------
def _title(row: pd.Series) -> str:
    share = "no map" if math.isnan(row["share_inside"]) else f"in {row['share_inside']:.2f}/{row['sector_fraction']:.2f}"
    return f"{row['label']}→{row['pred']} ({row['probe']})\n{share}"


def plot_run(result: RunSaliency, cell_inches: float = 1.9) -> plt.Figure:
    """The run's overlays, one row per class, titled label -> prediction and share inside / sector area."""
    ncols = int(result.table["label"].value_counts().max())
    images, titles = [], []
    for _, group in result.table.groupby("label", sort=False):
        for i in range(ncols):
            if i < len(group):
                images.append(result.overlays[group.index[i]])
                titles.append(_title(group.iloc[i]))
            else:
                images.append(np.zeros((8, 8), np.uint8))
                titles.append("")
    return image_grid(images, titles, ncols=ncols, cell_inches=cell_inches,
                      suptitle=f"Grad-CAM of {result.run_id} ({result.arch}); white: ultrasound sector")


def save_figure(fig: plt.Figure, target: Path, dpi: int = 110) -> Path:
    with atomic_path(target) as tmp, open(tmp, "wb") as handle:
        fig.savefig(handle, format="png", dpi=dpi, bbox_inches="tight")
    return target


def save_run(result: RunSaliency, run_dir: str | Path, per_class: int = CAM_PER_CLASS, seed: int = CAM_SEED,
             target: str = "label") -> Path:
    """Write the overlays (cam/cam_NN_<class>.png), the table (cam/cam_saliency.csv), the panel and, last, the
    record of what they were drawn from (cam/cam_run.json), which lets notebook 06 reuse them (`saved_run`)."""
    folder = Path(run_dir) / CAM_DIR
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CAM_RECORD).unlink(missing_ok=True)  # maps being replaced are not complete until the record is back
    for old in folder.glob("cam_[0-9]*_*.png"):
        old.unlink()
    for i, (row, picture) in enumerate(zip(result.table.itertuples(), result.overlays)):
        with atomic_path(folder / f"cam_{i:02d}_{row.label}.png") as tmp:
            Image.fromarray(picture).save(tmp, format="png", compress_level=1)  # fast; overlays are viewed, not archived
    write_csv_atomic(folder / "cam_saliency.csv", result.table)
    figure = plot_run(result)
    save_figure(figure, folder / "cam_panel.png")
    plt.close(figure)
    write_json_atomic(folder / CAM_RECORD, _cam_record(run_dir, result.arch, per_class, seed, target))
    return folder


def _cam_record(run_dir: str | Path, arch: str, per_class: int, seed: int, target: str) -> dict:
    # The run's metrics.json is rewritten whenever the run is retrained: its hash ties the maps to those weights.
    return {"arch": arch, "per_class": per_class, "seed": seed, "target": target,
            "metrics_sha256": sha256_file(Path(run_dir) / "metrics.json")}


def saved_run(run_dir: str | Path, per_class: int = CAM_PER_CLASS, seed: int = CAM_SEED,
              target: str = "label") -> RunSaliency | None:
    """The maps `save_run` wrote for this run, if they are complete and were drawn with this sample from the
    run's current weights; None otherwise (then compute them again with `run_saliency`)."""
    folder = Path(run_dir) / CAM_DIR
    if not (folder / CAM_RECORD).is_file() or not (Path(run_dir) / "metrics.json").is_file():
        return None
    record = json.loads((folder / CAM_RECORD).read_text())
    if record != _cam_record(run_dir, record.get("arch", ""), per_class, seed, target):
        return None
    text = ["path", "video_id", "label", "probe", "split", "pred", "target"]
    table = pd.read_csv(folder / "cam_saliency.csv", dtype=dict.fromkeys(text, str), keep_default_na=False,
                        na_values={c: [""] for c in ("share_inside", "sector_fraction", "enrichment")})
    pictures = sorted(folder.glob("cam_[0-9]*_*.png"))
    if len(pictures) != len(table):
        return None
    overlays = [np.asarray(Image.open(p).convert("RGB")) for p in pictures]
    return RunSaliency(run_id=Path(run_dir).name, arch=record["arch"], table=table, overlays=overlays)


def explain_run(run_dir: str | Path, frames: pd.DataFrame, threads: int = 1) -> RunSaliency | None:
    """Notebook 02's Grad-CAM step: the run's maps of the fixed sample, written to <run_dir>/cam/.

    None (with a note) for a run that trained no network, such as the metadata-only reference.
    """
    if not has_network(run_dir):
        print(f"run {Path(run_dir).name} trained no network (metadata reference): no Grad-CAM map")
        return None
    result = run_saliency(run_dir, frames, threads=threads)
    print(f"Grad-CAM overlays, table and panel written to {save_run(result, run_dir)}")
    return result


def saved_panel(run_dir: str | Path) -> Any:
    """The run's panel as `save_run` wrote it (cam/cam_panel.png), for a notebook to show without drawing it again."""
    from IPython.display import Image as ShownImage  # lazy: only a notebook shows it

    return ShownImage(filename=str(Path(run_dir) / CAM_DIR / "cam_panel.png"))


def condition_panel(results: Mapping[str, RunSaliency], shown_per_class: int = 2,
                    cell_inches: float = 1.6) -> plt.Figure:
    """One row per condition (the same sampled frames in each, the first `shown_per_class` of every class)."""
    if not results:
        raise ValueError("condition_panel needs at least one run's saliency")
    reference = next(iter(results.values())).table
    for name, result in results.items():
        if result.table["path"].tolist() != reference["path"].tolist():
            raise ValueError(f"run {result.run_id} ({name}) shows other frames than the first run: draw all with "
                             "the same seed and per_class on the same frames.csv")
    shown = reference.groupby("label", sort=False).head(shown_per_class).index
    images, titles = [], []
    for name, result in results.items():
        for i in shown:
            images.append(result.overlays[i])
            titles.append(f"{name}\n{_title(result.table.loc[i])}")
    return image_grid(images, titles, ncols=len(shown), cell_inches=cell_inches,
                      suptitle="Grad-CAM across conditions (same frames; white: ultrasound sector)")


def condition_summary(results: Mapping[str, RunSaliency]) -> pd.DataFrame:
    """Mean share of saliency inside the sector per condition and class."""
    return pd.concat({name: class_summary(r.table)["share_inside"] for name, r in results.items()},
                     axis=1).T.rename_axis("condition")


def pick_runs(runs: pd.DataFrame, runs_dir: str | Path, arch: str | None = None) -> dict[str, Path]:
    """One run folder per condition of `arch` (default: the first architecture listed) for the panel: its
    first repeat and seed. Runs without a network (the metadata-only reference) or predictions are left out."""
    if runs.empty:
        raise ValueError("no runs to choose from")
    table = runs[~runs["condition"].str.contains("metadata") & ~runs["arch"].str.contains("metadata")]
    if "has_predictions" in table.columns:
        table = table[table["has_predictions"].astype(bool)]
    arch = arch or (table["arch"].iloc[0] if len(table) else "")
    table = table[table["arch"] == arch]
    if table.empty:
        raise ValueError(f"no classifier run of '{arch}' with predictions (architectures: {sorted(runs['arch'].unique())})")
    order = [c for c in ("repeat", "seed", "run_id") if c in table.columns]  # the first unit's run
    first = table.sort_values(order, kind="stable").drop_duplicates("condition")
    return {row.condition: Path(runs_dir) / row.run_id for row in first.itertuples()}


def runs_saliency(runs: Mapping[str, str | Path], frames: pd.DataFrame, per_class: int = CAM_PER_CLASS,
                  seed: int = CAM_SEED, threads: int = 1) -> dict[str, RunSaliency]:
    """run_saliency of several runs (name -> run folder), the same frames in each: the input of condition_panel.
    Maps a run's notebook already saved for this sample are read back instead of computed again."""
    return {name: saved_run(run_dir, per_class, seed) or run_saliency(run_dir, frames, per_class, seed, threads=threads)
            for name, run_dir in runs.items()}


def study_panel(out_dir: str | Path, runs: pd.DataFrame, target: str | Path, threads: int = 1) -> pd.DataFrame:
    """Notebook 06's Grad-CAM view: the panel across conditions (saved to `target`) and its share table.

    `runs` is the study's run table (run_id, condition, arch, repeat, seed); with no run to show, a note and
    an empty table.
    """
    layout = OutLayout(Path(out_dir))
    try:
        chosen = pick_runs(runs, layout.runs)
    except ValueError as err:
        print(f"no Grad-CAM panel: {err}")
        return pd.DataFrame()
    results = runs_saliency(chosen, read_frames(layout.frames_csv), threads=threads)
    save_figure(condition_panel(results), Path(target))
    return condition_summary(results)
