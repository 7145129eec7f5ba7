"""A generator's realism against its training budget: one planned notebook 04 or 05 run, executed with the
runner's own code at several values of one knob, each in its own scratch folder.

    python benchmarks/bench_generator_budget.py --profile quick --study outputs/quick \
        --run 05_ddpm_3_mixed_fold1 --knob epochs_3_mixed --values 1000 2000 3000 [--out outputs/bench/budget]

The study folder lends its frames table (`data/`) and the feature run named in the run's parameters, so
each execution sees the frames and split the study saw; everything it writes goes under `--out`. Per value
and synthetic set: the generator's training seconds, the gate's kept share, and the set's realism as its
notebook measured it: the structure test's p and density/coverage beside the real reference in the ultrasound
encoder's space, whether the realism criterion holds, and the second opinion (random-CNN KID to the fold's
held-out viral frames, with interval, beside the real-vs-real reference at the same sizes, and its rule's
verdict). A stage the profile leaves out (quick runs no 04) is planned anyway, with the profile's parameters.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import pandas as pd
import yaml

from lus_utils.config.profiles import Profile, load_profile
from lus_utils.data import dataset
from lus_utils.run import executors, planning


def planned_run(profile: Profile, study: Path, data_root: Path, run_id: str) -> planning.Run:
    stages = list(dict.fromkeys([*profile.study.stages, run_id[:2]]))
    profile = dataclasses.replace(profile, sections={**profile.sections,
                                                     "study": dataclasses.replace(profile.study, stages=stages)})
    runs = {r.run_id: r for r in planning.plan(profile, study, data_root)}
    if run_id not in runs:
        known = sorted(r for r in runs if r[:2] in ("04", "05"))
        raise SystemExit(f"--run {run_id}: not planned by this profile; generator runs: {', '.join(known)}")
    return runs[run_id]


def typed(run: planning.Run, knob: str, value: str):
    if knob not in run.params:
        raise SystemExit(f"--knob {knob}: not a parameter of {run.run_id}; its parameters: {', '.join(run.params)}")
    return yaml.safe_load(value)


def interval(kid: dict | None) -> str | None:
    return kid and f"[{kid['ci_low']:.4f}, {kid['ci_high']:.4f}]"


def set_rows(folder: Path, knob: str, value) -> list[dict]:
    rows = []
    for audit_path in sorted(folder.glob("synthetic/*/audit.json")):
        audit = json.loads(audit_path.read_text())
        realism = audit["realism"]
        provenance = json.loads((audit_path.parent / "provenance.json").read_text())
        synthetic, reference = (realism.get(k, {}).get("kid") for k in ("synthetic_vs_holdout", "real_train_vs_holdout"))
        structure = realism.get("structure", {})
        pairs = [structure.get(k, {}) for k in ("synthetic_vs_holdout", "real_train_vs_holdout")]
        rows.append({knob: value, "set": audit["set"]["name"], "kept": f"{audit['n_kept']}/{audit['n_images']}",
                     "sampling s/image": provenance.get("seconds_per_image",  # DDPM sets; TI sets record the total
                                                       provenance.get("generation_seconds", float("nan"))
                                                       / max(provenance.get("n_generated", 1), 1)),
                     "n per side": realism.get("n_per_side"),
                     "KID": synthetic and round(synthetic["mean"], 4), "KID interval": interval(synthetic),
                     "reference KID": reference and round(reference["mean"], 4), "reference interval": interval(reference),
                     "second opinion": audit.get("second_opinion_reached_realism"),
                     "structure p": structure.get("farther_than_reference", {}).get("p_value"),
                     "density (real)": pairs[0] and f"{pairs[0]['density']['mean']:.2f} ({pairs[1]['density']['mean']:.2f})",
                     "coverage (real)": pairs[0] and f"{pairs[0]['coverage']['mean']:.2f} ({pairs[1]['coverage']['mean']:.2f})",
                     "reached realism": audit.get("reached_realism")})
    return rows


def training_seconds(folder: Path) -> dict[str, float]:
    """Seconds each generator's provenance records (a DDPM's training, a textual-inversion token's)."""
    seconds = {}
    for path in sorted(folder.glob("generators/**/provenance.json")):
        info = json.loads(path.read_text())
        value = info.get("train_seconds", info.get("seconds"))
        if value is not None:
            seconds[str(path.parent.relative_to(folder / "generators"))] = round(value, 1)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick", help="profile name or YAML file")
    parser.add_argument("--study", default="outputs/quick", help="study output folder with data/frames.csv")
    parser.add_argument("--data-root", default=None, help="dataset data/ folder (else $LUS_DATA_ROOT)")
    parser.add_argument("--run", required=True, help="planned run id, e.g. 05_ddpm_3_mixed_fold1")
    parser.add_argument("--knob", required=True, help="the run parameter to vary, e.g. epochs_3_mixed")
    parser.add_argument("--values", nargs="+", required=True, help="its values (YAML literals)")
    parser.add_argument("--out", default="outputs/bench/budget", help="scratch folder")
    args = parser.parse_args()
    study = Path(args.study).resolve()
    if not (study / "data" / "frames.csv").is_file():
        raise SystemExit(f"--study {study}: no data/frames.csv; run the study's notebook 01 first "
                         f"(python run_all.py --profile {args.profile} --only 01)")
    run = planned_run(load_profile(args.profile), study, dataset.resolve_data_root(args.data_root), args.run)
    rows, seconds = [], {}
    for raw in args.values:
        value = typed(run, args.knob, raw)
        folder = Path(args.out).resolve() / f"{args.knob}={raw}"
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "data").exists():
            (folder / "data").symlink_to(study / "data", target_is_directory=True)
        trial = dataclasses.replace(run, params={**run.params, args.knob: value, "out_dir": str(folder)})
        spec = executors.RunSpec(trial, str(folder), str(planning.NOTEBOOKS_DIR), "bench", {}, ["budget benchmark"])
        result = executors.execute_run(spec)
        print(f"{args.knob}={raw}: {result.status} in {result.seconds:.0f} s ({result.output})", flush=True)
        if result.status != "ran":
            raise SystemExit(result.message)
        rows += set_rows(folder, args.knob, value)
        seconds[raw] = training_seconds(folder)
    print(pd.DataFrame(rows).to_string(index=False))
    print("training seconds:", json.dumps(seconds))


if __name__ == "__main__":
    main()
