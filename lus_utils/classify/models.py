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


def build_model(arch: str, n_classes: int, image_size: int, pretrained: bool = False, in_chans: int = 3,
                small_input: bool = False) -> torch.nn.Module:
    """A timm model with an `n_classes` head; ViTs are built for `image_size` (position embeddings resized).

    With `pretrained`, timm's usual loading runs (Hugging Face hub, honouring its cache and HF_HUB_OFFLINE);
    when the weights cannot be had the error says so instead of a network traceback.
    `in_chans` 1: a stem for grey frames (timm's own `in_chans`; timm sums a pretrained stem over RGB), fed luma by
    `to_input`. `small_input` (resnets): the CIFAR-style stem, see `small_input_stem`.
    """
    check_arch(arch, image_size)
    if in_chans not in (1, 3):
        raise ValueError(f"in_chans must be 1 (grey) or 3 (RGB); got {in_chans}")
    if small_input and not arch.startswith("resnet"):
        raise ValueError(f"small_input is the CIFAR-style stem of a resnet; '{arch}' is not one")
    kwargs: dict[str, Any] = {"num_classes": n_classes, "in_chans": in_chans}
    if arch.startswith("vit_"):
        kwargs["img_size"] = image_size
    try:
        model = timm.create_model(arch, pretrained=pretrained, **kwargs)
    except Exception as err:  # hub, network and cache errors come in many types; all mean "no weights"
        if not pretrained:
            raise
        raise PretrainedWeightsUnavailable(
            f"pretrained weights for '{arch}' could not be loaded ({type(err).__name__}: {err}). They must be "
            "available offline: download them once where there is network (e.g. `python -c \"import timm; "
            f"timm.create_model('{arch}', pretrained=True)\"`, which fills the Hugging Face cache, HF_HOME), "
            "or set train.pretrained to false.") from err
    return small_input_stem(model) if small_input else model


def small_input_stem(model: torch.nn.Module) -> torch.nn.Module:
    """A timm resnet with the CIFAR stem (He et al. 2016, section 4.2): a 3x3 stride-1 first convolution and no
    max-pool, so a 32-48 px frame keeps 4x4-6x6 cells in the last stage instead of 1x1-2x2 (16x the FLOPs).

    timm's ResNet has no such stem option (its `output_stride` dilates the last stages instead), so the two
    stem layers are swapped; the new convolution is initialised as timm initialises a resnet's (He normal,
    fan-out), from the global torch generator, and is never pretrained.
    """
    old = model.conv1
    if not isinstance(old, torch.nn.Conv2d):
        raise ValueError("small_input needs a resnet with a single-convolution stem (timm's default stem_type)")
    model.conv1 = torch.nn.Conv2d(old.in_channels, old.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
    torch.nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = torch.nn.Identity()
    for info in model.feature_info:  # features_only users read the strides from here
        info["reduction"] = max(1, info["reduction"] // (2 if info["module"] == "act1" else 4))
    return model


def prepare(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The model on `device`, channels-last (the layout `to_input` produces)."""
    return model.to(device=device, memory_format=torch.channels_last)


def input_channels(model: torch.nn.Module) -> int:
    """Channels the model takes: those of its first convolution (timm's stems and patch embeddings)."""
    return next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d)).in_channels


def normalisation(model: torch.nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean and std the architecture was trained with (timm's pretrained config), on a 0-1 scale; for a grey
    stem the mean of the RGB values (timm keeps the RGB config for in_chans 1)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    mean, std = tuple(cfg.get("mean", (0.485, 0.456, 0.406))), tuple(cfg.get("std", (0.229, 0.224, 0.225)))
    if input_channels(model) == 1 and len(mean) == 3:
        return (sum(mean) / 3,), (sum(std) / 3,)
    return mean, std


LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as images.to_grey


def grey_frames(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N,3,H,W) RGB frames -> uint8 (N,1,H,W) luma (`images.to_grey`'s weights), to the nearest level;
    grey frames pass unchanged."""
    if images.shape[1] == 1:
        return images
    weights = torch.tensor(LUMA, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    return (images.float() * weights).sum(dim=1, keepdim=True).round_().clamp_(0, 255).to(torch.uint8)


def to_input(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """uint8 (N,3,H,W) frames (or (N,1,H,W) grey ones for a grey stem) -> normalised float input on the same
    device; a grey stem gets RGB frames as luma."""
    if input_channels(model) == 1:
        images = grey_frames(images)
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
