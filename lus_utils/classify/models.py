"""Classifier architectures (through timm), their input normalisation, and feature extraction.

Why: every classifier run, the synthetic-set audits and the final comparison build models and turn uint8
frames into network inputs the same way; this module is that one way.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import timm
import torch

from lus_utils.config.classify import ARCHS


class PretrainedWeightsUnavailable(RuntimeError):
    """ImageNet weights were asked for but cannot be had (no network and not in the local cache)."""


def check_arch(arch: str, image_size: int) -> None:
    """Refuse an architecture the study does not build, a pretrained tag timm does not know, or a ViT input
    size that is not a multiple of its patch."""
    if arch not in ARCHS:
        raise ValueError(f"architecture '{arch}' unknown; allowed: {list(ARCHS)}{ARCHS.hint}")
    base, _, tag = arch.partition(".")
    if tag:
        tagged = timm.list_pretrained(f"{base}.*")
        if arch not in tagged:
            raise ValueError(f"timm has no pretrained tag '{tag}' for {base}; its tags: "
                             f"{[name.partition('.')[2] for name in tagged]}")
    if arch.startswith("vit_"):
        patch = int(arch.split("patch")[1].split("_")[0])
        if image_size % patch:
            raise ValueError(f"{arch} cuts images into {patch}-pixel patches: image_size {image_size} must be a "
                             f"multiple of {patch} (e.g. {max(patch, image_size // patch * patch)})")


def build_model(arch: str, n_classes: int, image_size: int, pretrained: bool = False) -> torch.nn.Module:
    """A timm model with an `n_classes` head; ViTs are built for `image_size` (position embeddings resized).

    With `pretrained`, timm's usual loading runs (Hugging Face hub, honouring its cache and HF_HUB_OFFLINE);
    when the weights cannot be had the error says so instead of a network traceback.
    """
    check_arch(arch, image_size)
    kwargs: dict[str, Any] = {"num_classes": n_classes}
    if arch.startswith("vit_"):
        kwargs["img_size"] = image_size
    if not pretrained:
        return timm.create_model(arch, pretrained=False, **kwargs)
    try:
        return timm.create_model(arch, pretrained=True, **kwargs)
    except Exception as err:  # hub, network and cache errors come in many types; all mean "no weights"
        raise PretrainedWeightsUnavailable(
            f"pretrained weights for '{arch}' could not be loaded ({type(err).__name__}: {err}). They must be "
            "available offline: download them once where there is network (e.g. `python -c \"import timm; "
            f"timm.create_model('{arch}', pretrained=True)\"`, which fills the Hugging Face cache, HF_HOME), "
            "or set train.pretrained to false.") from err


def prepare(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The model on `device`, channels-last (the layout `to_input` produces)."""
    return model.to(device=device, memory_format=torch.channels_last)


def normalisation(model: torch.nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean and std the architecture was trained with (timm's pretrained config), on a 0-1 scale."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return tuple(cfg.get("mean", (0.485, 0.456, 0.406))), tuple(cfg.get("std", (0.229, 0.224, 0.225)))


def to_input(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """uint8 (N,3,H,W) frames -> normalised float input on the same device."""
    mean, std = normalisation(model)
    mean_t = torch.tensor(mean, device=images.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=images.device).view(1, -1, 1, 1)
    # channels-last: oneDNN's convolutions on CPU are faster in it (about 15% for resnet18 at 64 px).
    return ((images.float() / 255.0 - mean_t) / std_t).contiguous(memory_format=torch.channels_last)


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str):
    """Autocast to `precision` (runtime.precision: bf16 on cuda and cpu, fp16 on cuda; fp32: none). Batch norm
    and the loss stay float32 (on an AMX CPU a resnet18 training step ran ~1.6x faster in bf16,
    benchmarks/bench_classifier.py)."""
    dtype = AUTOCAST_DTYPES.get(precision)
    enabled = dtype is not None and (device.type == "cuda" or (device.type == "cpu" and dtype == torch.bfloat16))
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=enabled)


@torch.no_grad()
def predict_proba(model: torch.nn.Module, images: torch.Tensor, batch_size: int,
                  precision: str = "fp32") -> np.ndarray:
    """Softmax probabilities (float64 numpy, N x classes) for uint8 frames, in eval mode."""
    model.eval()
    device = model_device(model)
    out = []
    for start in range(0, len(images), batch_size):
        batch = to_input(model, images[start:start + batch_size].to(device, non_blocking=True))
        with autocast(device, precision):
            logits = model(batch)
        out.append(torch.softmax(logits.float(), dim=1).double().cpu())
    n_classes = getattr(model, "num_classes", 0)
    return torch.cat(out).numpy() if out else np.zeros((0, n_classes))


@torch.no_grad()
def extract_features(model: torch.nn.Module, images_uint8_nchw: torch.Tensor | np.ndarray,
                     batch_size: int = 64) -> np.ndarray:
    """Penultimate (pre-logits) features of uint8 (N,3,H,W) frames: timm forward_features + pooled head.

    Used to compare real and synthetic images in the classifier's own feature space.
    """
    images = torch.as_tensor(images_uint8_nchw)
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"extract_features wants uint8 images shaped (N, 3, H, W); got {images.dtype} "
                         f"{tuple(images.shape)}")
    model.eval()
    device = model_device(model)
    out = []
    for start in range(0, len(images), batch_size):
        batch = to_input(model, images[start:start + batch_size].to(device))
        features = model.forward_head(model.forward_features(batch), pre_logits=True)
        out.append(features.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.num_features), dtype=np.float32)
