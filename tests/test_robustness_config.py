"""Bad input refused before anything runs (issue 23): every key's range, keys of two sections that must agree, an
architecture timm cannot build as asked, and a synthetic amount its set cannot give."""
from __future__ import annotations

import pytest

from lus_utils import synthetic_sets
from lus_utils.config.profiles import load_profile
from lus_utils.config.schema import ParamError
from lus_utils.run import cli


@pytest.mark.parametrize("assignments, match", [
    (["study.stages=['01', '02', '02']"], r"'stages' must name at least one stage, none twice"),
    (["runtime.device=cpu", "runtime.precision=fp16"], r"'precision' fp16 runs on a GPU only.*bf16 or fp32"),
    (["runtime.device=cpu", "runtime.sampling_precision=fp16"], r"'sampling_precision' fp16 runs on a GPU only"),
    (["grid.synthetic_amounts=[]"], r"'synthetic_amounts' must list at least one amount"),
    (["grid.synthetic_strategies=[]"], r"'synthetic_strategies' must list at least one strategy"),
    (["grid.augment_strategies=[none, none]"], r"'augment_strategies' must not repeat"),
    (["ddpm.attention_levels=[1, 1]"], r"'attention_levels' must be distinct"),
    (["slurm.cpu_stages=['01', '01']"], r"'cpu_stages' must not repeat"),
    (["data.probe=linear"], r"simulated_minority.targets \['pneumonia'\].*data.probe 'linear'.*targets: \[\]"),
    (["data.classes=[covid, pneumonia, viral]"], r"data.classes lacks \['regular'\]; keep them"),
    (["simulated_minority.targets=[]", "data.classes=[covid, viral]", "compare.minority_class=pneumonia"],
     r"compare.minority_class 'pneumonia' is not in data.classes"),
])
def test_a_bad_value_is_refused_with_key_and_fix(assignments, match):
    with pytest.raises(ParamError, match=match) as err:
        load_profile("smoke", assignments)
    assert "smoke.yaml" in str(err.value) or "--set" in str(err.value)


def test_values_that_agree_still_load():
    load_profile("smoke", ["simulated_minority.targets=[]", "data.probe=linear"])
    load_profile("smoke", ["runtime.device=cuda", "runtime.precision=fp16"])
    load_profile("smoke", ["data.probe=convex"])


@pytest.mark.parametrize("assignments, match", [
    (["grid.archs=[resnet18.notatag]"], "timm has no pretrained tag 'notatag' for resnet18"),
    (["grid.archs=[vit_tiny_patch16_224]", "train.image_size=40"], "image_size 40 must be a multiple of 16"),
])
def test_an_architecture_timm_cannot_build_stops_a_dry_run(assignments, match, tiny_root, tmp_path, capsys):
    argv = ["--profile", "smoke", "--dry-run", "--data-root", str(tiny_root), "--out", str(tmp_path / "o")]
    for assignment in assignments:
        argv += ["--set", assignment]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err, err
    assert "parameter 'archs'" in err and "smoke.yaml" in err
    assert not (tmp_path / "o").exists(), "nothing planned, nothing written"


def test_a_known_tag_plans():
    from lus_utils.run import preflight

    preflight.check_archs(load_profile("full"))  # resnet50.tv_in1k and vit_base_patch16_224.augreg_in1k at 224 px


def test_a_synthetic_amount_the_set_cannot_give_is_an_error_naming_set_amount_and_fix():
    with pytest.raises(synthetic_sets.SyntheticSetError) as err:
        synthetic_sets.amount_to_count(1000.0, "ratio", 96, 32, "ddpm_3_mixed_fold0")
    text = str(err.value)
    for part in ("ddpm_3_mixed_fold0", "amount 1000 (ratio) asks for 96000 images", "only 32 passed",
                 "grid.synthetic_amounts", "ddpm.n_samples"):
        assert part in text, text
    with pytest.raises(synthetic_sets.SyntheticSetError, match="asks for 40 images"):
        synthetic_sets.amount_to_count(40, "count", 96, 32, "s")
    assert synthetic_sets.amount_to_count(1.0, "ratio", 32, 32, "s") == (32, 32)
    assert synthetic_sets.amount_to_count(0.5, "fraction", 96, 32, "s") == (16, 16)



def test_smoke_trains_every_generator_variant_the_study_has(tiny_root, tmp_path):
    """CI runs smoke: every DDPM variant any profile trains runs there too, each with a classifier reading its sets."""
    from lus_utils.run.planning import plan

    smoke = load_profile("smoke")
    profiles = [load_profile(name) for name in ("quick", "full", "full+rehearsal")]
    variants = {v for p in profiles for v in p.ddpm_runs.variants + p.ddpm_runs.simulated_variants}
    assert variants == {"3_mixed", "train_all", "3_mixed_any_split", "class_conditional"}
    assert variants <= set(smoke.ddpm_runs.variants)
    assert {v for p in profiles for v in p.ddpm_runs.simulated_variants} <= set(smoke.ddpm_runs.simulated_variants)
    runs = plan(smoke, tmp_path / "out", tiny_root)
    for variant in variants:
        assert any(r.stage == "05" and r.params["variant"] == variant for r in runs), variant
        assert any(r.params.get("synthetic_set") == f"ddpm_{variant}" for r in runs), variant
