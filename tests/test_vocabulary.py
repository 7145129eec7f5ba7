"""The vocabulary: every name the study builds parses back to what built it, and the baselines rule is one."""
from __future__ import annotations

import pytest

from lus_utils.config.profiles import load_profile
from lus_utils.run.planning import plan
from lus_utils.vocabulary import (CV, HOLDOUT, ORIGINAL_VIDEO, SIMULATED, Condition, NameError_, RunKey, SetRef, Split,
                                  split_columns)


@pytest.mark.parametrize("split", [Split(CV, 1, 3), Split(HOLDOUT), Split(ORIGINAL_VIDEO, 2),
                                   Split(SIMULATED, target="pneumonia", draw=11)])
def test_a_split_is_its_column(split):
    assert Split.from_column(split.column) == split
    assert split_columns(["path", "label", split.column, "cv_x", f"{split.column}_rank"]) == [split.column]


@pytest.mark.parametrize("ref", [SetRef("ddpm_3_mixed", fold=2), SetRef("ti_txt2img_domain", fold=0, repeat=1),
                                 SetRef("ddpm_3_mixed_any_split"), SetRef("ti_img2img"),
                                 SetRef("cddpm", target="regular", k=3, draw=7)])
def test_a_set_is_its_folder_name(ref):
    assert SetRef.parse(ref.name) == ref


def test_a_set_for_a_split_is_the_split_s_own_or_the_leaky_family_s_only():
    assert SetRef.for_split("ddpm_3_mixed", Split(CV, 1, 2)).name == "ddpm_3_mixed_fold2"
    assert SetRef.for_split("ti_txt2img_domain", Split(CV, 1, 2), repeat_dependent=True).name == \
        "ti_txt2img_domain_r1_fold2"
    assert SetRef.for_split("ddpm_3_mixed_any_split", Split(CV, 1, 2)).name == "ddpm_3_mixed_any_split"
    assert SetRef.for_split("ddpm_3_mixed", Split(SIMULATED, target="covid", draw=3), k=3).name == \
        "ddpm_3_mixed_covid_k3_d3"
    with pytest.raises(NameError_):
        SetRef("ddpm_3_mixed_fold2")  # a family is never a fold's folder


@pytest.mark.parametrize("name", ["none", "none+augment", "weighted_loss", "balanced_sampler+augment",
                                  "ddpm_3_mixed@1ratio", "ddpm_3_mixed@2.5ratio+weighted_loss",
                                  "oversampling@1ratio+augment", "metadata_reference", "seed_replica",
                                  "seed_replica_ddpm_seed_3_mixed@1fraction", "ddpm_seed_3_mixed@1fraction",
                                  "pneumonia-k3/none+augment", "regular-k12/ddpm_3_mixed@1ratio+augment",
                                  "covid-k3/metadata_reference", "none+lastepoch"])
def test_a_condition_is_its_name(name):
    assert Condition.parse(name).name == name


@pytest.mark.parametrize("name", ["nothing", "ddpm@1liters", "none+sideways", "pneumonia-k0/none",
                                  "ddpm_3_mixed@1ratio+weighted_loss+balanced_sampler"])
def test_a_name_that_is_no_condition_is_refused(name):
    with pytest.raises(NameError_):
        Condition.parse(name)


@pytest.mark.parametrize("profile", ["smoke", "full"])
def test_every_planned_classifier_run_s_identity_round_trips(profile, tmp_path, tiny_root):
    for run in plan(load_profile(profile), tmp_path / "out", tiny_root, only=["02", "03"]):
        key = RunKey.from_params(run.params)
        assert run.run_id == f"{run.stage}_{key.run_id}"
        assert Condition.parse(key.condition.name, protocol=key.condition.protocol) == key.condition
        assert Condition.from_dict(key.condition.to_dict()) == key.condition


def test_the_baselines_rule():
    names = lambda c: [b.name for b in Condition.parse(c).baselines()]  # noqa: E731
    assert names("ddpm_3_mixed@1ratio") == ["none", "oversampling@1ratio", "none+augment"]
    assert names("ddpm_3_mixed@1ratio+augment") == ["none+augment", "oversampling@1ratio+augment"]
    assert names("ddpm_3_mixed@1ratio+weighted_loss") == ["weighted_loss"]
    assert names("oversampling@2ratio") == ["none"]
    assert names("weighted_loss+augment") == ["none+augment"]
    assert names("none+augment") == ["none"]
    assert names("none") == [] and names("metadata_reference") == []
    assert names("seed_replica_ddpm_seed_3_mixed@1fraction") == ["seed_replica"]  # the original study ran no control
    assert names("pneumonia-k3/ddpm_3_mixed@1ratio+augment") == ["pneumonia-k3/none+augment",
                                                                 "pneumonia-k3/oversampling@1ratio+augment"]
    key = RunKey("resnet18", Condition.parse("ddpm_3_mixed@1ratio"), 1, 2)
    assert key.baseline_run_ids() == ["resnet18-none-seed2-cv-r1", "resnet18-none-seed2-cv-r1-oversampling@1ratio",
                                      "resnet18-none-seed2-cv-r1-aug"]
