"""Preflight: the weights a profile needs are found offline, or named up front with how to get them."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from lus_utils.config.generate import TextualInversionParams
from lus_utils.config.profiles import load_profile
from lus_utils.generate import textual_inversion_base_model, tiny_sd
from lus_utils.stages import IDS as STAGES
from lus_utils.run import cli, preflight
from test_models import TINY_ARCH, write_hf_cache


@pytest.fixture
def hub(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return cache


def needing(archs, base_models, extractor="classifier", pretrained=True):
    profile = load_profile("smoke")
    profile.sections["train"].pretrained = pretrained
    profile.sections["grid"].archs = list(archs)
    profile.sections["textual_inversion_runs"].base_models = list(base_models)
    profile.sections["audit"].feature_extractor = extractor
    return profile


def test_everything_missing_is_named_in_one_message(hub, tmp_path):
    profile = needing([TINY_ARCH], ["stable-diffusion-v1-5/stable-diffusion-v1-5", str(tmp_path / "no-such"),
                                    "tiny", "domain"], extractor="dinov2")
    missing = preflight.check(profile, STAGES)
    assert [m.needed_by for m in missing] == ["train.pretrained + grid.archs", "textual_inversion_runs.base_models",
                                              "textual_inversion_runs.base_models", "audit.feature_extractor"]
    with pytest.raises(preflight.PreflightError) as err:
        preflight.require(profile, STAGES)
    text = str(err.value)
    assert "needs 4 pretrained weight(s)" in text and f"timm.create_model('{TINY_ARCH}', pretrained=True)" in text
    assert "huggingface-cli download stable-diffusion-v1-5/stable-diffusion-v1-5" in text
    assert "no model_index.json" in text and "facebook/dinov2-small" in text


def test_only_the_stages_that_run_are_checked(hub):
    profile = needing([TINY_ARCH], ["stable-diffusion-v1-5/stable-diffusion-v1-5"])
    assert preflight.check(profile, ["01"]) == []
    assert [m.needed_by for m in preflight.check(profile, ["04"])] == ["textual_inversion_runs.base_models"]
    assert preflight.check(needing([TINY_ARCH], ["tiny"], pretrained=False), STAGES) == []


def test_cached_timm_weights_pass(hub):
    write_hf_cache(hub, TINY_ARCH)
    assert preflight.check(needing([TINY_ARCH], ["tiny"]), STAGES) == []


def test_local_diffusers_folder_passes_and_loads_through_the_base_model_path(hub, tmp_path):
    folder = tmp_path / "sd"
    tiny_sd.tiny_pipeline(seed=0).save_pretrained(str(folder))
    assert preflight.check(needing([], [str(folder)], pretrained=False), STAGES) == []
    params = TextualInversionParams(base_model=str(folder))
    pipe, info = textual_inversion_base_model.load_base_model(params, pd.DataFrame(), "split", tmp_path / "out",
                                                              torch.device("cpu"))
    assert info["kind"] == "local" and info["resolution"] == pipe.unet.config.sample_size * pipe.vae_scale_factor


def test_cli_stops_before_any_run_and_dry_run_reports(hub, tmp_path, monkeypatch, capsys):
    profile = needing([TINY_ARCH], ["tiny"])
    monkeypatch.setattr(cli, "load_profile", lambda name, overrides=(): profile)
    monkeypatch.setattr(cli, "resolve_data_root", lambda root, fetch_if_missing: tmp_path)
    monkeypatch.setattr(cli, "plan", lambda profile, out_dir, data_root, only: [])
    monkeypatch.setattr(cli, "execute_study", lambda *a, **k: pytest.fail("a run started despite missing weights"))
    assert cli.main(["--profile", "x", "--out", str(tmp_path / "out")]) == 2
    assert "error: profile smoke needs 1 pretrained weight(s)" in capsys.readouterr().err
    monkeypatch.setattr(cli, "execute_study", lambda *a, **k: None)
    monkeypatch.setattr(cli, "describe_dry_run", lambda study: "dry run")
    assert cli.main(["--profile", "x", "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    assert "warning: profile smoke needs 1 pretrained weight(s)" in capsys.readouterr().err
