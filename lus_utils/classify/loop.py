"""The training loop of one classifier: AdamW, ReduceLROnPlateau and early stopping on the validation loss,
the weights of the best validation epoch kept (or, for the original study's replica, those of the last epoch); seeded
batch order and augmentation.

- Imbalance strategies: `none`; `weighted_loss` (cross entropy weighted by inverse class frequency of the
  REAL training frames, scikit-learn's "balanced" weights, so the mean weight per real frame is 1);
  `balanced_sampler` (frames drawn with replacement, each class equally likely, like WeightedRandomSampler).
- Augmentation (a run's `augment`), per frame with parameters from a seeded generator, suited to ultrasound:
  rotation within +-10 degrees, shift within 6% of the size, scale 0.9-1.1, brightness and contrast
  within +-20%, horizontal flip (left/right of a probe sector is arbitrary). Never a vertical flip: depth
  runs top to bottom and the pleural line, A-lines and B-lines are defined by it.
- Same parameters, same numbers on CPU: every generator is seeded, torch runs deterministic algorithms with
  a fixed thread count. `runtime.precision` bf16: bfloat16 autocast on cuda and cpu.
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F
from tqdm.auto import tqdm

from lus_utils.classify import metrics as M
from lus_utils.classify import models
from lus_utils.classify.run_data import RunData, class_weights
from lus_utils.config.classify import TrainParams
from lus_utils.vocabulary import STRATEGIES


@dataclass(frozen=True)
class Augmentation:
    """Light classical augmentation for ultrasound, applied per frame on uint8 tensors (torchvision v2)."""
    max_rotation: float = 10.0  # degrees
    max_shift: float = 0.06  # share of the image size
    scale: tuple[float, float] = (0.9, 1.1)
    brightness: float = 0.2  # factor within 1 +- this
    contrast: float = 0.2  # factor within 1 +- this
    hflip: bool = True  # never vertical: depth runs top to bottom

    def __call__(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, _, height, width = batch.shape
        u = torch.rand((n, 7), generator=generator, dtype=torch.float64).tolist()
        out = torch.empty_like(batch)
        with _single_thread(batch.device):
            for i, (r, sx, sy, sc, b, c, f) in enumerate(u):
                shift = [(2 * sx - 1) * self.max_shift * width, (2 * sy - 1) * self.max_shift * height]
                image = F.affine(batch[i], angle=(2 * r - 1) * self.max_rotation, translate=shift,
                                 scale=self.scale[0] + sc * (self.scale[1] - self.scale[0]), shear=[0.0, 0.0],
                                 interpolation=InterpolationMode.BILINEAR, fill=0)
                image = F.adjust_brightness(image, 1 + (2 * b - 1) * self.brightness)
                image = F.adjust_contrast(image, 1 + (2 * c - 1) * self.contrast)
                out[i] = F.horizontal_flip(image) if self.hflip and f < 0.5 else image
        return out


@contextmanager
def _single_thread(device: torch.device) -> Iterator[None]:
    """Per-frame augmentation ops are tiny; on CPU, thread hand-offs would cost more than the work."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def epoch_batches(strategy: str, labels: np.ndarray, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Index batches for one epoch: a seeded shuffle, or class-balanced draws with replacement."""
    n = len(labels)
    if strategy == "balanced_sampler":
        counts = np.bincount(labels)
        weights = torch.as_tensor(1.0 / counts[labels], dtype=torch.float64)
        order = torch.as_tensor(list(torch.utils.data.WeightedRandomSampler(weights, n, replacement=True,
                                                                            generator=generator)))
    elif strategy in STRATEGIES:
        order = torch.randperm(n, generator=generator)
    else:
        raise ValueError(f"strategy '{strategy}' unknown; allowed: {list(STRATEGIES)}")
    batches = list(order.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) < 2:
        batches = batches[:-1]  # batch norm cannot train on a single frame
    return batches


def train_one_epoch(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batches: list[torch.Tensor],
                    optimizer: torch.optim.Optimizer, loss_fn: torch.nn.Module, augment: Augmentation | None,
                    generator: torch.Generator, precision: str, desc: str = "train") -> float:
    """One pass over `batches` (index tensors into `images`); returns the mean training loss per frame."""
    model.train()
    device = models.model_device(model)
    total = torch.zeros((), device=device, dtype=torch.float64)
    seen = 0
    # A slow refresh: in an executed notebook every refresh of the bar becomes a line of output.
    for index in tqdm(batches, desc=desc, unit="batch", leave=False, mininterval=5.0):
        batch = images[index.to(images.device)].to(device, non_blocking=True)
        if augment is not None:
            batch = augment(batch, generator)
        target = labels[index.to(labels.device)].to(device, non_blocking=True)
        with models.autocast(device, precision):
            logits = model(models.to_input(model, batch))
        loss = loss_fn(logits.float(), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.detach().double() * len(index)
        seen += len(index)
    return float(total) / max(seen, 1)


@torch.no_grad()
def validation_pass(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, loss_fn: torch.nn.Module,
                    batch_size: int, precision: str) -> tuple[float, np.ndarray]:
    """Loss of the whole validation part (the training criterion) and its class probabilities."""
    model.eval()
    device = models.model_device(model)
    logits = []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size].to(device, non_blocking=True)
        with models.autocast(device, precision):
            logits.append(model(models.to_input(model, batch)).float())
    all_logits = torch.cat(logits).double()
    weight = loss_fn.weight.double() if getattr(loss_fn, "weight", None) is not None else None
    loss = torch.nn.functional.cross_entropy(all_logits, labels.to(device), weight=weight)
    return float(loss), torch.softmax(all_logits, dim=1).cpu().numpy()


