"""The study runner: turns a profile into notebook runs and executes them with papermill.

`python run_all.py --profile smoke|quick|full|path.yaml [--data-root P] [--out DIR] [--only 01 02 ...]
[--dry-run]`. Every parameter of every run is validated before the first notebook starts; a failing
notebook stops the study with its name, the failing cell and the path of the partly executed notebook.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import params as P
from .data import DataRootError, resolve_data_root
from .paths import NOTEBOOKS_DIR, OutLayout, default_out_dir
from .planning import Run, plan



# --- execution --------------------------------------------------------------------------------------------
def execute(run: Run, layout: OutLayout) -> Path:
    """Execute one run with papermill; raise RunFailed naming the notebook, cell and output path."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    output = layout.notebooks / f"{run.run_id}.ipynb"
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        papermill.execute_notebook(str(run.source), str(output), parameters=run.params,
                                   kernel_name="python3", cwd=str(NOTEBOOKS_DIR), progress_bar=False,
                                   log_output=False)
    except PapermillExecutionError as err:
        raise RunFailed(f"{run.notebook} (run {run.run_id}) failed in cell {err.exec_count} "
                        f"(index {err.cell_index}): {err.ename}: {err.evalue}\n"
                        f"  partly executed notebook: {output}") from None
    return output


def describe(run: Run) -> str:
    keys = [k for k in run.params if k not in ("data_root", "out_dir")]
    return f"{run.run_id:<40} {run.notebook} ({len(keys)} params)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="run_all.py", description="Run the study's notebooks with papermill.")
    parser.add_argument("--profile", default="quick", help="smoke, quick, full, or a path to a profile .yaml")
    parser.add_argument("--data-root", default=None, help="the dataset's data/ folder (else $LUS_DATA_ROOT, "
                                                          "else data/covid19_ultrasound/data, fetched if absent)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default outputs/<profile>)")
    parser.add_argument("--only", nargs="+", default=None, metavar="STAGE", help="run only these stages, e.g. 01 02")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and stop")
    args = parser.parse_args(argv)

    try:
        profile = P.load_profile(args.profile)
        data_root = resolve_data_root(args.data_root, fetch_if_missing=not args.dry_run)
        out_dir = (args.out or default_out_dir(profile.name)).resolve()
        runs = plan(profile, out_dir, data_root.resolve(), args.only)
    except (P.ParamError, DataRootError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    layout = OutLayout(out_dir)
    print(f"profile {profile.name} ({profile.path}): {profile.description}")
    print(f"data root {data_root}; outputs {out_dir}; {len(runs)} run(s)")
    if args.dry_run:
        for run in runs:
            print("  would run", describe(run))
        return 0

    done: list[tuple[Run, float, Path]] = []
    started = time.perf_counter()
    for i, run in enumerate(runs, 1):
        print(f"[{i}/{len(runs)}] {describe(run)} ...", flush=True)
        t0 = time.perf_counter()
        try:
            output = execute(run, layout)
        except RunFailed as err:
            print(f"\nFAILED: {err}", file=sys.stderr)
            print(f"{len(done)} run(s) finished before the failure; {len(runs) - len(done) - 1} not started.",
                  file=sys.stderr)
            return 1
        done.append((run, time.perf_counter() - t0, output))
        print(f"    done in {done[-1][1]:.1f} s -> {output}", flush=True)
    print(f"\nSummary: {len(done)} run(s) in {time.perf_counter() - started:.1f} s")
    for run, seconds, output in done:
        print(f"  ran  {run.run_id:<40} {seconds:7.1f} s  {output}")
    return 0
