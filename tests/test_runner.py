"""The runner: caching, invalidation, crashes, resume, dry-run reasons, summary, submitit executors."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import nbformat
import pytest

from lus_utils.config.profiles import Profile, load_profile
from lus_utils.config.runtime import SlurmParams
from lus_utils.config.schema import ParamError
from lus_utils.run import cache_keys as K, cli, executors as X, study as S
from lus_utils.run.planning import Run

SLURM = SlurmParams(partition="gpu", gpus_per_node=1, cpus_per_task=4, mem_gb=8, timeout_min=30,
                    array_parallelism=4)


def fake_profile(name, overrides=()):
    return Profile("fake", Path("fake.yaml"), "a fake study", {"slurm": SlurmParams()})


def fake_notebook(folder: Path, name: str) -> Path:
    """A tiny notebook: parameters x/out_dir/fail_if; appends 'name x' to out_dir/ran.txt; crashes on demand."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell(f"# {name}"),
        nbformat.v4.new_code_cell('x: int = 1  # a number\nout_dir: str = ""  # output folder\n'
                                  'fail_if: str = ""  # crash when this file exists',
                                  metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(f'import os, pathlib\nwith open(pathlib.Path(out_dir) / "ran.txt", "a") as f:\n'
                                  f'    f.write("{name} " + str(x) + "\\n")\nprint("hello from {name}")'),
        nbformat.v4.new_code_cell('if fail_if and os.path.exists(fail_if):\n    raise RuntimeError("boom")'),
    ]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture
def setup(tmp_path):
    notebooks = tmp_path / "notebooks"
    for name in ("nb_a", "nb_b", "nb_c"):
        fake_notebook(notebooks, name)
    out = tmp_path / "out"
    out.mkdir()
    return notebooks, out


def make_runs(out: Path, xa: int = 1, fail_if: str = "") -> list[Run]:
    common = {"out_dir": str(out)}
    return [Run("02", "nb_a", "a", {**common, "x": xa, "fail_if": fail_if}),
            Run("03", "nb_b", "b", {**common, "x": 1}, after=["a"]),
            Run("03", "nb_c", "c", {**common, "x": 1})]


def study(runs, out, notebooks, **kw):
    return S.execute_study(runs, out, notebooks_dir=notebooks, progress=False, echo=lambda s: None, **kw)


def statuses(result) -> dict[str, str]:
    return {r.run_id: r.status for r in result.results}


def reasons(result) -> dict[str, str]:
    return {r.run_id: "; ".join(r.reasons) for r in result.results}


def ran_lines(out: Path) -> list[str]:
    return (out / "ran.txt").read_text().split("\n")[:-1]


