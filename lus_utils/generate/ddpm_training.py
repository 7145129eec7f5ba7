"""The DDPM recipe: which frames a generator trains on, its UNet and noise schedule, the training loop.

Why: the study asks whether a diffusion model trained on a handful of viral-pneumonia frames makes images
that help a classifier. The original study trained a `diffusers` UNet2DModel with a 1000-step DDPM noise
schedule on three frames (`3_mixed`) or all minority training frames (`train_all`); this module does the
same, with what reproducibility needs on top:

- Training frames come from the training part only (in a simulated-minority draw, of the first k target
  patients of its pool) and are recorded (frames.csv `path`) in the generator's provenance; the exceptions
  are `3_mixed_any_split`, the explicitly marked leakage ablation, and `seed_3_mixed`, the original study's
  generator (the same frames; sampled with its DDPM steps and gated by its rule with its redraw loop,
  `ddpm_sampling.sample_set`), marked the same way. The `class_conditional` variant learns the whole training
  part, every class, with the class as a label; its loop is `conditional_ddpm_training`, which reuses this
  module's model, optimiser, checkpoints and cache.
- Every random draw of training (batch order, flips, noise, timesteps) comes from a generator seeded by
  (seed, step), so a run resumed from a checkpoint ends with the same weights as an uninterrupted one.
- Checkpoints (`checkpoint-N`: model, EMA, optimizer, LR schedule, grad scaler, RNG states, step) are
  written atomically; the final pipeline (DDPMPipeline with the EMA weights) is saved with
  `save_pretrained`, and a second run with the same training parameters and frames reuses it.

Grayscale: the UNet has one input and one output channel. Ultrasound frames are grey; with three channels
the model would spend capacity keeping them equal and any mismatch would appear as colour noise. One
channel makes outputs grey by construction (the few coloured overlays in the data, e.g. Doppler boxes,
are turned to grey). Sampling is `ddpm_sampling`; writing the set, `ddpm_set`.
"""
from __future__ import annotations

import copy
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel
from diffusers.optimization import get_cosine_schedule_with_warmup
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from lus_utils.config.generate import DDPMParams
from lus_utils.config.runtime import RuntimeParams
from lus_utils.data import simulated_minority, splits
from lus_utils.data.splits import TooFewFramesError
from lus_utils.generate.ddpm_sampling import STREAM_BATCH_ORDER, STREAM_GRID, STREAM_STEP, sample_images, seed_for
from lus_utils.images import load_image
from lus_utils.provenance import (atomic_dir, atomic_path, fingerprint_files, provenance, read_json, write_csv_atomic,
                                  write_json_atomic)
from lus_utils.reproducibility import resolve_device, resolve_precision, thread_count
from lus_utils.vocabulary import DDPM_CONDITIONAL_VARIANT, VIRAL
from lus_utils.vocabulary import DDPM_LEAKY_VARIANTS as LEAKY_VARIANTS

N_MIXED = 3  # frames of the 3-frame variants (the original study's)
MIN_FRAMES = {"3_mixed": N_MIXED, "train_all": N_MIXED, "3_mixed_any_split": N_MIXED, "seed_3_mixed": N_MIXED}
NUM_TRAIN_TIMESTEPS = 1000
GRID_IMAGES = 8  # images in each sample grid saved during training
KEEP_CHECKPOINTS = 2  # older checkpoints are deleted while training; all are deleted once the pipeline is saved
# The original study's optimiser: torch's AdamW defaults (textual_inversion/basic_training_script.py there).
ADAM_BETAS = (0.9, 0.999)
ADAM_WEIGHT_DECAY = 0.01
MAX_GRAD_NORM = 1.0
EMA_POWER = 0.75  # EMA warm-up: decay = min(ema_decay, 1 - (1 + step) ** -EMA_POWER)
# Parameters that change the trained weights (the cache and the checkpoints are keyed on them, with the
# runtime's training precision).
TRAINING_KEYS = ("variant", "split_column", "target_class", "real_patients", "seed", "image_size",
                 "block_out_channels", "layers_per_block", "attention_levels", "batch_size", "lr", "warmup_steps",
                 "ema_decay")


