"""DDPM generators of synthetic minority frames: pick the training frames, train, checkpoint, sample, gate.

Why this module exists: the study asks whether a diffusion model trained on a handful of viral-pneumonia
frames makes images that help a classifier. The seed study trained a `diffusers` UNet2DModel with a
1000-step DDPM noise schedule on three frames (`3_mixed`) or all minority training frames (`train_all`);
this module does the same, with what reproducibility needs on top:

- Training frames come from the training split only and are recorded (frames.csv `path`) in the
  generator's provenance; the one exception is `3_mixed_any_split`, the explicitly marked leakage ablation.
- Every random draw of training (batch order, flips, noise, timesteps) comes from a generator seeded by
  (seed, step), so a run resumed from a checkpoint ends with the same weights as an uninterrupted one.
- Checkpoints (`checkpoint-N`: model, EMA, optimizer, LR schedule, grad scaler, RNG states, step) are
  written atomically; the final pipeline (DDPMPipeline with the EMA weights) is saved with
  `save_pretrained`, and a second run with the same training parameters and frames reuses it.

Grayscale: the UNet has one input and one output channel. Ultrasound frames are grey; with three channels
the model would spend capacity keeping them equal and any mismatch would appear as colour noise. One
channel makes outputs grey by construction (the few coloured overlays in the data, e.g. Doppler boxes,
are turned to grey). Written images are single-channel PNGs; readers that load RGB replicate the channel.
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

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from lus_utils.data import splits
from lus_utils.generate import synthetic
from lus_utils.data.splits import TooFewFramesError
from lus_utils.images import load_image, resize
from lus_utils.params import MINORITY_CLASS, AuditParams, DDPMParams
from lus_utils.paths import OutLayout
from lus_utils.provenance import (atomic_dir, atomic_path, fingerprint_files, provenance, read_json, stable_hash,
                         write_csv_atomic, write_json_atomic)
from lus_utils.reproducibility import resolve_device

N_MIXED = 3  # frames of the 3-frame variants (seed study)
MIN_FRAMES = {"3_mixed": N_MIXED, "train_all": N_MIXED, "3_mixed_any_split": N_MIXED}
LEAKAGE_VARIANT = synthetic.DDPM_LEAKAGE_VARIANT
NUM_TRAIN_TIMESTEPS = 1000
GRID_IMAGES = 8  # images in each sample grid saved during training
GRID_SAMPLER = ("dpmsolver", 20)  # grids use the fast sampler: they are a progress view, not the output
KEEP_CHECKPOINTS = 2  # older checkpoints are deleted while training; all are deleted once the pipeline is saved
# The seed study's optimiser: torch's AdamW defaults (textual_inversion/basic_training_script.py there).
ADAM_BETAS = (0.9, 0.999)
ADAM_WEIGHT_DECAY = 0.01
MAX_GRAD_NORM = 1.0
EMA_POWER = 0.75  # EMA warm-up: decay = min(ema_decay, 1 - (1 + step) ** -EMA_POWER)
# Keys of the per-step random streams (so that streams never coincide).
_STREAM_BATCH_ORDER, _STREAM_STEP, _STREAM_SAMPLE, _STREAM_GRID = 1, 2, 3, 4
# Parameters that change the trained weights (the cache and the checkpoints are keyed on them).
TRAINING_KEYS = ("variant", "fold", "seed", "image_size", "block_out_channels", "layers_per_block",
                 "attention_levels", "batch_size", "lr", "warmup_steps", "ema_decay", "mixed_precision")


# --- names and folders -------------------------------------------------------------------------------------
def generator_dir(layout: OutLayout, variant: str, fold: int) -> Path:
    return layout.generators / synthetic.ddpm_set_name(variant, fold)


def synthetic_set_dir(layout: OutLayout, variant: str, fold: int) -> Path:
    return layout.synthetic / synthetic.ddpm_set_name(variant, fold)


def _seed_for(seed: int, stream: int, index: int) -> int:
    """A 63-bit seed for one draw of one stream: independent of everything that ran before."""
    return int(np.random.SeedSequence([seed, stream, index]).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))


def _generator(seed: int, stream: int, index: int) -> torch.Generator:
    return torch.Generator().manual_seed(_seed_for(seed, stream, index))


# --- training frames ---------------------------------------------------------------------------------------
def select_training_frames(frames: pd.DataFrame, variant: str, split_column: str, seed: int,
                           label: str = MINORITY_CLASS) -> pd.DataFrame:
    """The frames a generator variant trains on (rows of frames.csv), chosen with `seed`.

    - `3_mixed`: three `label` frames of the training split, spread over as many training videos as
      there are (one per video when there are three or more; frames of one video otherwise).
    - `train_all`: every `label` frame of the training split.
    - `3_mixed_any_split`: three frames of three different `label` videos whatever their split (the
      leakage ablation).
    Stops with the counts when there are too few frames or videos.
    """
    if variant not in MIN_FRAMES:
        raise ValueError(f"unknown DDPM variant '{variant}'; known: {sorted(MIN_FRAMES)}")
    if split_column not in frames.columns:
        raise ValueError(f"frames have no column '{split_column}' (was frames.csv built with enough folds?)")
    minority = frames[frames["label"] == label]
    rng = np.random.default_rng([seed, 2024])
    if variant == LEAKAGE_VARIANT:
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
    """Down and up block types: attention blocks at `attention_levels` (seed: the fifth of six levels)."""
    levels = range(len(p.block_out_channels))
    down = tuple("AttnDownBlock2D" if i in p.attention_levels else "DownBlock2D" for i in levels)
    up = tuple("AttnUpBlock2D" if i in p.attention_levels else "UpBlock2D" for i in reversed(levels))
    return down, up


def build_unet(p: DDPMParams):
    """UNet2DModel from the parameters: one grey channel in and out."""
    from diffusers import UNet2DModel

    down, up = block_types(p)
    groups = 32 if all(c % 32 == 0 for c in p.block_out_channels) else 8
    return UNet2DModel(sample_size=p.image_size, in_channels=1, out_channels=1, layers_per_block=p.layers_per_block,
                       block_out_channels=tuple(p.block_out_channels), down_block_types=down, up_block_types=up,
                       norm_num_groups=groups)


def build_noise_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS)


def epochs_for(p: DDPMParams) -> int:
    return p.epochs_train_all if p.variant == "train_all" else p.epochs_3_mixed


def training_key(p: DDPMParams, selected: pd.DataFrame) -> dict[str, Any]:
    """What determines the trained weights: the training parameters, epochs and the frames (by content)."""
    return {**{k: getattr(p, k) for k in TRAINING_KEYS}, "epochs": epochs_for(p),
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
    from diffusers import UNet2DModel

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


def _grid_paths(gen_dir: Path) -> list[Path]:
    return sorted((Path(gen_dir) / "grids").glob("epoch_*.png"))


def _write_png(path: Path, image: np.ndarray) -> None:
    import cv2

    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"cannot encode {path}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded.tobytes())


def _save_grid(path: Path, model, ema, seed: int, device: torch.device) -> None:
    """A strip of GRID_IMAGES samples with the EMA weights (same noise every time, so grids compare)."""
    ema.store(model.parameters())
    ema.copy_to(model.parameters())
    model.eval()
    try:
        pipeline = make_pipeline(model)
        images, _ = sample_images(pipeline, GRID_SAMPLER[0], GRID_SAMPLER[1], GRID_IMAGES, GRID_IMAGES,
                                  _seed_for(seed, _STREAM_GRID, 0), device, progress=False)
    finally:
        ema.restore(model.parameters())
        model.train()
    _write_png(path, np.concatenate(list(images), axis=1))


def make_pipeline(unet):
    from diffusers import DDPMPipeline

    return DDPMPipeline(unet=unet, scheduler=build_noise_scheduler())


def train_ddpm(selected: pd.DataFrame, p: DDPMParams, gen_dir: Path, max_steps: int | None = None,
               progress: bool = True) -> TrainResult:
    """Train (or reuse) the DDPM of `p.variant` on `selected` frames; save the EMA pipeline in `gen_dir`.

    `gen_dir/pipeline` is reused when `gen_dir/provenance.json` has the same training key (parameters,
    epochs, frames). With `p.resume == "latest"` an unfinished run continues from its last checkpoint;
    checkpoints of other parameters are deleted. `max_steps` stops after that many optimizer steps in
    all (a time-boxed run: call again to continue); the pipeline is saved only when training finishes.
    """
    from diffusers.optimization import get_cosine_schedule_with_warmup
    from diffusers.training_utils import EMAModel

    gen_dir = Path(gen_dir)
    key = training_key(p, selected)
    n_frames = len(selected)
    steps_per_epoch = math.ceil(n_frames / p.batch_size)
    epochs = epochs_for(p)
    total_steps = epochs * steps_per_epoch
    if _pipeline_is_current(gen_dir, key):
        log = pd.read_csv(gen_dir / "train_log.csv") if (gen_dir / "train_log.csv").is_file() else pd.DataFrame()
        return TrainResult(gen_dir, gen_dir / "pipeline", True, total_steps, total_steps,
                           float(read_json(gen_dir / "provenance.json").get("train_seconds", 0.0)), None, log,
                           _grid_paths(gen_dir))

    device = resolve_device(p.device)
    torch.set_num_threads(p.num_threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    use_fp16 = device.type == "cuda" and p.mixed_precision == "fp16"
    torch.manual_seed(p.seed)
    model = build_unet(p).to(device)
    noise_scheduler = build_noise_scheduler()
    optimizer = torch.optim.AdamW(model.parameters(), lr=p.lr, betas=ADAM_BETAS, weight_decay=ADAM_WEIGHT_DECAY)
    lr_scheduler = get_cosine_schedule_with_warmup(optimizer, p.warmup_steps, total_steps)
    ema = EMAModel(model.parameters(), decay=p.ema_decay, use_ema_warmup=True, inv_gamma=1.0, power=EMA_POWER,
                   model_cls=type(model), model_config=model.config)
    scaler = torch.amp.GradScaler("cuda", enabled=use_fp16)

    start, log, resumed_from = 0, [], None
    checkpoint = latest_checkpoint(gen_dir)
    if checkpoint is not None:
        same = read_json(checkpoint / "state.json").get("training_key") == key
        if p.resume == "latest" and same:
            start, log = _load_checkpoint(checkpoint, model, ema, optimizer, lr_scheduler, scaler)
            resumed_from = start
            print(f"resuming {gen_dir.name} from {checkpoint.name} ({start} of {total_steps} steps)")
        else:
            why = "resume is 'none'" if p.resume != "latest" else "they were made with other parameters or frames"
            print(f"ignoring the checkpoints in {gen_dir / 'checkpoints'} ({why}); training from scratch")
            shutil.rmtree(gen_dir / "checkpoints")
    ema.to(device)

    data = load_training_tensor(selected, p.image_size)
    stop = total_steps if max_steps is None else min(total_steps, max_steps)
    grid_epochs = {math.ceil(k * epochs / p.sample_grids) for k in range(1, p.sample_grids + 1)}
    began = time.perf_counter()
    model.train()
    bar = tqdm(total=total_steps, initial=start, desc=f"train {gen_dir.name}", unit="step", disable=not progress)
    for step in range(start, stop):
        epoch, within = divmod(step, steps_per_epoch)
        order = torch.randperm(n_frames, generator=_generator(p.seed, _STREAM_BATCH_ORDER, epoch))
        index = order[within * p.batch_size:(within + 1) * p.batch_size]
        g = _generator(p.seed, _STREAM_STEP, step)
        batch = data[index]
        flip = torch.rand(len(index), generator=g) < 0.5
        batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
        noise = torch.randn(batch.shape, generator=g)
        timesteps = torch.randint(0, NUM_TRAIN_TIMESTEPS, (len(index),), generator=g)
        batch, noise, timesteps = batch.to(device), noise.to(device), timesteps.to(device)
        noisy = noise_scheduler.add_noise(batch, noise, timesteps)
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_fp16):
            prediction = model(noisy, timesteps).sample
        loss = torch.nn.functional.mse_loss(prediction.float(), noise)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
        scaler.step(optimizer)
        scaler.update()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        ema.step(model.parameters())
        log.append({"step": step + 1, "epoch": epoch + 1, "loss": float(loss.detach()),
                    "lr": float(lr_scheduler.get_last_lr()[0])})
        bar.update(1)
        bar.set_postfix(loss=f"{log[-1]['loss']:.4f}", epoch=epoch + 1)
        done = step + 1
        end_of_epoch = done % steps_per_epoch == 0
        if end_of_epoch and epoch + 1 in grid_epochs:
            _save_grid(gen_dir / "grids" / f"epoch_{epoch + 1:05d}.png", model, ema, p.seed, device)
        if done % p.checkpoint_every == 0 or done == stop:
            save_checkpoint(gen_dir, done, key, model, ema, optimizer, lr_scheduler, scaler, log)
    bar.close()
    seconds = time.perf_counter() - began
    log_frame = pd.DataFrame(log, columns=["step", "epoch", "loss", "lr"])
    if stop < total_steps:
        return TrainResult(gen_dir, None, False, stop, total_steps, seconds, resumed_from, log_frame,
                           _grid_paths(gen_dir))

    ema_unet = copy.deepcopy(model).cpu()
    ema.copy_to(ema_unet.parameters())
    with atomic_dir(gen_dir / "pipeline") as tmp:
        make_pipeline(ema_unet).save_pretrained(tmp)
    write_csv_atomic(gen_dir / "train_log.csv", log_frame)
    write_json_atomic(gen_dir / "provenance.json", provenance(
        asdict(p), training_key=key, training_frames=sorted(selected["path"]),
        leakage_ablation=p.variant == LEAKAGE_VARIANT, total_steps=total_steps, steps_per_epoch=steps_per_epoch,
        train_seconds=seconds, resumed_from=resumed_from, device=str(device),
        n_parameters=int(sum(t.numel() for t in model.parameters()))))
    shutil.rmtree(gen_dir / "checkpoints", ignore_errors=True)
    return TrainResult(gen_dir, gen_dir / "pipeline", False, total_steps, total_steps, seconds, resumed_from,
                       log_frame, _grid_paths(gen_dir))


# --- sampling ----------------------------------------------------------------------------------------------
def load_pipeline(pipeline_dir: Path, device: str | torch.device = "cpu"):
    """The saved DDPMPipeline (EMA weights), reloaded with `from_pretrained`."""
    from diffusers import DDPMPipeline

    pipeline_dir = Path(pipeline_dir)
    if not (pipeline_dir / "model_index.json").is_file():
        raise FileNotFoundError(f"{pipeline_dir} is not a saved pipeline (no model_index.json): train it first "
                                "(notebook 05 or diffusion.train_ddpm)")
    device = resolve_device(device) if isinstance(device, str) else device
    return DDPMPipeline.from_pretrained(pipeline_dir).to(device)


def make_sampler(pipeline, sampler: str):
    """A scheduler for `sampler`, built from the pipeline's training noise schedule (from_config)."""
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    config = pipeline.scheduler.config
    if sampler == "ddpm":
        return DDPMScheduler.from_config(config)
    if sampler == "ddim":
        return DDIMScheduler.from_config(config)
    if sampler == "dpmsolver":
        return DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++", thresholding=True,
                                                          sample_max_value=1.0)
    raise ValueError(f"unknown sampler '{sampler}'; known: ddpm, ddim, dpmsolver")


