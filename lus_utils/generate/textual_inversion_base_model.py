"""The base model textual inversion starts from: a Stable-Diffusion-style pipeline, and what it is.

`tiny` (`tiny_sd`: offline, random weights, images are noise), `domain` (the study's own small model,
`domain_base_model`), or a hub id / local diffusers folder (e.g. Stable Diffusion v1.5 on a GPU, in fp16),
loaded with `local_files_only` when `HF_HUB_OFFLINE` is set.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from diffusers import StableDiffusionPipeline

from lus_utils.generate import domain_base_model, tiny_sd
from lus_utils.config.generate import DomainBaseModelParams, TextualInversionParams
from lus_utils.config.runtime import RuntimeParams
from lus_utils.reproducibility import resolve_precision

BASE_MODEL_DIR = "base_model"  # tiny and domain base models are saved here in the output folder (save_pretrained)
BASE_MEANINGS = {
    "tiny": ("a tiny Stable-Diffusion pipeline with RANDOM weights built offline from configs: it tests the code "
             "path only; its images are noise and say nothing about textual inversion on ultrasound"),
    "domain": ("the study's own small text-conditional diffusion model, trained on the non-minority training frames "
               "(never a viral frame) with captions from labels and findings: whatever it draws of viral pneumonia "
               "comes from the token learned on the minority training frames; small and low-resolution, so the "
               "images are coarse"),
}


class BaseModelError(OSError):
    """A base model that cannot be loaded; the message lists the offline alternatives."""


def base_model_meaning(name: str) -> str:
    return BASE_MEANINGS.get(name, f"'{name}', a pretrained Stable-Diffusion-style model: it knows natural images "
                                   "from its own training data (for SD v1.5, LAION), not lung ultrasound; the token "
                                   "is learned from the minority training frames only")


def _from_pretrained(name: str, dtype: torch.dtype):
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    try:
        return StableDiffusionPipeline.from_pretrained(name, dtype=dtype, safety_checker=None,
                                                       requires_safety_checker=False, local_files_only=offline)
    except (OSError, ValueError, EnvironmentError) as err:
        where = "a local folder" if Path(name).exists() else "a hub id"
        raise BaseModelError(
            f"base model '{name}' ({where}) cannot be loaded{' offline (HF_HUB_OFFLINE is set)' if offline else ''}: "
            f"{str(err).splitlines()[0] if str(err) else type(err).__name__}. Offline alternatives: base_model "
            "'tiny' (test pipeline built from configs, noise), 'domain' (the study's own model, trained on the "
            "non-minority training frames), or a local folder in diffusers layout (model_index.json, unet/, vae/, "
            "text_encoder/, tokenizer/, scheduler/).") from err


def load_base_model(params: TextualInversionParams, frames: pd.DataFrame, split_column: str, out_dir: Path,
                    device: torch.device, tokenizer_dir: Path | None = None,
                    domain: DomainBaseModelParams | None = None,
                    runtime: RuntimeParams | None = None) -> tuple[Any, dict[str, Any]]:
    """The base `StableDiffusionPipeline` and what it is: {base_model, kind, meaning, training_frames, ...}.

    `training_frames` lists the study frames the base model itself learned from (only `domain` has any). A hub
    or folder model's frozen weights are half precision on a GPU when `runtime.precision` is (fp16 or bf16).
    """
    runtime = runtime or RuntimeParams()
    name = params.base_model
    info: dict[str, Any] = {"base_model": name, "meaning": base_model_meaning(name), "training_frames": []}
    if name == "tiny":
        pipe = tiny_sd.tiny_pipeline(params.seed, tokenizer_dir=tokenizer_dir)
        info["kind"] = "tiny"
    elif name == "domain":
        pipe, trained = domain_base_model.load_or_train(frames, split_column, domain or DomainBaseModelParams(),
                                                        params.seed, runtime.threads, out_dir, tokenizer_dir)
        info.update(kind="domain", domain_model=trained["folder"], domain_model_cached=trained["cached"],
                    training_frames=trained["training_frames"], training_frames_per_class=trained["frames_per_class"])
    else:
        precision = resolve_precision(runtime.precision, device)
        half = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision) if device.type == "cuda" else None
        local = Path(out_dir) / name  # a folder named relative to the output folder (the rehearsal's stand-in)
        source = str(local) if not Path(name).is_absolute() and (local / "model_index.json").is_file() else name
        pipe = _from_pretrained(source, half or torch.float32)
        info["kind"] = "local" if Path(source).exists() else "hub"
    pipe.set_progress_bar_config(disable=True)
    pipe.to(device)
    info["resolution"] = pipe.unet.config.sample_size * pipe.vae_scale_factor
    info["dtype"] = str(pipe.unet.dtype).replace("torch.", "")
    return pipe, info


def loadable_base_model(params: TextualInversionParams, base_info: dict[str, Any], folder: Path, pipe: Any) -> str:
    """What `StableDiffusionPipeline.from_pretrained` loads the base model from: the hub id or folder it came
    from, or (tiny and domain, which exist nowhere else) `BASE_MODEL_DIR`, saved here into `folder` now."""
    if base_info["kind"] in ("hub", "local"):
        return params.base_model
    pipe.save_pretrained(Path(folder) / BASE_MODEL_DIR, safe_serialization=True)
    return BASE_MODEL_DIR


def base_model_summary(base: dict[str, Any]) -> pd.DataFrame:
    """What the base model is, one row per fact (for the notebook)."""
    rows = {"base model": base["base_model"], "kind": base["kind"], "resolution (px)": base["resolution"],
            "dtype": base["dtype"], "study frames it trained on": len(base["training_frames"])}
    if base["kind"] == "domain":
        rows.update({"frames per class": base["training_frames_per_class"], "folder": base["domain_model"],
                     "loaded from cache": base["domain_model_cached"]})
    return pd.DataFrame({"value": [str(v) for v in rows.values()]}, index=list(rows))