def stream_generator(seed: int, stream: int, index: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed_for(seed, stream, index))


# --- training frames ---------------------------------------------------------------------------------------
def select_training_frames(frames: pd.DataFrame, variant: str, split_column: str, seed: int,
                           label: str = VIRAL, real_patients: int = 0) -> pd.DataFrame:
    """The frames a generator variant trains on (rows of frames.csv), chosen with `seed`.

    - `3_mixed`: three `label` frames of the training part, spread over as many training videos as
      there are (one per video when there are three or more; frames of one video otherwise).
    - `train_all`: every `label` frame of the training part.
    - `3_mixed_any_split`: three frames of three different `label` videos whatever their split (the
      leakage ablation); `seed_3_mixed` picks the same way (the original study's generator).
    - `class_conditional`: every training frame of the split, every class it covers (`every_training_frame`).
    In a simulated-minority draw (`real_patients` k > 0) the training part of `label` is its first k pool
    patients'. Stops with the counts when there are too few frames or videos.
    """
    if variant not in MIN_FRAMES and variant != DDPM_CONDITIONAL_VARIANT:
        raise ValueError(f"unknown DDPM variant '{variant}'; known: {sorted(MIN_FRAMES) + [DDPM_CONDITIONAL_VARIANT]}")
    if split_column not in frames.columns:
        raise ValueError(f"frames have no column '{split_column}' (was frames.csv built with enough folds?)")
    frames = simulated_minority.within_real_patients(frames, split_column, real_patients)
    if variant == DDPM_CONDITIONAL_VARIANT:
        return every_training_frame(frames, split_column, label)
    minority = frames[frames["label"] == label]
    rng = np.random.default_rng([seed, 2024])
    if variant in LEAKY_VARIANTS:
        videos = sorted(minority["video_id"].unique())
        if len(videos) < N_MIXED:
            raise TooFewFramesError(f"variant {variant} needs {N_MIXED} different '{label}' videos in any split; "
                                    f"the frames have {len(videos)} ({minority.groupby(split_column).size().to_dict()} "
                                    "frames per part)")
        chosen_videos = [videos[i] for i in rng.permutation(len(videos))[:N_MIXED]]
        picks = [minority[minority.video_id == v].index[rng.integers(0, (minority.video_id == v).sum())]
                 for v in chosen_videos]
        return frames.loc[picks]
    pool = splits.minority_training_pool(minority, split_column, MIN_FRAMES[variant], f"variant {variant}",
                                         "Use another fold, or rebuild frames with more frames per video "
                                         "(data.max_frames_per_video, data.sample_hz).")
    if variant == "train_all":
        return pool.sort_values("path")
    # Round robin over the videos in a seeded order, each video's frames in a seeded order: three frames
    # from three videos when there are three, else as spread as the training split allows.
    picks = splits.spread_over_videos(pool, N_MIXED, rng)
    return frames.loc[picks]


def every_training_frame(frames: pd.DataFrame, split_column: str, label: str) -> pd.DataFrame:
    """The class-conditional variant's frames: the split's whole training part (every class it covers; a
    simulated draw's target already cut to its first k patients), sorted by path. Stops when `label` has no
    training frame or no other class has one (there would be nothing to learn ultrasound from)."""
    train = frames[frames[split_column] == "train"]
    counts = train["label"].value_counts().to_dict()
    if counts.get(label, 0) == 0 or len(counts) < 2:
        raise TooFewFramesError(f"variant {DDPM_CONDITIONAL_VARIANT} needs training frames of '{label}' and of at "
                                f"least one other class in '{split_column}'; its training part has {counts}")
    return train.sort_values("path")


def load_training_tensor(selected: pd.DataFrame, image_size: int) -> torch.Tensor:
    """The selected frames as a float tensor (N, 1, size, size) in [-1, 1] (grey, squashed to a square)."""
    images = [load_image(p, size=image_size, grayscale=True) for p in selected["abspath"]]
    array = np.stack(images).astype(np.float32)[:, None] / 127.5 - 1.0
    return torch.from_numpy(array)


