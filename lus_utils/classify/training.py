"""One classifier run: the measuring instrument of the study (notebooks 02 and 03 call `run_classifier`).

What a run does, and why:
- Frames are decoded once into a uint8 tensor (N,3,H,W) held in memory (and cached on disk per frames.csv
  and size), so batches are slices of a tensor and no loader process is ever the bottleneck.
- The patient-grouped split of frames.csv is used as it is (`fold` -1: hold-out, else that fold). Training
  chooses nothing on the test part: early stopping, the learning-rate schedule and the checkpoint kept all
  look at the validation loss only; the test part is predicted once, at the end, with the best checkpoint.
- Imbalance strategies: `none`; `weighted_loss` (cross entropy weighted by inverse class frequency of the
  training split, scikit-learn's "balanced" weights, so the mean weight per frame is 1); `balanced_sampler`
  (frames drawn with replacement, each class equally likely, like torch's WeightedRandomSampler).
- A synthetic set only ever joins the training split, checked by `synthetic.load_for_training` (missing
  files, foreign labels, a generator that saw frames outside this training split are refused).
- Augmentation (`train.augment`), per frame with parameters from a seeded generator, suited to ultrasound:
  rotation within +-10 degrees, shift within 6% of the size, scale 0.9-1.1, brightness and contrast
  within +-20%, horizontal flip (left/right of a probe sector is arbitrary). Never a vertical flip: depth
  runs top to bottom and the pleural line, A-lines and B-lines are defined by it.
- Same parameters, same numbers on CPU: every generator is seeded, torch runs deterministic algorithms
  with a fixed thread count. On GPU, bfloat16 autocast (mixed precision) is used when `train.amp`.

Everything lands in `<out>/runs/<run_id>/` (built under a temporary name, renamed when complete):
metrics.json, predictions.csv, history.csv, curves.png and best.pt.
"""
from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from lus_utils.classify import metrics as M
from lus_utils.classify import models
from lus_utils.data import splits
from lus_utils.generate import synthetic
from lus_utils.images import load_image
from lus_utils.params import (CLASSES, ClassifierRunParams, DataParams, ParamError, STRATEGIES, TrainParams, as_dict,
                     build)
from lus_utils.paths import OutLayout, cache_dir, resolve_out_dir
from lus_utils.provenance import (atomic_dir, atomic_path, code_version, environment, read_json, sha256_file, sha256_text, stable_hash,
                         write_csv_atomic, write_json_atomic)
from lus_utils.reproducibility import resolve_device, seed_everything

RUN_FILES = ("metrics.json", "predictions.csv", "history.csv", "curves.png", "best.pt")
TABLE_COLUMNS = ["path", "abspath", "video_id", "patient_id", "label", "part", "synthetic"]


# --- run identity ------------------------------------------------------------------------------------------
synthetic_set_name = synthetic.set_name


def _amount(params: Mapping[str, Any]) -> str:
    return f"{float(params.get('synthetic_amount', 1.0)):g}{params.get('synthetic_amount_unit', 'ratio')}"


def run_id_for(params_dict: Mapping[str, Any]) -> str:
    """Deterministic, readable run id: arch-strategy-seed-split[-set@amount][-aug].

    e.g. `resnet18-none-seed0-holdout`, `vit_tiny_patch16_224-weighted_loss-seed2-fold3-ddpm@5ratio-aug`.
    """
    fold = int(params_dict.get("fold", -1))
    parts = [str(params_dict["arch"]), str(params_dict.get("strategy", "none")),
             f"seed{int(params_dict.get('seed', 0))}", "holdout" if fold < 0 else f"fold{fold}"]
    if params_dict.get("synthetic_set"):
        parts.append(f"{synthetic_set_name(params_dict['synthetic_set'])}@{_amount(params_dict)}")
    if params_dict.get("augment"):
        parts.append("aug")
    return "-".join(parts)


def condition_name(params_dict: Mapping[str, Any]) -> str:
    """What a run compares: the strategy, or `<set>@<amount><unit>[+strategy]`; `+augment` when augmented."""
    strategy = str(params_dict.get("strategy", "none"))
    if params_dict.get("synthetic_set"):
        name = f"{synthetic_set_name(params_dict['synthetic_set'])}@{_amount(params_dict)}"
        name += f"+{strategy}" if strategy != "none" else ""
    else:
        name = strategy
    return name + ("+augment" if params_dict.get("augment") else "")


