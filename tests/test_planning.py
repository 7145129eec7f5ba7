"""The planner turns a profile's grid into runs: archs x conditions x repeats x seeds, generators per fold, the
controls, in order."""
from __future__ import annotations

from dataclasses import replace

from lus_utils.config.profiles import Profile, load_profile
from lus_utils.run.planning import generator_folds, plan, synthetic_families
from lus_utils.vocabulary import (DDPM_LEAKY_VARIANTS, METADATA_REFERENCE, ORIGINAL_VIDEO, RunKey, SetRef,
                                  is_leaky_family)


def _with(profile: Profile, **sections) -> Profile:
    return replace(profile, sections={**profile.sections, **sections})


# the viral design's planning under cv, whose folds are what these tests check (smoke itself runs hold-out; the
# simulated design: its own tests)
VIRAL_ONLY = ["simulated_minority.targets=[]", "data.protocol=cv"]


def _plan(tmp_path, root, repeats=2, **grid_changes):
    profile = load_profile("smoke", VIRAL_ONLY)
    profile = _with(profile, grid=replace(profile.grid, **grid_changes), data=replace(profile.data, repeats=repeats))
    return profile, plan(profile, tmp_path / "out", root)


def test_generators_are_planned_per_fold_one_fold_per_minority_patient(tmp_path, tiny_root):
    profile, runs = _plan(tmp_path, tiny_root)
    assert generator_folds(profile, {"out_dir": str(tmp_path / "out"), "data_root": str(tiny_root)}) == [0, 1, 2, 3]
    assert "3_mixed" in profile.ddpm_runs.variants and "class_conditional" in profile.ddpm_runs.variants
    ddpm = [r for r in runs if r.stage == "05"]
    per_fold = [v for v in profile.ddpm_runs.variants if v not in (*DDPM_LEAKY_VARIANTS, "class_conditional")]
    assert sorted((r.params["variant"], r.params["split_column"]) for r in ddpm) == sorted(
        [(v, f"cv_r0_f{f}") for v in per_fold for f in range(4)]  # once per fold, every repeat's
        + [("class_conditional", f"cv_r{r}_f{f}") for r in (0, 1) for f in range(4)]  # it learns every class
        + [(v, "split") for v in DDPM_LEAKY_VARIANTS if v in profile.ddpm_runs.variants]  # a leaky one: once for all
        + [("seed_3_mixed", "split")])  # the original study's generator: one for the study
    families = synthetic_families(runs)
    assert [p for _, p in families.pop("ddpm_seed_3_mixed")] == ["05_ddpm_seed_3_mixed"]
    conditional = families.pop("ddpm_class_conditional")
    assert [ref.name for ref, _ in conditional] == [f"ddpm_class_conditional_r{r}_fold{f}" for r in (0, 1)
                                                    for f in range(4)]
    families = {f: p for f, p in families.items() if not is_leaky_family(f)}
    made = {f"ddpm_{v}" for v in per_fold} | {"ti_txt2img_tiny", "ti_img2img_tiny"}
    assert made <= set(families) and len(made) >= 3
    assert all(len(producers) == 4 for producers in families.values())
    assert all(ref.fold == f for producers in families.values() for f, (ref, _) in enumerate(producers))
    holdout = _with(profile, data=replace(profile.data, protocol="holdout"))
    assert generator_folds(holdout, {"out_dir": str(tmp_path), "data_root": str(tiny_root)}) == [-1]


