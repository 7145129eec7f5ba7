"""The study loop: runs grouped in levels, each run cached or executed, a summary of what happened.

A level holds runs whose dependencies are all in earlier levels. A run after one that failed is blocked,
except a run that `runs_after_failures` (the comparison, notebook 06): it runs on what finished, and the
summary (`<out>/logs/runner_summary.json`) names what failed. Under `--only` the summary also lists the
profile's other runs as they stand (`left_out`: cached, or not run), so the comparison reads what is current.
One runner at a time per output folder (a lock); a dry run takes no lock.
"""
from __future__ import annotations

import sys
import time
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from tqdm.auto import tqdm

from lus_utils.config.schema import ParamError
from lus_utils.paths import NOTEBOOKS_DIR, OutLayout
from lus_utils.provenance import file_lock, write_json_atomic
from lus_utils.run.cache_keys import (KEYED_BY_OUTPUTS, STAMPS, Fingerprints, RunPaths, cache_components, cache_key,
                                      output_check, output_digest, read_stamp, why_run)
from lus_utils.run.executors import LocalExecutor, RunResult, RunSpec
from lus_utils.run.planning import Run

SUMMARY_FILE = "runner_summary.json"


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
            raise ParamError(f"runs {[r.run_id for r in remaining]} depend on each other in a cycle")
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
    outside: list[RunResult] = field(default_factory=list)  # runs `--only` left out, as they stand (`left_out`)

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
                lines.append(f"  ran     {r.run_id:<{width}} {r.seconds:8.1f} s  {r.output}"
                             + (f"  ({r.message})" if r.message else ""))
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
                                 "runs": [asdict(r) for r in self.results]
                                 + [{**asdict(r), "outside_only": True} for r in self.outside]})
        return path


@contextmanager
def study_lock(out_dir: Path) -> Iterator[None]:
    """One runner per output folder at a time (two would execute the same runs into the same files)."""
    lock = ExitStack()
    try:
        lock.enter_context(file_lock(out_dir / ".runner.lock", blocking=False))
    except BlockingIOError:
        raise RuntimeError(f"another runner is already working in {out_dir}; wait for it to finish or use "
                           "another --out") from None
    with lock:
        yield


class _Invocation:
    """The state of one execute_study call: what each run became, and the keys of finished runs."""

    def __init__(self, runs: list[Run], out_dir: Path, notebooks_dir: Path, force: bool,
                 dry_run: bool = False) -> None:
        self.out_dir, self.notebooks_dir, self.force, self.dry_run = out_dir, notebooks_dir, force, dry_run
        self.layout = OutLayout(out_dir)
        self.prints = Fingerprints()
        self.stages = {r.run_id: r.stage for r in runs}
        self.keys: dict[str, str] = {}  # run_id -> key of its finished or cached execution
        self.results: dict[str, RunResult] = {}
        self.will_run: set[str] = set()  # dry run: runs that would execute
        self.may_run: set[str] = set()  # dry run: runs whose inputs a running dependency may or may not change
        self.unfinished_inputs: dict[str, list[str]] = {}  # runs_after_failures runs -> inputs that did not finish
        self.outside: list[RunResult] = []

    def stage_of(self, run_id: str) -> str:
        return self.stages.get(run_id) or (read_stamp(self.out_dir, run_id) or {}).get("stage", "")

    def did_not_finish(self, run: Run) -> list[str]:
        return [d for d in run.after if self.results.get(d) and self.results[d].status in ("failed", "blocked")]

    def dependency_keys(self, run: Run, unfinished: list[str]) -> dict[str, str]:
        """The keys of the runs `run` comes after (not 01's: runs after it are keyed on frames.csv)."""
        after = {}
        for dep in run.after:
            if self.stage_of(dep) in KEYED_BY_OUTPUTS:
                continue
            if dep in unfinished:
                after[dep] = "did not finish"
            else:
                after[dep] = self.keys.get(dep) or (read_stamp(self.out_dir, dep) or {}).get("key", "missing")
        return after

    def decide(self, run: Run) -> RunSpec | None:
        """Record a run as blocked, cached, would/may run (dry run); or return what executing it needs."""
        unfinished = self.did_not_finish(run)
        if unfinished and not run.runs_after_failures:
            self.results[run.run_id] = RunResult(run.run_id, run.stage, "blocked", message=(
                f"not run: it comes after {', '.join(unfinished)}, which did not finish"))
            return None
        hard = [d for d in run.after if d in self.will_run and self.stage_of(d) not in KEYED_BY_OUTPUTS]
        soft = [d for d in run.after
                if d in self.may_run or (d in self.will_run and self.stage_of(d) in KEYED_BY_OUTPUTS)]
        if hard:
            self.will_run.add(run.run_id)
            self.results[run.run_id] = RunResult(run.run_id, run.stage, "would run",
                                                 reasons=[f"after {', '.join(hard)} (which runs)"])
            return None
        after = self.dependency_keys(run, unfinished)
        components = cache_components(run, self.layout, self.notebooks_dir, after, self.prints)
        paths = RunPaths(self.out_dir, run.run_id)
        stamp = read_stamp(self.out_dir, run.run_id)
        reasons = why_run(components, stamp, paths)
        if stamp is not None and not reasons:
            reasons = self.check_outputs(run, stamp, paths)
        missing = [d for d, k in after.items() if k == "missing"]
        if missing:
            reasons.append(f"warning: {', '.join(missing)} never ran in {self.out_dir}")
        if self.force and not reasons:
            reasons = ["forced (--force)"]
        if soft and not reasons:
            self.may_run.add(run.run_id)
            self.results[run.run_id] = RunResult(run.run_id, run.stage, "may run", reasons=[
                f"after {', '.join(soft)} (which runs): runs again only if what it reads changes"])
            return None
        if not reasons:
            self.keys[run.run_id] = cache_key(components)
            self.results[run.run_id] = RunResult(run.run_id, run.stage, "cached", output=str(paths.executed))
            return None
        if unfinished:
            self.unfinished_inputs[run.run_id] = unfinished
            reasons.append(f"runs on what finished: {', '.join(unfinished)} did not")
        return RunSpec(run, str(self.out_dir), str(self.notebooks_dir), cache_key(components), components, reasons)

    def check_outputs(self, run: Run, stamp: dict[str, Any], paths: RunPaths) -> list[str]:
        """Why a run whose stamp matches must run all the same: an output changed since it ran ([] if none).
        Outside a dry run the stamp's record is brought up to date: file times after a copy, and the record itself
        for a stamp written before outputs were recorded."""
        recorded = stamp.get("outputs")
        if isinstance(recorded, dict):
            reasons, current = output_check(recorded, self.out_dir, self.prints)
        else:
            reasons, current = [], output_digest(self.out_dir, run, self.prints)
        if not reasons and current != recorded and not self.dry_run:
            write_json_atomic(paths.stamp, {**stamp, "outputs": current})
        return reasons

    def record(self, result: RunResult, key: str) -> None:
        if result.status == "ran":
            self.keys[result.run_id] = key
            if result.run_id in self.unfinished_inputs:
                result.message = f"ran without {', '.join(self.unfinished_inputs[result.run_id])} (did not finish)"
        self.results[result.run_id] = result

    def study_result(self, runs: list[Run], seconds: float, interrupted: bool, unstarted: str = "") -> StudyResult:
        """Every run's outcome; runs never reached are `unstarted` (default: interrupted or blocked)."""
        unstarted = unstarted or ("interrupted" if interrupted else "blocked")
        ordered = [self.results.get(run.run_id) or RunResult(run.run_id, run.stage, unstarted, message="not started")
                   for run in runs]
        return StudyResult(self.out_dir, ordered, seconds, interrupted, self.outside)