def baseline_run_ids(params_dict: Mapping[str, Any]) -> list[str]:
    """Runs a strategy run is compared with: strategy none, same arch/seed/fold/augment; same synthetic set
    and, when there is one, also without it."""
    base = {**params_dict, "strategy": "none"}
    ids = [run_id_for(base)]
    if params_dict.get("synthetic_set"):
        ids.append(run_id_for({**base, "synthetic_set": ""}))
    return [i for i in dict.fromkeys(ids) if i != run_id_for(params_dict)]


# --- inputs ------------------------------------------------------------------------------------------------
def frames_for_run(frames_csv: str, data_root: str, out_dir: str | Path) -> pd.DataFrame:
    """frames.csv of a run: `frames_csv`, else <out>/data/frames.csv, built with default DataParams if absent."""
    from lus_utils.data.dataset import build_frames, read_frames

    layout = OutLayout(resolve_out_dir(out_dir))
    path = Path(frames_csv) if frames_csv else layout.frames_csv
    if not path.is_file():
        if frames_csv:
            raise FileNotFoundError(f"frames_csv {path} does not exist; leave it empty to use (or build) "
                                    f"{layout.frames_csv}")
        print(f"{path} is absent: building it with default data parameters (notebook 01 does this too)")
        build_frames(data_root or None, layout.root, DataParams())
    frames = read_frames(path)
    frames.attrs["frames_csv"] = str(path.resolve())
    return frames


def class_order(labels: Any) -> list[str]:
    """The run's classes: the study's classes present in the data, in the study's order (others after)."""
    present = set(labels)
    return [c for c in CLASSES if c in present] + sorted(present - set(CLASSES))


def data_fingerprint(frames: pd.DataFrame) -> dict[str, Any]:
    """sha256 of frames.csv when the frames came from a file (with the number of frames used, in case they
    were filtered), else of the frames' own CSV text."""
    path = frames.attrs.get("frames_csv")
    if path and Path(path).is_file():
        return {"frames_csv": Path(path).name, "sha256": sha256_file(Path(path)), "n_frames": len(frames)}
    text = frames.drop(columns=["abspath"], errors="ignore").to_csv(index=False)
    return {"frames_csv": "(in-memory frames)", "sha256": sha256_text(text), "n_frames": len(frames)}


@dataclass
class RunData:
    """Which frames a run trains, validates and tests on (a synthetic set's images are training rows)."""

    classes: list[str]
    split_column: str
    table: pd.DataFrame  # TABLE_COLUMNS
    synthetic: dict[str, Any] | None = None  # the synthetic set's summary, when one joined

    def part(self, name: str) -> pd.DataFrame:
        return self.table[self.table["part"] == name]

    def counts(self, part: str) -> dict[str, int]:
        labels = self.part(part)["label"]
        return {c: int((labels == c).sum()) for c in self.classes}


def part_counts(data: RunData) -> pd.DataFrame:
    """Class x part frame counts, training split as real + synthetic (what the run actually used)."""
    table = data.table
    columns = {
        "train (real)": table[(table.part == "train") & ~table.synthetic],
        "train (synthetic)": table[(table.part == "train") & table.synthetic],
        "val": data.part("val"), "test": data.part("test"),
    }
    counts = pd.DataFrame({name: rows["label"].value_counts() for name, rows in columns.items()})
    counts = counts.reindex(index=data.classes, columns=list(columns)).fillna(0).astype(int)
    counts["train (total)"] = counts["train (real)"] + counts["train (synthetic)"]
    videos = pd.DataFrame({f"{p} videos": data.part(p).groupby("label")["video_id"].nunique() for p in ("val", "test")})
    return counts.join(videos.reindex(data.classes).fillna(0).astype(int))


def check_parts(table: pd.DataFrame, classes: list[str], column: str) -> None:
    """Before training: every class needs validation frames (early stopping and the schedule see them)."""
    counts = pd.crosstab(table["label"], table["part"]).reindex(index=classes, columns=list(splits.PARTS),
                                                                 fill_value=0)
    lacking = [c for c in classes if counts.loc[c, "val"] == 0]
    if lacking:
        raise splits.SplitError(f"{column}: class(es) {lacking} have no frame in validation, so the checkpoint "
                                f"and early stopping could not see them. Frames per class and part:\n{counts}\n"
                                "Use another fold or split_seed, or fewer classes.")
    if (counts["test"] == 0).any():
        absent = [c for c in classes if counts.loc[c, "test"] == 0]
        print(f"note: {column} has no test frame of {absent}; their recall, F1, AUROC and AP will be null")


