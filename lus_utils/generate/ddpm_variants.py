"""Which code trains and samples each DDPM variant, so notebook 05 makes one call for either.

The minority-frame variants (`3_mixed`, `train_all`, the leakage ablation, the original study's) train an
unconditional DDPM (`ddpm_training`) and sample it as it is; `class_conditional` trains one model of every
class (`conditional_ddpm_training`) and samples the target class with classifier-free guidance. Both save a
`DDPMPipeline` and sample it with the study's sampler (`ddpm_sampling`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lus_utils.config.generate import AuditParams, DDPMParams
from lus_utils.config.runtime import RuntimeParams
from lus_utils.generate import conditional_ddpm_training, ddpm_sampling, ddpm_training
from lus_utils.vocabulary import DDPM_CONDITIONAL_VARIANT


def train(selected: pd.DataFrame, p: DDPMParams, gen_dir: Path, runtime: RuntimeParams | None = None,
          progress: bool = True) -> ddpm_training.TrainResult:
    """Train (or reuse) `p.variant`'s generator on `selected` frames (`ddpm_training.select_training_frames`)."""
    if p.variant == DDPM_CONDITIONAL_VARIANT:
        return conditional_ddpm_training.train_conditional(selected, p, gen_dir, runtime, progress=progress)
    return ddpm_training.train_ddpm(selected, p, gen_dir, runtime, progress=progress)


def sample_set(pipeline_dir: Path, p: DDPMParams, audit: AuditParams, device: str | torch.device = "cpu",
               precision: str = "fp32", progress: bool = True) -> tuple[np.ndarray, list[int], list[int]]:
    """`p.n_samples` images of `p.target_class` from the saved pipeline, their seeds and redraw counts
    (`ddpm_sampling.sample_set`; a class-conditional pipeline is guided to the target class)."""
    pipeline = ddpm_sampling.load_pipeline(pipeline_dir, device)
    label = (ddpm_sampling.class_index(pipeline_dir, p.target_class) if p.variant == DDPM_CONDITIONAL_VARIANT
             else None)
    return ddpm_sampling.sample_set(pipeline, p, audit, device, progress=progress, precision=precision,
                                    class_label=label)


def steps_described(p: DDPMParams, result: ddpm_training.TrainResult, n_frames: int) -> str:
    """The training budget in words: optimizer steps, and what they are in passes over the frames."""
    if p.variant == DDPM_CONDITIONAL_VARIANT:
        passes = result.total_steps * p.conditional_batch_size / max(1, n_frames)
        return (f"{result.total_steps} steps of {p.conditional_batch_size} frames drawn from {n_frames} "
                f"({passes:.1f} passes)")
    return f"{result.total_steps} steps ({ddpm_training.epochs_for(p)} epochs of {n_frames} frames)"
