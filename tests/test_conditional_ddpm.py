"""The class-conditional DDPM: every class's training frames of its split (a draw's target cut to its first k
patients), seeded and resumable training, the saved pipeline with its class labels, label dropout,
classifier-free guidance, and a set the leakage check holds to its split."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import ultrasound_frames
from lus_utils import synthetic_sets
from lus_utils.config.generate import AuditParams, DDPMParams, DDPMRunsParams
from lus_utils.config.schema import ParamError, build
from lus_utils.data.splits import TooFewFramesError
from lus_utils.generate import conditional_ddpm_training as cd
from lus_utils.generate import ddpm_sampling, ddpm_set, ddpm_training, ddpm_variants
from lus_utils.provenance import read_json
from lus_utils.vocabulary import SetRef, Split, ddpm_set_ref

CLASSES = ["covid", "pneumonia", "regular", "viral"]
KIND = {"covid": "consolidation", "pneumonia": "b_lines", "regular": "a_lines", "viral": "minority"}
# (label, part in repeat 0's fold 0, part in repeat 1's fold 0, frames): viral patients keep their parts across
# repeats (cv), the other classes' patients move; every class trains in both.
PATIENTS = [("covid", "train", "test", 3), ("covid", "test", "train", 2), ("pneumonia", "train", "val", 3),
            ("pneumonia", "val", "train", 2), ("regular", "train", "train", 3), ("regular", "test", "test", 2),
            ("viral", "train", "train", 3), ("viral", "test", "test", 3)]
R0, R1 = "cv_r0_f0", "cv_r1_f0"


def make_frames(root) -> pd.DataFrame:
    import cv2

    rows = []
    for i, (label, part_0, part_1, n) in enumerate(PATIENTS):
        for k, image in enumerate(ultrasound_frames(n, KIND[label], seed=i, size=24)):
            path = root / f"p{i}_{k}.png"
            cv2.imwrite(str(path), image)
            rows.append({"path": path.name, "abspath": str(path), "video_id": f"v{i}", "patient_id": f"p{i}",
                         "label": label, R0: part_0, R1: part_1})
    return pd.DataFrame(rows)


def tiny(**overrides) -> DDPMParams:
    values = dict(variant="class_conditional", split_column=R0, image_size=16, block_out_channels=[8, 16],
                  attention_levels=[], conditional_train_steps=6, conditional_batch_size=4, lr=1e-3, warmup_steps=2,
                  ema_decay=0.9, checkpoint_every=3, sample_grids=1, sampling_steps=2, n_samples=4,
                  sample_batch_size=2, output_size=20, label_dropout=0.5)
    values.update(overrides)
    return build(DDPMParams, values, "test")


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> pd.DataFrame:
    return make_frames(tmp_path_factory.mktemp("frames"))


def select(frames: pd.DataFrame, p: DDPMParams) -> pd.DataFrame:
    return ddpm_training.select_training_frames(frames, p.variant, p.split_column, p.seed, p.target_class,
                                                p.real_patients)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, frames):
    """One uninterrupted tiny training on repeat 0's fold 0 (6 steps of 4 frames)."""
    p = tiny()
    selected = select(frames, p)
    return p, selected, ddpm_variants.train(selected, p, tmp_path_factory.mktemp("gen") / "cddpm", progress=False)


def unet_state(pipeline_dir):
    return ddpm_sampling.load_pipeline(pipeline_dir).unet.state_dict()


# --- frames, parameters, names -------------------------------------------------------------------------------
def test_training_frames_are_every_class_of_the_training_part(frames):
    selected = select(frames, tiny())
    assert set(selected[R0]) == {"train"} and set(selected["label"]) == set(CLASSES)
    assert sorted(selected["path"]) == sorted(frames.loc[frames[R0] == "train", "path"])
    assert cd.model_classes(selected) == CLASSES
    with pytest.raises(ValueError, match="no column"):
        ddpm_training.select_training_frames(frames, "class_conditional", "cv_r9_f0", 0)
    with pytest.raises(TooFewFramesError, match="needs training frames of 'viral'"):
        select(frames[frames.label != "viral"], tiny())


def test_a_simulated_draw_gives_every_frame_but_the_target_patients_beyond_k(frames):
    column = "sim_pneumonia_d0"
    table = frames.assign(**{column: frames[R0].replace("val", "train")})  # pneumonia: p2 and p3 both train
    table[f"{column}_rank"] = table["patient_id"].map({"p2": 1, "p3": 0}).where(table["label"] == "pneumonia")
    selected = select(table, tiny(split_column=column, target_class="pneumonia", real_patients=1))
    pneumonia = selected[selected["label"] == "pneumonia"]
    assert set(pneumonia["patient_id"]) == {"p3"}  # the pool's first patient only
    others = table[(table[column] == "train") & (table["label"] != "pneumonia")]
    assert set(others["path"]) <= set(selected["path"])