def test_every_family_amount_strategy_repeat_and_seed_gets_a_run_after_all_its_folds(tmp_path, tiny_root):
    profile, runs = _plan(tmp_path, tiny_root, synthetic_strategies=["none", "weighted_loss"],
                          synthetic_amounts=[0.5, 2.0], seeds=[0, 1])
    families = synthetic_families(runs)
    families.pop("ddpm_seed_3_mixed")
    synthetic_runs = {(r.params["arch"], r.params["strategy"], r.params["synthetic_set"], r.params["synthetic_amount"],
                       r.params["repeat"], r.params["seed"]) for r in runs
                      if r.params.get("synthetic_set") and r.params["synthetic_set"] in families}
    assert synthetic_runs == {(a, s, n, x, rep, seed) for a in profile.grid.archs for s in ("none", "weighted_loss")
                              for n in families for x in (0.5, 2.0) for rep in (0, 1) for seed in (0, 1)}
    for run in runs:
        if run.stage in ("02", "03") and run.params["protocol"] != ORIGINAL_VIDEO:
            assert run.stage == ("02" if run.params["strategy"] == "none" else "03")
            assert run.params["protocol"] == "cv"
            if run.params.get("synthetic_set") in families:
                producers = [(ref, p) for ref, p in families[run.params["synthetic_set"]]
                             if ref.repeat in (None, run.params["repeat"])]  # the repeat's own, if it has its own
                assert {p for _, p in producers} <= set(run.after)
                assert run.reads == tuple(ref for ref, _ in producers)  # every fold's set is fingerprinted
    over = [r for r in runs if r.params.get("oversample_amount")]
    assert {(r.params["oversample_amount"], r.params["strategy"]) for r in over} == {
        (x, s) for x in (0.5, 2.0) for s in ("none", "weighted_loss")}
    reference = [r for r in runs if r.params.get("arch") == METADATA_REFERENCE]
    assert sorted(r.params["repeat"] for r in reference) == [0, 1] and all(r.stage == "02" for r in reference)


def test_domain_textual_inversion_is_planned_per_repeat_and_fold(tmp_path, tiny_root):
    profile = load_profile("smoke", VIRAL_ONLY)
    profile = _with(profile, data=replace(profile.data, repeats=2),
                    textual_inversion_runs=replace(profile.textual_inversion_runs, base_models=["tiny", "domain"]))
    runs = plan(profile, tmp_path / "out", tiny_root)
    ti = sorted((r.params["base_model"], r.params["split_column"]) for r in runs if r.stage == "04")
    assert ti == sorted([("tiny", f"cv_r0_f{f}") for f in range(4)]
                        + [("domain", f"cv_r{r}_f{f}") for r in (0, 1) for f in range(4)])
    families = synthetic_families(runs)
    assert sorted(ref.repeat for ref, _ in families["ti_txt2img_domain"]) == [0] * 4 + [1] * 4
    assert {ref.name for ref, _ in families["ti_txt2img_tiny"]} == {f"ti_txt2img_tiny_fold{f}" for f in range(4)}
    for run in runs:
        if run.params.get("synthetic_set") == "ti_txt2img_domain":
            needed = {p for ref, p in families["ti_txt2img_domain"] if ref.repeat == run.params["repeat"]}
            other = {p for ref, p in families["ti_txt2img_domain"] if ref.repeat != run.params["repeat"]}
            assert needed <= set(run.after) and not other & set(run.after)
            assert {ref.repeat for ref in run.reads} == {run.params["repeat"]}


def test_augment_strategies_add_classical_augmentation_comparators(tmp_path, tiny_root):
    def comparators(runs):  # the oversampling control and the sets are augmented by grid.augment_synthetic
        return [r for r in runs if r.params.get("augment") and not r.params.get("synthetic_set")
                and not r.params.get("oversample_amount")]

    _, runs = _plan(tmp_path, tiny_root, repeats=1, augment_strategies=["none"])
    assert len(comparators(runs)) == len(load_profile("smoke").grid.archs)
    assert all(r.run_id.endswith("-aug") and r.stage == "02" for r in comparators(runs))
    _, runs = _plan(tmp_path, tiny_root, repeats=1, augment_strategies=[])
    assert not comparators(runs) and [r for r in runs if r.params.get("augment")], "augment_synthetic still augments"
    _, runs = _plan(tmp_path, tiny_root, repeats=1, augment_strategies=[], augment_synthetic=False)
    assert not [r for r in runs if r.params.get("augment")]


def test_comparison_runs_last_after_everything(tmp_path, tiny_root):
    _, runs = _plan(tmp_path, tiny_root)
    assert runs[0].stage == "01" and runs[-1].stage == "06"
    assert set(runs[-1].after) == {r.run_id for r in runs[:-1]}