def sample_seeds(seed: int, n: int) -> list[int]:
    """One seed per image: any image can be regenerated alone, whatever the batch size."""
    return [_seed_for(seed, _STREAM_SAMPLE, i) for i in range(n)]


@torch.no_grad()
def sample_images(pipeline, sampler: str, steps: int, n: int, batch_size: int, seed: int | list[int],
                  device: str | torch.device = "cpu", progress: bool = True) -> tuple[np.ndarray, list[int]]:
    """`n` grey uint8 images (n, H, W) and the seed of each, denoised `batch_size` at a time.

    `seed` is a base seed (per-image seeds derived with `sample_seeds`) or the list of per-image seeds.
    """
    from diffusers import DDPMPipeline

    device = resolve_device(device) if isinstance(device, str) else device
    seeds = sample_seeds(seed, n) if isinstance(seed, int) else list(seed)
    if len(seeds) != n:
        raise ValueError(f"{len(seeds)} seeds given for {n} images")
    runner = DDPMPipeline(unet=pipeline.unet.to(device), scheduler=make_sampler(pipeline, sampler))
    runner.set_progress_bar_config(disable=True)
    out = []
    for start in tqdm(range(0, n, batch_size), desc=f"sample {sampler} x{steps}", unit="batch",
                      disable=not progress):
        chunk = seeds[start:start + batch_size]
        generators = [torch.Generator().manual_seed(s) for s in chunk]
        images = runner(batch_size=len(chunk), generator=generators, num_inference_steps=steps,
                        output_type="np").images
        out.append(np.clip(np.rint(np.asarray(images)[..., 0] * 255.0), 0, 255).astype(np.uint8))
    return np.concatenate(out), seeds


