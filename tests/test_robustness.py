"""A study that survives being moved, edited and broken (issue 23): a copied output folder stays cached, an output
changed by hand re-runs the run that wrote it before anything reads it, and a run that fails leaves no older
result for the comparison.

The toy study is the real planner's (the smoke profile cut to notebook 01, the baseline, the DDPM per fold, one
synthetic condition and the comparison, on the tiny data root) executed with stand-in notebooks: each writes
the files its run writes (frames.csv, a run folder, a set folder, results.csv) and a classifier checks every
image of the sets it reads, as a real one would fail to read a truncated image.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest
from conftest import make_tiny_dataset
from test_synthetic_audit import audit_params, frames, write_test_set  # noqa: F401 (frames: a fixture)

from lus_utils.compare.runs import missing_runs, planned_runs
from lus_utils.config.profiles import load_profile
from lus_utils.paths import OutLayout
from lus_utils.run import cli, study as S
from lus_utils.run.planning import Run, plan
from lus_utils.stages import TABLE

TOY = ["simulated_minority.targets=[]", "study.stages=['01', '02', '05', '06']", "grid.seed_replica=false",
       "grid.metadata_reference=false", "grid.oversampling=false", "ddpm_runs.variants=[3_mixed]"]
SET = "ddpm_3_mixed_fold0"  # one fold's set of the toy study
BASELINE = "02_resnet18-none-seed0-cv-r0"  # the feature baseline, whose folder the generators' audits read
SYNTHETIC = "02_resnet18-none-seed0-cv-r0-ddpm_3_mixed@1ratio"  # reads every fold's set


def stand_in_notebook(folder: Path, name: str) -> None:
    """Writes `test_files` ({path relative to out_dir: text}) after checking `test_checks` (the same, for what it
    reads); fails when the file `test_fail_if` (relative to out_dir) exists."""
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('out_dir = ""\ntest_files = {}\ntest_checks = {}\ntest_fail_if = ""',
                                  metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            "import pathlib\nout = pathlib.Path(out_dir)\n"
            "if test_fail_if and (out / test_fail_if).exists():\n    raise RuntimeError('boom')\n"
            "for rel, text in test_checks.items():\n"
            "    if not (out / rel).is_file() or (out / rel).read_text() != text:\n"
            "        raise OSError(f'cannot read image {out / rel}')\n"
            "for rel, text in test_files.items():\n"
            "    (out / rel).parent.mkdir(parents=True, exist_ok=True)\n    (out / rel).write_text(text)")])
    nbformat.write(nb, folder / f"{name}.ipynb")


def set_files(name: str) -> dict[str, str]:
    root = f"synthetic/{name}"
    return {f"{root}/images/00000.png": f"png 0 of {name}", f"{root}/images/00001.png": f"png 1 of {name}",
            f"{root}/manifest.csv": "path,label\nimages/00000.png,viral\n", f"{root}/provenance.json": "{}",
            f"{root}/audit.json": "{}"}


def frames_csv(folds: int) -> str:
    header = ["path", "video_id", "label", "probe", "patient_id", "split"] + [f"cv_r0_f{f}" for f in range(folds)]
    return ",".join(header) + "\n" + ",".join(["frames/a/0.png", "v", "viral", "convex", "p", "train"]
                                               + ["train"] * folds) + "\n"


def stand_in(run: Run) -> Run:
    """The run with the files it writes and checks as parameters (paths relative to the output folder)."""
    files: dict[str, str] = {}
    if run.stage == "01":
        files["data/frames.csv"] = frames_csv(4)
    elif run.stage == "05":
        for ref in run.writes:
            files.update(set_files(ref.name))
    elif run.stage == "06":
        files = {"results.csv": "run_id\n", "comparison/summary.csv": "condition\n"}
    else:
        folder = f"runs/{run.run_id[3:]}"
        files = {f"{folder}/metrics.json": "{}", f"{folder}/predictions.csv": "path\n",
                 f"{folder}/best_fold0.pt": "weights"}
    checks = {k: v for ref in run.reads for k, v in set_files(ref.name).items()}
    run.params.update(test_files=files, test_checks=checks)
    return run


def toy_plan(out: Path, root: Path, overrides: list[str] = ()) -> list[Run]:
    return [stand_in(run) for run in plan(load_profile("smoke", [*TOY, *overrides]), out, root)]


def study(runs, out, notebooks, **kw):
    return S.execute_study(runs, out, notebooks_dir=notebooks, progress=False, echo=lambda s: None, **kw)


def statuses(result) -> dict[str, str]:
    return {r.run_id: r.status for r in result.results}


def reasons(result) -> dict[str, str]:
    return {r.run_id: "; ".join(r.reasons) for r in result.results}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished toy study (8 runs executed once for the module); each test works on a copy."""
    base = tmp_path_factory.mktemp("toy")
    root = make_tiny_dataset(base / "data", broken=False)
    notebooks = base / "notebooks"
    notebooks.mkdir()
    for stage in TABLE:
        stand_in_notebook(notebooks, stage.notebook)
    out = base / "study"
    result = study(toy_plan(out, root), out, notebooks)
    assert result.ok and len(result.results) == 8, result.format()
    return out, root, notebooks


