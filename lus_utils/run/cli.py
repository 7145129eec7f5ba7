"""The command line: `python run_all.py --profile smoke|quick|full|path.yaml[+overlay...] [--set section.key=value ...]
[--data-root P] [--out DIR] [--only 01 02 ...] [--dry-run] [--force] [--executor local|slurm|submitit-local]
[--jobs N]`.

Every parameter of every run is validated, and every pretrained weight checked (preflight), before the first
notebook starts.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lus_utils.config.profiles import load_profile
from lus_utils.config.runtime import SlurmParams
from lus_utils.config.schema import ParamError, as_dict, build
from lus_utils.data.dataset import DataRootError, resolve_data_root
from lus_utils.paths import default_out_dir
from lus_utils.run.executors import LocalExecutor, SubmititExecutor
from lus_utils.run import preflight, rehearsal
from lus_utils.run.planning import plan
from lus_utils.run.study import describe_dry_run, execute_study, left_out, refresh_report, study_lock


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run_all.py", description="Run the study's notebooks with papermill, "
                                     "skipping runs whose parameters, code and inputs are unchanged.")
    parser.add_argument("--profile", default="quick", help="smoke, quick, full, or a path to a profile .yaml; "
                        "overlays compose left to right with +, e.g. full+convex_only")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="set one key over the profile (a YAML value), e.g. --set train.lr=0.001; repeatable")
    parser.add_argument("--data-root", default=None, help="the dataset's data/ folder (else $LUS_DATA_ROOT, "
                                                          "else data/covid19_ultrasound/data, fetched if absent)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default outputs/<profile>)")
    parser.add_argument("--only", nargs="+", default=None, metavar="STAGE", help="run only these stages, e.g. 01 02")
    parser.add_argument("--dry-run", action="store_true", help="say what would run and why, run nothing")
    parser.add_argument("--force", action="store_true", help="run every planned run, cached or not")
    parser.add_argument("--rehearse", action="store_true", help="the profile with the rehearsal overlay: its shapes, "
                        "every loop cut to 1-2 steps, random weights (params/rehearsal.yaml, run/rehearsal.py); "
                        "outputs in outputs/<profile>+rehearsal")
    parser.add_argument("--executor", choices=("local", "slurm", "submitit-local"), default="local",
                        help="local: on this machine; slurm: one job array per stage and level (submitit); "
                             "submitit-local: the Slurm code path run by submitit on this machine (a check)")
    parser.add_argument("--jobs", type=int, default=1, help="local executor: runs at once (default 1)")
    parser.add_argument("--partition", default=None, help="Slurm partition (default: the profile's slurm.partition)")
    parser.add_argument("--gpus", type=int, default=None, help="GPUs per Slurm job (default: slurm.gpus_per_node)")
    parser.add_argument("--time", type=int, default=None, metavar="MIN", help="Slurm time limit per job in minutes")
    parser.add_argument("--mem", type=int, default=None, metavar="GB", help="memory per Slurm job in GB")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    try:
        spec = f"{args.profile}+{rehearsal.OVERLAY}" if args.rehearse else args.profile
        profile = load_profile(spec, args.overrides)
        preflight.check_archs(profile)
        out_dir = (args.out or default_out_dir(profile.name)).resolve()
        if rehearsal.is_rehearsal(profile):
            profile = rehearsal.with_sd_sized_base(profile)
        data_root = resolve_data_root(args.data_root, fetch_if_missing=not args.dry_run)
        runs = plan(profile, out_dir, data_root.resolve(), args.only)
        every_run = plan(profile, out_dir, data_root.resolve()) if args.only else runs
        overrides = {k: v for k, v in (("partition", args.partition), ("gpus_per_node", args.gpus),
                                       ("timeout_min", args.time), ("mem_gb", args.mem)) if v is not None}
        slurm = build(SlurmParams, {**as_dict(profile.slurm), **overrides}, "--partition/--gpus/--time/--mem")
    except (ParamError, DataRootError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"profile {profile.name} ({profile.path}): {profile.description}")
    print(f"data root {data_root.resolve()}; outputs {out_dir}; {len(runs)} run(s); executor {args.executor}")
    for comparison in preflight.unplanned_primaries(profile, runs):
        print(f"warning: compare.primary '{comparison}': no planned run makes its condition or baseline, so it "
              "will be reported missing; change compare.primary or the grid", file=sys.stderr)
    if rehearsal.is_rehearsal(profile) and not args.dry_run and rehearsal.needs_sd_sized_base(profile, args.only):
        print(f"writing the SD-v1.5-sized random base model: {rehearsal.write_sd_sized_base(out_dir)}")
    missing = preflight.check(profile, args.only, out_dir=out_dir)
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
            outside = left_out(every_run, runs, out_dir) if args.only else []
            study = execute_study(runs, out_dir, executor, force=args.force, outside=outside)
            study.write({"profile": profile.name, "executor": args.executor})
    except (RuntimeError, ParamError) as err:
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
