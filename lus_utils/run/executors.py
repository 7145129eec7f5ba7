"""Executing runs: one function (`execute_run`) runs a notebook with papermill, the same in this process
(`LocalExecutor`), in a small process pool (`LocalExecutor(jobs)`) or as one Slurm job array per stage and
level through submitit (`SubmititExecutor`; the output folder must be on a filesystem the nodes share).

A run's stamp is deleted before it starts, so a crash or Ctrl-C never leaves a half-finished run that looks
done, and so are its previous outputs (`cache_keys.run_outputs`) and executed notebook: a run that fails or is
interrupted leaves no older result for the comparison or the report to show as if it were current. The
executed notebook is renamed from a temporary name into `<out>/notebooks/<run_id>.ipynb` before the stamp is
written, with a digest of the outputs the run wrote; a failed run's partly executed notebook is kept as
`<run_id>.failed.ipynb`. Logs of every run: `<out>/logs/<run_id>/`.

Kernels talk to papermill over IPC sockets in a folder of their own: with TCP, each kernel manager picks
"free" ports by binding port 0 and closing it, so two kernels started at once by separate processes (a pool,
a job array) can pick the same port, and the second kernel dies with "Address already in use".
"""
from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from traitlets.config import Config

from lus_utils.config.runtime import SlurmParams
from lus_utils.run.cache_keys import Fingerprints, RunPaths, output_digest, run_outputs
from lus_utils.run.planning import Run
from lus_utils.provenance import write_json_atomic, write_text_atomic


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


@contextmanager
def kernel_config() -> Iterator[Any]:
    """nbclient configuration for one kernel: IPC sockets in a fresh private folder (no port to race for).

    The folder lives in the system's temporary folder because a socket path must stay under ~100 characters.
    Where IPC sockets do not exist (Windows), the default TCP transport is kept."""
    if os.name != "posix":
        yield Config()
        return
    folder = tempfile.mkdtemp(prefix="lus-kernel-")
    try:
        yield Config({"KernelManager": {"transport": "ipc", "connection_file": os.path.join(folder, "kernel.json")}})
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def clear_outputs(out: Path, run: Run) -> None:
    """Remove what a run wrote last time (its stamp is already gone), so that nothing of it outlives a failure."""
    for rel in run_outputs(run):
        path = Path(out) / rel
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def execute_run(spec: RunSpec) -> RunResult:
    """Run one notebook with papermill into a temporary name; on success rename it and write the stamp.

    A failure keeps the partly executed notebook as <run_id>.failed.ipynb and returns a result whose
    message names the notebook, the failing cell and that file; an interruption does the same and re-raises.
    """
    # Lazy: papermill brings the Jupyter machinery (about 2 CPU-seconds); planning and dry runs do without it.
    import papermill  # lazy: a dry run or a SLURM submission needs no kernel machinery
    from papermill.exceptions import PapermillExecutionError

    run = spec.run
    paths = RunPaths(Path(spec.out_dir), run.run_id)
    paths.stamp.unlink(missing_ok=True)
    clear_outputs(Path(spec.out_dir), run)
    paths.executed.unlink(missing_ok=True)
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
                open(paths.logs / "stderr.log", "w", encoding="utf-8") as err, kernel_config() as config:
            papermill.execute_notebook(str(source), str(paths.running), parameters=run.params,
                                       kernel_name="python3", language="python", cwd=spec.notebooks_dir, progress_bar=False,
                                       stdout_file=out, stderr_file=err, config=config)
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
        "components": spec.components, "outputs": output_digest(Path(spec.out_dir), run, Fingerprints()),
        "output": paths.executed.relative_to(paths.out).as_posix(), "seconds": round(seconds, 3),
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


def slurm_parameters(slurm: SlurmParams, stage: str, n_runs: int) -> dict[str, Any]:
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


def make_executor(folder: Path, cluster: str, slurm: SlurmParams, stage: str, n_runs: int) -> Any:
    """A submitit AutoExecutor for one stage: cluster 'slurm', or 'local'/'debug' to run without one."""
    import submitit  # lazy: only the SLURM executor needs it

    executor = submitit.AutoExecutor(folder=Path(folder) / "%j", cluster=cluster)
    executor.update_parameters(**slurm_parameters(slurm, stage, n_runs))
    return executor


class SubmititExecutor:
    """One job array per stage and level through submitit; logs copied into each run's log folder."""

    def __init__(self, out_dir: Path, slurm: SlurmParams, cluster: str = "slurm", poll_s: float = 10.0) -> None:
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
        import submitit  # lazy: only the SLURM executor needs it

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