def training_preview(selected: pd.DataFrame, split_column: str, size: int = 96,
                     max_frames: int = 18) -> tuple[list[np.ndarray], list[str]]:
    """Grey images and titles (video, part) of the first `max_frames` training frames, for a grid."""
    shown = selected.head(max_frames)
    images = [load_image(p, size=size, grayscale=True) for p in shown["abspath"]]
    titles = [f"{v[:18]} ({part})" for v, part in zip(shown["video_id"], shown[split_column])]
    return images, titles


# --- model -------------------------------------------------------------------------------------------------
def block_types(p: DDPMParams) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Down and up block types: attention blocks at `attention_levels` (the original study: the fifth of six)."""
    levels = range(len(p.block_out_channels))
    down = tuple("AttnDownBlock2D" if i in p.attention_levels else "DownBlock2D" for i in levels)
    up = tuple("AttnUpBlock2D" if i in p.attention_levels else "UpBlock2D" for i in reversed(levels))
    return down, up


def build_unet(p: DDPMParams, n_classes: int = 0):
    """UNet2DModel from the parameters: one grey channel in and out; with `n_classes`, a class embedding of
    n_classes + 1 labels (the last one the null label of classifier-free guidance)."""
    down, up = block_types(p)
    groups = 32 if all(c % 32 == 0 for c in p.block_out_channels) else 8
    return UNet2DModel(sample_size=p.image_size, in_channels=1, out_channels=1, layers_per_block=p.layers_per_block,
                       block_out_channels=tuple(p.block_out_channels), down_block_types=down, up_block_types=up,
                       norm_num_groups=groups, num_class_embeds=n_classes + 1 if n_classes else None)


def build_noise_scheduler():
    return DDPMScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS)


def epochs_for(p: DDPMParams) -> int:
    return p.epochs_train_all if p.variant == "train_all" else p.epochs_3_mixed


def training_key(p: DDPMParams, selected: pd.DataFrame, precision: str) -> dict[str, Any]:
    """What determines the trained weights: the training parameters and precision, epochs and the frames (by
    content)."""
    return {**{k: getattr(p, k) for k in TRAINING_KEYS}, "precision": precision, "epochs": epochs_for(p),
            "training_frames": sorted(selected["path"]),
            "frames_fingerprint": fingerprint_files(sorted(selected["abspath"]))}


# --- checkpoints -------------------------------------------------------------------------------------------
def _checkpoints(gen_dir: Path) -> list[tuple[int, Path]]:
    folder = Path(gen_dir) / "checkpoints"
    found = [(int(p.name.split("-")[1]), p) for p in folder.glob("checkpoint-*")
             if p.is_dir() and p.name.split("-")[1].isdigit() and (p / "state.json").is_file()]
    return sorted(found)


def latest_checkpoint(gen_dir: Path) -> Path | None:
    found = _checkpoints(gen_dir)
    return found[-1][1] if found else None


def _rng_states() -> dict[str, Any]:
    states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(gen_dir: Path, step: int, key: dict[str, Any], model, ema, optimizer, lr_scheduler, scaler,
                    log: list[dict[str, Any]]) -> Path:
    """`checkpoints/checkpoint-<step>` (written under a temporary name, renamed when complete)."""
    target = Path(gen_dir) / "checkpoints" / f"checkpoint-{step}"
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp / "unet")
        torch.save({"ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
                    "lr_scheduler": lr_scheduler.state_dict(), "scaler": scaler.state_dict(),
                    "rng": _rng_states()}, tmp / "training_state.pt")
        write_csv_atomic(tmp / "log.csv", pd.DataFrame(log, columns=["step", "epoch", "loss", "lr"]))
        write_json_atomic(tmp / "state.json", {"step": step, "training_key": key})
    for old_step, old in _checkpoints(gen_dir)[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def _load_checkpoint(path: Path, model, ema, optimizer, lr_scheduler, scaler) -> tuple[int, list[dict]]:
    trained = UNet2DModel.from_pretrained(path / "unet")
    model.load_state_dict(trained.state_dict())
    state = torch.load(path / "training_state.pt", weights_only=False, map_location="cpu")
    ema.load_state_dict(state["ema"])
    optimizer.load_state_dict(state["optimizer"])
    lr_scheduler.load_state_dict(state["lr_scheduler"])
    scaler.load_state_dict(state["scaler"])
    _set_rng_states(state["rng"])
    log = pd.read_csv(path / "log.csv").to_dict(orient="records")
    return int(read_json(path / "state.json")["step"]), log


# --- training ----------------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    """What `train_ddpm` did: where the pipeline is, whether it came from the cache, the loss log, grids."""

    generator_dir: Path
    pipeline_dir: Path | None  # None while the training is unfinished (stopped by max_steps)
    cached: bool
    steps_done: int
    total_steps: int
    seconds: float
    resumed_from: int | None
    log: pd.DataFrame
    grids: list[Path] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.pipeline_dir is not None


def _pipeline_is_current(gen_dir: Path, key: dict[str, Any]) -> bool:
    record_path = gen_dir / "provenance.json"
    if not (gen_dir / "pipeline" / "model_index.json").is_file() or not record_path.is_file():
        return False
    return read_json(record_path).get("training_key") == key


def grid_paths(gen_dir: Path) -> list[Path]:
    """The sample grids saved while training: `epoch_<n>.png` (class_conditional: `step_<n>.png`)."""
    return sorted((Path(gen_dir) / "grids").glob("*_*.png"))


def write_png(path: Path, image: np.ndarray) -> None:
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"cannot encode {path}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded.tobytes())


def _save_grid(path: Path, model, ema, p: DDPMParams, device: torch.device, precision: str) -> None:
    """A strip of GRID_IMAGES samples with the EMA weights and the set's sampler (same noise every time)."""
    ema.store(model.parameters())
    ema.copy_to(model.parameters())
    model.eval()
    try:
        images, _ = sample_images(make_pipeline(model), p.sampler, p.sampling_steps, GRID_IMAGES, GRID_IMAGES,
                                  seed_for(p.seed, STREAM_GRID, 0), device, progress=False, precision=precision)
    finally:
        ema.restore(model.parameters())
        model.train()
    write_png(path, np.concatenate(list(images), axis=1))


