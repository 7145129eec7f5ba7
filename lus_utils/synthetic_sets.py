"""Synthetic sets: the folder format every generator writes and every classifier reads.

A synthetic set is a folder `<out>/synthetic/<SetRef.name>` with
- `images/`: one PNG per generated image (kept and rejected alike, so the gate can be inspected);
- `manifest.csv`: one row per image, `MANIFEST_COLUMNS` at least (`path` relative to the set folder);
- `provenance.json`: what made it, with `set` (its `SetRef`), `training_frames` (the frames.csv `path` of
  every real frame the generator saw), `split_column` and `leakage_ablation` (true only for a family made to
  see frames outside any training part: the leakage ablation and the original study's generator);
- `audit.json`: the memorization and realism audit.

Only images with `passed_gate` true are ever added to a classifier's training part, and only after
`load_for_training` has checked that the set's generator saw nothing outside that part.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import cv2
import numpy as np
import pandas as pd

from lus_utils.images import intensity_stats
from lus_utils.paths import OutLayout
from lus_utils.provenance import atomic_dir, read_json, write_csv_atomic, write_json_atomic
from lus_utils.vocabulary import AMOUNT_UNITS, SetRef, Split

MANIFEST_COLUMNS = ["path", "label", "generator", "variant", "sampler", "steps", "seed", "std", "entropy",
                    "passed_gate", "nearest_train_path", "nearest_train_similarity"]


class SyntheticSetError(ValueError):
    """A synthetic set that cannot be used: missing files, unknown labels, or frames it must not have seen."""


def set_dir(out_dir: Path, ref: SetRef) -> Path:
    return OutLayout(Path(out_dir)).synthetic / ref.name


def candidates(family: str, split: Split, k: int = 0) -> list[SetRef]:
    """The folders a run on `split` may read for `family`, most specific first: the repeat's own (a generator
    that learns the repeat's split), then the split's (a leaky family's: its one set for every split)."""
    refs = [SetRef.for_split(family, split, k, repeat_dependent=True), SetRef.for_split(family, split, k)]
    return list(dict.fromkeys(refs))


def resolve(synthetic_set: str, out_dir: Path, split: Split, k: int = 0) -> Path:
    """The folder a run on `split` reads: a folder given by path (a set made elsewhere), else the family's."""
    given = Path(str(synthetic_set))
    if given.is_absolute() or len(given.parts) > 1:
        if not given.is_dir():
            raise SyntheticSetError(f"synthetic set folder {given} does not exist")
        return given
    refs = candidates(str(synthetic_set), split, k)
    found = [set_dir(out_dir, r) for r in refs if set_dir(out_dir, r).is_dir()]
    if not found:
        raise SyntheticSetError(f"synthetic set '{synthetic_set}' for {split.column}: none of "
                                f"{[r.name for r in refs]} exists under {OutLayout(Path(out_dir)).synthetic}; run "
                                "its generator for this split first (notebook 05 or 04)")
    return found[0]


def original_gate(image: np.ndarray, min_std: float = 30.0, min_entropy: float = 4.7) -> dict[str, Any]:
    """The original study's quality gate: keep an image if grey std > min_std and entropy > min_entropy nats."""
    stats = intensity_stats(image)
    return {"std": stats["std"], "entropy": stats["entropy"],
            "passed_gate": bool(stats["std"] > min_std and stats["entropy"] > min_entropy)}


def passed_gate(manifest: pd.DataFrame) -> pd.Series:
    """Which manifest rows passed the quality gate (the column read back from CSV is text); all of them when
    the manifest has no gate column."""
    if "passed_gate" not in manifest.columns:
        return pd.Series(True, index=manifest.index)
    return manifest["passed_gate"].astype(str).str.lower().isin(["true", "1"])


def write_set(folder: Path, images: Iterable[np.ndarray], rows: list[dict[str, Any]],
              provenance_record: dict[str, Any]) -> pd.DataFrame:
    """Write images, manifest.csv and provenance.json into `folder` atomically (whole folder at once).

    `rows[i]` describes `images[i]` (label, generator, variant, sampler, steps, seed, std, entropy,
    passed_gate, ...); the nearest-training-frame columns are filled in later by the audit.
    """
    if "training_frames" not in provenance_record:
        raise ValueError("provenance must list training_frames (frames.csv paths the generator saw)")
    records = []
    with atomic_dir(Path(folder)) as tmp:
        (tmp / "images").mkdir()
        for i, (image, row) in enumerate(zip(images, rows, strict=True)):
            name = f"images/{i:05d}.png"
            array = np.asarray(image, dtype=np.uint8)
            if not cv2.imwrite(str(tmp / name), array if array.ndim == 2 else cv2.cvtColor(array, cv2.COLOR_RGB2BGR)):
                raise OSError(f"could not write {tmp / name} (disk full or not writable?); the set was not written")
            records.append({"path": name, **row})
        manifest = pd.DataFrame(records)
        for column in MANIFEST_COLUMNS:
            if column not in manifest:
                manifest[column] = "" if column.startswith("nearest") else np.nan
        manifest = manifest[MANIFEST_COLUMNS + [c for c in manifest.columns if c not in MANIFEST_COLUMNS]]
        write_csv_atomic(tmp / "manifest.csv", manifest)
        write_json_atomic(tmp / "provenance.json", {"leakage_ablation": False, **provenance_record})
    return manifest


def read_manifest(folder: Path) -> pd.DataFrame:
    manifest_path = Path(folder) / "manifest.csv"
    if not manifest_path.is_file():
        raise SyntheticSetError(f"synthetic set {folder} has no manifest.csv (is it a synthetic set folder, "
                                "written completely by notebook 04 or 05?)")
    manifest = pd.read_csv(manifest_path, keep_default_na=False)
    missing = [c for c in ("path", "label") if c not in manifest.columns]
    if missing:
        raise SyntheticSetError(f"{manifest_path} lacks columns {missing}")
    manifest["abspath"] = [str(Path(folder) / p) for p in manifest["path"]]
    return manifest


def read_provenance(folder: Path) -> dict[str, Any]:
    path = Path(folder) / "provenance.json"
    if not path.is_file():
        raise SyntheticSetError(f"synthetic set {folder} has no provenance.json: its training frames are "
                                "unknown, so it cannot be shown free of leakage")
    return read_json(path)


def leakage_ablation(folder: Path) -> bool:
    """True when the provenance marks the set as leaky, or when there is no readable provenance: then its
    training frames are unknown and it cannot be shown free of leakage."""
    try:
        return bool(read_provenance(folder).get("leakage_ablation", False))
    except (SyntheticSetError, OSError, ValueError):
        return True


def load_for_training(folder: Path, classes: list[str], train_paths: Iterable[str]) -> pd.DataFrame:
    """The gated images of a synthetic set, after checking it may join this training part.

    Refused (with the offending rows): missing image files, labels outside `classes`, and a provenance
    whose training frames are not all in `train_paths` unless it is marked as the leakage ablation.
    """
    manifest = read_manifest(folder)
    absent = manifest[[not Path(p).is_file() for p in manifest["abspath"]]]
    if len(absent):
        raise SyntheticSetError(f"{folder}: {len(absent)} manifest rows point to missing files, e.g. "
                                f"{absent['path'].head(5).tolist()}")
    foreign = manifest[~manifest["label"].isin(classes)]
    if len(foreign):
        raise SyntheticSetError(f"{folder}: {len(foreign)} rows have labels outside {classes}: "
                                f"{foreign[['path', 'label']].head(5).to_dict(orient='records')}")
    record = read_provenance(folder)
    if not isinstance(record.get("training_frames"), list) or not record["training_frames"]:
        raise SyntheticSetError(f"{folder / 'provenance.json'} lists no training_frames: which real frames its "
                                "generator saw is unknown, so leakage into this run's validation or test part cannot be "
                                "ruled out; regenerate the set with notebook 04 or 05, which record them")
    seen = set(record["training_frames"])
    outside = sorted(seen - set(train_paths))
    if outside and not record.get("leakage_ablation", False):
        raise SyntheticSetError(f"{folder}: its generator saw {len(outside)} frames that are not in this run's "
                                f"training part (e.g. {outside[:3]}); only the explicitly marked leakage "
                                "ablation may do that")
    return manifest[passed_gate(manifest)].reset_index(drop=True)


def amount_to_count(amount: float, unit: str, n_real_minority: int, n_available: int,
                    set_name: str = "") -> tuple[int, int]:
    """(requested, used): how many images an amount asks for (ratio to real minority frames, fraction of the
    set, or count), all of which the set must give. A set with fewer images that passed its gate than asked is an
    error, raised before any training: the run would be labelled with an amount it never trained on, while its
    oversampling control adds the full amount of real copies."""
    if unit not in AMOUNT_UNITS:
        raise ValueError(f"synthetic amount unit '{unit}' unknown; allowed: {list(AMOUNT_UNITS)}")
    requested = {"ratio": round(amount * n_real_minority), "fraction": round(amount * n_available),
                 "count": int(amount)}[unit]
    if requested > n_available or n_available == 0:
        asked = {"ratio": f"{amount:g} x {n_real_minority} real minority training frames",
                 "fraction": f"{amount:g} of the set", "count": f"{amount:g} images"}[unit]
        raise SyntheticSetError(
            f"synthetic set {set_name or '(unnamed)'}: amount {amount:g} ({unit}) asks for {requested} images "
            f"({asked}), but only {n_available} passed its quality gate; lower grid.synthetic_amounts, or generate "
            "more images (ddpm.n_samples; textual_inversion.n_txt2img / n_img2img) or loosen the gate (audit "
            "section), then run the generator again")
    return requested, requested
