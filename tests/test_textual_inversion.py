"""Textual inversion on the tiny offline pipeline, and the domain base model, on fixture frames."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lus_utils.data.splits import TooFewFramesError
from lus_utils import synthetic_sets as synthetic
from lus_utils.config.generate import AuditParams, DomainBaseModelParams, TextualInversionParams
from lus_utils.config.schema import ParamError, build
from lus_utils.generate import domain_base_model, tiny_sd
from lus_utils.generate import textual_inversion_base_model as ti_base_model
from lus_utils.generate import textual_inversion_sampling as ti_sampling
from lus_utils.generate import textual_inversion_set as ti_set
from lus_utils.generate import textual_inversion_training as ti_training
from lus_utils.paths import OutLayout
from lus_utils.vocabulary import VIRAL as MINORITY_CLASS

CPU = torch.device("cpu")
# (label, video, patient, split, n frames): viral has 3 training videos, non-viral classes train frames too.
FIXTURE_VIDEOS = [
    ("covid", "Cov_a", "p1", "train", 4), ("covid", "Cov_b", "p2", "test", 2),
    ("pneumonia", "Pneu_a", "p3", "train", 4), ("regular", "Reg_a", "p4", "train", 4),
    ("regular", "Reg_b", "p5", "val", 2),
    ("viral", "Vir_a", "p6", "train", 3), ("viral", "Vir_b", "p7", "train", 2), ("viral", "Vir_c", "p8", "train", 1),
    ("viral", "Vir_d", "p9", "val", 2), ("viral", "Vir_e", "p10", "test", 2),
]


def make_frames(root: Path, videos=FIXTURE_VIDEOS, size: int = 32) -> pd.DataFrame:
    """A minimal frames table (frames.csv columns the stage reads) with PNG frames written under `root`."""
    import cv2

    rows = []
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    for v, (label, video, patient, split, n) in enumerate(videos):
        for k in range(n):
            fan = ((yy > size * 0.2) & (np.abs(xx - size / 2) < yy * 0.6)).astype(float)
            image = np.clip(fan * (120 + 40 * np.sin(yy / (2 + v) + k)) + rng.normal(0, 30, (size, size)), 0, 255)
            path = root / "frames" / video / f"frame_{k:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), image.astype(np.uint8))
            rows.append({"path": f"frames/{video}/frame_{k:03d}.png", "abspath": str(path), "label": label,
                         "split": split, "video_id": video, "patient_id": patient,
                         "probe": "linear" if v % 2 else "convex", "b_lines": "1" if v % 3 == 0 else "0",
                         "consolidations": "1" if label == "pneumonia" else "0", "effusion": "",
                         "a_lines": "1" if label == "regular" else "0", "pleural_irregularities": "0"})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("clip_tokenizer")
    tiny_sd.clip_tokenizer(folder)
    return folder


@pytest.fixture
def frames(tmp_path: Path) -> pd.DataFrame:
    return make_frames(tmp_path)


def tiny_params(**changes) -> TextualInversionParams:
    values = dict(base_model="tiny", steps=3, batch_size=2, checkpoint_every=2, n_checkpoint_images=2, n_txt2img=3,
                  n_img2img=3, sampling_steps=2, sample_batch_size=2, output_size=32)
    return replace(TextualInversionParams(), **{**values, **changes})


DOMAIN = DomainBaseModelParams(domain_resolution=32, domain_width=8, domain_vae_steps=2, domain_steps=2,
                               domain_batch_size=4)


def test_tokenizer_matches_open_clip(tokenizer_dir: Path) -> None:
    from open_clip.tokenizer import SimpleTokenizer

    texts = ["a photo of a cat", "A Convex lung ULTRASOUND frame of COVID-19 pneumonia with B-lines, effusion!",
             "  odd   spacing\tand accents: café 1234", "don't stop <3"]
    reference = SimpleTokenizer()(texts).tolist()
    ours = tiny_sd.clip_tokenizer(tokenizer_dir)(texts, padding="max_length", max_length=77).input_ids
    for ref, got, text in zip(reference, ours, texts):
        end = ref.index(tiny_sd.CLIP_VOCAB_SIZE - 1) + 1
        assert got[:end] == ref[:end], text
    assert len(tiny_sd.clip_tokenizer(tokenizer_dir)) == tiny_sd.CLIP_VOCAB_SIZE


def test_training_changes_only_the_placeholder_rows(frames: pd.DataFrame, tokenizer_dir: Path,
                                                    tmp_path: Path) -> None:
    params = tiny_params(num_vectors=2)
    pipe = tiny_sd.tiny_pipeline(0, tokenizer_dir=tokenizer_dir)
    before = {name: {k: v.clone() for k, v in getattr(pipe, name).state_dict().items()}
              for name in ("unet", "vae", "text_encoder")}
    old = pipe.text_encoder.get_input_embeddings().weight.detach().clone()
    table = [k for k, v in before["text_encoder"].items() if v.shape == old.shape and torch.equal(v, old)]
    selected = ti_training.select_training_frames(frames, "split", params.train_frames, params.seed)
    result = ti_training.train_token(pipe, selected, params, tmp_path / "ti", CPU)
    weight = pipe.text_encoder.get_input_embeddings().weight
    assert weight.shape[0] == old.shape[0] + 2 and result.token_ids == [old.shape[0], old.shape[0] + 1]
    assert torch.equal(weight[: old.shape[0]], old)  # every original row bit-identical
    init = old[pipe.tokenizer.encode("pneumonia", add_special_tokens=False)[0]]
    assert all(not torch.equal(weight[i], init) for i in result.token_ids)  # the new rows moved
    for name in ("unet", "vae"):
        after = getattr(pipe, name).state_dict()
        assert all(torch.equal(after[k], v) for k, v in before[name].items()), name
    text_after = pipe.text_encoder.state_dict()
    assert len(table) == 1 and all(torch.equal(text_after[k], v) for k, v in before["text_encoder"].items()
                                   if k not in table)
    assert [step for step, _ in result.grids] == [0, 2, 3] and all(p.is_file() for _, p in result.grids)
    assert len(result.losses) == params.steps and np.isfinite(result.losses["loss"]).all()


def test_same_seed_same_embedding(frames: pd.DataFrame, tokenizer_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    params = tiny_params(steps=2, checkpoint_every=5, gradient_accumulation=2)
    selected = ti_training.select_training_frames(frames, "split", params.train_frames, params.seed)
    embeds = []
    for run in ("a", "b"):
        result = ti_training.train_token(tiny_sd.tiny_pipeline(0, tokenizer_dir=tokenizer_dir), selected, params,
                                         tmp_path / run, CPU)
        embeds.append(load_file(result.embeds_path)[params.placeholder_token])
    assert torch.equal(embeds[0], embeds[1])


def test_learned_embeds_load_with_diffusers(frames: pd.DataFrame, tokenizer_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    params = tiny_params(num_vectors=2, steps=2)
    selected = ti_training.select_training_frames(frames, "split", params.train_frames, params.seed)
    result = ti_training.train_token(tiny_sd.tiny_pipeline(0, tokenizer_dir=tokenizer_dir), selected, params,
                                     tmp_path / "ti", CPU)
    saved = load_file(result.embeds_path)
    assert list(saved) == [params.placeholder_token] and saved[params.placeholder_token].shape == (2, 32)
    fresh = tiny_sd.tiny_pipeline(0, tokenizer_dir=tokenizer_dir)
    ti_training.load_learned_embeds(fresh, result.embeds_path)  # StableDiffusionPipeline.load_textual_inversion
    ids = fresh.tokenizer.convert_tokens_to_ids(ti_training.placeholder_tokens(params.placeholder_token, 2))
    assert torch.equal(fresh.text_encoder.get_input_embeddings().weight[ids], saved[params.placeholder_token])
    prompt = f"a lung ultrasound frame of {params.placeholder_token}"
    assert fresh.maybe_convert_prompt(prompt, fresh.tokenizer).endswith(
        f"{params.placeholder_token} {params.placeholder_token}_1")
    images = fresh(prompt, num_inference_steps=2, generator=torch.Generator().manual_seed(0),
                   output_type="np").images
    assert images.shape == (1, 32, 32, 3) and np.isfinite(images).all()


def test_known_token_and_multi_token_initializer_refused(tokenizer_dir: Path) -> None:
    pipe = tiny_sd.tiny_pipeline(0, tokenizer_dir=tokenizer_dir)
    with pytest.raises(ti_training.TokenError, match="already contains"):
        ti_training.add_placeholder_tokens(pipe.tokenizer, pipe.text_encoder, "lung</w>", "pneumonia")
    ti_training.add_placeholder_tokens(pipe.tokenizer, pipe.text_encoder, "<new-token>", "pneumonia")
    with pytest.raises(ti_training.TokenError, match="already contains"):
        ti_training.add_placeholder_tokens(pipe.tokenizer, pipe.text_encoder, "<new-token>", "pneumonia")
    with pytest.raises(ti_training.TokenError, match="single token"):
        ti_training.add_placeholder_tokens(pipe.tokenizer, pipe.text_encoder, "<other>", "covid-19")


def test_frame_selection_spread_and_too_few(frames: pd.DataFrame) -> None:
    picked = ti_training.select_training_frames(frames, "split", "3_mixed", seed=0)
    assert len(picked) == 3 and picked["video_id"].nunique() == 3
    assert set(picked["split"]) == {"train"} and set(picked["label"]) == {MINORITY_CLASS}
    assert picked.equals(ti_training.select_training_frames(frames, "split", "3_mixed", seed=0))
    six = ti_training.select_training_frames(frames, "split", "6_mixed", seed=1)
    assert len(six) == 6 and six["path"].is_unique
    assert len(ti_training.select_training_frames(frames, "split", "all", seed=0)) == 6
    few = frames[~((frames.label == MINORITY_CLASS) & frames.video_id.isin(["Vir_a", "Vir_b"]))]
    with pytest.raises(TooFewFramesError, match=r"needs at least 3 'viral' frames.*it has 1 from 1 video"):
        ti_training.select_training_frames(few, "split", "3_mixed", seed=0)


def test_caption_from_label_and_findings() -> None:
    row = {"label": "covid", "probe": "convex", "b_lines": "1", "pleural_irregularities": "1", "effusion": "",
           "consolidations": "0", "a_lines": "0"}
    assert domain_base_model.caption(row) == ("a convex lung ultrasound frame of covid-19 pneumonia with B-lines "
                                              "and pleural irregularities")
    assert domain_base_model.caption({"label": "regular", "probe": "linear"}) == \
        "a linear lung ultrasound frame of a healthy lung"


def test_domain_model_never_sees_viral_frames_and_is_cached(frames: pd.DataFrame, tokenizer_dir: Path,
                                                            tmp_path: Path, monkeypatch) -> None:
    params = tiny_params()
    pipe, info = domain_base_model.load_or_train(frames, "split", DOMAIN, params.seed, 1, tmp_path, tokenizer_dir)
    train_non_viral = frames[(frames.split == "train") & (frames.label != MINORITY_CLASS)]
    assert sorted(info["training_frames"]) == sorted(train_non_viral["path"]) and not info["cached"]
    captions = pd.read_csv(Path(info["folder"]) / "captions.csv")
    assert not captions["caption"].str.contains("viral").any() and MINORITY_CLASS not in set(captions["label"])
    assert (Path(info["folder"]) / "model_index.json").is_file()
    assert pipe.unet.config.sample_size * pipe.vae_scale_factor == DOMAIN.domain_resolution

    with pytest.raises(ValueError, match="never see viral"):
        domain_base_model.train(frames[frames.label == MINORITY_CLASS], domain_base_model.settings(DOMAIN, 0, 1))

    def must_not_train(*args, **kwargs):
        raise AssertionError("the cached domain base model was retrained")

    monkeypatch.setattr(domain_base_model, "train", must_not_train)
    again, info2 = domain_base_model.load_or_train(frames, "split", DOMAIN, params.seed, 1, tmp_path, tokenizer_dir)
    assert info2["cached"] and info2["folder"] == info["folder"]
    assert all(torch.equal(a, b) for a, b in zip(pipe.unet.state_dict().values(), again.unet.state_dict().values()))


def test_stage_writes_sets_that_list_only_training_frames(frames: pd.DataFrame, tokenizer_dir: Path,
                                                         tmp_path: Path) -> None:
    params, audit_params = tiny_params(base_model="domain", set_tag="test"), AuditParams(audit_size=16)
    layout = OutLayout(tmp_path / "out")
    pipe, base = ti_base_model.load_base_model(params, frames, "split", layout.root, CPU, tokenizer_dir, domain=DOMAIN)
    assert base["kind"] == "domain" and base["training_frames"]
    selected = ti_training.select_training_frames(frames, "split", params.train_frames, params.seed)
    refs = ti_set.set_refs(params)
    trained = ti_training.train_and_save(pipe, selected, params, ti_training.generator_dir(layout, tuple(refs.values())),
                                         base, "split", CPU)
    assert trained.embeds_path.is_file() and (trained.folder / "provenance.json").is_file()
    assert trained.folder.name == "textual_inversion_test"
    train_paths = set(frames.loc[frames.split == "train", "path"])
    for mode, ref in refs.items():
        name = ref.name
        images, sources, seconds = ti_sampling.generate(pipe, mode, selected, params, CPU)
        set_dir = layout.synthetic / name
        manifest = ti_set.write_synthetic_set(set_dir, mode, images, sources, params, audit_params, base, selected,
                                              "split", trained, seconds, frames)
        record = synthetic.read_provenance(set_dir)
        # the study's gate (real_range by default), calibrated on the split's training frames, as for the DDPM
        assert record["quality_gate"]["gate"] == "real_range" and "gate_roughness" in manifest.columns
        assert {"std", "entropy", "passed_seed_gate"} <= set(manifest.columns)
        assert len(manifest) == 3 and images[0].shape == (32, 32)
        assert set(record["training_frames"]) <= train_paths and record["set"]["name"] == name
        assert record["learned_embeds"] == f"generators/{trained.folder.name}/learned_embeds.safetensors"
        assert set(selected["path"]) | set(base["training_frames"]) <= set(record["training_frames"])
        if mode == "img2img":
            assert set(manifest["source_path"]) == set(record["img2img_source_frames"]) <= set(selected["path"])
        synthetic.load_for_training(set_dir, ["covid", "pneumonia", "regular", "viral"], train_paths)
    assert name == "ti_img2img_test"


@pytest.mark.parametrize("base_model", ["tiny", "domain"])
def test_output_folder_alone_loads_with_diffusers(frames: pd.DataFrame, tokenizer_dir: Path, tmp_path: Path,
                                                  base_model: str) -> None:
    import json

    from diffusers import StableDiffusionPipeline
    from safetensors.torch import load_file

    params = tiny_params(base_model=base_model, steps=2)
    layout = OutLayout(tmp_path / "out")
    pipe, base = ti_base_model.load_base_model(params, frames, "split", layout.root, CPU, tokenizer_dir, domain=DOMAIN)
    selected = ti_training.select_training_frames(frames, "split", params.train_frames, params.seed)
    folder = ti_training.generator_dir(layout, tuple(ti_set.set_refs(params).values()))
    trained = ti_training.train_and_save(pipe, selected, params, folder, base, "split", CPU)
    moved = tmp_path / "elsewhere"
    trained.folder.rename(moved)  # only the output folder, somewhere else: no cache, no study code
    record = json.loads((moved / "provenance.json").read_text())
    fresh = StableDiffusionPipeline.from_pretrained(moved / record["base_model_path"], safety_checker=None,
                                                    local_files_only=True)
    assert params.placeholder_token not in fresh.tokenizer.get_vocab()  # saved before the token was added
    fresh.load_textual_inversion(str(moved / record["learned_embeds"]), token=record["placeholder_token"])
    token_id = fresh.tokenizer.convert_tokens_to_ids(record["placeholder_token"])
    saved = load_file(moved / record["learned_embeds"])[params.placeholder_token]
    assert torch.equal(fresh.text_encoder.get_input_embeddings().weight[token_id], saved[0])
    images = fresh(params.prompt.format(params.placeholder_token), num_inference_steps=2, output_type="np",
                   generator=torch.Generator().manual_seed(0)).images
    assert np.isfinite(images).all()


def test_base_model_that_cannot_load_names_alternatives(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    params = tiny_params(base_model=str(tmp_path / "no-such-model"))
    with pytest.raises(ti_base_model.BaseModelError, match=r"no-such-model.*'tiny'.*'domain'.*local folder"):
        ti_base_model.load_base_model(params, pd.DataFrame(), "split", tmp_path, CPU)


def test_params_refuse_bad_values() -> None:
    with pytest.raises(ParamError, match="prompt"):
        build(TextualInversionParams, {"prompt": "no placeholder"}, "test")
    with pytest.raises(ParamError, match="train_frames"):
        build(TextualInversionParams, {"train_frames": "9_mixed"}, "test")
    with pytest.raises(ParamError, match="domain_resolution"):
        build(DomainBaseModelParams, {"domain_resolution": 40}, "test")


def test_pndm_skips_its_runge_kutta_warm_up_as_stable_diffusion_ships_it(tokenizer_dir: Path) -> None:
    pipe = ti_sampling.set_sampler(tiny_sd.tiny_pipeline(0, tokenizer_dir=tokenizer_dir), "pndm")
    assert type(pipe.scheduler).__name__ == "PNDMScheduler" and pipe.scheduler.config.skip_prk_steps
    pipe.scheduler.set_timesteps(2)  # a rehearsal's two steps (PNDM's warm-up would need four)
    assert len(pipe.scheduler.timesteps) >= 2