def test_cache_then_one_parameter_reruns_only_it_and_its_dependents(setup, monkeypatch):
    notebooks, out = setup
    first = study(make_runs(out), out, notebooks)
    assert statuses(first) == {"a": "ran", "b": "ran", "c": "ran"} and first.ok
    assert sorted(ran_lines(out)) == ["nb_a 1", "nb_b 1", "nb_c 1"]
    for run_id in "abc":
        stamp = json.loads((out / ".stamps" / f"{run_id}.json").read_text())
        assert stamp["key"] and (out / "notebooks" / f"{run_id}.ipynb").is_file()
        assert "hello from" in (out / "logs" / run_id / "stdout.log").read_text() or run_id == "x"

    second = study(make_runs(out), out, notebooks)
    assert statuses(second) == {"a": "cached", "b": "cached", "c": "cached"}
    assert len(ran_lines(out)) == 3  # nothing executed

    dry = study(make_runs(out, xa=2), out, notebooks, dry_run=True)
    assert statuses(dry) == {"a": "would run", "b": "would run", "c": "cached"}
    assert reasons(dry)["a"] == "params changed: x 1 -> 2"
    assert reasons(dry)["b"] == "after a (which runs)"
    assert len(ran_lines(out)) == 3  # a dry run executes nothing

    third = study(make_runs(out, xa=2), out, notebooks)
    assert statuses(third) == {"a": "ran", "b": "ran", "c": "cached"}
    assert ran_lines(out)[3:] == ["nb_a 2", "nb_b 1"]

    # notebook, code and input changes are each named; outputs in a notebook are not a change
    nb = nbformat.read(notebooks / "nb_c.ipynb", as_version=4)
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="old output")]
    nb.cells[2].execution_count = 7
    nbformat.write(nb, notebooks / "nb_c.ipynb")
    assert statuses(study(make_runs(out, xa=2), out, notebooks, dry_run=True))["c"] == "cached"
    nb.cells[3].source = nb.cells[3].source.replace("boom", "bang")
    nbformat.write(nb, notebooks / "nb_c.ipynb")
    (out / "data").mkdir()
    (out / "data" / "frames.csv").write_text("path,label\n")
    hashes = K.code_hashes
    monkeypatch.setattr(K, "code_hashes", lambda notebook: {**hashes(notebook), "classify/training.py": "edited"})
    why = reasons(study(make_runs(out, xa=2), out, notebooks, dry_run=True))
    assert why["c"] == "notebook changed; code changed: classify/training.py; input changed: frames.csv"
    assert why["b"] == "after a (which runs)"
    forced = study(make_runs(out, xa=2), out, notebooks, dry_run=True, force=True)
    assert all(s == "would run" for s in statuses(forced).values())