# --- gate and synthetic set --------------------------------------------------------------------------------
def write_synthetic_set(set_dir: Path, images: np.ndarray, seeds: list[int], p: DDPMParams, audit: AuditParams,
                        selected: pd.DataFrame, split_column: str, gen_dir: Path,
                        sampling_seconds: float) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Gate every image (on its generated pixels), resize all to `output_size`, write the set.

    The gate runs before resizing, on what the generator made. Returns the manifest and a summary
    (generated, kept, rejection rate, sampling time).
    """
    rows, resized = [], []
    for image, image_seed in zip(images, seeds, strict=True):
        verdict = synthetic.gate(image, audit.min_std, audit.min_entropy)
        rows.append({"label": MINORITY_CLASS, "generator": "ddpm", "variant": p.variant, "sampler": p.sampler,
                     "steps": p.sampling_steps, "seed": int(image_seed), **verdict})
        resized.append(resize(image, p.output_size))
    kept = sum(r["passed_gate"] for r in rows)
    summary = {"n_generated": len(rows), "n_kept": int(kept),
               "rejection_rate": float(1 - kept / len(rows)) if rows else float("nan"),
               "sampling_seconds": float(sampling_seconds),
               "seconds_per_image": float(sampling_seconds / max(1, len(rows)))}
    generator_record = read_json(Path(gen_dir) / "provenance.json")
    record = provenance(
        {"ddpm": asdict(p), "audit": asdict(audit)}, training_frames=sorted(selected["path"]),
        leakage_ablation=p.variant == LEAKAGE_VARIANT, split_column=split_column,
        training_frame_parts=selected[split_column].value_counts().to_dict(),
        frames_fingerprint=generator_record["training_key"]["frames_fingerprint"],
        generator={"name": Path(gen_dir).name, "created": generator_record["created"],
                   "training_key_hash": stable_hash(generator_record["training_key"]),
                   "code_version": generator_record["code_version"]},
        **summary)
    manifest = synthetic.write_set(set_dir, resized, rows, record)
    return manifest, summary
