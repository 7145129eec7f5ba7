"""The study runner: plans a profile into notebook runs, skips what is already done, executes the rest.

`python run_all.py --profile smoke|quick|full|path.yaml [--data-root P] [--out DIR] [--only 01 02 ...]
[--dry-run] [--force] [--executor local|slurm] [--jobs N]`. Every parameter of every run is validated
before the first notebook starts (planning.plan).

Caching. Each run has a cache key, the hash of
- its parameters (without data_root/out_dir: what they point to is fingerprinted instead),
- its notebook's source without outputs, execution counts or metadata (only cell types, sources, tags),
- the lus_utils code it runs: the modules its notebook imports and, transitively, theirs (all modules
  when that cannot be told; never this runner, which decides what runs, not what a run computes), so
  editing comparison.py re-runs notebook 06 but no training,
- fingerprints of the inputs it reads: 01 the data root's files (path, size, mtime); 02-05 frames.csv,
  the synthetic set it trains on (manifest.csv + provenance.json) and the classifier folder its audit
  uses; 06 every runs/*/metrics.json and synthetic/*/audit.json plus the stamps of all other runs (its
  report renders their notebooks), so 06 re-runs whenever anything it shows has changed,
- the keys of the runs it comes after, except notebook 01's: runs after 01 are keyed on the frames.csv it
  wrote, so changing a parameter that leaves frames.csv as it was re-runs notebook 01 alone.
A run that succeeded leaves `<out>/.stamps/<run_id>.json` (written atomically, after the executed
notebook was renamed from a temporary name into `<out>/notebooks/<run_id>.ipynb`). A later invocation
skips a run whose stamp holds the key it would have now, and otherwise says why it runs (new, params
changed, notebook changed, code changed, input changed, dependency changed, failed or interrupted last
time). A run's stamp is deleted before it starts, so a crash or Ctrl-C never leaves a half-finished run
that looks done; a failed run's partly executed notebook is kept as `<run_id>.failed.ipynb`.

Execution goes level by level (a level: runs whose dependencies are all in earlier levels). The same
function (`execute_run`) runs each notebook in-process (`--executor local`), in a small process pool
(`--jobs N`) or as one Slurm job array per stage and level through submitit (`--executor slurm`,
resources from the profile's `slurm` section or flags; the output folder must be on a filesystem the
nodes share). Logs of every run: `<out>/logs/<run_id>/`. One runner at a time per output folder (a lock);
a dry run takes no lock.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import socket
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from lus_utils import params as P
from lus_utils.data.dataset import DataRootError, resolve_data_root
from lus_utils.paths import NOTEBOOKS_DIR, OutLayout, default_out_dir
from lus_utils.run.planning import Run, plan
from lus_utils.run import preflight
from lus_utils.provenance import PACKAGE_DIR, read_json, sha256_file, stable_hash, write_json_atomic, write_text_atomic

PATH_PARAMS = ("data_root", "out_dir")
# Stages whose dependents are keyed on what they wrote (01: frames.csv) rather than on their own key, so a
# change that leaves frames.csv as it was (e.g. the explore section) re-runs notebook 01 only.
KEYED_BY_OUTPUTS = ("01",)
NOT_CODE = ("run",)  # the subpackage that decides what runs, not what a run computes
STAMPS = ".stamps"
SUMMARY_FILE = "runner_summary.json"


# --- where a run's files go ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunPaths:
    out: Path
    run_id: str

    @property
    def stamp(self) -> Path:
        return self.out / STAMPS / f"{self.run_id}.json"

    @property
    def executed(self) -> Path:
        return OutLayout(self.out).notebooks / f"{self.run_id}.ipynb"

    @property
    def failed(self) -> Path:
        return OutLayout(self.out).notebooks / f"{self.run_id}.failed.ipynb"

    @property
    def running(self) -> Path:
        return OutLayout(self.out).notebooks / f".{self.run_id}.running.ipynb"

    @property
    def logs(self) -> Path:
        return self.out / "logs" / self.run_id


def read_stamp(out: Path, run_id: str) -> dict[str, Any] | None:
    path = RunPaths(out, run_id).stamp
    try:
        stamp = read_json(path)
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) and "key" in stamp else None


# --- cache keys -------------------------------------------------------------------------------------------
def notebook_hash(path: Path) -> str:
    """Hash of what a notebook does: cell types, sources and tags, without outputs or metadata."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    cells = [(c.get("cell_type"), "".join(c.get("source", "")), sorted(c.get("metadata", {}).get("tags", [])))
             for c in nb.get("cells", [])]
    return stable_hash(cells, 32)


