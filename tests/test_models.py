"""Architecture names (timm's pretrained tags) and pretrained loading offline, through the real code path."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lus_utils.config.classify import ARCHS, GridParams
from lus_utils.config.schema import ParamError, build
from lus_utils.classify import models

TINY_ARCH = "vit_tiny_patch16_224.augreg_in21k_ft_in1k"


def test_tagged_names_are_allowed_and_checked_against_timm():
    assert "resnet50.tv_in1k" in ARCHS and "resnet50" in ARCHS
    assert "resnet51.tv_in1k" not in ARCHS and "resnet50." not in ARCHS and "resnet50.TV" not in ARCHS
    models.check_arch("resnet50.tv_in1k", 224)
    models.check_arch("vit_base_patch16_224.augreg_in1k", 224)
    with pytest.raises(ValueError, match="no pretrained tag 'nope' for resnet50.*tv_in1k"):
        models.check_arch("resnet50.nope", 224)
    with pytest.raises(ValueError, match="multiple of 16"):
        models.check_arch("vit_base_patch16_224.augreg_in1k", 100)


def test_profile_accepts_tagged_archs_and_names_the_tag_rule():
    grid = build(GridParams, {"archs": ["resnet50.tv_in1k"]}, "test")
    assert grid.archs == ["resnet50.tv_in1k"]
    with pytest.raises(ParamError, match="pretrained tag"):
        build(GridParams, {"archs": ["resnet51.tv_in1k"]}, "test")


def write_hf_cache(cache: Path, arch: str) -> dict:
    """A Hugging Face hub cache holding timm's weights for `arch` (random values), laid out as the hub writes
    it; returns the weights written."""
    import timm
    import torch
    from safetensors.torch import save_file

    repo = timm.models.get_pretrained_cfg(arch).hf_hub_id
    torch.manual_seed(0)
    state = timm.create_model(arch, pretrained=False).state_dict()
    commit = "0" * 40
    snapshot = cache / f"models--{repo.replace('/', '--')}" / "snapshots" / commit
    snapshot.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(snapshot / "model.safetensors"))
    (cache / f"models--{repo.replace('/', '--')}" / "refs").mkdir()
    (cache / f"models--{repo.replace('/', '--')}" / "refs" / "main").write_text(commit)
    return state


def offline_env(cache: Path) -> dict:
    env = dict(os.environ, HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1", PYTHONPATH=os.getcwd())
    env.pop("HF_HOME", None)
    return env


def test_pretrained_weights_load_offline_from_the_hf_cache(tmp_path):
    state = write_hf_cache(tmp_path / "hub", TINY_ARCH)
    script = (
        "import json, torch; from lus_utils.classify import models\n"
        f"m = models.build_model({TINY_ARCH!r}, 4, 224, pretrained=True)\n"
        "w = m.state_dict()['patch_embed.proj.weight']\n"
        "print(json.dumps({'sum': float(w.double().sum()), 'head': list(m.head.weight.shape)}))\n")
    out = subprocess.run([sys.executable, "-c", script], env=offline_env(tmp_path / "hub"), capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["sum"] == pytest.approx(float(state["patch_embed.proj.weight"].double().sum()), rel=1e-9)
    assert got["head"] == [4, 192]  # a new 4-class head on the loaded trunk


def test_missing_pretrained_weights_say_how_to_get_them(tmp_path):
    (tmp_path / "hub").mkdir()
    script = (f"from lus_utils.classify import models\nmodels.build_model({TINY_ARCH!r}, 4, 224, pretrained=True)\n")
    out = subprocess.run([sys.executable, "-c", script], env=offline_env(tmp_path / "hub"), capture_output=True,
                         text=True, timeout=300)
    assert out.returncode != 0
    assert "PretrainedWeightsUnavailable" in out.stderr and "Hugging Face cache" in out.stderr


def test_precision_auto_is_bf16_only_where_the_hardware_has_it(monkeypatch):
    """An AVX2 CPU emulates bf16 (measured ~80x slower matmuls than fp32): auto keeps fp32 there."""
    from lus_utils import reproducibility

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    for isa, expected in (("AMX", "bf16"), ("AVX-512 bf16", "bf16"), ("AVX-512", "fp32"), ("AVX2", "fp32")):
        monkeypatch.setattr(reproducibility, "machine", lambda isa=isa: {"isa": isa})
        assert reproducibility.resolve_precision("auto", cpu) == expected
        assert reproducibility.resolve_precision("auto", cuda) == "bf16"
        assert reproducibility.resolve_precision("fp32", cuda) == "fp32"
