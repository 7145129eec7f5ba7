"""A feature space that knows ultrasound: a small CNN trained on a split's real training frames, for realism.

Why: the audit's random CNN reads intensity statistics (multi-scale means and spreads of random filters), so a
blurred grey blob with the right histogram scores as realistic. A network trained to tell lung-ultrasound
classes apart must use what separates them (the pleural line, A-lines, B-lines, consolidations, the sector's
speckle), and its embedding moves when those structures are missing.

- Training frames: the split's training part, every class but the one judged (`encoder_frames`), so the
  held-out frames a set is judged against, the real training frames of the reference and the synthetic images
  are all unseen by the encoder, on an equal footing. It never sees validation or test frames.
- Input: every frame standardised on its own (zero mean, unit spread), so the embedding reads structure, not
  the gain and brightness that differ between machines and patients (what the random CNN and the gate measure).
  Augmentation: flips and small shifts. Class-balanced batches, drawn with replacement, seeded per step.
- Features: the spatial mean and standard deviation of every stage's channels (`stage_statistics`): the first
  stage says how sharp the texture is (speckle, edges), the last which structures are there. Each is
  standardised with the encoder's training frames (fixed when it is trained, so every set is measured in one
  space) and each stage is scaled to weigh the same in a kernel on the features (`stage_weights`).
- Cache: one encoder per split and judged class (`encoder_for_split`), in a folder named by the split and keyed
  by everything that determines it (`EncoderSpec`, the frames by path and content, the code's format), written
  atomically under a lock, so parallel audits of one split train it once.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from lus_utils.generate.realism import resize_grey
from lus_utils.images import load_images
from lus_utils.provenance import atomic_dir, file_lock, fingerprint_files, read_json, stable_hash, write_json_atomic

STATE_FILE = "encoder.pt"
RECORD_FILE = "encoder.json"
FORMAT = 3  # version of the network, features and training: an encoder of another format is trained again
WIDTHS = (16, 32, 64)  # channels of the conv stages (each: two 3x3 conv-BN-ReLU, then 2x2 max pooling)
BATCH_SIZE = 64  # frames per step
LR = 0.003  # AdamW learning rate, cosine decay to 0
WEIGHT_DECAY = 0.0005
MAX_SHIFT = 2  # largest random shift in px (augmentation)


@dataclass(frozen=True)
class EncoderSpec:
    """What determines an encoder's weights besides its frames (`AuditParams.encoder_size`, `encoder_steps`,
    `audit_seed`; the rest are this module's constants)."""

    size: int = 32
    steps: int = 300
    seed: int = 0
    widths: tuple[int, ...] = WIDTHS
    batch_size: int = BATCH_SIZE
    lr: float = LR
    weight_decay: float = WEIGHT_DECAY
    max_shift: int = MAX_SHIFT

    @property
    def feature_dim(self) -> int:
        return 2 * sum(self.widths)


