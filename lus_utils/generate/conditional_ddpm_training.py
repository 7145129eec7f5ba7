"""The class-conditional DDPM (variant `class_conditional`): one model of every training frame of a split, the
class as a label, asked for the minority at sampling.

Why: a DDPM trained from scratch on a few minority frames has to learn what an ultrasound frame is (the sector,
the pleural line, A-lines, speckle) from those frames, and on a CPU budget it makes blurred grey blobs. The
recipe a practitioner would try first today trains one model on every frame of the split's training part, all
classes, with the class as a label, and asks it for the minority: the geometry and texture come from ~1,000
frames, only the minority's specifics from its few.

- Frames: `ddpm_training.select_training_frames` (the split's whole training part; in a simulated draw the
  target cut to its first k patients), recorded in the provenance like every variant's, so the classifier's
  leakage check covers them. Under cv the other classes' patients move between parts from one repeat to the
  next, so the generator is the repeat's (`vocabulary.ddpm_set_ref`).
- Model: `ddpm_training.build_unet` with a class embedding of n_classes + 1 labels, the last the null label.
  Labels are replaced by the null label with probability `label_dropout`, so one network predicts both the
  conditional and the unconditional noise; sampling uses classifier-free guidance (`ddpm_sampling`).
- Batches: `conditional_batch_size` frames drawn with replacement, every frame equally likely
  (`class_sampling: frames`) or every class (`balanced`), random horizontal flips; every draw (frames, flips,
  label dropout, noise, timesteps) from a generator seeded by (seed, step), so a run resumed from its
  `checkpoint-N` ends with the same weights as an uninterrupted one. The architecture, learning rate, warm-up,
  EMA, checkpoints, precision and the saved `DDPMPipeline` are `ddpm_training`'s; `class_labels.json` beside the
  pipeline names each label.
"""
from __future__ import annotations

import copy
import math
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from lus_utils.config.generate import DDPMParams
from lus_utils.config.runtime import RuntimeParams
from lus_utils.generate import ddpm_training
from lus_utils.generate.ddpm_sampling import (CLASS_LABELS_FILE, STREAM_CONDITIONAL_STEP, STREAM_GRID, sample_images,
                                              seed_for)
from lus_utils.provenance import atomic_dir, fingerprint_files, provenance, write_csv_atomic, write_json_atomic
from lus_utils.reproducibility import resolve_device, resolve_precision
from lus_utils.vocabulary import CLASSES

# Parameters that change the trained weights (the cache and the checkpoints are keyed on them, with the
# runtime's training precision, the classes and the frames).
TRAINING_KEYS = ("variant", "split_column", "target_class", "real_patients", "seed", "image_size",
                 "block_out_channels", "layers_per_block", "attention_levels", "conditional_batch_size", "lr",
                 "warmup_steps", "ema_decay", "conditional_train_steps", "label_dropout", "class_sampling")
LOG_COLUMNS = ["step", "epoch", "loss", "lr"]  # `epoch`: passes over the frames so far (a fraction)


def model_classes(selected: pd.DataFrame) -> list[str]:
    """The model's classes, label i = class i: the study's classes present in the frames, in the study's order
    (others after)."""
    present = set(selected["label"])
    return [c for c in CLASSES if c in present] + sorted(present - set(CLASSES))


def label_indices(selected: pd.DataFrame, classes: list[str]) -> torch.Tensor:
    index = {c: i for i, c in enumerate(classes)}
    return torch.tensor([index[label] for label in selected["label"]], dtype=torch.long)


def sampling_weights(labels: torch.Tensor, class_sampling: str) -> torch.Tensor:
    """Per-frame batch-draw weights: equal (`frames`), or inverse class counts (`balanced`)."""
    if class_sampling == "frames":
        return torch.ones(len(labels), dtype=torch.float64)
    return 1.0 / torch.bincount(labels).double()[labels]


def drop_labels(labels: torch.Tensor, share: float, null: int, generator: torch.Generator) -> torch.Tensor:
    """`labels` with each replaced by `null` with probability `share` (one seeded draw per label)."""
    dropped = torch.rand(len(labels), generator=generator) < share
    return torch.where(dropped, torch.full_like(labels, null), labels)