def _module_file(dotted: str) -> Path | None:
    """The source file of a lus_utils module (`lus_utils.data.splits` -> lus_utils/data/splits.py)."""
    parts = dotted.split(".")[1:]
    for candidate in (PACKAGE_DIR.joinpath(*parts).with_suffix(".py"), PACKAGE_DIR.joinpath(*parts, "__init__.py")):
        if parts and candidate.is_file():
            return candidate
    return None


def _lus_imports(tree: ast.AST, package: str | None) -> set[str]:
    """Dotted lus_utils modules an AST imports (`from lus_utils.x import y`, `import lus_utils.x`, and relative
    imports when `package`, the importing module's package, is given)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                if package is None:
                    continue
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            if module.split(".")[0] != PACKAGE_DIR.name:
                continue
            for alias in node.names:  # `from lus_utils.data import splits` names a module; `import x` a symbol
                sub = f"{module}.{alias.name}"
                found.add(sub if _module_file(sub) else module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == PACKAGE_DIR.name}
    return found


def notebook_modules(path: Path) -> set[str]:
    """The lus_utils modules (dotted) a notebook uses, with everything they import in turn (lazy imports too)."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    todo: set[str] = set()
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            try:
                todo |= _lus_imports(ast.parse("".join(cell.get("source", ""))), package=None)
            except SyntaxError:
                return set()  # cell magics and the like: fall back to the whole package
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        source = _module_file(name)
        if name in seen or source is None:
            continue
        seen.add(name)
        package = name if source.name == "__init__.py" else name.rsplit(".", 1)[0]
        todo |= _lus_imports(ast.parse(source.read_text(encoding="utf-8")), package=package) - seen
    return seen


def code_hashes(notebook: Path) -> dict[str, str]:
    """Hash of each lus_utils module the notebook runs (all modules if that cannot be told; never the runner)."""
    modules = notebook_modules(notebook)
    paths = ([_module_file(m) for m in sorted(modules)] if modules else sorted(PACKAGE_DIR.rglob("*.py")))
    paths = [PACKAGE_DIR / "__init__.py", *(p for p in paths if p != PACKAGE_DIR / "__init__.py")]
    return {p.relative_to(PACKAGE_DIR).as_posix(): sha256_file(p)[:16] for p in paths
            if p.is_file() and p.relative_to(PACKAGE_DIR).parts[0] not in NOT_CODE}


class Fingerprints:
    """File fingerprints for one invocation, memoized by (path, size, mtime) so each file is read once."""

    def __init__(self) -> None:
        self._files: dict[tuple, str] = {}
        self._code: dict[str, dict[str, str]] = {}

    def code(self, notebook: Path) -> dict[str, str]:
        """code_hashes of a notebook, computed once per invocation (parsing the package takes a moment)."""
        if str(notebook) not in self._code:
            self._code[str(notebook)] = code_hashes(notebook)
        return self._code[str(notebook)]

    def file(self, path: Path) -> str:
        path = Path(path)
        try:
            st = path.stat()
        except OSError:
            return "missing"
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in self._files:
            self._files[key] = sha256_file(path)[:32]
        return self._files[key]

    def files(self, paths: list[Path], root: Path) -> str:
        return stable_hash({Path(p).relative_to(root).as_posix(): self.file(p) for p in paths}, 32)

    @staticmethod
    def tree(root: Path) -> str:
        """A folder's file listing (relative path, size, mtime): cheap, and changes when any file does."""
        root = Path(root)
        if not root.is_dir():
            return "missing"
        entries = []
        for dirpath, _, names in os.walk(root):
            for name in names:
                path = Path(dirpath) / name
                st = path.stat()
                entries.append((path.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns))
        return stable_hash(sorted(entries), 32)


def resolve_synthetic(value: str, layout: OutLayout) -> Path:
    path = Path(value)
    return path if path.is_absolute() or len(path.parts) > 1 else layout.synthetic / value


