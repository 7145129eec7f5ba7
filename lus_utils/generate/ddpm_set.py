"""Writing a DDPM's synthetic set: its folders, the quality gate on the generated pixels, and the provenance."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lus_utils import synthetic_sets
from lus_utils.config.generate import AuditParams, DDPMParams
from lus_utils.generate import realism
from lus_utils.images import resize
from lus_utils.paths import OutLayout
from lus_utils.provenance import provenance, read_json, stable_hash
from lus_utils.vocabulary import DDPM_CONDITIONAL_VARIANT, DDPM_LEAKY_VARIANTS, SetRef, Split, ddpm_set_ref


def set_ref(p: DDPMParams) -> SetRef:
    """The set (and generator) a DDPM run makes: its family on its split (one for every split if leaky; the
    repeat's for the class-conditional variant under cv)."""
    return ddpm_set_ref(p.variant, Split.from_column(p.split_column), p.real_patients)


def generator_dir(layout: OutLayout, p: DDPMParams) -> Path:
    return layout.generators / set_ref(p).name


def synthetic_set_dir(layout: OutLayout, p: DDPMParams) -> Path:
    return layout.synthetic / set_ref(p).name


def write_synthetic_set(set_dir: Path, images: np.ndarray, seeds: list[int], p: DDPMParams, audit: AuditParams,
                        selected: pd.DataFrame, split_column: str, gen_dir: Path, sampling_seconds: float,
                        frames: pd.DataFrame, attempts: list[int] | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Gate every image (on its generated pixels), resize all to `output_size`, write the set.

    The gate (`audit.gate`) runs before resizing, on what the generator made; the real_range gate is
    calibrated on the training part of `split_column` in `frames` (never on validation or test frames).
    Returns the manifest and a summary (generated, kept, rejection rate, sampling time, the gate's record).
    """
    verdicts, gate_record = realism.quality_gate(images, audit, realism.calibration_images(frames, split_column, audit))
    attempts = list(attempts) if attempts is not None else [0] * len(seeds)
    guidance = {"guidance_scale": p.guidance_scale} if p.variant == DDPM_CONDITIONAL_VARIANT else {}
    rows = [{"label": p.target_class, "generator": "ddpm", "variant": p.variant, "sampler": p.sampler,
             "steps": p.sampling_steps, "seed": int(image_seed), "redraws": int(redraws), **guidance, **verdict}
            for image_seed, redraws, verdict in zip(seeds, attempts, verdicts, strict=True)]
    resized = [resize(image, p.output_size) for image in images]
    kept = sum(r["passed_gate"] for r in rows)
    summary = {"n_generated": len(rows), "n_kept": int(kept),
               "rejection_rate": float(1 - kept / len(rows)) if rows else float("nan"),
               "sampling_seconds": float(sampling_seconds),
               "seconds_per_image": float(sampling_seconds / max(1, len(rows))),
               "n_redrawn": int(sum(a > 0 for a in attempts)), "gate_retries": p.gate_retries}
    generator_record = read_json(Path(gen_dir) / "provenance.json")
    record = provenance(
        {"ddpm": asdict(p), "audit": asdict(audit)}, set=set_ref(p).to_dict(), training_frames=sorted(selected["path"]),
        leakage_ablation=p.variant in DDPM_LEAKY_VARIANTS, split_column=split_column,
        training_frame_parts=selected[split_column].value_counts().to_dict(),
        training_frames_per_class=selected["label"].value_counts().to_dict(),
        frames_fingerprint=generator_record["training_key"]["frames_fingerprint"],
        generator={"name": Path(gen_dir).name, "created": generator_record["created"],
                   "training_key_hash": stable_hash(generator_record["training_key"]),
                   "code_version": generator_record["code_version"]},
        quality_gate=gate_record, **summary)
    manifest = synthetic_sets.write_set(set_dir, resized, rows, record)
    return manifest, summary
