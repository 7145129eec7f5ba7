"""Synthetic sets: the folder format every generator writes and the classifier hook reads.

A synthetic set is a folder with
- `images/`: one PNG per generated image (kept and rejected alike, so the gate can be inspected);
- `manifest.csv`: one row per image, `MANIFEST_COLUMNS` at least (`path` relative to the set folder);
- `provenance.json`: what made it, with `training_frames` (the frames.csv `path` of every real frame the
  generator saw) and `leakage_ablation` (true only for the explicit leakage ablation);
- `audit.json`: the memorization and realism audit (written by `synthetic_audit`).

Only images with `passed_gate` true are ever added to a classifier's training split.

`SyntheticSet` is the one handle on such a folder: its name (how runs, conditions and tables call it), where it
lies, its provenance and leakage flag, and the images a classifier may read from it. The names the generators
give their sets (`ddpm_set_name`, `ti_set_names`) live here too, torch-free, so the planner can name sets
without importing a generator.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from lus_utils.images import intensity_stats
from lus_utils.paths import OutLayout, resolve_out_dir
from lus_utils.provenance import atomic_dir, read_json, write_csv_atomic, write_json_atomic

MANIFEST_COLUMNS = ["path", "label", "generator", "variant", "sampler", "steps", "seed", "std", "entropy",
                    "passed_gate", "nearest_train_path", "nearest_train_similarity"]
AMOUNT_UNITS = ("ratio", "fraction", "count")


class SyntheticSetError(ValueError):
    """A synthetic set that cannot be used: missing files, unknown labels, or frames it must not have seen."""


# --- names -------------------------------------------------------------------------------------------------
DDPM_LEAKAGE_VARIANT = "3_mixed_any_split"  # the DDPM variant that is the explicitly marked leakage ablation
# The seed replica's generator: three frames whatever their split (the seed's hand-picked folder), sampled and
# gated the seed's way. It saw frames outside any training part, so it is marked as leaky like the ablation.
DDPM_SEED_VARIANT = "seed_3_mixed"
DDPM_LEAKY_VARIANTS = (DDPM_LEAKAGE_VARIANT, DDPM_SEED_VARIANT)
SEED_REPLICA_SET = "ddpm_seed_3_mixed"  # its set (one for the study: it does not depend on a split)


def ddpm_set_name(variant: str, fold: int) -> str:
    """`ddpm_<variant>` for the hold-out split, `ddpm_<variant>_fold<f>` for fold f (the generator's name too)."""
    return f"ddpm_{variant}" + ("" if fold < 0 else f"_fold{fold}")


def ti_set_names(set_tag: str = "") -> dict[str, str]:
    """Textual-inversion set names by mode: ti_txt2img and ti_img2img, with `_<set_tag>` when one is given."""
    suffix = f"_{set_tag}" if set_tag else ""
    return {"txt2img": f"ti_txt2img{suffix}", "img2img": f"ti_img2img{suffix}"}


def set_name(synthetic_set: str | Path) -> str:
    """The name of a set given by name or path (its folder's name, made safe for run ids); "" for none."""
    if not synthetic_set:
        return ""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", Path(str(synthetic_set).rstrip("/")).name).strip("-") or "set"


@dataclass(frozen=True)
class SyntheticSet:
    """One synthetic set: its name, its folder, and what its provenance says."""

    name: str
    folder: Path

    @classmethod
    def resolve(cls, synthetic_set: str | Path, out_dir: str | Path) -> "SyntheticSet":
        """A set given as a path (absolute, or with a folder in it), or by name under <out>/synthetic."""
        value = Path(str(synthetic_set))
        if not str(synthetic_set):
            raise SyntheticSetError("no synthetic set given (an empty name means a run without one)")
        folder = value if value.is_absolute() or len(value.parts) > 1 else \
            OutLayout(resolve_out_dir(out_dir)).synthetic / value
        return cls(set_name(value), folder)

    @cached_property
    def provenance(self) -> dict[str, Any]:
        return read_provenance(self.folder)

    @property
    def leakage_ablation(self) -> bool:
        """True when the provenance marks the set as the leakage ablation, or when there is no readable
        provenance: then its training frames are unknown and it cannot be shown free of leakage."""
        try:
            return bool(self.provenance.get("leakage_ablation", False))
        except (SyntheticSetError, OSError, ValueError):
            return True

    @property
    def training_frames(self) -> list[str]:
        return list(self.provenance.get("training_frames", []))

    def manifest(self) -> pd.DataFrame:
        return read_manifest(self.folder)

    def for_training(self, classes: list[str], train_paths: Iterable[str]) -> pd.DataFrame:
        """The gated images a classifier of this training split may read (see `load_for_training`)."""
        return load_for_training(self.folder, classes, train_paths)


def gate(image: np.ndarray, min_std: float = 30.0, min_entropy: float = 4.7) -> dict[str, Any]:
    """The seed study's quality gate: keep an image if grey std > min_std and entropy > min_entropy nats."""
    stats = intensity_stats(image)
    return {"std": stats["std"], "entropy": stats["entropy"],
            "passed_gate": bool(stats["std"] > min_std and stats["entropy"] > min_entropy)}


def passed_gate(manifest: pd.DataFrame) -> pd.Series:
    """Which manifest rows passed the quality gate (the column read back from CSV is text); all of them when
    the manifest has no gate column."""
    if "passed_gate" not in manifest.columns:
        return pd.Series(True, index=manifest.index)
    return manifest["passed_gate"].astype(str).str.lower().isin(["true", "1"])


def write_set(set_dir: Path, images: Iterable[np.ndarray], rows: list[dict[str, Any]],
              provenance_record: dict[str, Any]) -> pd.DataFrame:
    """Write images, manifest.csv and provenance.json into `set_dir` atomically (whole folder at once).

    `rows[i]` describes `images[i]` (label, generator, variant, sampler, steps, seed, std, entropy,
    passed_gate, ...); the nearest-training-frame columns are filled in later by the audit.
    """
    import cv2

    if "training_frames" not in provenance_record:
        raise ValueError("provenance must list training_frames (frames.csv paths the generator saw)")
    records = []
    with atomic_dir(Path(set_dir)) as tmp:
        (tmp / "images").mkdir()
        for i, (image, row) in enumerate(zip(images, rows, strict=True)):
            name = f"images/{i:05d}.png"
            array = np.asarray(image, dtype=np.uint8)
            cv2.imwrite(str(tmp / name), array if array.ndim == 2 else cv2.cvtColor(array, cv2.COLOR_RGB2BGR))
            records.append({"path": name, **row})
        manifest = pd.DataFrame(records)
        for column in MANIFEST_COLUMNS:
            if column not in manifest:
                manifest[column] = "" if column.startswith("nearest") else np.nan
        manifest = manifest[MANIFEST_COLUMNS + [c for c in manifest.columns if c not in MANIFEST_COLUMNS]]
        write_csv_atomic(tmp / "manifest.csv", manifest)
        write_json_atomic(tmp / "provenance.json", {"leakage_ablation": False, **provenance_record})
    return manifest


def read_manifest(set_dir: Path) -> pd.DataFrame:
    manifest_path = Path(set_dir) / "manifest.csv"
    if not manifest_path.is_file():
        raise SyntheticSetError(f"synthetic set {set_dir} has no manifest.csv (is it a synthetic set folder, "
                                "written completely by notebook 04 or 05?)")
    manifest = pd.read_csv(manifest_path, keep_default_na=False)
    missing = [c for c in ("path", "label") if c not in manifest.columns]
    if missing:
        raise SyntheticSetError(f"{manifest_path} lacks columns {missing}")
    manifest["abspath"] = [str(Path(set_dir) / p) for p in manifest["path"]]
    return manifest


def read_provenance(set_dir: Path) -> dict[str, Any]:
    path = Path(set_dir) / "provenance.json"
    if not path.is_file():
        raise SyntheticSetError(f"synthetic set {set_dir} has no provenance.json: its training frames are "
                                "unknown, so it cannot be shown free of leakage")
    return read_json(path)


def load_for_training(set_dir: Path, classes: list[str], train_paths: Iterable[str]) -> pd.DataFrame:
    """The gated images of a synthetic set, after checking it may join this training split.

    Refused (with the offending rows): missing image files, labels outside `classes`, and a provenance
    whose training frames are not all in `train_paths` unless it is marked as the leakage ablation.
    """
    manifest = read_manifest(set_dir)
    absent = manifest[[not Path(p).is_file() for p in manifest["abspath"]]]
    if len(absent):
        raise SyntheticSetError(f"{set_dir}: {len(absent)} manifest rows point to missing files, e.g. "
                                f"{absent['path'].head(5).tolist()}")
    foreign = manifest[~manifest["label"].isin(classes)]
    if len(foreign):
        raise SyntheticSetError(f"{set_dir}: {len(foreign)} rows have labels outside {classes}: "
                                f"{foreign[['path', 'label']].head(5).to_dict(orient='records')}")
    record = read_provenance(set_dir)
    if not isinstance(record.get("training_frames"), list) or not record["training_frames"]:
        raise SyntheticSetError(f"{set_dir / 'provenance.json'} lists no training_frames: which real frames its "
                                "generator saw is unknown, so leakage into this run's validation or test part cannot be "
                                "ruled out; regenerate the set with notebook 04 or 05, which record them")
    seen = set(record["training_frames"])
    outside = sorted(seen - set(train_paths))
    if outside and not record.get("leakage_ablation", False):
        raise SyntheticSetError(f"{set_dir}: its generator saw {len(outside)} frames that are not in this run's "
                                f"training split (e.g. {outside[:3]}); only the explicitly marked leakage "
                                "ablation may do that")
    return manifest[passed_gate(manifest)].reset_index(drop=True)


def amount_to_count(amount: float, unit: str, n_real_minority: int, n_available: int) -> tuple[int, int]:
    """(requested, used): how many images an amount asks for (ratio to real minority frames, fraction of the
    set, or count), and how many the set can give. A set with fewer images than asked gives all it has (the run
    records both numbers); a set with none is an error, since the run would silently be a baseline."""
    if unit not in AMOUNT_UNITS:
        raise ValueError(f"synthetic amount unit '{unit}' unknown; allowed: {list(AMOUNT_UNITS)}")
    requested = {"ratio": round(amount * n_real_minority), "fraction": round(amount * n_available),
                 "count": int(amount)}[unit]
    if n_available == 0:
        raise SyntheticSetError(f"no image of the set passed the quality gate, so {amount} as {unit} cannot be "
                                "added; generate more images or lower audit.min_std / audit.min_entropy")
    return requested, min(requested, n_available)