def input_fingerprints(run: Run, layout: OutLayout, prints: Fingerprints) -> dict[str, str]:
    """What a run reads, fingerprinted (see the module doc for each stage)."""
    p = run.params
    if run.stage == "01":
        return {"data_root": prints.tree(Path(p["data_root"]))} if p.get("data_root") else {}
    if run.stage == "06":
        runs = sorted(layout.runs.glob("*/metrics.json"))
        audits = sorted(layout.synthetic.glob("*/audit.json"))
        stamps = {s.stem: (read_stamp(layout.root, s.stem) or {}).get("key", "unreadable")
                  for s in sorted((layout.root / STAMPS).glob("*.json")) if s.stem != run.run_id}
        return {"metrics.json": prints.files(runs, layout.root), "audit.json": prints.files(audits, layout.root),
                "other runs": stable_hash(stamps, 32)}
    inputs = {"frames.csv": prints.file(Path(p["frames_csv"]) if p.get("frames_csv") else layout.frames_csv)}
    if p.get("synthetic_set"):
        folder = resolve_synthetic(str(p["synthetic_set"]), layout)
        inputs[f"synthetic set {folder.name}"] = stable_hash(
            [prints.file(folder / "manifest.csv"), prints.file(folder / "provenance.json")], 32)
    if p.get("feature_run_dir"):
        folder = Path(p["feature_run_dir"])
        files = sorted(f for f in folder.glob("*") if f.is_file()) if folder.is_dir() else []
        inputs["feature_run_dir"] = prints.files(files, folder) if files else "missing"
    return inputs


def cache_components(run: Run, layout: OutLayout, notebooks_dir: Path, after: dict[str, str],
                     prints: Fingerprints) -> dict[str, Any]:
    return {"params": {k: v for k, v in run.params.items() if k not in PATH_PARAMS},
            "notebook": notebook_hash(notebooks_dir / f"{run.notebook}.ipynb"),
            "code": prints.code(notebooks_dir / f"{run.notebook}.ipynb"),
            "inputs": input_fingerprints(run, layout, prints),
            "after": dict(sorted(after.items()))}


def cache_key(components: dict[str, Any]) -> str:
    return stable_hash(components, 32)


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def why_run(components: dict[str, Any], stamp: dict[str, Any] | None, paths: RunPaths) -> list[str]:
    """Why a run must run ([] when its stamp says it is done with exactly these components)."""
    if stamp is None:
        if paths.running.exists():
            return ["interrupted last time (no stamp)"]
        if paths.failed.exists():
            return [f"failed last time (see {paths.failed.name})"]
        return ["new"]
    old = stamp.get("components", {})
    reasons = []
    new_params, old_params = components["params"], old.get("params", {})
    changed = sorted(k for k in set(new_params) | set(old_params) if new_params.get(k) != old_params.get(k))
    if changed:
        reasons.append("params changed: " + ", ".join(
            f"{k} {_short(old_params.get(k))} -> {_short(new_params.get(k))}" for k in changed[:4])
            + (f" (+{len(changed) - 4} more)" if len(changed) > 4 else ""))
    if components["notebook"] != old.get("notebook"):
        reasons.append("notebook changed")
    old_code = old.get("code") if isinstance(old.get("code"), dict) else {}
    code = sorted(k for k in set(components["code"]) | set(old_code) if components["code"].get(k) != old_code.get(k))
    if code:
        reasons.append("code changed: " + ", ".join(code[:5]) + (f" (+{len(code) - 5} more)" if len(code) > 5 else ""))
    inputs = [k for k in components["inputs"] if components["inputs"][k] != old.get("inputs", {}).get(k)]
    if inputs:
        reasons.append("input changed: " + ", ".join(inputs))
    deps = [k for k in components["after"] if components["after"][k] != old.get("after", {}).get(k)]
    if deps:
        reasons.append("dependency changed: " + ", ".join(deps))
    if not reasons and stamp.get("key") != cache_key(components):
        reasons.append("cache key changed")
    if not reasons and not paths.executed.exists():
        reasons.append(f"executed notebook {paths.executed.name} missing")
    return reasons


# --- executing one run (the same function locally, in a pool and on Slurm) -----------------------------------
@dataclass
class RunSpec:
    """Everything one execution needs; pickled to pool workers and Slurm jobs."""

    run: Run
    out_dir: str
    notebooks_dir: str
    key: str
    components: dict[str, Any]
    reasons: list[str]


