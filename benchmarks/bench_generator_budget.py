"""A generator's realism against its training budget: planned notebook 04 or 05 runs, executed with the
runner's own code at several settings, each in its own scratch folder.

    python benchmarks/bench_generator_budget.py --profile quick --study outputs/quick \
        --run 05_ddpm_3_mixed_fold1 --knob epochs_3_mixed --values 1000 2000 3000 [--out outputs/bench/budget]
    python benchmarks/bench_generator_budget.py --profile quick --study outputs/quick \
        --run 05_ddpm_3_mixed_fold0 05_ddpm_3_mixed_fold1 --trial quick '{}' \
        --trial px32 '{image_size: 32, block_out_channels: [16, 32, 64], attention_levels: []}'

A setting is one knob's value (`--knob` with `--values`) or a labelled mapping of several run parameters
(`--trial LABEL MAPPING`, YAML; `{}`: the profile's own). The study folder lends its frames table (`data/`)
and the feature run named in the run's parameters, so each execution sees the frames and split the study saw;
everything it writes goes under `--out`. Per setting, run and synthetic set: the generator's training
seconds (wall and CPU, from its provenance), the CPU-seconds of the whole notebook execution (its kernel's
time: training, sampling, gate and audit), the sampling seconds per image, the gate's kept share, and the
set's realism as its notebook measured it (KID to the fold's held-out frames, with interval, beside the
real-vs-real reference at the same sizes, and whether the realism criterion holds). A stage the profile
leaves out (quick runs no 04) is planned anyway, with the profile's parameters. The table is also written
to `--out`/budget.csv.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
from pathlib import Path

import pandas as pd
import yaml

from lus_utils.config.profiles import Profile, load_profile
from lus_utils.data import dataset
from lus_utils.reproducibility import resolve_device, resolve_precision
from lus_utils.run import executors, planning


def planned_runs(profile: Profile, study: Path, data_root: Path, run_ids: list[str]) -> list[planning.Run]:
    stages = list(dict.fromkeys([*profile.study.stages, *(r[:2] for r in run_ids)]))
    profile = dataclasses.replace(profile, sections={**profile.sections,
                                                     "study": dataclasses.replace(profile.study, stages=stages)})
    runs = {r.run_id: r for r in planning.plan(profile, study, data_root)}
    missing = [r for r in run_ids if r not in runs]
    if missing:
        known = sorted(r for r in runs if r[:2] in ("04", "05"))
        raise SystemExit(f"--run {', '.join(missing)}: not planned by this profile; "
                         f"generator runs: {', '.join(known)}")
    return [runs[r] for r in run_ids]


def settings(args: argparse.Namespace) -> list[tuple[str, dict]]:
    """(label, run parameters changed) per setting, from --knob/--values or --trial."""
    if bool(args.knob) == bool(args.trial) or bool(args.knob) != bool(args.values):
        raise SystemExit("give --knob with --values, or --trial LABEL MAPPING (repeatable), not both")
    if args.knob:
        return [(f"{args.knob}={raw}", {args.knob: yaml.safe_load(raw)}) for raw in args.values]
    out = []
    for label, text in args.trial:
        changes = yaml.safe_load(text) or {}
        if not isinstance(changes, dict):
            raise SystemExit(f"--trial {label}: {text!r} is not a YAML mapping of run parameters")
        out.append((label, changes))
    return out


def check_keys(run: planning.Run, changes: dict) -> None:
    unknown = [k for k in changes if k not in run.params]
    if unknown:
        raise SystemExit(f"{', '.join(unknown)}: not parameters of {run.run_id}; "
                         f"its parameters: {', '.join(run.params)}")


def interval(kid: dict | None) -> str | None:
    return kid and f"[{kid['ci_low']:.4f}, {kid['ci_high']:.4f}]"


def set_rows(folder: Path) -> list[dict]:
    rows = []
    for audit_path in sorted(folder.glob("synthetic/*/audit.json")):
        audit = json.loads(audit_path.read_text())
        realism = audit["realism"]
        provenance = json.loads((audit_path.parent / "provenance.json").read_text())
        synthetic, reference = (realism.get(k, {}).get("kid")
                                for k in ("synthetic_vs_holdout", "real_train_vs_holdout"))
        structure = realism.get("structure", {})
        pairs = [structure.get(k, {}) for k in ("synthetic_vs_holdout", "real_train_vs_holdout")]
        rows.append({"set": audit["set"]["name"], "kept": audit["n_kept"], "generated": audit["n_images"],
                     "sampling s/image": provenance.get("seconds_per_image",  # DDPM sets; TI sets record the total
                                                       provenance.get("generation_seconds", float("nan"))
                                                       / max(provenance.get("n_generated", 1), 1)),
                     "n per side": realism.get("n_per_side"),
                     "KID": synthetic and round(synthetic["mean"], 4), "KID interval": interval(synthetic),
                     "reference KID": reference and round(reference["mean"], 4),
                     "reference interval": interval(reference),
                     "second opinion": audit.get("second_opinion_reached_realism"),
                     "structure p": structure.get("farther_than_reference", {}).get("p_value"),
                     "density (real)": pairs[0] and f"{pairs[0]['density']['mean']:.2f} ({pairs[1]['density']['mean']:.2f})",
                     "coverage (real)": pairs[0] and f"{pairs[0]['coverage']['mean']:.2f} ({pairs[1]['coverage']['mean']:.2f})",
                     "reached realism": audit.get("reached_realism")})
    return rows


def training_seconds(folder: Path) -> dict[str, float]:
    """Wall and CPU seconds of the generators' training, summed over the generators the run made (a DDPM's
    training, a textual-inversion token's), as their provenance records them (CPU: DDPMs only)."""
    wall = cpu = 0.0
    for path in sorted(folder.glob("generators/**/provenance.json")):
        info = json.loads(path.read_text())
        wall += info.get("train_seconds", info.get("seconds")) or 0.0
        cpu += info.get("train_cpu_seconds", float("nan"))
    return {"train s": round(wall, 1), "train CPU-s": round(cpu, 1)}