def data_notebook(folder: Path) -> None:
    """Like notebook 01: writes out_dir/data/frames.csv from `rows`; `x` changes only what it shows."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell('x: int = 1  # shown only\nrows: int = 2  # rows of frames.csv\n'
                                  'out_dir: str = ""  # output folder', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell('import pathlib\nfolder = pathlib.Path(out_dir) / "data"\nfolder.mkdir(exist_ok=True)\n'
                                  '(folder / "frames.csv").write_text("path\\n" + "f.png\\n" * rows)\nprint(x)')]
    nbformat.write(nb, folder / "nb_data.ipynb")


def test_runs_after_01_follow_its_frames_csv_not_its_key(setup):
    notebooks, out = setup
    data_notebook(notebooks)

    def runs(x: int, rows: int) -> list[Run]:
        return [Run("01", "nb_data", "data", {"out_dir": str(out), "x": x, "rows": rows}),
                Run("02", "nb_c", "c", {"out_dir": str(out), "x": 1}, after=["data"])]

    assert statuses(study(runs(1, 2), out, notebooks)) == {"data": "ran", "c": "ran"}
    dry = study(runs(5, 2), out, notebooks, dry_run=True)
    assert statuses(dry) == {"data": "would run", "c": "may run"}
    assert "runs again only if what it reads changes" in reasons(dry)["c"]
    assert statuses(study(runs(5, 2), out, notebooks)) == {"data": "ran", "c": "cached"}  # same frames.csv
    changed = study(runs(5, 3), out, notebooks)
    assert statuses(changed) == {"data": "ran", "c": "ran"}
    assert reasons(changed)["c"] == "input changed: frames.csv"


def test_crash_leaves_no_stamp_and_next_invocation_reruns(setup, capsys, monkeypatch):
    notebooks, out = setup
    marker = out / "crash-now"
    marker.touch()
    runs = make_runs(out, fail_if=str(marker))[:2]
    monkeypatch.setattr(cli, "load_profile", fake_profile)
    monkeypatch.setattr(cli, "resolve_data_root", lambda root, fetch_if_missing: out)
    monkeypatch.setattr(cli, "plan", lambda profile, out_dir, data_root, only: runs)
    monkeypatch.setattr(S, "NOTEBOOKS_DIR", notebooks)
    code = cli.main(["--profile", "fake", "--out", str(out)])
    printed = capsys.readouterr()
    assert code == 1
    assert "nb_a (run a) failed in cell [4] (index 4: if fail_if and os.path.exists(fail_if):...)" in printed.out and "RuntimeError: boom" in printed.out
    assert f"partly executed notebook: {out / 'notebooks' / 'a.failed.ipynb'}" in printed.out
    assert "0 ran, 0 cached, 1 failed, 1 blocked" in printed.out and "BLOCKED b" in printed.out
    assert (out / "notebooks" / "a.failed.ipynb").is_file() and not (out / "notebooks" / "a.ipynb").exists()
    assert not (out / ".stamps" / "a.json").exists() and not (out / ".stamps" / "b.json").exists()
    assert "boom" in (out / "logs" / "a" / "error.txt").read_text()
    summary = json.loads((out / "logs" / "runner_summary.json").read_text())
    assert [r["status"] for r in summary["runs"]] == ["failed", "blocked"]

    marker.unlink()
    assert reasons(study(runs, out, notebooks, dry_run=True))["a"] == "failed last time (see a.failed.ipynb)"
    assert cli.main(["--profile", "fake", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "2 ran, 0 cached, 0 failed" in printed and "ran     a" in printed
    assert not (out / "notebooks" / "a.failed.ipynb").exists() and (out / ".stamps" / "a.json").is_file()

    # a forced re-run that crashes removes the old stamp: the half-finished run is never taken for done
    marker.touch()
    assert statuses(study(runs, out, notebooks, force=True)) == {"a": "failed", "b": "blocked"}
    assert not (out / ".stamps" / "a.json").exists()
    marker.unlink()
    assert statuses(study(runs, out, notebooks)) == {"a": "ran", "b": "cached"}


def test_interrupted_run_is_rerun(setup, monkeypatch):
    notebooks, out = setup
    runs = make_runs(out)[2:]

    def interrupted(*args, **kwargs):
        Path(args[1]).write_text("{}")  # the partly written notebook
        raise KeyboardInterrupt

    monkeypatch.setattr("papermill.execute_notebook", interrupted)
    result = study(runs, out, notebooks)
    assert result.interrupted and statuses(result) == {"c": "interrupted"}
    assert not (out / ".stamps" / "c.json").exists() and (out / "notebooks" / "c.failed.ipynb").exists()
    (out / "notebooks" / ".c.running.ipynb").write_text("{}")  # as after a kill -9
    (out / "notebooks" / "c.failed.ipynb").unlink()
    assert reasons(study(runs, out, notebooks, dry_run=True))["c"] == "interrupted last time (no stamp)"


def test_code_hash_follows_the_modules_a_notebook_imports(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("from lus_utils.compare import comparison\nimport os")])
    nbformat.write(nb, tmp_path / "n.ipynb")
    modules = K.notebook_modules(tmp_path / "n.ipynb")
    assert {"lus_utils.compare.comparison", "lus_utils.config.compare", "lus_utils.provenance",
            "lus_utils.vocabulary"} <= modules
    assert "lus_utils.generate.ddpm_training" not in modules and not any(m.startswith("lus_utils.run") for m in modules)
    hashes = K.code_hashes(tmp_path / "n.ipynb")
    assert "compare/comparison.py" in hashes and "__init__.py" in hashes and not any(k.startswith("run/") for k in hashes)
    magic = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("%time x = 1")])
    nbformat.write(magic, tmp_path / "m.ipynb")
    whole = K.code_hashes(tmp_path / "m.ipynb")  # cannot tell: the whole package, still without the runner
    assert "generate/ddpm_training.py" in whole and not any(k.startswith("run/") for k in whole)


def test_prose_edits_rerun_nothing_but_the_report(setup):
    """A markdown edit, a comment or a reflowed line in a code cell is no change; editing code is. The comparison
    notebook (06), whose markdown is the report's prose, re-runs on a markdown edit too."""
    notebooks, out = setup
    runs = make_runs(out)
    assert set(statuses(study(runs, out, notebooks)).values()) == {"ran"}
    nb = nbformat.read(notebooks / "nb_c.ipynb", as_version=4)
    nb.cells[0].source = "# nb_c\n\nA paragraph that explains it better."
    nb.cells[2].source = "# write where the runner looks\n" + nb.cells[2].source.replace('print("hello', 'print(  "hello')
    nbformat.write(nb, notebooks / "nb_c.ipynb")
    assert statuses(study(runs, out, notebooks, dry_run=True))["c"] == "cached"
    report = Run("06", "nb_c", "c", runs[2].params)
    assert K.notebook_hash(notebooks / "nb_c.ipynb") != K.notebook_hash(notebooks / "nb_c.ipynb", prose=True)
    assert "notebook changed" in reasons(study([*runs[:2], report], out, notebooks, dry_run=True))["c"].split("; ")
    nb.cells[2].source = nb.cells[2].source.replace("hello from", "hi from")
    nbformat.write(nb, notebooks / "nb_c.ipynb")
    assert reasons(study(runs, out, notebooks, dry_run=True))["c"] == "notebook changed"