@dataclass
class RunResult:
    run_id: str
    stage: str
    status: str  # ran, cached, failed, blocked, interrupted
    seconds: float = 0.0
    output: str = ""  # executed notebook (or the partly executed one, when failed)
    logs: str = ""
    message: str = ""
    reasons: list[str] = field(default_factory=list)
    host: str = ""


def _first_line(source: str) -> str:
    lines = [line for line in source.splitlines() if line.strip()]
    return (lines[0][:70] + ("..." if len(lines[0]) > 70 or len(lines) > 1 else "")) if lines else ""


def execute_run(spec: RunSpec) -> RunResult:
    """Run one notebook with papermill into a temporary name; on success rename it and write the stamp.

    A failure keeps the partly executed notebook as <run_id>.failed.ipynb and returns a result whose
    message names the notebook, the failing cell and that file; an interruption does the same and re-raises.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    run = spec.run
    paths = RunPaths(Path(spec.out_dir), run.run_id)
    paths.stamp.unlink(missing_ok=True)
    paths.logs.mkdir(parents=True, exist_ok=True)
    paths.running.parent.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname()
    source = Path(spec.notebooks_dir) / f"{run.notebook}.ipynb"
    started = time.perf_counter()
    write_json_atomic(paths.logs / "attempt.json", {
        "run_id": run.run_id, "notebook": str(source), "key": spec.key, "reasons": spec.reasons, "host": host,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "params": run.params})

    def fail(message: str) -> RunResult:
        if paths.running.exists():
            os.replace(paths.running, paths.failed)
        write_text_atomic(paths.logs / "error.txt", message + "\n")
        return RunResult(run.run_id, run.stage, "failed", time.perf_counter() - started, str(paths.failed),
                         str(paths.logs), message, spec.reasons, host)

    try:
        with open(paths.logs / "stdout.log", "w", encoding="utf-8") as out, \
                open(paths.logs / "stderr.log", "w", encoding="utf-8") as err:
            papermill.execute_notebook(str(source), str(paths.running), parameters=run.params,
                                       kernel_name="python3", language="python", cwd=spec.notebooks_dir, progress_bar=False,
                                       stdout_file=out, stderr_file=err)
    except PapermillExecutionError as err:
        cell = _first_line(err.source)
        return fail(f"{run.notebook} (run {run.run_id}) failed in cell [{err.exec_count}] (index {err.cell_index}"
                    f"{': ' + cell if cell else ''}): {err.ename}: {err.evalue}\n"
                    f"    partly executed notebook: {paths.failed}\n    logs: {paths.logs}")
    except (KeyboardInterrupt, SystemExit):
        fail(f"{run.notebook} (run {run.run_id}) interrupted; partly executed notebook: {paths.failed}")
        raise
    except Exception as err:  # kernel died, could not start, unreadable notebook ...
        return fail(f"{run.notebook} (run {run.run_id}) did not finish: {type(err).__name__}: {err}\n"
                    f"    partly executed notebook: {paths.failed}\n    logs: {paths.logs}")
    os.replace(paths.running, paths.executed)
    paths.failed.unlink(missing_ok=True)
    (paths.logs / "error.txt").unlink(missing_ok=True)
    seconds = time.perf_counter() - started
    write_json_atomic(paths.stamp, {
        "run_id": run.run_id, "stage": run.stage, "notebook": run.notebook, "key": spec.key,
        "components": spec.components, "output": str(paths.executed), "seconds": round(seconds, 3),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"), "host": host})
    return RunResult(run.run_id, run.stage, "ran", seconds, str(paths.executed), str(paths.logs), "",
                     spec.reasons, host)


# --- executors ----------------------------------------------------------------------------------------------
OnDone = Callable[[RunResult], None]


class LocalExecutor:
    """Runs in this process (jobs=1) or in a pool of `jobs` processes."""

    def __init__(self, jobs: int = 1) -> None:
        self.jobs = max(1, jobs)

    def run(self, specs: list[RunSpec], on_done: OnDone) -> None:
        if self.jobs == 1:
            for spec in specs:
                on_done(execute_run(spec))
            return
        with ProcessPoolExecutor(self.jobs) as pool:
            pending = {pool.submit(execute_run, spec): spec for spec in specs}
            try:
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        spec = pending.pop(future)
                        on_done(_result_or_failure(spec, future.result))
            except KeyboardInterrupt:
                for future in pending:
                    future.cancel()
                raise


def _result_or_failure(spec: RunSpec, get: Callable[[], RunResult], log: str = "") -> RunResult:
    """A job's result, or a failed result when the job itself died (killed, out of memory, time limit)."""
    try:
        return get()
    except Exception as err:  # noqa: BLE001 - any infrastructure failure is reported, never hidden
        paths = RunPaths(Path(spec.out_dir), spec.run.run_id)
        message = (f"{spec.run.notebook} (run {spec.run.run_id}) job failed: {type(err).__name__}: "
                   f"{str(err).strip()[-800:]}\n    logs: {paths.logs}{' and ' + log if log else ''}")
        paths.logs.mkdir(parents=True, exist_ok=True)
        write_text_atomic(paths.logs / "error.txt", message + "\n")
        return RunResult(spec.run.run_id, spec.run.stage, "failed", 0.0, str(paths.failed), str(paths.logs),
                         message, spec.reasons)