def children_cpu_seconds() -> float:
    """CPU-seconds (user + system) of this process's finished children: the notebook kernels it ran."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick", help="profile name or YAML file")
    parser.add_argument("--study", default="outputs/quick", help="study output folder with data/frames.csv")
    parser.add_argument("--data-root", default=None, help="dataset data/ folder (else $LUS_DATA_ROOT)")
    parser.add_argument("--run", nargs="+", required=True, help="planned run ids, e.g. 05_ddpm_3_mixed_fold1")
    parser.add_argument("--knob", help="the run parameter to vary, e.g. epochs_3_mixed")
    parser.add_argument("--values", nargs="+", help="its values (YAML literals)")
    parser.add_argument("--trial", nargs=2, action="append", default=[], metavar=("LABEL", "MAPPING"),
                        help="a setting: run parameters as a YAML mapping, e.g. px32 '{image_size: 32}'")
    parser.add_argument("--out", default="outputs/bench/budget", help="scratch folder")
    args = parser.parse_args()
    study = Path(args.study).resolve()
    if not (study / "data" / "frames.csv").is_file():
        raise SystemExit(f"--study {study}: no data/frames.csv; run the study's notebook 01 first "
                         f"(python run_all.py --profile {args.profile} --only 01)")
    profile = load_profile(args.profile)
    runs = planned_runs(profile, study, dataset.resolve_data_root(args.data_root), args.run)
    trials = settings(args)
    for run in runs:
        for _, changes in trials:
            check_keys(run, changes)
    device = resolve_device(profile.runtime.device)
    print(f"device {device}, {profile.runtime.threads} thread(s), training precision "
          f"{resolve_precision(profile.runtime.precision, device)}, sampling precision "
          f"{resolve_precision(profile.runtime.sampling_precision, device)}, load {os.getloadavg()}", flush=True)
    rows = []
    for label, changes in trials:
        for run in runs:
            folder = Path(args.out).resolve() / label / run.run_id
            folder.mkdir(parents=True, exist_ok=True)
            if not (folder / "data").exists():
                (folder / "data").symlink_to(study / "data", target_is_directory=True)
            trial = dataclasses.replace(run, params={**run.params, **changes, "out_dir": str(folder)})
            spec = executors.RunSpec(trial, str(folder), str(planning.NOTEBOOKS_DIR), "bench", {}, ["budget benchmark"])
            cpu_before = children_cpu_seconds()
            result = executors.execute_run(spec)
            cpu = children_cpu_seconds() - cpu_before
            load = os.getloadavg()[0]
            print(f"{label} {run.run_id}: {result.status} in {result.seconds:.0f} s, {cpu:.0f} CPU-s, load {load:.1f} "
                  f"({result.output})", flush=True)
            if result.status != "ran":
                raise SystemExit(result.message)
            timing = {"setting": label, "run": run.run_id, **training_seconds(folder), "notebook CPU-s": round(cpu, 1),
                      "load": round(load, 1)}
            rows += [{**timing, **row} for row in set_rows(folder)]
    table = pd.DataFrame(rows)
    table.to_csv(Path(args.out) / "budget.csv", index=False)
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(table.to_string(index=False))


if __name__ == "__main__":
    main()
