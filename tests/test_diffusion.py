"""DDPM generators: frame choice per variant, resumable training, saved pipeline, samplers, gate and set."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lus_utils.data.splits import TooFewFramesError
from lus_utils import synthetic_sets as synthetic
from lus_utils.config.generate import AuditParams, DDPMParams
from lus_utils.config.schema import ParamError, build
from lus_utils.generate import ddpm_sampling, ddpm_set, ddpm_training
from lus_utils.provenance import read_json

# (video, label, part, frames): two viral training videos, viral val/test videos, other classes.
VIDEOS = [("v1", "viral", "train", 4), ("v2", "viral", "train", 3), ("v3", "viral", "val", 3),
          ("v4", "viral", "test", 3), ("v5", "viral", "test", 2), ("c1", "covid", "train", 4),
          ("c2", "covid", "test", 2)]


def make_frames(root: Path, videos=VIDEOS, size: int = 24) -> pd.DataFrame:
    """A minimal frames table with structured random frames (std well above the gate's 30) on disk."""
    import cv2

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for video, label, part, n in videos:
        base = rng.integers(0, 256, (size, size), dtype=np.uint8)
        for k in range(n):
            path = root / f"{video}_{k}.png"
            cv2.imwrite(str(path), np.roll(base, k, axis=1))
            rows.append({"path": path.name, "abspath": str(path), "video_id": video, "patient_id": f"p_{video}",
                         "label": label, "split": part, "split_fold0": part})
    return pd.DataFrame(rows)


def tiny_params(**overrides) -> DDPMParams:
    values = dict(image_size=16, block_out_channels=[8, 16], layers_per_block=1, attention_levels=[],
                  epochs_3_mixed=4, epochs_train_all=1, batch_size=2, lr=1e-3, warmup_steps=2, ema_decay=0.99,
                  checkpoint_every=3, sample_grids=2, sampling_steps=2,
                  n_samples=4, sample_batch_size=2, output_size=20)
    values.update(overrides)
    return build(DDPMParams, values, "test")


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> pd.DataFrame:
    return make_frames(tmp_path_factory.mktemp("frames"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, frames):
    """One uninterrupted tiny training (3_mixed: 3 frames, batch 2, 4 epochs: 8 steps)."""
    p = tiny_params()
    selected = ddpm_training.select_training_frames(frames, p.variant, "split", p.seed)
    gen_dir = tmp_path_factory.mktemp("gen") / "ddpm_3_mixed"
    return p, selected, ddpm_training.train_ddpm(selected, p, gen_dir, progress=False)


# --- frame choice ------------------------------------------------------------------------------------------
def test_variants_pick_training_frames_only(frames):
    train_viral = frames[(frames.label == "viral") & (frames.split == "train")]
    mixed = ddpm_training.select_training_frames(frames, "3_mixed", "split", seed=0)
    assert len(mixed) == 3 and set(mixed.split) == {"train"} and set(mixed.label) == {"viral"}
    assert mixed.video_id.nunique() == 2  # spread over both training videos
    assert mixed.path.is_unique
    everything = ddpm_training.select_training_frames(frames, "train_all", "split", seed=0)
    assert sorted(everything.path) == sorted(train_viral.path)
    # Same seed, same frames; the choice depends on the seed.
    assert list(ddpm_training.select_training_frames(frames, "3_mixed", "split", seed=0).path) == list(mixed.path)
    choices = {tuple(ddpm_training.select_training_frames(frames, "3_mixed", "split", seed=s).path) for s in range(6)}
    assert len(choices) > 1


def test_three_training_videos_give_one_frame_each(tmp_path):
    videos = [("a", "viral", "train", 3), ("b", "viral", "train", 2), ("c", "viral", "train", 5),
              ("d", "viral", "test", 2)]
    table = make_frames(tmp_path, videos)
    for seed in range(4):
        mixed = ddpm_training.select_training_frames(table, "3_mixed", "split", seed)
        assert sorted(mixed.video_id) == ["a", "b", "c"]


def test_leakage_ablation_uses_three_videos_of_any_split(frames):
    chosen = ddpm_training.select_training_frames(frames, "3_mixed_any_split", "split", seed=1)
    assert len(chosen) == 3 and chosen.video_id.nunique() == 3 and set(chosen.label) == {"viral"}
    parts = set()
    for seed in range(10):
        parts |= set(ddpm_training.select_training_frames(frames, "3_mixed_any_split", "split", seed).split)
    assert parts - {"train"}, "the ablation never drew a frame outside the training split"


def test_fold_column_is_used(frames):
    moved = frames.assign(split_fold0=np.where(frames.video_id == "v3", "train", frames.split_fold0))
    chosen = ddpm_training.select_training_frames(moved, "train_all", "split_fold0", seed=0)
    assert "v3" in set(chosen.video_id)
    assert "v3" not in set(ddpm_training.select_training_frames(moved, "train_all", "split", seed=0).video_id)


def test_too_few_minority_training_frames_stop_with_counts(tmp_path):
    table = make_frames(tmp_path, [("a", "viral", "train", 2), ("b", "viral", "test", 5), ("c", "covid", "train", 3)])
    for variant in ("3_mixed", "train_all"):
        with pytest.raises(TooFewFramesError, match=r"needs at least 3 .* it has 2 from 1 video"):
            ddpm_training.select_training_frames(table, variant, "split", 0)
    with pytest.raises(TooFewFramesError, match="needs 3 different 'viral' videos .* have 2"):
        ddpm_training.select_training_frames(table, "3_mixed_any_split", "split", 0)


def test_params_refuse_bad_values():
    with pytest.raises(ParamError, match="attention_levels"):
        tiny_params(attention_levels=[5])
    with pytest.raises(ParamError, match="image_size"):
        tiny_params(image_size=18, block_out_channels=[8, 16, 16])
    with pytest.raises(ParamError, match="variant"):
        tiny_params(variant="5_mixed")


def test_unet_follows_the_seed_layout():
    seed = build(DDPMParams, {"image_size": 128, "block_out_channels": [128, 128, 256, 256, 512, 512],
                              "layers_per_block": 2, "attention_levels": [4]}, "test")
    down, up = ddpm_training.block_types(seed)
    assert down == ("DownBlock2D",) * 4 + ("AttnDownBlock2D", "DownBlock2D")
    assert up == ("UpBlock2D", "AttnUpBlock2D") + ("UpBlock2D",) * 4
    small = ddpm_training.build_unet(tiny_params(attention_levels=[1]))
    assert small.config.down_block_types == ("DownBlock2D", "AttnDownBlock2D")
    assert small.config.up_block_types == ("AttnUpBlock2D", "UpBlock2D")
    assert small.config.in_channels == small.config.out_channels == 1


# --- training, checkpoints, resume, cache --------------------------------------------------------------------
def test_training_writes_pipeline_grids_and_provenance(trained):
    p, selected, result = trained
    assert result.finished and not result.cached and result.total_steps == 8
    assert (result.pipeline_dir / "model_index.json").is_file()
    assert [g.name for g in result.grids] == ["epoch_00002.png", "epoch_00004.png"]
    record = read_json(result.generator_dir / "provenance.json")
    assert record["training_frames"] == sorted(selected.path) and record["leakage_ablation"] is False
    assert 0 < record["train_cpu_seconds"] and 0 < record["train_seconds"]
    assert not (result.generator_dir / "checkpoints").exists()  # removed once the pipeline is saved
    assert list(result.log.step) == list(range(1, 9)) and np.isfinite(result.log.loss).all()
    assert not [p for p in result.generator_dir.rglob(".*") if p.name != ".gitignore"]


def test_interrupted_training_resumes_to_identical_weights(trained, tmp_path):
    p, selected, reference = trained
    gen_dir = tmp_path / "ddpm_3_mixed"
    partial = ddpm_training.train_ddpm(selected, p, gen_dir, max_steps=5, progress=False)
    assert not partial.finished and partial.steps_done == 5
    assert [c.name for _, c in ddpm_training._checkpoints(gen_dir)] == ["checkpoint-3", "checkpoint-5"]
    for name in ("unet", "training_state.pt", "state.json", "log.csv"):
        assert (gen_dir / "checkpoints" / "checkpoint-5" / name).exists()
    resumed = ddpm_training.train_ddpm(selected, p, gen_dir, progress=False)
    assert resumed.finished and resumed.resumed_from == 5
    a = ddpm_sampling.load_pipeline(reference.pipeline_dir).unet.state_dict()
    b = ddpm_sampling.load_pipeline(resumed.pipeline_dir).unet.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    pd.testing.assert_frame_equal(reference.log, resumed.log)


def test_checkpoints_of_other_params_are_not_resumed(trained, tmp_path):
    p, selected, _ = trained
    gen_dir = tmp_path / "ddpm_3_mixed"
    ddpm_training.train_ddpm(selected, p, gen_dir, max_steps=3, progress=False)
    other = tiny_params(lr=5e-4)
    result = ddpm_training.train_ddpm(selected, other, gen_dir, max_steps=4, progress=False)
    assert result.resumed_from is None
    assert [c.name for _, c in ddpm_training._checkpoints(gen_dir)] == ["checkpoint-3", "checkpoint-4"]
    state = read_json(gen_dir / "checkpoints" / "checkpoint-4" / "state.json")
    assert state["training_key"]["lr"] == 5e-4


def test_same_params_reuse_the_pipeline(trained):
    p, selected, result = trained
    again = ddpm_training.train_ddpm(selected, p, result.generator_dir, progress=False)
    assert again.cached and again.pipeline_dir == result.pipeline_dir
    changed = ddpm_training.training_key(tiny_params(epochs_3_mixed=5), selected, "bf16")
    assert changed != ddpm_training.training_key(p, selected, "bf16")
    assert ddpm_training.training_key(p, selected, "fp32") != ddpm_training.training_key(p, selected, "bf16")
    assert not ddpm_training._pipeline_is_current(result.generator_dir, changed)


# --- sampling ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpmsolver", "dpmsolver_ode"])
def test_samplers_are_seeded_and_batch_size_free(trained, sampler):
    _, _, result = trained
    pipeline = ddpm_sampling.load_pipeline(result.pipeline_dir)
    images, seeds = ddpm_sampling.sample_images(pipeline, sampler, 3, 3, 2, seed=7, progress=False)
    assert images.shape == (3, 16, 16) and images.dtype == np.uint8
    again, _ = ddpm_sampling.sample_images(pipeline, sampler, 3, 3, 3, seed=7, progress=False)
    assert np.abs(images.astype(int) - again.astype(int)).max() <= 1  # batching does not change an image
    other, _ = ddpm_sampling.sample_images(pipeline, sampler, 3, 3, 2, seed=8, progress=False)
    assert not np.array_equal(images, other)
    single, _ = ddpm_sampling.sample_images(pipeline, sampler, 3, 1, 1, seed=[seeds[2]], progress=False)
    assert np.abs(single[0].astype(int) - images[2].astype(int)).max() <= 1
    bf16, _ = ddpm_sampling.sample_images(pipeline, sampler, 3, 3, 3, seed=7, progress=False, precision="bf16")
    assert bf16.shape == images.shape and bf16.dtype == np.uint8


def test_original_gate_redraws_images_failing_both_criteria_as_the_seed_did(trained):
    _, _, result = trained
    pipeline = ddpm_sampling.load_pipeline(result.pipeline_dir)
    p = tiny_params(sampler="ddpm", n_samples=3, gate_retries=2)
    first, seeds = ddpm_sampling.sample_images(pipeline, "ddpm", 2, 3, 2, seed=p.seed, progress=False)
    kept, same_seeds, redraws = ddpm_sampling.sample_set(pipeline, p, AuditParams(gate="seed", min_std=0,
                                                                                  min_entropy=0), progress=False)
    assert np.array_equal(kept, first) and same_seeds == seeds and redraws == [0, 0, 0]
    hopeless = AuditParams(gate="seed", min_std=1e9, min_entropy=1e9)  # every image fails both: two redraws each
    images, redrawn_seeds, redraws = ddpm_sampling.sample_set(pipeline, p, hopeless, progress=False)
    assert redraws == [2, 2, 2] and redrawn_seeds == [s + 1000 + 2000 for s in seeds]
    again, _ = ddpm_sampling.sample_images(pipeline, "ddpm", 2, 3, 3, seed=redrawn_seeds, progress=False)
    assert np.abs(images.astype(int) - again.astype(int)).max() <= 1  # the last draw of each slot is kept
    one_criterion = AuditParams(gate="seed", min_std=1e9, min_entropy=0)  # fails std only: the seed stopped
    assert ddpm_sampling.sample_set(pipeline, p, one_criterion, progress=False)[2] == [0, 0, 0]
    assert ddpm_sampling.sample_set(pipeline, p, AuditParams(gate="real_range", min_std=1e9, min_entropy=1e9),
                                    progress=False)[2] == [0, 0, 0]  # only the original study's gate redraws


def test_sampler_schedulers_come_from_the_training_config(trained):
    _, _, result = trained
    pipeline = ddpm_sampling.load_pipeline(result.pipeline_dir)
    dpm = ddpm_sampling.make_sampler(pipeline, "dpmsolver")
    assert type(dpm).__name__ == "DPMSolverMultistepScheduler" and dpm.config.algorithm_type == "sde-dpmsolver++"
    assert dpm.config.thresholding and dpm.config.sample_max_value == 1.0  # x0 clipped like DDPM's clip_sample
    assert dpm.config.prediction_type == "epsilon" and dpm.config.beta_schedule == "linear"
    dpm.set_timesteps(20)
    assert int(dpm.timesteps[0]) == 999  # trailing: the first step starts from pure noise
    assert ddpm_sampling.make_sampler(pipeline, "dpmsolver_ode").config.algorithm_type == "dpmsolver++"
    assert ddpm_sampling.make_sampler(pipeline, "ddim").config.num_train_timesteps == 1000
    with pytest.raises(ValueError, match="unknown sampler"):
        ddpm_sampling.make_sampler(pipeline, "euler")


# --- gate and set ------------------------------------------------------------------------------------------
def test_gate_numbers():
    flat = np.full((16, 16), 128, np.uint8)
    noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    assert synthetic.original_gate(flat) == {"std": 0.0, "entropy": 0.0, "passed_gate": False}
    verdict = synthetic.original_gate(noise)
    assert verdict["passed_gate"] and verdict["std"] > 70 and verdict["entropy"] > 5.4
    assert not synthetic.original_gate(noise, min_std=80)["passed_gate"]
    assert not synthetic.original_gate(noise, min_entropy=6.0)["passed_gate"]


@pytest.mark.parametrize("variant", ["3_mixed", "3_mixed_any_split", "seed_3_mixed"])
def test_synthetic_set_gates_resizes_and_records(trained, frames, tmp_path, variant):
    p, _, result = trained
    p = tiny_params(variant=variant)
    selected = ddpm_training.select_training_frames(frames, variant, "split", 1)
    rng = np.random.default_rng(0)
    images = np.stack([np.full((16, 16), 90, np.uint8), rng.integers(0, 256, (16, 16), dtype=np.uint8),
                       rng.integers(0, 256, (16, 16), dtype=np.uint8), np.zeros((16, 16), np.uint8)])
    set_dir = tmp_path / f"ddpm_{variant}"
    manifest, summary = ddpm_set.write_synthetic_set(set_dir, images, [1, 2, 3, 4], p, AuditParams(gate="seed"),
                                                     selected, "split", result.generator_dir, sampling_seconds=2.0,
                                                     frames=frames)
    assert summary["n_generated"] == 4 and summary["n_kept"] == 2 and summary["rejection_rate"] == 0.5
    assert list(manifest.passed_gate) == [False, True, True, False]
    assert list(manifest.passed_seed_gate) == list(manifest.passed_gate)
    assert list(manifest.columns[:len(synthetic.MANIFEST_COLUMNS)]) == synthetic.MANIFEST_COLUMNS
    assert set(manifest.variant) == {variant} and set(manifest.sampler) == {"dpmsolver"}
    from lus_utils.images import load_image

    assert load_image(set_dir / manifest.path[1], grayscale=True).shape == (20, 20)
    record = synthetic.read_provenance(set_dir)
    assert record["training_frames"] == sorted(selected.path)
    assert record["leakage_ablation"] is (variant != "3_mixed")  # the original study's replica's generator saw any split too
    assert record["params"]["ddpm"]["variant"] == variant and "code_version" in record
    assert record["quality_gate"] == {"gate": "seed", "min_std": AuditParams().min_std, "min_entropy": AuditParams().min_entropy}
    assert not list(set_dir.parent.glob(".*"))  # no temporary folder left behind
    train_paths = frames.loc[frames.split == "train", "path"]
    if variant == "3_mixed":
        assert len(synthetic.load_for_training(set_dir, ["covid", "viral"], train_paths)) == 2


def test_autocast_precision_per_device():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    autocast_dtype = ddpm_training.autocast_dtype
    assert autocast_dtype("bf16", cpu) is torch.bfloat16 and autocast_dtype("bf16", cuda) is torch.bfloat16
    assert autocast_dtype("fp16", cpu) is None and autocast_dtype("fp16", cuda) is torch.float16
    assert autocast_dtype("no", cuda) is None