def slurm_parameters(slurm: P.SlurmParams, stage: str, n_runs: int) -> dict[str, Any]:
    """submitit AutoExecutor parameters for one stage's job array (CPU-only stages ask for no GPU)."""
    kwargs: dict[str, Any] = {
        "name": f"lus-{stage}", "timeout_min": slurm.timeout_min, "mem_gb": slurm.mem_gb,
        "cpus_per_task": slurm.cpus_per_task, "slurm_array_parallelism": min(slurm.array_parallelism, max(1, n_runs)),
    }
    gpus = 0 if stage in slurm.cpu_stages else slurm.gpus_per_node
    if gpus:
        kwargs["gpus_per_node"] = gpus
    if slurm.partition:
        kwargs["slurm_partition"] = slurm.partition
    if slurm.account:
        kwargs["slurm_account"] = slurm.account
    return kwargs


def make_executor(folder: Path, cluster: str, slurm: P.SlurmParams, stage: str, n_runs: int) -> Any:
    """A submitit AutoExecutor for one stage: cluster 'slurm', or 'local'/'debug' to run without one."""
    import submitit

    executor = submitit.AutoExecutor(folder=Path(folder) / "%j", cluster=cluster)
    executor.update_parameters(**slurm_parameters(slurm, stage, n_runs))
    return executor


class SubmititExecutor:
    """One job array per stage and level through submitit; logs copied into each run's log folder."""

    def __init__(self, out_dir: Path, slurm: P.SlurmParams, cluster: str = "slurm", poll_s: float = 10.0) -> None:
        self.folder = Path(out_dir) / "logs" / "submitit"
        self.slurm = slurm
        self.cluster = cluster
        self.poll_s = poll_s

    def submit(self, specs: list[RunSpec]) -> list[tuple[RunSpec, Any]]:
        by_stage: dict[str, list[RunSpec]] = {}
        for spec in specs:
            by_stage.setdefault(spec.run.stage, []).append(spec)
        submitted = []
        for stage, group in by_stage.items():
            executor = make_executor(self.folder, self.cluster, self.slurm, stage, len(group))
            jobs = executor.map_array(execute_run, group)
            submitted += list(zip(group, jobs))
        return submitted

    def run(self, specs: list[RunSpec], on_done: OnDone) -> None:
        import submitit

        submitted = self.submit(specs)
        by_job = {id(job): spec for spec, job in submitted}
        try:
            for job in submitit.helpers.as_completed([job for _, job in submitted], poll_frequency=self.poll_s):
                spec = by_job[id(job)]
                log = self._copy_logs(job, spec)
                on_done(_result_or_failure(spec, job.result, log))
        except KeyboardInterrupt:
            for _, job in submitted:
                if not job.done():
                    job.cancel(check=False)
            raise

    @staticmethod
    def _copy_logs(job: Any, spec: RunSpec) -> str:
        target = RunPaths(Path(spec.out_dir), spec.run.run_id).logs
        target.mkdir(parents=True, exist_ok=True)
        copied = []
        for name, path in (("stdout", job.paths.stdout), ("stderr", job.paths.stderr)):
            if Path(path).is_file():
                dest = target / f"job_{job.job_id}.{name}"
                shutil.copyfile(path, dest)
                copied.append(str(dest))
        return ", ".join(copied)