@dataclass
class FitResult:
    history: pd.DataFrame
    best_state: dict[str, torch.Tensor]
    tested_state: dict[str, torch.Tensor]  # the weights tested: best_state, or the last epoch's
    tested_epoch: int
    best_epoch: int
    best_val_loss: float
    stopped_early: bool
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


def fit(model: torch.nn.Module, data: RunData, images: torch.Tensor, train: TrainParams, strategy: str, seed: int,
        augment: bool = False, precision: str = "fp32", checkpoint: str = "best",
        on_epoch: Callable[[dict[str, Any], torch.nn.Module], None] | None = None) -> FitResult:
    """AdamW + ReduceLROnPlateau on the validation loss, early stopping; the model is left with the weights of
    the epoch with the lowest validation loss (`checkpoint` best) or of the last epoch run (last: the seed
    study tested its newest checkpoint, `patience` epochs past the best when training stopped early).

    `on_epoch(history_row, model)` runs after each epoch's validation (a benchmark reads its learning curve
    with it); its time counts in the result's `seconds`, not in the row's. A grey-stem model trains on grey copies of the frames, made once,
    so augmentation handles one channel instead of three."""
    device = models.model_device(model)
    if models.input_channels(model) == 1:
        images = models.grey_frames(images)
    index = {c: i for i, c in enumerate(data.classes)}
    labels = torch.tensor(data.table["label"].map(index).to_numpy(dtype=np.int64))
    parts = data.table["part"].to_numpy()
    train_idx = torch.from_numpy(np.flatnonzero(parts == "train"))
    val_idx = torch.from_numpy(np.flatnonzero(parts == "val"))
    train_images, train_labels = images[train_idx], labels[train_idx]
    val_images, val_labels = images[val_idx], labels[val_idx]
    if device.type == "cuda":
        train_images, train_labels = train_images.to(device), train_labels.to(device)
    weights = None
    if strategy == "weighted_loss":  # real training frames only: synthetic images and copies do not count
        real = data.real_train_labels().map(index).to_numpy(dtype=np.int64)
        weights = torch.as_tensor(class_weights(real, len(data.classes)), dtype=torch.float32, device=device)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights)
    optimizer = torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=train.lr_factor,
                                                           patience=train.lr_patience)
    order_gen = torch.Generator().manual_seed(_derived_seed(seed, 1))
    augment_gen = torch.Generator().manual_seed(_derived_seed(seed, 2))
    augmenter = Augmentation() if augment else None
    train_label_np = train_labels.cpu().numpy()
    rows, best_state, best_epoch, best_loss = [], None, 0, math.inf
    started = time.perf_counter()
    stopped_early = False
    for epoch in range(1, train.epochs + 1):
        t0 = time.perf_counter()
        batches = epoch_batches(strategy, train_label_np, train.batch_size, order_gen)
        if train.max_steps_per_epoch:  # a rehearsal: the same shapes, a few steps
            batches = batches[:train.max_steps_per_epoch]
        train_loss = train_one_epoch(model, train_images, train_labels, batches, optimizer, loss_fn, augmenter,
                                     augment_gen, precision, desc=f"epoch {epoch}/{train.epochs}")
        val_loss, val_prob = validation_pass(model, val_images, val_labels, loss_fn, train.batch_size * 2, precision)
        val_metrics = M.from_predictions(val_labels.numpy(), val_prob.argmax(axis=1), None, data.classes, ranking=False)
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step(val_loss)
        improved = val_loss < best_loss
        if improved or best_state is None:
            best_loss, best_epoch = val_loss, epoch
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        rows.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                     "val_accuracy": val_metrics["accuracy"], "val_balanced_accuracy": val_metrics["balanced_accuracy"],
                     "lr": lr, "best": bool(improved), "seconds": time.perf_counter() - t0})
        print(f"epoch {epoch}: train loss {train_loss:.4f}  val loss {val_loss:.4f}  "
              f"val balanced acc {val_metrics['balanced_accuracy']:.3f}  lr {lr:.2g}{'  *best' if improved else ''}")
        if on_epoch is not None:
            on_epoch(rows[-1], model)
        if epoch - best_epoch >= train.patience and epoch < train.epochs:
            stopped_early = True
            print(f"early stop: no better validation loss for {train.patience} epochs (best: epoch {best_epoch})")
            break
    if checkpoint == "last":
        tested_state, tested_epoch = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}, epoch
    elif checkpoint == "best":
        tested_state, tested_epoch = best_state, best_epoch
    else:
        raise ValueError(f"checkpoint '{checkpoint}' unknown; allowed: best, last")
    model.load_state_dict(tested_state)
    extra = {"class_weights": weights.tolist() if weights is not None else None}
    return FitResult(pd.DataFrame(rows), best_state, tested_state, tested_epoch, best_epoch, best_loss,
                     stopped_early, time.perf_counter() - started, extra)


def _derived_seed(seed: int, stream: int) -> int:
    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])