def training_batch(data: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, null: int, p: DDPMParams,
                   step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Step `step`'s frames (drawn with replacement by `weights`, random horizontal flips), noise, timesteps and
    labels after dropout to `null`, all from one generator seeded by (seed, step)."""
    g = ddpm_training.stream_generator(p.seed, STREAM_CONDITIONAL_STEP, step)
    index = torch.multinomial(weights, p.conditional_batch_size, replacement=True, generator=g)
    batch = data[index]
    flip = torch.rand(len(index), generator=g) < 0.5
    batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
    batch_labels = drop_labels(labels[index], p.label_dropout, null, g)
    noise = torch.randn(batch.shape, generator=g)
    timesteps = torch.randint(0, ddpm_training.NUM_TRAIN_TIMESTEPS, (len(index),), generator=g)
    return batch, noise, timesteps, batch_labels


def training_key(p: DDPMParams, selected: pd.DataFrame, classes: list[str], precision: str) -> dict[str, Any]:
    """What determines the trained weights: the training parameters and precision, the classes and the frames
    (by content)."""
    return {**{k: getattr(p, k) for k in TRAINING_KEYS}, "precision": precision, "classes": list(classes),
            "training_frames": sorted(selected["path"]),
            "frames_fingerprint": fingerprint_files(sorted(selected["abspath"]))}


def grid_steps(p: DDPMParams) -> set[int]:
    """The steps after which a sample grid is saved: `sample_grids` of them, evenly spaced."""
    total = p.conditional_train_steps
    return {math.ceil(k * total / p.sample_grids) for k in range(1, p.sample_grids + 1)}


def _save_grid(path: Path, run: ddpm_training.Training, p: DDPMParams, class_label: int, precision: str) -> None:
    """A strip of minority samples with the EMA weights, the set's sampler and guidance (same noise every time)."""
    run.ema.store(run.model.parameters())
    run.ema.copy_to(run.model.parameters())
    run.model.eval()
    try:
        images, _ = sample_images(ddpm_training.make_pipeline(run.model), p.sampler, p.sampling_steps,
                                  ddpm_training.GRID_IMAGES, ddpm_training.GRID_IMAGES,
                                  seed_for(p.seed, STREAM_GRID, 0), run.device, progress=False, precision=precision,
                                  class_label=class_label, guidance_scale=p.guidance_scale)
    finally:
        run.ema.restore(run.model.parameters())
        run.model.train()
    ddpm_training.write_png(path, np.concatenate(list(images), axis=1))


def _save_pipeline(gen_dir: Path, run: ddpm_training.Training, p: DDPMParams, key: dict[str, Any],
                   selected: pd.DataFrame, classes: list[str], log: pd.DataFrame, seconds: float,
                   cpu_seconds: float, resumed_from: int | None) -> None:
    """The EMA weights as a DDPMPipeline with `class_labels.json`, the loss log and the provenance; then the
    checkpoints go."""
    ema_unet = copy.deepcopy(run.model).cpu()
    run.ema.copy_to(ema_unet.parameters())
    with atomic_dir(gen_dir / "pipeline") as tmp:
        ddpm_training.make_pipeline(ema_unet).save_pretrained(tmp)
        write_json_atomic(tmp / CLASS_LABELS_FILE, {"classes": list(classes), "null_label": len(classes)})
    write_csv_atomic(gen_dir / "train_log.csv", log)
    write_json_atomic(gen_dir / "provenance.json", provenance(
        asdict(p), training_key=key, training_frames=sorted(selected["path"]), class_labels=list(classes),
        training_frames_per_class=selected["label"].value_counts().reindex(classes, fill_value=0).to_dict(),
        leakage_ablation=False, total_steps=p.conditional_train_steps, train_seconds=seconds,
        train_cpu_seconds=cpu_seconds, resumed_from=resumed_from, device=str(run.device),
        n_parameters=int(sum(t.numel() for t in run.model.parameters()))))
    shutil.rmtree(gen_dir / "checkpoints", ignore_errors=True)


def train_conditional(selected: pd.DataFrame, p: DDPMParams, gen_dir: Path, runtime: RuntimeParams | None = None,
                      max_steps: int | None = None, progress: bool = True) -> ddpm_training.TrainResult:
    """Train (or reuse) the class-conditional DDPM on `selected` frames (every class); save the EMA pipeline in
    `gen_dir/pipeline` with its class labels.

    Reused when `gen_dir/provenance.json` has the same training key. With `p.resume == "latest"` an unfinished
    run continues from its last checkpoint. `max_steps` stops after that many optimizer steps in all (call again
    to continue); the pipeline is saved only when `p.conditional_train_steps` are done.
    """
    gen_dir = Path(gen_dir)
    runtime = runtime or RuntimeParams()
    classes = model_classes(selected)
    if p.target_class not in classes:
        raise ValueError(f"the frames hold no '{p.target_class}' frame to learn the target class from: {classes}")
    precision = resolve_precision(runtime.precision, resolve_device(runtime.device))
    key = training_key(p, selected, classes, precision)
    total = p.conditional_train_steps
    cached = ddpm_training.cached_result(gen_dir, key, total)
    if cached is not None:
        return cached
    run = ddpm_training.start_training(p, runtime, total, n_classes=len(classes))
    start, log, resumed_from = ddpm_training.resume_or_restart(gen_dir, key, p, run, total)
    run.ema.to(run.device)
    data = ddpm_training.load_training_tensor(selected, p.image_size)
    labels = label_indices(selected, classes)
    weights = sampling_weights(labels, p.class_sampling)
    stop = total if max_steps is None else min(total, max_steps)
    grids = grid_steps(p) if p.sample_grids else set()
    began, cpu_began = time.perf_counter(), time.process_time()
    run.model.train()
    bar = tqdm(total=total, initial=start, desc=f"train {gen_dir.name}", unit="step", disable=not progress)
    for step in range(start, stop):
        batch, noise, timesteps, batch_labels = training_batch(data, labels, weights, len(classes), p, step)
        loss = ddpm_training.optimizer_step(run, batch, noise, timesteps, batch_labels)
        done = step + 1
        log.append({"step": done, "epoch": done * p.conditional_batch_size / len(data), "loss": loss,
                    "lr": float(run.lr_scheduler.get_last_lr()[0])})
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}")
        if done in grids:
            _save_grid(gen_dir / "grids" / f"step_{done:05d}.png", run, p, classes.index(p.target_class),
                       runtime.sampling_precision)
        if done % p.checkpoint_every == 0 or done == stop:
            ddpm_training.save_checkpoint(gen_dir, done, key, run.model, run.ema, run.optimizer, run.lr_scheduler,
                                          run.scaler, log)
    bar.close()
    seconds, cpu_seconds = time.perf_counter() - began, time.process_time() - cpu_began
    log_frame = pd.DataFrame(log, columns=LOG_COLUMNS)
    finished = stop == total
    if finished:
        _save_pipeline(gen_dir, run, p, key, selected, classes, log_frame, seconds, cpu_seconds, resumed_from)
    return ddpm_training.TrainResult(gen_dir, gen_dir / "pipeline" if finished else None, False, stop, total,
                                     seconds, resumed_from, log_frame, ddpm_training.grid_paths(gen_dir))