def test_original_replica_runs_the_seed_recipe_per_arch_repeat_and_seed(tmp_path, tiny_root):
    profile, runs = _plan(tmp_path, tiny_root, seeds=[0, 1])
    generator = next(r for r in runs if r.run_id == "05_ddpm_seed_3_mixed")
    overlay = {**profile.seed_replica.ddpm, **profile.seed_replica.audit}
    assert overlay["sampler"] == "ddpm" and overlay["gate"] == "seed"
    assert {k: generator.params[k] for k in overlay} == overlay
    assert generator.params["epochs_3_mixed"] == profile.ddpm.epochs_3_mixed  # it trains as section ddpm says
    replica = [r for r in runs if r.params.get("protocol") == ORIGINAL_VIDEO]
    assert len(replica) == 2 * 2 * 2 * len(profile.grid.archs)  # (plain, with its set) x repeats x seeds x archs
    on_cv = [r for r in runs if r.params.get("protocol") == "cv" and r.params.get("synthetic_set") == "ddpm_seed_3_mixed"]
    assert len(on_cv) == 2 * 2 * len(profile.grid.archs) and all(r.params["checkpoint"] == "best" for r in on_cv)
    assert {r.params["amount_unit"] for r in on_cv} == {"fraction"}
    for run in replica:
        assert run.stage == "02" and run.params["checkpoint"] == "last" and run.params["strategy"] == "none"
        if run.params["synthetic_set"]:
            assert run.params["synthetic_set"] == "ddpm_seed_3_mixed" and "05_ddpm_seed_3_mixed" in run.after
            assert (run.params["synthetic_amount"], run.params["amount_unit"]) == (1.0, "fraction")
    cv_runs = [r for r in runs if r.params.get("protocol") == "cv" and r.params.get("synthetic_set") == "ddpm_seed_3_mixed"]
    assert {r.params["strategy"] for r in cv_runs} == {"none"}  # its set joins no other condition
    _, without = _plan(tmp_path, tiny_root, seed_replica=False)
    assert not [r for r in without if r.params.get("protocol") == ORIGINAL_VIDEO or r.run_id == "05_ddpm_seed_3_mixed"]


def test_the_leakage_ablation_generator_is_planned_once_and_serves_every_fold(tmp_path, tiny_root):
    profile = load_profile("smoke", VIRAL_ONLY)
    profile = _with(profile, ddpm_runs=replace(profile.ddpm_runs, variants=["3_mixed", "3_mixed_any_split"]))
    runs = plan(profile, tmp_path / "out", tiny_root)
    ddpm = sorted((r.params["variant"], r.params["split_column"]) for r in runs if r.stage == "05")
    assert ddpm == sorted([("3_mixed", f"cv_r0_f{f}") for f in range(4)]
                          + [("3_mixed_any_split", "split"), ("seed_3_mixed", "split")])
    leaky = [r for r in runs if r.params.get("synthetic_set") == "ddpm_3_mixed_any_split"]
    assert leaky and all("05_ddpm_3_mixed_any_split" in r.after for r in leaky)
    assert all(r.reads == (SetRef("ddpm_3_mixed_any_split"),) for r in leaky)