@pytest.fixture
def toy(finished, tmp_path):
    """A copy of the finished toy study, made as `cp -r` does (new file times), in a folder of another name."""
    out, root, notebooks = finished
    copy = tmp_path / "elsewhere" / "copied-study"
    shutil.copytree(out, copy, copy_function=shutil.copy)
    return copy, root, notebooks


# --- 1. portable caches ------------------------------------------------------------------------------------
def test_planned_parameters_hold_no_absolute_path(tmp_path, tiny_root):
    """Nothing a run is keyed on names the output folder: the feature baseline's folder and the rehearsal's
    stand-in base model are relative to it."""
    from lus_utils.run import rehearsal

    out = tmp_path / "out"
    for profile in (load_profile("smoke"), rehearsal.with_sd_sized_base(load_profile("full+rehearsal"))):
        runs = plan(profile, out, tiny_root)
        for run in runs:
            for key, value in run.params.items():
                if key in ("data_root", "out_dir"):
                    continue
                for text in (value if isinstance(value, list) else [value]):
                    assert not (isinstance(text, str) and (str(tmp_path) in text or Path(text).is_absolute())), (
                        run.run_id, key, text)
        audited = [r for r in runs if r.stage in ("04", "05")]
        assert audited and {r.params["feature_run_dir"] for r in audited} == {"runs/" + runs[1].run_id[3:]}
    assert rehearsal.SD_FOLDER in {r.params.get("base_model") for r in runs}


def test_the_audit_finds_the_feature_baseline_relative_to_the_output_folder(frames, tmp_path, monkeypatch):
    import sys
    import types

    import numpy as np

    from lus_utils.generate import synthetic_audit
    from lus_utils.images import load_image

    loaded = []
    monkeypatch.setitem(sys.modules, "lus_utils.classify.training", types.SimpleNamespace(
        load_run_model=lambda run_dir: loaded.append(Path(run_dir)) or ("model", ["covid", "viral"], 24)))
    monkeypatch.setitem(sys.modules, "lus_utils.classify.models", types.SimpleNamespace(
        extract_features=lambda model, images, batch_size: images.reshape(len(images), 3, -1).mean(axis=2)
        .astype(np.float64)))
    set_dir = tmp_path / "study" / "synthetic" / "set"
    write_test_set(set_dir, [load_image(p, grayscale=True) for p in frames[frames.video_id == "v2"].abspath], [])
    audit = synthetic_audit.audit_set(set_dir, frames, "split", audit_params(feature_run_dir="runs/baseline"))
    assert loaded == [tmp_path / "study" / "runs" / "baseline"]
    assert audit["params"]["feature_run_dir"] == "runs/baseline", "the record names it relatively too"


def test_a_copied_or_moved_study_is_fully_cached(toy, tmp_path):
    out, root, notebooks = toy
    dry = study(toy_plan(out, root), out, notebooks, dry_run=True)
    assert set(statuses(dry).values()) == {"cached"}, S.describe_dry_run(dry)
    moved = tmp_path / "moved"
    shutil.move(out, moved)
    again = study(toy_plan(moved, root), moved, notebooks)
    assert set(statuses(again).values()) == {"cached"}, S.describe_dry_run(again)
    stamp = json.loads((moved / ".stamps" / f"{BASELINE}.json").read_text())
    assert stamp["outputs"][f"runs/{BASELINE[3:]}/predictions.csv"][1] == (
        moved / "runs" / BASELINE[3:] / "predictions.csv").stat().st_mtime_ns, "the new file times are recorded"


# --- 2. a changed output re-runs exactly what wrote it --------------------------------------------------------
@pytest.mark.parametrize("edit, run_id, reason", [
    (lambda out: (out / "synthetic" / SET / "images" / "00001.png").write_text("png 1 of it, edited"),
     "05_" + SET, f"output changed: synthetic/{SET}/images/00001.png"),
    (lambda out: (out / "synthetic" / SET / "provenance.json").unlink(),
     "05_" + SET, f"output missing: synthetic/{SET}/provenance.json"),
    (lambda out: (out / "synthetic" / SET / "audit.json").write_text('{"edited": 1}'),
     "05_" + SET, f"output changed: synthetic/{SET}/audit.json"),
    (lambda out: (out / "runs" / SYNTHETIC[3:] / "predictions.csv").write_text("path\nedited\n"),
     SYNTHETIC, f"output changed: runs/{SYNTHETIC[3:]}/predictions.csv"),
    (lambda out: (out / "runs" / BASELINE[3:] / "metrics.json").write_text('{"edited": 1}'),
     BASELINE, f"output changed: runs/{BASELINE[3:]}/metrics.json"),
    (lambda out: (out / "runs" / BASELINE[3:] / "best_fold0.pt").unlink(),
     BASELINE, f"output missing: runs/{BASELINE[3:]}/best_fold0.pt"),
    (lambda out: (out / "data" / "frames.csv").unlink(), "01_data_exploration", "output missing: data/frames.csv"),
    (lambda out: (out / "results.csv").write_text("run_id\nold\n"), "06_final_comparison",
     "output changed: results.csv"),
])
def test_an_output_changed_by_hand_reruns_its_run(toy, edit, run_id, reason):
    out, root, notebooks = toy
    edit(out)
    dry = study(toy_plan(out, root), out, notebooks, dry_run=True)
    assert reasons(dry)[run_id] == reason, S.describe_dry_run(dry)
    affected = {run_id}
    for run in toy_plan(out, root):  # plan order: a run comes after what it reads
        if affected & set(run.after):
            affected.add(run.run_id)
    assert {r for r, s in statuses(dry).items() if s != "cached"} == affected, "exactly what reads it, and on"


