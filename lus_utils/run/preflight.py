"""Before a study starts: can timm build every architecture, and can every pretrained weight the profile needs be
loaded offline?

`check_archs` refuses an architecture timm cannot build as asked (a pretrained tag it does not know, a ViT input
size that is not a multiple of its patch) with the key and the file, before anything is planned: otherwise every
classifier run would fail inside timm. `unplanned_primaries` names primary comparisons the plan cannot make.

Nothing downloads weights at run time, so a profile that needs ImageNet weights (`train.pretrained`), a
Stable Diffusion base model (`textual_inversion_runs.base_models`) or a pretrained feature extractor
(`audit.feature_extractor`) must find them in the local caches: the Hugging Face hub cache (`HF_HUB_CACHE`,
else `HF_HOME/hub`, else `~/.cache/huggingface/hub`), torch's hub cache (`TORCH_HOME`) or a local folder.
`check` lists what is missing, each with how to get it; `require` stops with all of it in one message.
Only the stages that will run are looked at (notebooks 02/03 train classifiers, 04 textual inversion,
04/05 audit synthetic sets).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from huggingface_hub import try_to_load_from_cache

from lus_utils.config.profiles import Profile
from lus_utils.config.schema import ParamError
from lus_utils.generate.synthetic_audit_features import DINOV2_MODEL
from lus_utils.run.planning import Run
from lus_utils.vocabulary import Condition, RunKey

CLASSIFIER_STAGES = ("02", "03")
TI_STAGE = "04"
AUDIT_STAGES = ("04", "05")
STUDY_BASE_MODELS = ("tiny", "domain")  # built or trained by the study itself: nothing to download


class PreflightError(RuntimeError):
    """Weights the profile needs are not available offline; the message lists each and how to get it."""


@dataclass(frozen=True)
class Missing:
    weights: str  # what is missing
    needed_by: str  # the profile key that asks for it
    how: str  # the command or step that makes it available


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment now (as huggingface_hub resolves it)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def hf_cached(repo_id: str, filename: str) -> bool:
    return isinstance(try_to_load_from_cache(repo_id, filename, cache_dir=str(hf_cache_dir())), str)


def torch_hub_cached(url: str) -> bool:
    import torch  # lazy: the runner imports preflight at start; torch loads only when a check needs it

    return (Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)).is_file()


def timm_weights_missing(arch: str) -> Missing | None:
    import timm  # lazy: only a profile with pretrained weights needs timm (and torch) here

    cfg = timm.models.get_pretrained_cfg(arch)
    if cfg is None:
        return Missing(f"timm weights for '{arch}'", "grid.archs", "timm knows no pretrained weights by that name")
    if cfg.file and Path(cfg.file).is_file():
        return None
    if cfg.hf_hub_id and any(hf_cached(cfg.hf_hub_id, f) for f in ("model.safetensors", "pytorch_model.bin")):
        return None
    if not cfg.hf_hub_id and cfg.url and torch_hub_cached(cfg.url):
        return None
    where = f"Hugging Face repo {cfg.hf_hub_id}" if cfg.hf_hub_id else cfg.url
    return Missing(f"ImageNet weights of '{arch}' ({where})", "train.pretrained + grid.archs",
                   f"python -c \"import timm; timm.create_model('{arch}', pretrained=True)\" where there is network "
                   f"(fills {hf_cache_dir()}), or set train.pretrained: false")


def base_model_missing(name: str, out_dir: Path | None = None) -> Missing | None:
    """A base model that cannot be loaded offline: a folder (absolute, or relative to the output folder, as
    the rehearsal's stand-in) without model_index.json, or a hub id not in the Hugging Face cache."""
    if name in STUDY_BASE_MODELS:
        return None
    folder = Path(name).expanduser()
    if out_dir is not None and not folder.is_absolute() and (Path(out_dir) / folder).exists():
        folder = Path(out_dir) / folder
    if folder.exists() or name.startswith((".", "/", "~")) or name.count("/") != 1:
        if (folder / "model_index.json").is_file():
            return None
        return Missing(f"diffusers folder '{name}' (no model_index.json)", "textual_inversion_runs.base_models",
                       "point it at a folder written by StableDiffusionPipeline.save_pretrained")
    configs = ("model_index.json", "unet/config.json", "vae/config.json", "text_encoder/config.json",
               "tokenizer/vocab.json")
    weights = {"unet": "diffusion_pytorch_model", "vae": "diffusion_pytorch_model", "text_encoder": "model"}
    if all(hf_cached(name, f) for f in configs) and all(
            any(hf_cached(name, f"{sub}/{stem}{ext}") for ext in (".safetensors", ".bin", ".fp16.safetensors"))
            for sub, stem in weights.items()):
        return None
    return Missing(f"Stable Diffusion base model '{name}'", "textual_inversion_runs.base_models",
                   f"huggingface-cli download {name} where there is network (fills {hf_cache_dir()}), or save it "
                   "with save_pretrained and give the folder, or use 'tiny' / 'domain'")


def feature_extractor_missing(kind: str) -> Missing | None:
    if kind == "inception":
        from torchvision.models import Inception_V3_Weights  # lazy: only the inception feature space needs it

        url = Inception_V3_Weights.IMAGENET1K_V1.url
        if torch_hub_cached(url):
            return None
        return Missing("torchvision Inception-v3 ImageNet weights", "audit.feature_extractor",
                       "python -c \"from torchvision.models import inception_v3, Inception_V3_Weights; "
                       "inception_v3(weights=Inception_V3_Weights.IMAGENET1K_V1)\" where there is network, or use "
                       "'classifier' or 'pixels'")
    if kind == "dinov2":
        if hf_cached(DINOV2_MODEL, "config.json") and hf_cached(DINOV2_MODEL, "preprocessor_config.json"):
            return None
        return Missing(f"DINOv2 weights '{DINOV2_MODEL}'", "audit.feature_extractor",
                       f"huggingface-cli download {DINOV2_MODEL} where there is network, or use 'classifier' "
                       "or 'pixels'")
    return None


def check_archs(profile: Profile) -> None:
    """Raise ParamError (key, file, fix) for a `grid.archs` entry timm cannot build at `train.image_size`."""
    if "grid" not in profile.sections or "train" not in profile.sections:
        return
    archs = profile.grid.archs
    if not any("." in arch or arch.startswith("vit_") for arch in archs):
        return  # plain names are the study's own list: nothing to ask timm (and no torch to import)
    from lus_utils.classify import models  # lazy: torch and timm load only for a tag or a ViT

    for arch in archs:
        try:
            models.check_arch(arch, profile.train.image_size)
        except ValueError as err:
            where = " + ".join(str(f) for f in profile.files) or str(profile.path)
            raise ParamError(f"{where} [grid]: parameter 'archs' has '{arch}': {err}") from None


def unplanned_primaries(profile: Profile, runs: list[Run]) -> list[str]:
    """The declared primary comparisons (compare.primary) whose condition or baseline no planned run makes."""
    if "06" not in {r.stage for r in runs} or "compare" not in profile.sections:
        return []
    planned = {RunKey.from_params(r.params).condition for r in runs if r.stage in CLASSIFIER_STAGES}
    return [str(c) for c in profile.compare.primary_comparisons()
            if Condition.parse(c.condition) not in planned or Condition.parse(c.baseline) not in planned]


def check(profile: Profile, stages: Iterable[str] | None = None, out_dir: Path | None = None) -> list[Missing]:
    """Every weight the `stages` (default: the profile's) need that cannot be loaded offline (a folder named
    relative to the output folder `out_dir` is looked for there).

    A section the profile lacks asks for nothing.
    """
    sections = profile.sections
    if stages is None:
        stages = sections["study"].stages if "study" in sections else ()
    stages = set(stages)
    found: list[Missing | None] = []
    if stages & set(CLASSIFIER_STAGES) and "train" in sections and sections["train"].pretrained:
        found += [timm_weights_missing(arch) for arch in sections["grid"].archs]
    if TI_STAGE in stages and "textual_inversion_runs" in sections:
        found += [base_model_missing(name, out_dir) for name in sections["textual_inversion_runs"].base_models]
    if stages & set(AUDIT_STAGES) and "audit" in sections:
        found.append(feature_extractor_missing(sections["audit"].feature_extractor))
    return [m for m in found if m is not None]


def message(profile: Profile, missing: list[Missing]) -> str:
    lines = [f"profile {profile.name} needs {len(missing)} pretrained weight(s) that cannot be loaded offline "
             "(nothing is downloaded at run time):"]
    lines += [f"  - {m.weights} [{m.needed_by}]: {m.how}" for m in missing]
    return "\n".join(lines)


def require(profile: Profile, stages: Iterable[str] | None = None) -> None:
    """Raise `PreflightError` naming everything missing, before any run starts."""
    missing = check(profile, stages)
    if missing:
        raise PreflightError(message(profile, missing))