def test_code_hash_follows_meaning_not_prose(tmp_path, monkeypatch):
    """Editing a comment or a docstring in a module changes no code hash; editing its code does."""
    package = tmp_path / "lus_utils"
    package.mkdir()
    (package / "__init__.py").write_text('"""The package."""\n')
    module = package / "model.py"
    module.write_text('"""A module."""\nSCALE = 2  # why two\n\n\nclass Net:\n    """A net."""\n\n'
                      '    def forward(self, x):\n        """Scale x."""\n        return SCALE * x\n')
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("from lus_utils import model")])
    nbformat.write(nb, tmp_path / "n.ipynb")
    monkeypatch.setattr(K, "PACKAGE_DIR", package)
    before = K.code_hashes(tmp_path / "n.ipynb")
    assert set(before) == {"__init__.py", "model.py"}
    source = module.read_text()
    for edit in (source.replace("# why two", "# two, as the paper says"), source.replace("A module.", "The model."),
                 source.replace("Scale x.", "Twice x."), source.replace('    """A net."""\n', ""),
                 source.replace("return SCALE * x", "return (SCALE\n                * x)")):
        module.write_text(edit)
        assert K.code_hashes(tmp_path / "n.ipynb") == before, edit
    for edit in (source.replace("SCALE = 2", "SCALE = 3"), source.replace("SCALE * x", "x * SCALE"),
                 source.replace('"""Scale x."""', '"""Scale x."""\n        print(x)')):
        module.write_text(edit)
        assert K.code_hashes(tmp_path / "n.ipynb")["model.py"] != before["model.py"], edit


def test_levels_follow_dependencies():
    runs = [Run("06", "n", "z", {}, after=["x", "y"]), Run("02", "n", "x", {}), Run("03", "n", "y", {}, after=["x"]),
            Run("02", "n", "w", {}, after=["not-planned"])]
    assert [[r.run_id for r in level] for level in S.levels(runs)] == [["x", "w"], ["y"], ["z"]]
    with pytest.raises(ParamError, match="cycle"):
        S.levels([Run("02", "n", "p", {}, after=["q"]), Run("02", "n", "q", {}, after=["p"])])


def logs_of(out: Path) -> str:
    """Every log a run left (the runner's, papermill's and the job's own), for a failing assertion to show."""
    parts = [f"--- {p.relative_to(out)}\n{p.read_text(errors='replace')[-3000:]}"
             for p in sorted((out / "logs").glob("*/*")) if p.is_file() and p.suffix in (".txt", ".log", ".stderr")]
    return "\n".join(parts)