def _network(widths: tuple[int, ...], n_classes: int) -> tuple[torch.nn.Sequential, torch.nn.Linear]:
    layers, channels = [], 1
    for width in widths:
        layers += [torch.nn.Conv2d(channels, width, 3, padding=1, bias=False), torch.nn.BatchNorm2d(width),
                   torch.nn.ReLU(), torch.nn.Conv2d(width, width, 3, padding=1, bias=False),
                   torch.nn.BatchNorm2d(width), torch.nn.ReLU(), torch.nn.MaxPool2d(2)]
        channels = width
    body = torch.nn.Sequential(*layers, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    return body, torch.nn.Linear(channels, n_classes)


def stage_statistics(body: torch.nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """The spatial mean and standard deviation of every stage's channels (after its last ReLU, before pooling)."""
    parts = []
    for layer in body:
        if isinstance(layer, torch.nn.MaxPool2d):
            parts += [x.mean(dim=(2, 3)), x.std(dim=(2, 3))]
        if isinstance(layer, torch.nn.AdaptiveAvgPool2d):
            break
        x = layer(x)
    return torch.cat(parts, dim=1)


def stage_weights(spec: EncoderSpec) -> np.ndarray:
    """Per-feature factors that give every stage the same weight in x . y / d (a stage of d_j features is scaled
    by sqrt(d / (n_stages d_j))): the few texture features of the first stage count as much as the many
    structure features of the last."""
    sizes = [2 * w for w in spec.widths]
    return np.concatenate([np.full(n, np.sqrt(sum(sizes) / (len(sizes) * n))) for n in sizes])


def _to_tensor(grey: np.ndarray) -> torch.Tensor:
    """Grey images (N, H, W) as (N, 1, H, W), each standardised on its own (flat images stay 0)."""
    x = torch.from_numpy(np.asarray(grey, dtype=np.float32))[:, None]
    x = x - x.mean(dim=(1, 2, 3), keepdim=True)
    return x / x.std(dim=(1, 2, 3), keepdim=True).clamp_min(1.0)


def _augment(x: torch.Tensor, spec: EncoderSpec, generator: torch.Generator) -> torch.Tensor:
    """Flips and shifts (edge padding): one seeded draw per image."""
    n = len(x)
    flip = torch.rand(n, generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if spec.max_shift:
        s = spec.max_shift
        padded = torch.nn.functional.pad(x, (s, s, s, s), mode="replicate")
        dy, dx = (torch.randint(0, 2 * s + 1, (n,), generator=generator) for _ in range(2))
        x = torch.stack([padded[i, :, dy[i]:dy[i] + x.shape[2], dx[i]:dx[i] + x.shape[3]] for i in range(n)])
    return x


class UltrasoundEncoder:
    """The trained body of the CNN and the standardisation of its features; calling it embeds grey images."""

    def __init__(self, body: torch.nn.Sequential, mean: np.ndarray, scale: np.ndarray, spec: EncoderSpec,
                 record: dict[str, Any]):
        self.body, self.mean, self.scale, self.spec, self.record = body.eval(), mean, scale, spec, record
        self.description = (f"ultrasound encoder (CNN {list(spec.widths)} trained on {record['n_frames']} real "
                            f"training frames of {record['classes']}, grey {spec.size} px, mean and std of every "
                            f"stage, {spec.feature_dim} standardised features)")

    def raw(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        grey = resize_grey(images, self.spec.size)
        out = []
        with torch.no_grad():
            for start in range(0, len(grey), batch_size):
                out.append(stage_statistics(self.body, _to_tensor(grey[start:start + batch_size])).double().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.spec.feature_dim))

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Standardised, stage-weighted features (N, D) of grey uint8 images (N, H, W) of any size (brought to
        `spec.size` px, so a set is judged at the resolution the encoder reads)."""
        return (self.raw(images) - self.mean) / self.scale * stage_weights(self.spec)

    def save(self, folder: Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        torch.save({"body": self.body.state_dict(), "mean": self.mean, "scale": self.scale}, folder / STATE_FILE)
        write_json_atomic(folder / RECORD_FILE, {"spec": asdict(self.spec), **self.record})
        return folder

    @classmethod
    def load(cls, folder: Path) -> "UltrasoundEncoder":
        record = read_json(Path(folder) / RECORD_FILE)
        spec_values = record.pop("spec")
        spec = EncoderSpec(**{**spec_values, "widths": tuple(spec_values["widths"])})
        state = torch.load(Path(folder) / STATE_FILE, weights_only=False)
        body, _ = _network(spec.widths, len(record["classes"]))
        body.load_state_dict(state["body"])
        return cls(body, state["mean"], state["scale"], spec, record)


def train_encoder(images: np.ndarray, labels: list[str], spec: EncoderSpec) -> UltrasoundEncoder:
    """Train the CNN to tell the classes of `labels` apart on grey `images` (N, H, W); class-balanced batches
    drawn with replacement from a generator seeded by (seed, step)."""
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise ValueError(f"the encoder needs frames of at least two classes to tell apart, got {classes}")
    y = torch.tensor([classes.index(label) for label in labels])
    x = _to_tensor(resize_grey(images, spec.size))
    torch.manual_seed(spec.seed)
    body, head = _network(spec.widths, len(classes))
    model = torch.nn.Sequential(body, head)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, spec.steps)
    weights = 1.0 / torch.bincount(y).double()[y]
    began = time.process_time()
    model.train()
    for step in range(spec.steps):
        g = torch.Generator().manual_seed(int(np.random.SeedSequence([spec.seed, 21, step]).generate_state(1)[0]))
        index = torch.multinomial(weights, spec.batch_size, replacement=True, generator=g)
        loss = torch.nn.functional.cross_entropy(model(_augment(x[index], spec, g)), y[index])
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
    record = {"format": FORMAT, "classes": classes, "n_frames": int(len(y)),
              "frames_per_class": {c: int((y == i).sum()) for i, c in enumerate(classes)},
              "final_loss": float(loss.detach()), "train_cpu_seconds": time.process_time() - began}
    encoder = UltrasoundEncoder(body, np.zeros(spec.feature_dim), np.ones(spec.feature_dim), spec, record)
    raw = encoder.raw(images)
    encoder.mean, encoder.scale = raw.mean(axis=0), raw.std(axis=0) + 1e-6
    return encoder


# --- one encoder per split, cached ------------------------------------------------------------------------------
def encoder_frames(frames: pd.DataFrame, split_column: str, judged: str) -> pd.DataFrame:
    """The frames the encoder for `split_column` trains on: its training part, every class but `judged`
    (a simulated draw's column covers its convex classes only), sorted by path."""
    if split_column not in frames.columns:
        raise ValueError(f"frames have no column '{split_column}'")
    chosen = frames[(frames[split_column] == "train") & (frames["label"] != judged)]
    return chosen.sort_values("path")


def encoder_key(chosen: pd.DataFrame, spec: EncoderSpec) -> dict[str, Any]:
    """What determines the encoder: its spec, its frames (by path and content) and the code's format."""
    return {"format": FORMAT, "spec": asdict(spec), "training_frames": sorted(chosen["path"]),
            "frames_fingerprint": fingerprint_files(sorted(chosen["abspath"]))}


def encoder_folder(cache: Path, split_column: str, judged: str, key: dict[str, Any]) -> Path:
    return Path(cache) / f"{split_column}_without_{judged}_{stable_hash(key, 12)}"


def encoder_for_split(frames: pd.DataFrame, split_column: str, judged: str, spec: EncoderSpec,
                      cache: Path | None = None) -> UltrasoundEncoder:
    """The split's encoder for judging class `judged`: loaded from `cache` when it holds one with the same key,
    else trained on `encoder_frames` (and saved there, atomically, under a lock). No cache: trained in memory.
    Raises ValueError when those frames hold fewer than two classes (nothing to tell apart)."""
    chosen = encoder_frames(frames, split_column, judged)
    key = encoder_key(chosen, spec)

    def train() -> UltrasoundEncoder:
        encoder = train_encoder(load_images(chosen["abspath"], spec.size, grayscale=True), chosen["label"].tolist(),
                                spec)
        encoder.record.update(split_column=split_column, judged_class=judged, key_hash=stable_hash(key, 12),
                              training_frames=key["training_frames"])
        return encoder

    if cache is None:
        return train()
    folder = encoder_folder(cache, split_column, judged, key)
    with file_lock(folder.parent / f".{folder.name}.lock"):
        if not (folder / RECORD_FILE).is_file():
            encoder = train()
            with atomic_dir(folder) as tmp:
                encoder.save(tmp)
            return encoder
    return UltrasoundEncoder.load(folder)