def test_the_simulated_design_is_planned_per_target_with_its_curve_and_draw_generators(tmp_path, tiny_root):
    profile = load_profile("smoke", ["simulated_minority.draws=3", "simulated_minority.curve=[1, 2, 3, 99]",
                                     "ddpm_runs.variants=[train_all]", "ddpm_runs.simulated_variants=[3_mixed]"])
    runs = plan(profile, tmp_path / "out", tiny_root)
    generators = [r for r in runs if r.stage == "05" and r.params["split_column"].startswith("sim_")]
    assert {r.params["variant"] for r in generators} == {"3_mixed"}, "a draw trains ddpm_runs.simulated_variants"
    assert sorted(r.params["split_column"] for r in generators) == [f"sim_pneumonia_d{d}" for d in range(3)]
    assert {(r.params["target_class"], r.params["real_patients"]) for r in generators} == {("pneumonia", 3)}
    simulated = [RunKey.from_params(r.params) for r in runs if r.params.get("protocol") == "simulated"]
    names = sorted(k.condition.name for k in simulated)
    # the pool of the tiny data's 5 convex pneumonia patients holds 3 after the test half: k = 99 is dropped
    assert names == sorted(["pneumonia-k1/none+augment", "pneumonia-k2/none+augment", "pneumonia-k3/none+augment",
                            "pneumonia-k3/none", "pneumonia-k3/ddpm_3_mixed@1ratio+augment",
                            "pneumonia-k3/oversampling@1ratio+augment", "pneumonia-k3/metadata_reference"])
    with_set = next(r for r in runs if "ddpm_3_mixed@1ratio" in r.run_id and "sim-" in r.run_id)
    assert [ref.name for ref in with_set.reads] == [f"ddpm_3_mixed_pneumonia_k3_d{d}" for d in range(3)]
    assert {g.run_id for g in generators} <= set(with_set.after)


def test_a_primary_is_planned_by_name_whatever_the_protocol(tmp_path, tiny_root):
    """A condition's name does not say cv or hold-out; a primary on hold-out conditions is planned, one on a set
    the grid never runs is flagged before anything runs."""
    from lus_utils.run.preflight import unplanned_primaries
    for protocol in ("cv", "holdout"):
        profile = load_profile("smoke", [f"data.protocol={protocol}"])
        assert unplanned_primaries(profile, plan(profile, tmp_path / protocol, tiny_root)) == []
    absent = "ddpm_3_mixed@2ratio+augment vs none+augment: minority_ap"
    profile = load_profile("smoke", [f"compare.primary=['{absent}']"])
    assert unplanned_primaries(profile, plan(profile, tmp_path / "absent", tiny_root)) == [absent]


def test_the_class_conditional_ddpm_is_planned_per_repeat_fold_and_draw_and_each_run_reads_its_repeats(tmp_path,
                                                                                                   tiny_root):
    """It learns every class's training frames, and the other classes' patients move between parts from one
    repeat to the next: a repeat reads only its own generators (another repeat's would have seen its test
    frames, which the classifier's leakage check refuses)."""
    profile = load_profile("smoke", ["data.protocol=cv", "data.repeats=2", 'ddpm_runs.variants=["class_conditional"]',
                                     'ddpm_runs.simulated_variants=["class_conditional"]'])
    runs = plan(profile, tmp_path / "out", tiny_root)
    generators = {r.run_id: r for r in runs if r.stage == "05"}
    expected = ({f"05_ddpm_class_conditional_r{r}_fold{f}" for r in (0, 1) for f in range(4)}
                | {f"05_ddpm_class_conditional_pneumonia_k3_d{d}" for d in range(profile.simulated_minority.draws)}
                | {"05_ddpm_seed_3_mixed"})
    assert set(generators) == expected
    assert generators["05_ddpm_class_conditional_r1_fold2"].params["split_column"] == "cv_r1_f2"
    drawn = generators["05_ddpm_class_conditional_pneumonia_k3_d1"].params
    assert (drawn["split_column"], drawn["target_class"], drawn["real_patients"]) == ("sim_pneumonia_d1", "pneumonia", 3)
    readers = [r for r in runs if r.params.get("synthetic_set") == "ddpm_class_conditional"]
    assert {r.params["protocol"] for r in readers} == {"cv", "simulated"}
    for run in readers:
        if run.params["protocol"] == "cv":
            repeat = run.params["repeat"]
            assert [ref.name for ref in run.reads] == [f"ddpm_class_conditional_r{repeat}_fold{f}" for f in range(4)]
            assert {ref.repeat for ref in run.reads} == {repeat}
            assert not {g for g in generators if f"_r{1 - repeat}_" in g} & set(run.after)
        else:
            assert [ref.name for ref in run.reads] == [f"ddpm_class_conditional_pneumonia_k3_d{d}"
                                                      for d in range(profile.simulated_minority.draws)]