def test_params_are_checked_and_the_runner_may_plan_the_variant():
    with pytest.raises(ParamError, match="label_dropout"):
        tiny(label_dropout=0.0)
    with pytest.raises(ParamError, match="guidance_scale"):
        tiny(guidance_scale=-1.0)
    with pytest.raises(ParamError, match="class_sampling"):
        tiny(class_sampling="other")
    assert build(DDPMRunsParams, {"variants": ["3_mixed", "class_conditional"]}, "test")
    with pytest.raises(ParamError, match="seed_3_mixed"):
        build(DDPMRunsParams, {"variants": ["seed_3_mixed"]}, "test")


def test_its_set_is_the_repeats_under_cv_and_the_draws_in_the_simulated_design():
    assert ddpm_set_ref("class_conditional", Split.from_column(R1)).name == "ddpm_class_conditional_r1_fold0"
    assert ddpm_set_ref("3_mixed", Split.from_column(R1)).name == "ddpm_3_mixed_fold0"  # viral frames: every repeat's
    simulated = ddpm_set_ref("class_conditional", Split.from_column("sim_pneumonia_d1"), 3)
    assert simulated == SetRef("ddpm_class_conditional", target="pneumonia", k=3, draw=1)
    assert ddpm_set.set_ref(tiny(split_column=R1)).repeat == 1


# --- model, labels, batches, guidance ----------------------------------------------------------------------
def test_the_unet_has_one_more_label_than_classes():
    unet = ddpm_training.build_unet(tiny(), len(CLASSES))
    assert unet.config.num_class_embeds == len(CLASSES) + 1 and ddpm_sampling.null_label(unet) == len(CLASSES)
    assert ddpm_training.build_unet(tiny()).config.num_class_embeds is None


def test_label_dropout_replaces_labels_by_the_null_label_only():
    labels = torch.arange(4).repeat(250)
    none = cd.drop_labels(labels, 0.0, 4, torch.Generator().manual_seed(0))
    every = cd.drop_labels(labels, 1.0, 4, torch.Generator().manual_seed(0))
    some = cd.drop_labels(labels, 0.2, 4, torch.Generator().manual_seed(0))
    assert torch.equal(none, labels) and bool((every == 4).all())
    dropped = some == 4
    assert torch.equal(some[~dropped], labels[~dropped]) and 0.15 < dropped.float().mean() < 0.25
    assert torch.equal(some, cd.drop_labels(labels, 0.2, 4, torch.Generator().manual_seed(0)))  # seeded


def test_training_batches_carry_dropped_labels_and_are_seeded(frames):
    p = tiny(label_dropout=0.5, conditional_batch_size=64)
    selected = select(frames, p)
    data, labels = torch.zeros(len(selected), 1, 16, 16), cd.label_indices(selected, CLASSES)
    weights = cd.sampling_weights(labels, p.class_sampling)
    batch_labels = cd.training_batch(data, labels, weights, len(CLASSES), p, step=0)[3]
    assert (batch_labels == len(CLASSES)).any() and (batch_labels < len(CLASSES)).any()
    assert torch.equal(batch_labels, cd.training_batch(data, labels, weights, len(CLASSES), p, 0)[3])
    assert not torch.equal(batch_labels, cd.training_batch(data, labels, weights, len(CLASSES), p, 1)[3])


def test_balanced_sampling_gives_every_class_the_same_weight(frames):
    labels = cd.label_indices(select(frames, tiny()), CLASSES)
    weights = cd.sampling_weights(labels, "balanced")
    per_class = torch.zeros(len(CLASSES), dtype=torch.float64).index_add_(0, labels, weights)
    assert torch.allclose(per_class, per_class[0].expand(len(CLASSES)))
    assert torch.equal(cd.sampling_weights(labels, "frames"), torch.ones(len(labels), dtype=torch.float64))


def test_guidance_scale_one_is_the_conditional_prediction_and_zero_the_unconditional():
    torch.manual_seed(0)
    unet = ddpm_training.build_unet(tiny(), len(CLASSES)).eval()
    x, t = torch.randn(3, 1, 16, 16), torch.tensor(500)
    labels, null = torch.full((3,), 3), torch.full((3,), len(CLASSES))
    with torch.no_grad():
        conditional = unet(x, t, class_labels=labels).sample
        unconditional = unet(x, t, class_labels=null).sample
        assert torch.equal(ddpm_sampling.guided_noise(unet, x, t, 3, 1.0), conditional)
        assert torch.equal(ddpm_sampling.guided_noise(unet, x, t, 3, 0.0), unconditional)
        guided = ddpm_sampling.guided_noise(unet, x, t, 3, 3.0)
        with pytest.raises(ValueError, match="outside the UNet's 4 classes"):
            ddpm_sampling.guided_noise(unet, x, t, 4, 1.0)
    assert not torch.allclose(conditional, unconditional)  # the label reaches the network
    assert torch.allclose(guided, unconditional + 3.0 * (conditional - unconditional), atol=1e-5)