def test_a_truncated_set_image_is_remade_before_any_classifier_reads_it(toy):
    out, root, notebooks = toy
    image = out / "synthetic" / SET / "images" / "00000.png"
    image.write_bytes(image.read_bytes()[:3])
    dry = study(toy_plan(out, root), out, notebooks, dry_run=True)
    assert reasons(dry)["05_" + SET] == f"output changed: synthetic/{SET}/images/00000.png"
    assert reasons(dry)[SYNTHETIC].startswith("after 05_" + SET)
    result = study(toy_plan(out, root), out, notebooks)
    assert result.ok, result.format()  # the classifier found every image as its generator wrote it
    assert statuses(result)["05_" + SET] == "ran" and statuses(result)[SYNTHETIC] == "cached"
    assert [s for r, s in statuses(result).items() if r.startswith("05_") and r != "05_" + SET] == ["cached"] * 3


# --- 3. no stale result reaches the comparison -----------------------------------------------------------------
def test_a_run_that_fails_on_rerun_leaves_no_older_result(toy):
    out, root, notebooks = toy
    (out / "fail-now").touch()
    runs = toy_plan(out, root)
    failing = next(r for r in runs if r.run_id == SYNTHETIC)
    failing.params["test_fail_if"] = "fail-now"  # a changed parameter re-runs it, and this time it fails
    result = study(runs, out, notebooks)
    result.write()
    assert statuses(result)[SYNTHETIC] == "failed" and statuses(result)["06_final_comparison"] == "ran"
    assert not (out / "runs" / SYNTHETIC[3:]).exists(), "its old metrics and predictions are gone"
    assert not (out / "notebooks" / f"{SYNTHETIC}.ipynb").exists(), "and so is its old executed notebook"
    assert planned_runs(out) == [BASELINE[3:]]


def test_an_interrupted_rerun_is_not_compared(toy, monkeypatch):
    out, root, notebooks = toy
    runs = [r for r in toy_plan(out, root) if r.stage != "06"]
    next(r for r in runs if r.run_id == SYNTHETIC).params["test_files"]["extra.txt"] = "changed"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C as the notebook starts

    monkeypatch.setattr("papermill.execute_notebook", interrupted)
    result = study(runs, out, notebooks)
    result.write()
    assert result.interrupted and statuses(result)[SYNTHETIC] == "interrupted"
    assert not (out / "runs" / SYNTHETIC[3:]).exists()
    assert planned_runs(out) == [BASELINE[3:]]


def test_a_condition_switched_off_is_not_compared(toy):
    out, root, notebooks = toy
    more = toy_plan(out, root, ["grid.synthetic_amounts=[1.0, 2.0]"])
    assert study(more, out, notebooks).ok
    two = "resnet18-none-seed0-cv-r0-ddpm_3_mixed@2ratio"
    assert (out / "runs" / two).is_dir()
    result = study(toy_plan(out, root), out, notebooks)
    result.write()
    assert result.ok and set(planned_runs(out)) == {BASELINE[3:], SYNTHETIC[3:]}
    assert OutLayout(out).run_dir(two).is_dir(), "its folder stays (nothing is deleted unasked), unread"


def test_the_comparison_alone_reads_what_is_current(toy, monkeypatch):
    """`--only 06` compares the runs of the profile that are current (cached), not nothing and not an edited one."""
    out, root, notebooks = toy
    real_plan = cli.plan
    monkeypatch.setattr(cli, "plan", lambda profile, out_dir, data_root, only=None: [
        stand_in(r) for r in real_plan(profile, out_dir, data_root, only)])
    monkeypatch.setattr(S, "NOTEBOOKS_DIR", notebooks)
    (out / "runs" / SYNTHETIC[3:] / "predictions.csv").write_text("path\nedited\n")
    argv = ["--profile", "smoke", "--out", str(out), "--data-root", str(root), "--only", "06"]
    for assignment in [*TOY, "compare.build_report=false"]:
        argv += ["--set", assignment]
    assert cli.main(argv) == 0
    assert planned_runs(out) == [BASELINE[3:]]
    missing = missing_runs(out).set_index("run_id")
    assert missing.loc[SYNTHETIC, "status"] == "not run"
    assert missing.loc[SYNTHETIC, "message"].startswith(f"outside --only: output changed: runs/{SYNTHETIC[3:]}")