def make_pipeline(unet):
    return DDPMPipeline(unet=unet, scheduler=build_noise_scheduler())


@dataclass
class Training:
    """What one training run updates: the model, its EMA, the optimiser, the LR schedule and the scaler."""

    model: Any
    ema: Any
    optimizer: Any
    lr_scheduler: Any
    scaler: Any
    noise_scheduler: Any
    device: torch.device
    autocast_dtype: torch.dtype | None  # None: fp32


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of `precision` on `device`: fp16 only on CUDA, bf16 anywhere, else None (fp32)."""
    if precision == "fp16":
        return torch.float16 if device.type == "cuda" else None
    return torch.bfloat16 if precision == "bf16" else None


def cached_result(gen_dir: Path, key: dict[str, Any], total_steps: int) -> TrainResult | None:
    """The saved pipeline's result when it was trained with `key`, else None."""
    if not _pipeline_is_current(gen_dir, key):
        return None
    log = pd.read_csv(gen_dir / "train_log.csv") if (gen_dir / "train_log.csv").is_file() else pd.DataFrame()
    return TrainResult(gen_dir, gen_dir / "pipeline", True, total_steps, total_steps,
                       float(read_json(gen_dir / "provenance.json").get("train_seconds", 0.0)), None, log,
                       grid_paths(gen_dir))