# --- training, cache, resume, sampling --------------------------------------------------------------------
def test_training_saves_a_pipeline_with_class_labels_grids_and_provenance(trained):
    p, selected, result = trained
    assert result.finished and not result.cached and result.steps_done == p.conditional_train_steps
    assert ddpm_sampling.class_labels(result.pipeline_dir) == CLASSES
    assert ddpm_sampling.load_pipeline(result.pipeline_dir).unet.config.num_class_embeds == len(CLASSES) + 1
    record = read_json(result.generator_dir / "provenance.json")
    assert record["training_frames"] == sorted(selected["path"]) and record["class_labels"] == CLASSES
    assert not record["leakage_ablation"] and record["training_frames_per_class"]["viral"] == 3
    assert not (result.generator_dir / "checkpoints").exists()
    assert list(result.log["step"]) == list(range(1, p.conditional_train_steps + 1))
    assert [g.name for g in result.grids] == ["step_00006.png"]


def test_same_seed_same_weights_and_images_and_the_cache_is_reused(trained, tmp_path):
    p, selected, result = trained
    again = ddpm_variants.train(selected, p, tmp_path / "again", progress=False)
    first, second = unet_state(result.pipeline_dir), unet_state(again.pipeline_dir)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert ddpm_variants.train(selected, p, result.generator_dir, progress=False).cached
    assert not ddpm_variants.train(selected, tiny(label_dropout=0.3), tmp_path / "other", progress=False).cached
    images, seeds, redraws = ddpm_variants.sample_set(result.pipeline_dir, p, AuditParams(), progress=False)
    repeat, _, _ = ddpm_variants.sample_set(again.pipeline_dir, p, AuditParams(), progress=False)
    assert images.shape == (p.n_samples, 16, 16) and images.dtype == np.uint8 and np.array_equal(images, repeat)
    assert redraws == [0] * p.n_samples
    # An image depends on its own seed only, not on the batch it was made in; the class changes it.
    pipeline = ddpm_sampling.load_pipeline(result.pipeline_dir)
    alone, _ = ddpm_sampling.sample_images(pipeline, p.sampler, p.sampling_steps, 1, 1, [seeds[2]], progress=False,
                                           class_label=3, guidance_scale=p.guidance_scale)
    assert np.array_equal(alone[0], images[2])
    covid, _ = ddpm_sampling.sample_images(pipeline, p.sampler, p.sampling_steps, 1, 1, [seeds[2]], progress=False,
                                           class_label=0, guidance_scale=p.guidance_scale)
    assert not np.array_equal(covid[0], images[2])


def test_resuming_from_a_checkpoint_gives_the_uninterrupted_weights(trained, tmp_path):
    p, selected, result = trained
    gen_dir = tmp_path / "interrupted"
    partial = cd.train_conditional(selected, p, gen_dir, max_steps=3, progress=False)
    assert not partial.finished and (gen_dir / "checkpoints" / "checkpoint-3").is_dir()
    resumed = cd.train_conditional(selected, p, gen_dir, progress=False)
    assert resumed.resumed_from == 3 and resumed.finished
    first, second = unet_state(result.pipeline_dir), unet_state(resumed.pipeline_dir)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert np.allclose(resumed.log["loss"], result.log["loss"])


# --- the set and the leakage rule ----------------------------------------------------------------------------
def test_the_set_lists_every_frame_it_learned_and_joins_only_its_own_repeats_training_part(frames, tmp_path):
    """Repeat 1's generator learned frames that repeat 0 tests on (p1: covid, test in repeat 0): the classifier of
    repeat 0 must refuse its set; repeat 1's takes it."""
    p = tiny(split_column=R1)
    selected = select(frames, p)
    result = ddpm_variants.train(selected, p, tmp_path / "gen", progress=False)
    images, seeds, redraws = ddpm_variants.sample_set(result.pipeline_dir, p, AuditParams(gate="seed"),
                                                      progress=False)
    set_dir = tmp_path / ddpm_set.set_ref(p).name
    manifest, summary = ddpm_set.write_synthetic_set(set_dir, images, seeds, p, AuditParams(gate="seed"), selected,
                                                     R1, result.generator_dir, 1.0, frames, redraws)
    record = synthetic_sets.read_provenance(set_dir)
    train_1, train_0 = frames.loc[frames[R1] == "train", "path"], frames.loc[frames[R0] == "train", "path"]
    assert record["training_frames"] == sorted(train_1) and not record["leakage_ablation"]
    assert record["set"]["name"] == "ddpm_class_conditional_r1_fold0" and record["split_column"] == R1
    assert record["training_frame_parts"] == {"train": len(train_1)}
    assert set(record["training_frames_per_class"]) == set(CLASSES)
    assert len(manifest) == p.n_samples and set(manifest["label"]) == {"viral"}
    assert set(manifest["variant"]) == {"class_conditional"} and set(manifest["guidance_scale"]) == {p.guidance_scale}
    assert summary["n_generated"] == p.n_samples
    assert len(synthetic_sets.load_for_training(set_dir, CLASSES, train_1)) == summary["n_kept"]
    seen_by_test_0 = sorted(set(train_1) & set(frames.loc[frames[R0] == "test", "path"]))
    assert seen_by_test_0  # the fixture's point: a frame repeat 0 tests on
    with pytest.raises(synthetic_sets.SyntheticSetError, match="not in this run's training part"):
        synthetic_sets.load_for_training(set_dir, CLASSES, train_0)