def test_submitit_local_executor_runs_a_two_run_array(setup):
    notebooks, out = setup
    runs = make_runs(out)[::2]  # a and c: one level, one stage each -> one array per stage
    runs[1].stage = "02"
    executor = X.SubmititExecutor(out, SlurmParams(gpus_per_node=0, timeout_min=5), cluster="local", poll_s=0.3)
    result = study(runs, out, notebooks, executor=executor)
    assert statuses(result) == {"a": "ran", "c": "ran"}, result.format() + "\n" + logs_of(out)
    assert sorted(ran_lines(out)) == ["nb_a 1", "nb_c 1"]
    assert all((out / ".stamps" / f"{r}.json").is_file() for r in "ac")
    copied = list((out / "logs" / "a").glob("job_*.stdout"))
    assert copied, "the job's own log is copied into the run's log folder"
    again = study(runs, out, notebooks, executor=executor)
    assert statuses(again) == {"a": "cached", "c": "cached"}, reasons(again)


def test_local_pool_runs_a_level_in_parallel_processes(setup):
    notebooks, out = setup
    runs = make_runs(out)[::2]
    result = study(runs, out, notebooks, executor=X.LocalExecutor(jobs=2))
    assert statuses(result) == {"a": "ran", "c": "ran"}, result.format() + "\n" + logs_of(out)
    assert all((out / ".stamps" / f"{r}.json").is_file() for r in "ac")


def test_sbatch_script_has_the_profile_resources_and_an_array(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    capture = tmp_path / "captured.sh"
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\ncp "$1" {capture}\necho "Submitted batch job 4242"\n')
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    for tool in ("sbatch", "srun"):
        (bin_dir / tool).chmod((bin_dir / tool).stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "out"
    specs = [X.RunSpec(Run("02", "nb", f"r{i}", {"x": i}), str(out), str(tmp_path), "key", {}, ["new"])
             for i in range(2)]
    submitted = X.SubmititExecutor(out, SLURM, cluster="slurm").submit(specs)
    assert [job.job_id for _, job in submitted] == ["4242_0", "4242_1"]
    script = capture.read_text()
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=1", "#SBATCH --time=30", "#SBATCH --mem=8GB",
                 "#SBATCH --cpus-per-task=4", "#SBATCH --array=0-1%2", "#SBATCH --job-name=lus-02"):
        assert line in script, f"{line} missing from\n{script}"
    assert X.slurm_parameters(SLURM, "06", 1).get("gpus_per_node") is None  # CPU-only stage: no GPU asked


def test_summary_names_every_outcome(tmp_path):
    result = S.StudyResult(tmp_path, [
        X.RunResult("a", "02", "ran", 1.5, "/o/notebooks/a.ipynb"),
        X.RunResult("b", "02", "cached", output="/o/notebooks/b.ipynb"),
        X.RunResult("c", "03", "failed", message="nb_c (run c) failed in cell [3]"),
        X.RunResult("d", "06", "blocked", message="not run: it comes after c, which did not finish")], 3.0)
    text = result.format()
    assert "1 ran, 1 cached, 1 failed, 1 blocked" in text
    assert "FAILED  c" in text and "failed in cell [3]" in text and "BLOCKED d" in text
    assert "logs:" in text and "<run_id>.failed.ipynb" in text and not result.ok


def test_kernels_need_no_free_tcp_port(setup, monkeypatch):
    """The flake's cause, forced: every TCP port the kernel manager would pick is already taken. Over IPC
    sockets in a private folder no port is picked, so the run still finishes (over TCP the kernel would die
    with "Address already in use" and nbclient report "Kernel died before replying to kernel_info")."""
    import socket

    from jupyter_client.connect import LocalPortCache

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    monkeypatch.setattr(LocalPortCache, "find_available_port", lambda self, ip: taken.getsockname()[1])
    notebooks, out = setup
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('out_dir: str = ""', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("import pathlib\nfrom ipykernel.kernelapp import IPKernelApp\n"
                                  "(pathlib.Path(out_dir) / 'transport.txt').write_text(IPKernelApp.instance().transport)")])
    nbformat.write(nb, notebooks / "nb_transport.ipynb")
    try:
        result = study([Run("02", "nb_transport", "t", {"out_dir": str(out)})], out, notebooks)
    finally:
        taken.close()
    assert statuses(result) == {"t": "ran"}, result.format() + "\n" + logs_of(out)
    assert (out / "transport.txt").read_text() == "ipc"