def _execute_level(todo: list[RunSpec], executor: Any, state: _Invocation, echo: Callable[[str], None],
                   bar: Any) -> None:
    for spec in todo:
        echo(f"run     {spec.run.run_id}: {'; '.join(spec.reasons)}")
    keys = {spec.run.run_id: spec.key for spec in todo}

    def on_done(result: RunResult) -> None:
        state.record(result, keys[result.run_id])
        echo(f"done    {result.run_id} in {result.seconds:.1f} s" if result.status == "ran"
             else f"FAILED  {result.message}")
        if bar is not None:
            bar.update(1)

    executor.run(todo, on_done)


def execute_study(runs: list[Run], out_dir: Path, executor: Any = None, *, notebooks_dir: Path | None = None,
                  force: bool = False, dry_run: bool = False, progress: bool = True,
                  echo: Callable[[str], None] | None = None, outside: list[RunResult] | None = None) -> StudyResult:
    """Run what is not cached, level by level; with dry_run, only say what would run and why.

    `executor`: LocalExecutor (default) or SubmititExecutor; `notebooks_dir`: where <notebook>.ipynb live;
    `outside`: the profile's runs `--only` left out (`left_out`), listed in the summary as they stand.
    Before each level executes, `<out>/logs/runner_summary.json` says how the runs so far ended, so notebook 06
    (which runs after failures) can name what is missing.
    """
    out_dir = Path(out_dir).resolve()
    state = _Invocation(runs, out_dir, Path(notebooks_dir or NOTEBOOKS_DIR), force, dry_run)
    state.outside = list(outside or [])
    echo = echo or tqdm.write
    executor = executor or LocalExecutor()
    started = time.perf_counter()
    bar = None
    interrupted = False
    try:
        for level in levels(runs):
            todo = [spec for spec in (state.decide(run) for run in level) if spec is not None]
            if dry_run:
                for spec in todo:
                    state.will_run.add(spec.run.run_id)
                    state.results[spec.run.run_id] = RunResult(spec.run.run_id, spec.run.stage, "would run",
                                                               reasons=spec.reasons)
                continue
            if not todo:
                continue
            if bar is None and progress:
                bar = tqdm(total=0, unit="run", desc="study", file=sys.stderr, dynamic_ncols=True)
            if bar is not None:
                bar.total += len(todo)
                bar.refresh()
            state.study_result(runs, time.perf_counter() - started, False, "pending").write({"in_progress": True})
            _execute_level(todo, executor, state, echo, bar)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if bar is not None:
            bar.close()
    return state.study_result(runs, time.perf_counter() - started, interrupted)


def left_out(every_run: list[Run], planned: list[Run], out_dir: Path, notebooks_dir: Path | None = None
             ) -> list[RunResult]:
    """The runs of the whole plan that `--only` leaves out, as they stand now: cached when their parameters, code,
    inputs and outputs are current, else `not run` with the reason; the comparison reads only the cached ones."""
    ids = {r.run_id for r in planned}
    judged = execute_study([r for r in every_run if r.run_id not in ids], out_dir, notebooks_dir=notebooks_dir,
                           dry_run=True, progress=False, echo=lambda line: None)
    return [r if r.status == "cached" else replace(r, status="not run", message="outside --only: "
                                                   + "; ".join(r.reasons)) for r in judged.results]


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
    # Lazy: the report loads pandas and the compare package, which the runner needs only once notebook 06 ran.
    from lus_utils.compare.reporting import build_report  # lazy: nbconvert loads only when a report is built

    return str(build_report(study.out_dir))