def add_synthetic(table: pd.DataFrame, set_dir: Path, classes: list[str], amount: float, unit: str,
                  seed: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The training table plus `amount` images of a synthetic set, picked with the seed; and its summary."""
    real_train = table[(table.part == "train") & ~table.synthetic]
    chosen_set = synthetic.SyntheticSet(synthetic.set_name(set_dir), Path(set_dir))
    manifest = chosen_set.for_training(classes, real_train["path"])
    set_labels = sorted(set(manifest["label"]))
    n_real = int(real_train["label"].isin(set_labels).sum())
    n_requested, n = synthetic.amount_to_count(amount, unit, n_real, len(manifest))
    if n < n_requested:
        print(f"warning: {set_dir.name}: {amount} as {unit} asks for {n_requested} images but only {n} passed the "
              f"gate; all {n} are used and the run records the shortfall")
    rng = np.random.default_rng([seed, 31337])
    chosen = manifest.iloc[np.sort(rng.choice(len(manifest), size=n, replace=False))]
    name = chosen_set.name
    rows = pd.DataFrame({
        "path": [f"synthetic/{name}/{p}" for p in chosen["path"]],
        "abspath": chosen["abspath"].tolist(),
        "video_id": [f"synthetic:{name}:{p}" for p in chosen["path"]],
        "patient_id": f"synthetic:{name}",
        "label": chosen["label"].tolist(),
        "part": "train",
        "synthetic": True,
    })
    record = chosen_set.provenance
    summary = {k: v for k, v in record.items() if k != "training_frames"}
    summary.update({"name": name, "dir": str(set_dir), "n_training_frames": len(record.get("training_frames", [])),
                    "leakage_ablation": chosen_set.leakage_ablation, "n_passed_gate": len(manifest),
                    "n_requested": n_requested, "n_used": n, "amount": amount, "unit": unit, "labels": set_labels})
    return pd.concat([table, rows], ignore_index=True), summary


def prepare_data(frames: pd.DataFrame, run: ClassifierRunParams, train: TrainParams,
                 out_dir: str | Path) -> RunData:
    """Check the split and assemble the run's table (real frames by part, plus synthetic training images)."""
    column = splits.split_column(run.fold)
    if column not in frames.columns:
        folds = sorted(c.removeprefix("split_fold") for c in frames.columns if c.startswith("split_fold"))
        raise ParamError(f"fold {run.fold}: frames.csv has no column '{column}'; folds available: {folds} "
                         "(or -1 for the hold-out split)")
    classes = class_order(frames["label"])
    splits.check(frames, column, classes)
    table = frames.assign(part=frames[column], synthetic=False)[TABLE_COLUMNS].reset_index(drop=True)
    check_parts(table, classes, column)
    summary = None
    if run.synthetic_set:
        set_dir = synthetic.SyntheticSet.resolve(run.synthetic_set, out_dir).folder
        table, summary = add_synthetic(table, set_dir, classes, run.synthetic_amount, train.synthetic_amount_unit,
                                       run.seed)
    return RunData(classes=classes, split_column=column, table=table, synthetic=summary)


# --- frames as tensors -------------------------------------------------------------------------------------
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
    """Images for every row of a run table: real frames through the cache, synthetic ones decoded."""
    real = ~table["synthetic"].to_numpy(bool)
    out = torch.empty((len(table), 3, image_size, image_size), dtype=torch.uint8)
    out[torch.tensor(real)] = load_images(table.loc[real, "abspath"].tolist(), image_size, workers)
    if (~real).any():
        out[torch.tensor(~real)] = load_images(table.loc[~real, "abspath"].tolist(), image_size, workers,
                                                   cache=False)
    return out


# --- the training loop -------------------------------------------------------------------------------------
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
        from torchvision.transforms.v2 import InterpolationMode
        from torchvision.transforms.v2 import functional as F

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


def class_weights(train_labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Inverse class frequency, normalised so the mean weight per training frame is 1 (sklearn 'balanced')."""
    counts = np.bincount(np.asarray(train_labels, dtype=np.int64), minlength=n_classes).astype(np.float64)
    if (counts == 0).any():
        raise ValueError(f"every class needs training frames to weight the loss; counts: {counts.astype(int).tolist()}")
    return counts.sum() / (n_classes * counts)


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
                    generator: torch.Generator, amp: bool, desc: str = "train") -> float:
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
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
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
                    batch_size: int, amp: bool) -> tuple[float, np.ndarray]:
    """Loss of the whole validation part (the training criterion) and its class probabilities."""
    model.eval()
    device = models.model_device(model)
    logits = []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
            logits.append(model(models.to_input(model, batch)).float())
    all_logits = torch.cat(logits).double()
    weight = loss_fn.weight.double() if getattr(loss_fn, "weight", None) is not None else None
    loss = torch.nn.functional.cross_entropy(all_logits, labels.to(device), weight=weight)
    return float(loss), torch.softmax(all_logits, dim=1).cpu().numpy()


@dataclass
class FitResult:
    history: pd.DataFrame
    best_state: dict[str, torch.Tensor]
    best_epoch: int
    best_val_loss: float
    stopped_early: bool
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


def fit(model: torch.nn.Module, data: RunData, images: torch.Tensor, train: TrainParams, strategy: str, seed: int,
        history_path: Path | None = None) -> FitResult:
    """AdamW + ReduceLROnPlateau on the validation loss, early stopping, best-by-validation-loss weights."""
    device = models.model_device(model)
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
    if strategy == "weighted_loss":
        weights = torch.as_tensor(class_weights(train_labels.cpu().numpy(), len(data.classes)), dtype=torch.float32,
                                  device=device)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights)
    optimizer = torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=train.lr_factor,
                                                           patience=train.lr_patience)
    order_gen = torch.Generator().manual_seed(_derived_seed(seed, 1))
    augment_gen = torch.Generator().manual_seed(_derived_seed(seed, 2))
    augment = Augmentation() if train.augment else None
    train_label_np = train_labels.cpu().numpy()
    rows, best_state, best_epoch, best_loss = [], None, 0, math.inf
    started = time.perf_counter()
    stopped_early = False
    for epoch in range(1, train.epochs + 1):
        t0 = time.perf_counter()
        batches = epoch_batches(strategy, train_label_np, train.batch_size, order_gen)
        train_loss = train_one_epoch(model, train_images, train_labels, batches, optimizer, loss_fn, augment,
                                     augment_gen, train.amp, desc=f"epoch {epoch}/{train.epochs}")
        val_loss, val_prob = validation_pass(model, val_images, val_labels, loss_fn, train.batch_size * 2, train.amp)
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
        if history_path is not None:
            write_csv_atomic(history_path, pd.DataFrame(rows))
        if epoch - best_epoch >= train.patience and epoch < train.epochs:
            stopped_early = True
            print(f"early stop: no better validation loss for {train.patience} epochs (best: epoch {best_epoch})")
            break
    model.load_state_dict(best_state)
    extra = {"class_weights": weights.tolist() if weights is not None else None}
    return FitResult(pd.DataFrame(rows), best_state, best_epoch, best_loss, stopped_early,
                     time.perf_counter() - started, extra)


def _derived_seed(seed: int, stream: int) -> int:
    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])


# --- a whole run -------------------------------------------------------------------------------------------
def _params(obj: Any, cls: type, source: str) -> Any:
    return obj if isinstance(obj, cls) else build(cls, dict(obj), source)


def run_classifier(frames: pd.DataFrame, run_params: Any, train_params: Any, out_dir: str | Path) -> dict[str, Any]:
    """Train, select by validation loss, test once; write the run folder; return the metrics (as written)."""
    started = time.perf_counter()
    run = _params(run_params, ClassifierRunParams, "run_classifier run_params")
    train = _params(train_params, TrainParams, "run_classifier train_params")
    models.check_arch(run.arch, train.image_size)
    flat = {**as_dict(run), **as_dict(train)}
    run_id = run_id_for(flat)
    layout = OutLayout(resolve_out_dir(out_dir))
    data = prepare_data(frames, run, train, layout.root)
    seed_everything(run.seed, train.num_threads)
    device = resolve_device(train.device)
    images = table_images(data.table, train.image_size, train.num_threads)
    model = models.prepare(models.build_model(run.arch, len(data.classes), train.image_size, train.pretrained), device)
    print(f"run {run_id}: {run.arch} at {train.image_size} px on {device}, "
          f"train/val/test frames {len(data.part('train'))}/{len(data.part('val'))}/{len(data.part('test'))}")
    with atomic_dir(layout.run_dir(run_id)) as folder:
        result = fit(model, data, images, train, run.strategy, run.seed, history_path=folder / "history.csv")
        test = data.part("test")
        test_images = images[torch.tensor(test.index.to_numpy(dtype=np.int64))]
        prob = models.predict_proba(model, test_images, train.batch_size * 2, amp=train.amp)
        predictions = predictions_table(test, prob, data.classes)
        evaluation = M.evaluate(predictions, data.classes, n_boot=train.n_boot, seed=run.seed)
        record = {
            "run_id": run_id,
            "condition": condition_name(flat),
            "classes": data.classes,
            **evaluation,
            "n_train": data.counts("train"),
            "n_train_real": part_counts(data)["train (real)"].to_dict(),
            "n_synthetic": int(data.table.synthetic.sum()),
            "n_val": data.counts("val"),
            "n_test": data.counts("test"),
            "n_test_videos": int(test["video_id"].nunique()),
            "n_test_patients": int(test["patient_id"].nunique()),
            "synthetic": data.synthetic,
            "split_column": data.split_column,
            "training": {"epochs_run": int(len(result.history)), "best_epoch": result.best_epoch,
                         "best_val_loss": result.best_val_loss, "stopped_early": result.stopped_early,
                         "device": device.type, "amp": bool(train.amp and device.type == "cuda"),
                         **result.extra},
            "params": {"run": as_dict(run), "train": as_dict(train)},
            "code_version": code_version(),
            "environment": environment(),
            "data_fingerprint": data_fingerprint(frames),
            "timing": {"train_seconds": result.seconds, "total_seconds": time.perf_counter() - started},
        }
        record = M.to_jsonable(record)
        torch.save({"state_dict": result.best_state, "arch": run.arch, "classes": data.classes,
                    "image_size": train.image_size, "epoch": result.best_epoch, "run_id": run_id,
                    "params": record["params"]}, folder / "best.pt")
        write_csv_atomic(folder / "predictions.csv", predictions)
        _save_curves(result.history, folder / "curves.png")
        write_json_atomic(folder / "metrics.json", record)
    print(f"run {run_id} done in {time.perf_counter() - started:.1f} s -> {layout.run_dir(run_id)}")
    return record


def predictions_table(test: pd.DataFrame, prob: np.ndarray, classes: list[str]) -> pd.DataFrame:
    table = test[["path", "video_id", "patient_id", "label"]].reset_index(drop=True).copy()
    table["pred"] = [classes[i] for i in prob.argmax(axis=1)] if len(prob) else []
    for i, c in enumerate(classes):
        table[f"prob_{c}"] = prob[:, i] if len(prob) else []
    return table


def _save_curves(history: pd.DataFrame, target: Path) -> None:
    import matplotlib.pyplot as plt

    from lus_utils.plots import training_curves

    figure = training_curves(history)
    with atomic_path(target) as tmp, open(tmp, "wb") as handle:
        figure.savefig(handle, format="png", dpi=100)
    plt.close(figure)


# --- reading runs back ---------------------------------------------------------------------------------------
def load_run_model(run_dir: str | Path) -> tuple[torch.nn.Module, list[str], int]:
    """The best checkpoint of a run, for inference (built from the timm config, nothing downloaded)."""
    path = Path(run_dir) / "best.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run the classifier first (notebook 02/03)")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model = models.build_model(checkpoint["arch"], len(checkpoint["classes"]), int(checkpoint["image_size"]))
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    return model, list(checkpoint["classes"]), int(checkpoint["image_size"])


def read_run(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: the run has not finished (or not been made)")
    return read_json(path)


def read_history(run_dir: str | Path) -> pd.DataFrame:
    return pd.read_csv(Path(run_dir) / "history.csv")


def read_predictions(run_dir: str | Path, frames: pd.DataFrame | None = None) -> pd.DataFrame:
    """predictions.csv, with each frame's `abspath` when `frames` (the run's frames.csv) is given."""
    table = pd.read_csv(Path(run_dir) / "predictions.csv", dtype={"video_id": str, "patient_id": str},
                        keep_default_na=False)
    if frames is not None:
        table = table.merge(frames[["path", "abspath"]].drop_duplicates("path"), on="path", how="left")
    return table


def compare_runs(out_dir: str | Path, run_ids: list[str]) -> pd.DataFrame:
    """Headline test figures of finished runs side by side (missing runs are listed as such)."""
    runs_dir = OutLayout(resolve_out_dir(out_dir)).runs
    rows = []
    for run_id in run_ids:
        path = runs_dir / run_id / "metrics.json"
        if not path.is_file():
            rows.append({"run_id": run_id, "condition": "(not run)"})
            continue
        record = read_json(path)
        row = {"run_id": run_id, "condition": record["condition"]}
        for key in ("balanced_accuracy", "macro_f1", "macro_auroc"):
            row[key] = record.get(key)
            row[f"{key}_ci"] = record.get("ci", {}).get(key)
        for label, values in record["per_class"].items():
            row[f"recall_{label}"] = values["recall"]
            row[f"f1_{label}"] = values["f1"]
        row["video_balanced_accuracy"] = record["video"]["balanced_accuracy"]
        rows.append(row)
    return pd.DataFrame(rows).set_index("run_id")