def report_notebook(folder: Path) -> None:
    """Like notebook 06: reads the runner's summary while it runs and writes down which runs failed."""
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('out_dir: str = ""  # output folder', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("import json, pathlib\nout = pathlib.Path(out_dir)\n"
                                  "summary = json.loads((out / 'logs' / 'runner_summary.json').read_text())\n"
                                  "failed = [r['run_id'] for r in summary['runs'] if r['status'] in ('failed', 'blocked')]\n"
                                  "(out / 'seen.txt').write_text(' '.join(failed))")])
    nbformat.write(nb, folder / "nb_report.ipynb")


def test_comparison_runs_on_what_finished_and_names_what_did_not(setup):
    notebooks, out = setup
    report_notebook(notebooks)
    marker = out / "crash-now"
    marker.touch()
    runs = make_runs(out, fail_if=str(marker)) + [
        Run("06", "nb_report", "z", {"out_dir": str(out)}, after=["a", "b", "c"], runs_after_failures=True)]
    result = study(runs, out, notebooks)
    assert statuses(result) == {"a": "failed", "b": "blocked", "c": "ran", "z": "ran"}, result.format()
    assert (out / "seen.txt").read_text() == "a b"  # the summary it read named what did not finish
    z = next(r for r in result.results if r.run_id == "z")
    assert z.message == "ran without a, b (did not finish)" and "runs on what finished: a, b did not" in z.reasons
    assert "ran without a, b" in result.format() and not result.ok
    assert statuses(study(runs, out, notebooks)) == {"a": "failed", "b": "blocked", "c": "cached", "z": "cached"}
    marker.unlink()
    again = study(runs, out, notebooks)
    assert statuses(again) == {"a": "ran", "b": "ran", "c": "cached", "z": "ran"} and again.ok
    assert (out / "seen.txt").read_text() == ""
    assert "dependency changed: a, b" in reasons(again)["z"]


def test_the_planner_lets_only_the_comparison_run_after_failures():
    from lus_utils.run.planning import plan_compare

    profile = load_profile("smoke")
    compare = plan_compare(profile, {"data_root": "d", "out_dir": "o"}, [Run("02", "n", "x", {})])
    assert compare[0].runs_after_failures and compare[0].after == ["x"]
    assert not Run("02", "n", "y", {}).runs_after_failures


def test_report_lists_the_runs_that_did_not_finish(tmp_path):
    from lus_utils.compare.reporting import unfinished_section

    assert unfinished_section(tmp_path) == ""  # no summary yet: nothing to say
    S.StudyResult(tmp_path, [X.RunResult("a", "02", "failed", message="nb_a (run a) failed in cell [3]"),
                             X.RunResult("b", "03", "blocked", message="not run: it comes after a"),
                             X.RunResult("c", "02", "ran"), X.RunResult("z", "06", "pending")], 1.0).write()
    section = unfinished_section(tmp_path)
    assert "<code>a</code>: failed. nb_a (run a) failed in cell [3]" in section and "<code>b</code>: blocked" in section
    assert "<code>c</code>" not in section and "<code>z</code>" not in section


def test_a_second_runner_on_the_same_output_folder_is_refused(tmp_path, capsys, monkeypatch):
    with S.study_lock(tmp_path):
        with pytest.raises(RuntimeError, match="another runner is already working in .*use another --out"):
            with S.study_lock(tmp_path):
                pass
        monkeypatch.setattr(cli, "load_profile", fake_profile)
        monkeypatch.setattr(cli, "resolve_data_root", lambda root, fetch_if_missing: tmp_path)
        monkeypatch.setattr(cli, "plan", lambda profile, out_dir, data_root, only: [])
        assert cli.main(["--profile", "fake", "--out", str(tmp_path)]) == 2
        assert "another runner is already working" in capsys.readouterr().err
    with S.study_lock(tmp_path):  # released when the first runner ends
        pass