def start_training(p: DDPMParams, runtime: RuntimeParams, total_steps: int, n_classes: int = 0) -> Training:
    """Seeded model (class-conditional with `n_classes`), EMA (with warm-up), AdamW, cosine schedule with
    warm-up, grad scaler, on the runtime's device, threads and precision."""
    device = resolve_device(runtime.device)
    torch.set_num_threads(thread_count(runtime.threads))
    torch.use_deterministic_algorithms(True, warn_only=True)
    dtype = autocast_dtype(resolve_precision(runtime.precision, device), device)
    torch.manual_seed(p.seed)
    model = build_unet(p, n_classes).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=p.lr, betas=ADAM_BETAS, weight_decay=ADAM_WEIGHT_DECAY)
    ema = EMAModel(model.parameters(), decay=p.ema_decay, use_ema_warmup=True, inv_gamma=1.0, power=EMA_POWER,
                   model_cls=type(model), model_config=model.config)
    return Training(model, ema, optimizer, get_cosine_schedule_with_warmup(optimizer, p.warmup_steps, total_steps),
                     torch.amp.GradScaler("cuda", enabled=dtype == torch.float16), build_noise_scheduler(), device,
                     dtype)


def resume_or_restart(gen_dir: Path, key: dict[str, Any], p: DDPMParams, run: Training,
            total_steps: int) -> tuple[int, list[dict[str, Any]], int | None]:
    """(first step, log so far, step resumed from): continue the last checkpoint made with `key` when
    p.resume is 'latest'; delete checkpoints that cannot be resumed."""
    checkpoint = latest_checkpoint(gen_dir)
    if checkpoint is None:
        return 0, [], None
    same = read_json(checkpoint / "state.json").get("training_key") == key
    if p.resume == "latest" and same:
        start, log = _load_checkpoint(checkpoint, run.model, run.ema, run.optimizer, run.lr_scheduler, run.scaler)
        print(f"resuming {gen_dir.name} from {checkpoint.name} ({start} of {total_steps} steps)")
        return start, log, start
    why = "resume is 'none'" if p.resume != "latest" else "they were made with other parameters or frames"
    print(f"ignoring the checkpoints in {gen_dir / 'checkpoints'} ({why}); training from scratch")
    shutil.rmtree(gen_dir / "checkpoints")
    return 0, [], None


