"""The planner turns a profile's grid into runs: every synthetic set at every amount, the comparators, in order."""
from __future__ import annotations

from dataclasses import replace

from lus_utils import params as P
from lus_utils.run.planning import plan, synthetic_sets


def _with(profile: P.Profile, **sections) -> P.Profile:
    return replace(profile, sections={**profile.sections, **sections})


def _plan(tmp_path, **grid_changes):
    profile = P.load_profile("smoke")
    profile = _with(profile, grid=replace(profile.grid, **grid_changes))
    return profile, plan(profile, tmp_path / "out", tmp_path / "data")


def test_every_synthetic_set_amount_and_strategy_gets_a_run(tmp_path):
    profile, runs = _plan(tmp_path, synthetic_strategies=["none", "weighted_loss"], synthetic_amounts=[0.5, 2.0])
    sets = {name for name, _, _ in synthetic_sets(runs)}
    assert {"ddpm_3_mixed", "ddpm_train_all", "ti_txt2img", "ti_img2img"} <= sets
    augmented = {(r.params["arch"], r.params["strategy"], r.params["synthetic_set"], r.params["synthetic_amount"])
                 for r in runs if r.stage in ("02", "03") and r.params["synthetic_set"]}
    expected = {(a, s, n, x) for a in profile.grid.archs for s in ("none", "weighted_loss") for n in sets
                for x in (0.5, 2.0)}
    assert augmented == expected
    producers = {name: producer for name, _, producer in synthetic_sets(runs)}
    for run in runs:
        if run.stage in ("02", "03"):
            assert run.stage == ("02" if run.params["strategy"] == "none" else "03")
            if run.params["synthetic_set"]:
                assert producers[run.params["synthetic_set"]] in run.after


def test_augment_strategies_add_classical_augmentation_comparators(tmp_path):
    _, runs = _plan(tmp_path, augment_strategies=["none"])
    comparators = [r for r in runs if r.params.get("augment") and not r.params.get("synthetic_set")]
    assert len(comparators) == len(P.load_profile("smoke").grid.archs)
    assert all(r.run_id.endswith("-aug") and r.stage == "02" for r in comparators)
    _, runs = _plan(tmp_path, augment_strategies=[])
    assert not [r for r in runs if r.params.get("augment")]


def test_one_textual_inversion_run_per_base_model_with_distinct_sets(tmp_path):
    profile = P.load_profile("smoke")
    ti_runs = replace(profile.textual_inversion_runs, base_models=["tiny", "org/some-model"], folds=[-1, 0])
    profile = _with(profile, textual_inversion_runs=ti_runs, grid=replace(profile.grid, folds=[-1, 0]),
                    ddpm_runs=replace(profile.ddpm_runs, folds=[-1, 0]))
    runs = plan(profile, tmp_path / "out", tmp_path / "data")
    ti = [r for r in runs if r.stage == "04"]
    assert sorted((r.params["base_model"], r.params["fold"]) for r in ti) == sorted(
        (b, f) for b in ("tiny", "org/some-model") for f in (-1, 0))
    names = [name for name, _, producer in synthetic_sets(runs) if producer.startswith("04")]
    assert len(names) == len(set(names)) == 8
    fold0 = [r for r in runs if r.params.get("synthetic_set") and r.params["fold"] == 0]
    assert all(r.params["synthetic_set"] in {n for n, f, _ in synthetic_sets(runs) if f == 0} for r in fold0)


def test_comparison_runs_last_after_everything(tmp_path):
    _, runs = _plan(tmp_path)
    assert runs[0].stage == "01" and runs[-1].stage == "06"
    assert set(runs[-1].after) == {r.run_id for r in runs[:-1]}
