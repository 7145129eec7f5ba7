"""Writing textual inversion's synthetic sets: the quality gate, the provenance, and the notebook's summaries.

Both modes (txt2img, img2img) are gated and audited like every synthetic set; the provenance lists every
study frame involved: the base model's, the token's and the img2img sources.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lus_utils import synthetic_sets
from lus_utils.config.generate import AuditParams, TextualInversionParams
from lus_utils.generate import realism
from lus_utils.generate.textual_inversion_training import TrainResult
from lus_utils.provenance import provenance, sha256_file
from lus_utils.vocabulary import TI_MODES, VIRAL, SetRef, Split, ti_set_refs

GENERATOR = "textual_inversion"


def set_refs(params: TextualInversionParams) -> dict[str, SetRef]:
    """The sets a run writes, by mode (txt2img, img2img): its base model's families on its split."""
    refs = ti_set_refs(params.base_model, params.set_tag, Split.from_column(params.split_column))
    return dict(zip(TI_MODES, refs))


def write_synthetic_set(set_dir: Path, mode: str, images: list[np.ndarray], sources: list[str],
                        params: TextualInversionParams, audit_params: AuditParams, base_info: dict[str, Any],
                        train_frames: pd.DataFrame, split_column: str, trained: TrainResult,
                        seconds: float, frames: pd.DataFrame) -> pd.DataFrame:
    """Gate every image with `audit.gate` (the real-range gate calibrated on the training part of `split_column`
    in `frames`, as for the DDPM sets) and write the set (manifest + provenance listing every training frame
    involved)."""
    gates, gate_record = realism.quality_gate(np.stack(images), audit_params,
                                              realism.calibration_images(frames, split_column, audit_params))
    prompt = params.prompt.format(params.placeholder_token)
    rows = [{"label": VIRAL, "generator": GENERATOR, "variant": f"{mode}:{params.base_model}",
             "sampler": params.sampler, "steps": params.sampling_steps, "seed": params.seed + i,
             **gate, "prompt": prompt, "guidance_scale": params.guidance_scale,
             **({"strength": params.strength, "source_path": sources[i]} if mode == "img2img" else {})}
            for i, gate in enumerate(gates)]
    ti_frames = list(train_frames["path"])
    seen = sorted(set(base_info["training_frames"]) | set(ti_frames) | set(sources))
    record = provenance(
        {"textual_inversion": asdict(params), "audit": asdict(audit_params)},
        set=set_refs(params)[mode].to_dict(), mode=mode, base_model=params.base_model, base_model_kind=base_info["kind"],
        base_model_meaning=base_info["meaning"], base_model_info={k: v for k, v in base_info.items()
                                                                  if k != "training_frames"},
        split_column=split_column, training_frames=seen,
        base_model_training_frames=base_info["training_frames"], token_training_frames=ti_frames,
        img2img_source_frames=sorted(set(sources)),
        learned_embeds=f"generators/{trained.folder.name}/{trained.embeds_path.name}",  # relative to the output folder
        learned_embeds_sha256=sha256_file(trained.embeds_path), generation_seconds=round(seconds, 2),
        quality_gate=gate_record, n_generated=len(images), n_kept=int(sum(g["passed_gate"] for g in gates)))
    return synthetic_sets.write_set(set_dir, images, rows, record)


def gate_summary(manifests: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per set: images, kept, rejection rate, median grey std and entropy."""
    rows = []
    for mode, manifest in manifests.items():
        kept = synthetic_sets.passed_gate(manifest)
        rows.append({"set": mode, "images": len(manifest), "kept": int(kept.sum()),
                     "rejection rate": float(1 - kept.mean()) if len(manifest) else float("nan"),
                     "median std": float(manifest["std"].median()), "median entropy": float(manifest["entropy"].median())})
    return pd.DataFrame(rows).set_index("set")


def audit_summary(audits: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per set: gate, nearest-training-frame similarity, memorized share, the real reference, and the
    realism verdicts (the ultrasound encoder's structure test, with its p, and the second opinion's)."""
    rows = []
    for mode, audit in audits.items():
        minority = audit["memorization"].get("minority_train", {})
        seen = audit["memorization"].get("generator_training_frames", {})
        reference = audit["real_reference"].get("holdout_minority_vs_minority_train", {})
        rows.append({"set": mode, "images": audit["n_images"], "kept": audit["n_kept"],
                     "rejection rate": audit["rejection_rate"],
                     "median r to minority train": minority.get("correlation", {}).get("median"),
                     "max r to minority train": minority.get("correlation", {}).get("max"),
                     "memorized (minority train)": minority.get("share_memorized"),
                     "memorized (frames the generator saw)": seen.get("share_memorized"),
                     "real held-out median r (reference)": reference.get("correlation", {}).get("median"),
                     "structure p": audit["realism"].get("structure", {}).get("farther_than_reference", {}).get("p_value"),
                     "reached realism": audit.get("reached_realism"),
                     "second opinion": audit.get("second_opinion_reached_realism")})
    return pd.DataFrame(rows).set_index("set")