def _training_batch(data: torch.Tensor, p: DDPMParams, step: int,
                    steps_per_epoch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Step `step`'s frames (seeded epoch order, random horizontal flips), noise and timesteps."""
    epoch, within = divmod(step, steps_per_epoch)
    order = torch.randperm(len(data), generator=stream_generator(p.seed, STREAM_BATCH_ORDER, epoch))
    index = order[within * p.batch_size:(within + 1) * p.batch_size]
    g = stream_generator(p.seed, STREAM_STEP, step)
    batch = data[index]
    flip = torch.rand(len(index), generator=g) < 0.5
    batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
    noise = torch.randn(batch.shape, generator=g)
    timesteps = torch.randint(0, NUM_TRAIN_TIMESTEPS, (len(index),), generator=g)
    return batch, noise, timesteps


def optimizer_step(run: Training, batch: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor,
                   class_labels: torch.Tensor | None = None) -> float:
    """One noise-prediction step (MSE, grad clipping, AdamW, LR schedule, EMA), given the class labels for a
    class-conditional model; returns the loss."""
    batch, noise, timesteps = batch.to(run.device), noise.to(run.device), timesteps.to(run.device)
    labels = class_labels.to(run.device) if class_labels is not None else None
    noisy = run.noise_scheduler.add_noise(batch, noise, timesteps)
    with torch.autocast(run.device.type, dtype=run.autocast_dtype or torch.float32,
                        enabled=run.autocast_dtype is not None):
        prediction = run.model(noisy, timesteps, class_labels=labels).sample
    loss = torch.nn.functional.mse_loss(prediction.float(), noise)
    run.scaler.scale(loss).backward()
    run.scaler.unscale_(run.optimizer)
    torch.nn.utils.clip_grad_norm_(run.model.parameters(), MAX_GRAD_NORM)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.lr_scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.ema.step(run.model.parameters())
    return float(loss.detach())


def _save_pipeline(gen_dir: Path, run: Training, p: DDPMParams, key: dict[str, Any], selected: pd.DataFrame,
                   log: pd.DataFrame, seconds: float, cpu_seconds: float, resumed_from: int | None,
                   total_steps: int, steps_per_epoch: int) -> None:
    """The EMA weights as a DDPMPipeline, the loss log and the provenance (with the training's wall and CPU
    seconds: on a shared CPU the CPU-seconds are its cost); then the checkpoints go."""
    ema_unet = copy.deepcopy(run.model).cpu()
    run.ema.copy_to(ema_unet.parameters())
    with atomic_dir(gen_dir / "pipeline") as tmp:
        make_pipeline(ema_unet).save_pretrained(tmp)
    write_csv_atomic(gen_dir / "train_log.csv", log)
    write_json_atomic(gen_dir / "provenance.json", provenance(
        asdict(p), training_key=key, training_frames=sorted(selected["path"]),
        leakage_ablation=p.variant in LEAKY_VARIANTS, total_steps=total_steps, steps_per_epoch=steps_per_epoch,
        train_seconds=seconds, train_cpu_seconds=cpu_seconds, resumed_from=resumed_from, device=str(run.device),
        n_parameters=int(sum(t.numel() for t in run.model.parameters()))))
    shutil.rmtree(gen_dir / "checkpoints", ignore_errors=True)


def train_ddpm(selected: pd.DataFrame, p: DDPMParams, gen_dir: Path, runtime: RuntimeParams | None = None,
               max_steps: int | None = None, progress: bool = True) -> TrainResult:
    """Train (or reuse) the DDPM of `p.variant` on `selected` frames; save the EMA pipeline in `gen_dir`.

    `gen_dir/pipeline` is reused when `gen_dir/provenance.json` has the same training key (parameters,
    epochs, frames). With `p.resume == "latest"` an unfinished run continues from its last checkpoint;
    checkpoints of other parameters are deleted. `max_steps` stops after that many optimizer steps in
    all (a time-boxed run: call again to continue); the pipeline is saved only when training finishes.
    """
    gen_dir = Path(gen_dir)
    runtime = runtime or RuntimeParams()
    precision = resolve_precision(runtime.precision, resolve_device(runtime.device))
    key = training_key(p, selected, precision)
    steps_per_epoch = math.ceil(len(selected) / p.batch_size)
    epochs = epochs_for(p)
    total_steps = epochs * steps_per_epoch
    cached = cached_result(gen_dir, key, total_steps)
    if cached is not None:
        return cached
    run = start_training(p, runtime, total_steps)
    start, log, resumed_from = resume_or_restart(gen_dir, key, p, run, total_steps)
    run.ema.to(run.device)
    data = load_training_tensor(selected, p.image_size)
    stop = total_steps if max_steps is None else min(total_steps, max_steps)
    grid_epochs = {math.ceil(k * epochs / p.sample_grids) for k in range(1, p.sample_grids + 1)}
    began, cpu_began = time.perf_counter(), time.process_time()
    run.model.train()
    bar = tqdm(total=total_steps, initial=start, desc=f"train {gen_dir.name}", unit="step", disable=not progress)
    for step in range(start, stop):
        loss = optimizer_step(run, *_training_batch(data, p, step, steps_per_epoch))
        done, epoch = step + 1, step // steps_per_epoch + 1
        log.append({"step": done, "epoch": epoch, "loss": loss, "lr": float(run.lr_scheduler.get_last_lr()[0])})
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}", epoch=epoch)
        if done % steps_per_epoch == 0 and epoch in grid_epochs:
            _save_grid(gen_dir / "grids" / f"epoch_{epoch:05d}.png", run.model, run.ema, p, run.device,
                       runtime.sampling_precision)
        if done % p.checkpoint_every == 0 or done == stop:
            save_checkpoint(gen_dir, done, key, run.model, run.ema, run.optimizer, run.lr_scheduler, run.scaler, log)
    bar.close()
    seconds, cpu_seconds = time.perf_counter() - began, time.process_time() - cpu_began
    log_frame = pd.DataFrame(log, columns=["step", "epoch", "loss", "lr"])
    finished = stop == total_steps
    if finished:
        _save_pipeline(gen_dir, run, p, key, selected, log_frame, seconds, cpu_seconds, resumed_from,
                       total_steps, steps_per_epoch)
    return TrainResult(gen_dir, gen_dir / "pipeline" if finished else None, False, stop, total_steps, seconds,
                       resumed_from, log_frame, grid_paths(gen_dir))

