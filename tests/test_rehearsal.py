"""The rehearsal keeps every shape of a profile and cuts every loop; its SD stand-in has SD v1.5's sizes."""
from __future__ import annotations

from pathlib import Path

import torch

from lus_utils.config.profiles import load_profile
from lus_utils.run import cli, rehearsal

SHAPE_KEYS = {
    "train": ("image_size", "batch_size"),
    "runtime": ("device", "precision", "sampling_precision"),
    "grid": ("archs", "strategies", "augment_strategies"),
    "ddpm": ("image_size", "block_out_channels", "layers_per_block", "attention_levels", "batch_size", "sampler"),
    "textual_inversion": ("resolution", "batch_size", "gradient_accumulation", "guidance_scale", "sampler"),
    "domain_base_model": ("domain_resolution", "domain_width", "domain_batch_size"),
    "ddpm_runs": ("variants",),
    "study": ("stages",),
}


def rehearse(name: str, out: Path):
    return rehearsal.with_sd_sized_base(load_profile(f"{name}+{rehearsal.OVERLAY}"))


def test_rehearsal_keeps_shapes_and_cuts_loops(tmp_path):
    full = load_profile("full")
    r = rehearse("full", tmp_path)
    assert r.name == "full+rehearsal" and rehearsal.is_rehearsal(r) and not rehearsal.is_rehearsal(full)
    for section, keys in SHAPE_KEYS.items():
        for key in keys:
            assert getattr(r.sections[section], key) == getattr(full.sections[section], key), (section, key)
    assert (r.train.epochs, r.train.pretrained, r.grid.seeds, r.grid.synthetic_amounts) == (1, False, [0], [1.0])
    assert r.grid.synthetic_strategies == ["none"] and r.grid.strategies == full.grid.strategies
    assert (r.data.repeats, r.data.protocol, r.train.max_steps_per_epoch) == (1, "holdout", 2)
    assert r.audit.gate == full.audit.gate and r.audit.gate_margin == 1000.0  # every image kept, the gate still run
    assert (r.seed_replica.audit["min_std"], r.seed_replica.audit["min_entropy"]) == (0.0, 0.0)
    assert r.seed_replica.ddpm["sampler"] == full.seed_replica.ddpm["sampler"]
    assert (r.ddpm.epochs_3_mixed, r.ddpm.epochs_train_all, r.ddpm.sampling_steps) == (1, 1, 2)
    assert (r.ddpm.conditional_train_steps, r.audit.encoder_steps) == (2, 2)
    assert (r.textual_inversion.steps, r.domain_base_model.domain_steps, r.textual_inversion.n_txt2img) == (2, 2, 1)
    assert r.textual_inversion_runs.base_models == [rehearsal.SD_FOLDER, "domain"]  # relative to the output folder
    assert full.train.epochs == 50 and full.grid.seeds == [0, 1, 2, 3, 4], "the profile itself is untouched"


def test_sd_stand_in_has_stable_diffusion_v1_5_sizes():
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    from lus_utils.generate import tiny_sd

    config = tiny_sd.text_encoder_config()
    for key, value in rehearsal.SD15_TEXT.items():
        setattr(config, key, value)
    with torch.device("meta"):  # shapes only: no memory, no time
        sizes = [sum(p.numel() for p in m.parameters()) for m in (
            UNet2DConditionModel(**rehearsal.SD15_UNET), AutoencoderKL(**rehearsal.SD15_VAE), CLIPTextModel(config))]
    assert sizes == [859_520_964, 83_653_863, 123_060_480]  # SD v1.5's UNet, VAE and text encoder


def test_stand_in_is_written_only_when_notebook_04_runs(tmp_path):
    r = rehearse("full", tmp_path)
    assert rehearsal.needs_sd_sized_base(r) and rehearsal.needs_sd_sized_base(r, ["04"])
    assert not rehearsal.needs_sd_sized_base(r, ["02"])
    assert not rehearsal.needs_sd_sized_base(rehearse("smoke", tmp_path))


def test_cli_flag_plans_the_rehearsal(tmp_path, monkeypatch, capsys):
    seen = {}
    monkeypatch.setattr(cli, "resolve_data_root", lambda root, fetch_if_missing: tmp_path)
    monkeypatch.setattr(cli, "plan", lambda profile, out_dir, data_root, only: seen.update(p=profile, o=out_dir) or [])
    monkeypatch.setattr(cli.preflight, "check", lambda profile, stages, out_dir=None: [])
    monkeypatch.setattr(cli, "describe_dry_run", lambda study: "")
    monkeypatch.setattr(cli, "execute_study", lambda *a, **k: None)
    assert cli.main(["--profile", "full", "--rehearse", "--dry-run", "--out", str(tmp_path / "o")]) == 0
    assert seen["p"].name == "full+rehearsal" and seen["p"].train.epochs == 1 and seen["o"] == tmp_path / "o"
    assert not (tmp_path / "o" / rehearsal.SD_FOLDER).exists(), "a dry run writes nothing"
    assert seen["p"].textual_inversion_runs.base_models[0] == rehearsal.SD_FOLDER  # resolved against --out