# --- a whole study ------------------------------------------------------------------------------------------
def levels(runs: list[Run]) -> list[list[Run]]:
    """Runs grouped so that each run's planned dependencies sit in earlier groups (plan order kept)."""
    planned = {r.run_id for r in runs}
    depth: dict[str, int] = {}
    remaining = list(runs)
    while remaining:
        progressed = False
        for run in list(remaining):
            deps = [d for d in run.after if d in planned]
            if all(d in depth for d in deps):
                depth[run.run_id] = 1 + max((depth[d] for d in deps), default=-1)
                remaining.remove(run)
                progressed = True
        if not progressed:
            raise P.ParamError(f"runs {[r.run_id for r in remaining]} depend on each other in a cycle")
    grouped: list[list[Run]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for run in runs:
        grouped[depth[run.run_id]].append(run)
    return grouped


def _width(results: list[RunResult]) -> int:
    return min(72, max((len(r.run_id) for r in results), default=10))


@dataclass
class StudyResult:
    out_dir: Path
    results: list[RunResult]
    seconds: float
    interrupted: bool = False

    def of(self, status: str) -> list[RunResult]:
        return [r for r in self.results if r.status == status]

    @property
    def ok(self) -> bool:
        return not self.interrupted and not self.of("failed") and not self.of("blocked")

    def format(self) -> str:
        counts = ", ".join(f"{len(self.of(s))} {s}" for s in ("ran", "cached", "failed", "blocked", "interrupted"))
        lines = [f"Summary: {counts} (of {len(self.results)}) in {self.seconds:.1f} s"
                 + (" - INTERRUPTED" if self.interrupted else "")]
        width = _width(self.results)
        for r in self.results:
            if r.status == "ran":
                lines.append(f"  ran     {r.run_id:<{width}} {r.seconds:8.1f} s  {r.output}")
            elif r.status == "cached":
                lines.append(f"  cached  {r.run_id:<{width}}             {r.output}")
            else:
                lines.append(f"  {r.status.upper():<7} {r.run_id:<{width}} {r.message}")
        layout = OutLayout(self.out_dir)
        lines.append(f"Executed notebooks: {layout.notebooks}; logs: {self.out_dir / 'logs'}/<run_id>/; "
                     f"stamps: {self.out_dir / STAMPS}")
        if self.of("failed"):
            lines.append("Failed runs keep their partly executed notebook (<run_id>.failed.ipynb) and "
                         "logs/<run_id>/error.txt; fix and run again: finished runs stay cached.")
        return "\n".join(lines)

    def write(self, extra: dict[str, Any] | None = None) -> Path:
        path = self.out_dir / "logs" / SUMMARY_FILE
        write_json_atomic(path, {**(extra or {}), "seconds": round(self.seconds, 3), "interrupted": self.interrupted,
                                 "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                 "runs": [asdict(r) for r in self.results]})
        return path


@contextmanager
def study_lock(out_dir: Path) -> Iterator[None]:
    """One runner per output folder at a time (two would execute the same runs into the same files)."""
    import fcntl

    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / ".runner.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another runner is already working in {out_dir}; wait for it or use another --out") from None
        handle.write(str(os.getpid()))
        handle.flush()
        yield


def execute_study(runs: list[Run], out_dir: Path, executor: Any = None, *, notebooks_dir: Path | None = None,
                  force: bool = False, dry_run: bool = False, progress: bool = True,
                  echo: Callable[[str], None] | None = None) -> StudyResult:
    """Run what is not cached, level by level; with dry_run, only say what would run and why.

    `executor`: LocalExecutor (default) or SubmititExecutor; `notebooks_dir`: where <notebook>.ipynb live.
    """
    from tqdm.auto import tqdm

    out_dir, notebooks_dir = Path(out_dir).resolve(), Path(notebooks_dir or NOTEBOOKS_DIR)
    echo = echo or tqdm.write
    layout = OutLayout(out_dir)
    executor = executor or LocalExecutor()
    prints = Fingerprints()
    keys: dict[str, str] = {}  # run_id -> key of its finished or cached execution
    results: dict[str, RunResult] = {}
    will_run: set[str] = set()  # dry run: runs that would execute
    may_run: set[str] = set()  # dry run: runs whose inputs a running dependency may or may not change
    stages = {r.run_id: r.stage for r in runs}

    def stage_of(run_id: str) -> str:
        return stages.get(run_id) or (read_stamp(out_dir, run_id) or {}).get("stage", "")
    started = time.perf_counter()
    bar = None
    interrupted = False
    try:
        for level in levels(runs):
            todo: list[RunSpec] = []
            for run in level:
                paths = RunPaths(out_dir, run.run_id)
                bad = [d for d in run.after if results.get(d) and results[d].status in ("failed", "blocked")]
                if bad:
                    results[run.run_id] = RunResult(run.run_id, run.stage, "blocked",
                                                    message=f"not run: it comes after {', '.join(bad)}, which did not finish")
                    continue
                hard = [d for d in run.after if d in will_run and stage_of(d) not in KEYED_BY_OUTPUTS]
                soft = [d for d in run.after if d in may_run or (d in will_run and stage_of(d) in KEYED_BY_OUTPUTS)]
                if hard:
                    will_run.add(run.run_id)
                    results[run.run_id] = RunResult(run.run_id, run.stage, "would run",
                                                    reasons=[f"after {', '.join(hard)} (which runs)"])
                    continue
                after = {}
                for dep in run.after:
                    if stage_of(dep) in KEYED_BY_OUTPUTS:
                        continue
                    after[dep] = keys[dep] if dep in keys else (read_stamp(out_dir, dep) or {}).get("key", "missing")
                components = cache_components(run, layout, notebooks_dir, after, prints)
                key = cache_key(components)
                reasons = why_run(components, read_stamp(out_dir, run.run_id), paths)
                missing = [d for d, k in after.items() if k == "missing"]
                if missing:
                    reasons.append(f"warning: {', '.join(missing)} never ran in {out_dir}")
                if force and not reasons:
                    reasons = ["forced (--force)"]
                if soft and not reasons:
                    may_run.add(run.run_id)
                    results[run.run_id] = RunResult(run.run_id, run.stage, "may run", reasons=[
                        f"after {', '.join(soft)} (which runs): runs again only if what it reads changes"])
                    continue
                if not reasons:
                    keys[run.run_id] = key
                    results[run.run_id] = RunResult(run.run_id, run.stage, "cached", output=str(paths.executed))
                    continue
                todo.append(RunSpec(run, str(out_dir), str(notebooks_dir), key, components, reasons))
            if dry_run:
                for spec in todo:
                    will_run.add(spec.run.run_id)
                    results[spec.run.run_id] = RunResult(spec.run.run_id, spec.run.stage, "would run",
                                                         reasons=spec.reasons)
                continue
            if not todo:
                continue
            if bar is None and progress:
                bar = tqdm(total=0, unit="run", desc="study", file=sys.stderr, dynamic_ncols=True)
            if bar is not None:
                bar.total += len(todo)
                bar.refresh()
            for spec in todo:
                echo(f"run     {spec.run.run_id}: {'; '.join(spec.reasons)}")
            by_id = {spec.run.run_id: spec for spec in todo}

            def on_done(result: RunResult) -> None:
                results[result.run_id] = result
                if result.status == "ran":
                    keys[result.run_id] = by_id[result.run_id].key
                    echo(f"done    {result.run_id} in {result.seconds:.1f} s")
                else:
                    echo(f"FAILED  {result.message}")
                if bar is not None:
                    bar.update(1)

            executor.run(todo, on_done)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if bar is not None:
            bar.close()
    ordered = []
    for run in runs:
        result = results.get(run.run_id) or RunResult(run.run_id, run.stage, "interrupted" if interrupted else "blocked",
                                                      message="not started")
        ordered.append(result)
    return StudyResult(out_dir, ordered, time.perf_counter() - started, interrupted)


def describe_dry_run(study: StudyResult) -> str:
    lines = []
    width = _width(study.results)
    for r in study.results:
        lines.append(f"  {r.status:<9} {r.run_id:<{width}} {'; '.join(r.reasons)}")
    lines.append(f"{len(study.of('would run'))} of {len(study.results)} run(s) would run, "
                 f"{len(study.of('may run'))} may run, {len(study.of('cached'))} cached")
    return "\n".join(lines)


def refresh_report(study: StudyResult, runs: list[Run]) -> str:
    """After notebook 06 ran: rebuild report.html so it also links 06's own executed notebook."""
    ran = {r.run_id for r in study.of("ran")}
    compare_runs = [r for r in runs if r.stage == "06" and r.run_id in ran and r.params.get("build_report", True)]
    if not compare_runs:
        return ""
    from lus_utils.compare.reporting import build_report

    return str(build_report(study.out_dir))


# --- command line -------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="run_all.py", description="Run the study's notebooks with papermill, "
                                     "skipping runs whose parameters, code and inputs are unchanged.")
    parser.add_argument("--profile", default="quick", help="smoke, quick, full, or a path to a profile .yaml")
    parser.add_argument("--data-root", default=None, help="the dataset's data/ folder (else $LUS_DATA_ROOT, "
                                                          "else data/covid19_ultrasound/data, fetched if absent)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default outputs/<profile>)")
    parser.add_argument("--only", nargs="+", default=None, metavar="STAGE", help="run only these stages, e.g. 01 02")
    parser.add_argument("--dry-run", action="store_true", help="say what would run and why, run nothing")
    parser.add_argument("--force", action="store_true", help="run every planned run, cached or not")
    parser.add_argument("--executor", choices=("local", "slurm", "submitit-local"), default="local",
                        help="local: on this machine; slurm: one job array per stage and level (submitit); "
                             "submitit-local: the Slurm code path run by submitit on this machine (a check)")
    parser.add_argument("--jobs", type=int, default=1, help="local executor: runs at once (default 1)")
    parser.add_argument("--partition", default=None, help="Slurm partition (default: the profile's slurm.partition)")
    parser.add_argument("--gpus", type=int, default=None, help="GPUs per Slurm job (default: slurm.gpus_per_node)")
    parser.add_argument("--time", type=int, default=None, metavar="MIN", help="Slurm time limit per job in minutes")
    parser.add_argument("--mem", type=int, default=None, metavar="GB", help="memory per Slurm job in GB")
    args = parser.parse_args(argv)

    try:
        profile = P.load_profile(args.profile)
        data_root = resolve_data_root(args.data_root, fetch_if_missing=not args.dry_run)
        out_dir = (args.out or default_out_dir(profile.name)).resolve()
        runs = plan(profile, out_dir, data_root.resolve(), args.only)
        overrides = {k: v for k, v in (("partition", args.partition), ("gpus_per_node", args.gpus),
                                       ("timeout_min", args.time), ("mem_gb", args.mem)) if v is not None}
        slurm = P.build(P.SlurmParams, {**P.as_dict(profile.slurm), **overrides}, "--partition/--gpus/--time/--mem")
    except (P.ParamError, DataRootError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"profile {profile.name} ({profile.path}): {profile.description}")
    print(f"data root {data_root.resolve()}; outputs {out_dir}; {len(runs)} run(s); executor {args.executor}")
    missing = preflight.check(profile, args.only)
    if missing:
        print(f"{'warning' if args.dry_run else 'error'}: {preflight.message(profile, missing)}", file=sys.stderr)
        if not args.dry_run:
            return 2
    if args.dry_run:
        print(describe_dry_run(execute_study(runs, out_dir, force=args.force, dry_run=True, progress=False)))
        return 0
    executor = {"slurm": lambda: SubmititExecutor(out_dir, slurm),
                "submitit-local": lambda: SubmititExecutor(out_dir, slurm, cluster="local", poll_s=1.0),
                "local": lambda: LocalExecutor(args.jobs)}[args.executor]()
    try:
        with study_lock(out_dir):
            study = execute_study(runs, out_dir, executor, force=args.force)
            study.write({"profile": profile.name, "executor": args.executor})
    except (RuntimeError, P.ParamError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print()
    print(study.format())
    try:
        report = refresh_report(study, runs)
    except Exception as err:  # noqa: BLE001 - the study's results stand; only the page is missing
        print(f"warning: report.html not rebuilt ({type(err).__name__}: {err}); notebook 06 built one", file=sys.stderr)
    else:
        if report:
            print(f"Report: {report}")
    if study.interrupted:
        print("Interrupted: run the same command again to continue (finished runs stay cached).", file=sys.stderr)
        return 130
    return 0 if study.ok else 1
