"""The class-conditional DDPM's realism against its training budget, and the structure-aware realism measure's
sanity orderings, on the real data of one split per task.

    python benchmarks/bench_conditional_ddpm.py sanity --study STUDY --out OUT
    python benchmarks/bench_conditional_ddpm.py curve --study STUDY --out OUT --task viral --steps 250 500 \
        --guidance 1 2 4
    python benchmarks/bench_conditional_ddpm.py ddpm3 --study STUDY --out OUT --task viral
    python benchmarks/bench_conditional_ddpm.py samplers --study STUDY --out OUT --task viral
    python benchmarks/bench_conditional_ddpm.py rescore --study STUDY --out OUT

STUDY is a study output folder with data/frames.csv (notebook 01: `run_all.py --only 01`). Tasks, one split each,
as the study plans its generators:
- `viral`: the study's 4-class task on `cv_r0_f0`; held-out viral frames: the fold's test patient.
- `pneumonia`: the simulated minority's first draw `sim_pneumonia_d0` with its first 3 pool patients (k = 3,
  frames.csv needs simulated_minority.targets to include pneumonia); held-out: its test patients.

`sanity` scores real frames of unseen minority patients, and the reference frames as Gaussian noise, blurred,
block-upsampled and half-denoised, against the held-out frames beside the real reference. `curve` trains the
class-conditional variant (notebook 05's code: `ddpm_variants.train`) at each budget, samples the minority at
each guidance scale and scores the kept images; `ddpm3` does the same for the 3-frame DDPM (quick's settings);
`samplers` ranks DDIM x50 against SDE-DPM-Solver++ x20 on `ddpm3`'s generator. Every set is scored as the audit
scores it: the real-range gate, then the ultrasound encoder's permutation test, density and coverage (the split's
encoder, cached under OUT/encoders), and the random-CNN KID rule as the second opinion. One JSON line per set goes
to OUT/<command>.jsonl, with CPU seconds (1 torch thread).
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from lus_utils.config.generate import AuditParams, DDPMParams
from lus_utils.config.runtime import RuntimeParams
from lus_utils.config.schema import build
from lus_utils.data import dataset
from lus_utils.data.simulated_minority import within_real_patients
from lus_utils.generate import ddpm_sampling, ddpm_training, ddpm_variants, realism
from lus_utils.generate.structure_realism import STRUCTURE_CRITERION, compare_structure, degraded_images
from lus_utils.generate.ultrasound_encoder import EncoderSpec, encoder_for_split
from lus_utils.images import load_images, resize
from lus_utils.provenance import stable_hash
from lus_utils.vocabulary import VIRAL

RUNTIME = RuntimeParams(device="cpu", threads=1)
# The conditional model as measured (quick's architecture differs: see the report of issue 21).
CONDITIONAL = {"variant": "class_conditional", "image_size": 32, "block_out_channels": [16, 32, 64],
               "attention_levels": [], "lr": 0.001, "sample_grids": 0, "output_size": 32}


@dataclass
class Task:
    name: str
    frames: pd.DataFrame  # a simulated draw's frames without its left-out target patients
    column: str
    minority: str
    k: int = 0

    def part(self, parts: tuple[str, ...]) -> pd.DataFrame:
        return self.frames[self.frames[self.column].isin(parts) & (self.frames["label"] == self.minority)]


def make_task(name: str, frames: pd.DataFrame, keep: int = 3) -> Task:
    if name == "viral":
        return Task("viral_cv_r0_f0", frames, "cv_r0_f0", VIRAL)
    column = "sim_pneumonia_d0"
    if column not in frames.columns:
        raise SystemExit(f"frames.csv has no {column}: rebuild it with simulated_minority.targets including pneumonia")
    return Task(f"pneumonia_{column}_k{keep}", within_real_patients(frames, column, keep), column, "pneumonia", keep)


def grey(table: pd.DataFrame, size: int) -> np.ndarray:
    return load_images(table["abspath"].tolist(), size, grayscale=True)


class Judge:
    """Everything a set is scored with on one task, as the audit does: the real-range gate (calibrated on the
    split's training frames), the split's ultrasound encoder (its other classes' training frames), the random CNN."""

    def __init__(self, task: Task, out: Path, audit: AuditParams = AuditParams()):
        self.task, self.audit = task, audit
        began = time.process_time()
        spec = EncoderSpec(size=audit.encoder_size, steps=audit.encoder_steps, seed=audit.audit_seed)
        self.encoder = encoder_for_split(task.frames, task.column, task.minority, spec, out / "encoders")
        self.encoder_seconds = time.process_time() - began
        self.random_cnn = realism.RandomCNN()
        self.gate_real = realism.calibration_images(task.frames, task.column, audit)
        self.train, self.held = task.part(("train",)), task.part(("val", "test"))

    def score(self, images: np.ndarray, train: pd.DataFrame | None = None, held: pd.DataFrame | None = None) -> dict:
        """Kept share under the real-range gate; the structure figures and verdict and the random-CNN rule's of
        the kept images (all images when none is kept) against the held-out frames, beside the reference."""
        train = self.train if train is None else train
        held = self.held if held is None else held
        verdicts, _ = realism.quality_gate(images, self.audit, self.gate_real)
        kept = np.array([v["passed_gate"] for v in verdicts])
        population = images[kept] if kept.any() else images
        a, size = self.audit, self.audit.encoder_size
        structure = compare_structure(self.encoder(population), self.encoder(grey(train, size)),
                                      self.encoder(grey(held, size)), a.kid_subset, a.kid_subsets,
                                      a.structure_neighbours, a.audit_seed, a.structure_permutations)
        rc = realism.compare_sets(self.random_cnn(population), self.random_cnn(grey(train, realism.FEATURE_SIZE)),
                                  self.random_cnn(grey(held, realism.FEATURE_SIZE)), a.kid_subset, a.kid_subsets,
                                  a.audit_seed, a.c2st_folds)
        return {"kept": int(kept.sum()), "n": int(len(images)),
                "structure": {**structure, "reached_realism": STRUCTURE_CRITERION(structure)},
                "random_cnn": {k: rc[k]["kid"] for k in ("synthetic_vs_holdout", "real_train_vs_holdout")}
                | {"n_per_side": rc["n_per_side"], "reached_realism": realism.REALISM_CRITERION(rc)}}


def summary_line(row: dict) -> str:
    s, rc = row["structure"], row["random_cnn"]
    syn, ref, test = s["synthetic_vs_holdout"], s["real_train_vs_holdout"], s["farther_than_reference"]
    return (f"{row['set']:>28s} kept {row['kept']}/{row['n']} n={s['n_per_side']} | structure p {test['p_value']:.3f} "
            f"D {test['difference']:.2f} density {syn['density']['mean']:.2f} (real {ref['density']['mean']:.2f}) "
            f"coverage {syn['coverage']['mean']:.2f} (real {ref['coverage']['mean']:.2f}) -> {s['reached_realism']} | "
            f"random-CNN KID {rc['synthetic_vs_holdout']['mean']:.4f} (real {rc['real_train_vs_holdout']['mean']:.4f})"
            f" -> {rc['reached_realism']}")


def write(out: Path, command: str, row: dict) -> None:
    with open(out / f"{command}.jsonl", "a") as handle:
        handle.write(json.dumps(row, default=float) + "\n")
    print(summary_line(row), flush=True)


def sanity(task: Task, out: Path, blur_sigma: float, block_factor: int) -> None:
    """Real frames of unseen minority patients (U) against the held-out frames (H) beside the reference R vs H;
    and R's frames damaged (so only the damage differs). viral: U is the training patient with most frames, R
    the other training patients, H the test patient; pneumonia: U is 3 held-out patients (seeded), H the other
    held-out patients, R the k training patients."""
    judge = Judge(task, out)
    train, held = judge.train, judge.held
    if task.minority == VIRAL:
        unseen_patient = train.groupby("patient_id").size().sort_values(kind="stable").index[-1]
        unseen, train = train[train["patient_id"] == unseen_patient], train[train["patient_id"] != unseen_patient]
    else:
        patients = np.random.default_rng(7).permutation(sorted(held["patient_id"].unique()))
        unseen, held = held[held["patient_id"].isin(patients[:3])], held[~held["patient_id"].isin(patients[:3])]
    size = judge.audit.encoder_size
    candidates = {"real_unseen_patients": grey(unseen, size),
                  **degraded_images(grey(train, size), size, 0, blur_sigma=blur_sigma, block_factor=block_factor)}
    for name, images in candidates.items():
        write(out, "sanity", {"task": task.name, "set": name, "blur_sigma": blur_sigma, "block_factor": block_factor,
                              "frames": {"unseen": len(unseen), "reference": len(train), "holdout": len(held)},
                              "encoder": judge.encoder.record | {"training_frames": None},
                              "encoder_cpu_seconds": judge.encoder_seconds, **judge.score(images, train, held)})


def conditional_params(task: Task, steps: int, overrides: dict) -> DDPMParams:
    return build(DDPMParams, {**CONDITIONAL, "split_column": task.column, "target_class": task.minority,
                              "real_patients": task.k, "conditional_train_steps": steps, **overrides}, "bench")


def curve(task: Task, out: Path, steps: list[int], overrides: dict, guidance: list[float]) -> None:
    """The class-conditional variant at each budget: training and sampling CPU-seconds, kept share, realism."""
    judge = Judge(task, out)
    for n_steps in steps:
        p = conditional_params(task, n_steps, overrides)
        selected = ddpm_training.select_training_frames(task.frames, p.variant, p.split_column, p.seed, p.target_class,
                                                        p.real_patients)
        gen_dir = out / "generators" / f"{task.name}_{n_steps}_{stable_hash(overrides, 8)}"
        began = time.process_time()
        result = ddpm_variants.train(selected, p, gen_dir, RUNTIME, progress=False)
        train_cpu = time.process_time() - began
        pipeline = ddpm_sampling.load_pipeline(result.pipeline_dir)
        label = ddpm_sampling.class_index(result.pipeline_dir, task.minority)
        for w in guidance or [p.guidance_scale]:
            began = time.process_time()
            images, _ = ddpm_sampling.sample_images(pipeline, p.sampler, p.sampling_steps, p.n_samples,
                                                    p.sample_batch_size, p.seed, "cpu", progress=False,
                                                    class_label=label, guidance_scale=w)
            sample_cpu = time.process_time() - began
            np.save(gen_dir / f"samples_w{w}.npy", images)
            write(out, "curve", {"task": task.name, "set": f"cddpm {n_steps} steps w={w}", "train_steps": n_steps,
                                 "guidance_scale": w, "overrides": overrides, "cached": result.cached,
                                 "train_cpu_seconds": train_cpu, "sample_cpu_seconds": sample_cpu,
                                 "final_loss": float(result.log["loss"].tail(50).mean()) if len(result.log) else None,
                                 **judge.score(images)})


def ddpm3_dir(task: Task, out: Path, epochs: int) -> Path:
    return out / "generators" / f"ddpm3_{task.name}_{epochs}"


def ddpm3(task: Task, out: Path, epochs: int) -> None:
    """The 3-frame DDPM (quick's settings, the runtime's precision) trained on 3 minority training frames."""
    judge = Judge(task, out)
    p = build(DDPMParams, {"split_column": task.column, "target_class": task.minority, "real_patients": task.k,
                           "epochs_3_mixed": epochs, "sample_grids": 0, "output_size": 32}, "bench")
    selected = ddpm_training.select_training_frames(task.frames, "3_mixed", task.column, p.seed, task.minority,
                                                    task.k)
    began = time.process_time()
    result = ddpm_variants.train(selected, p, ddpm3_dir(task, out, epochs), RUNTIME, progress=False)
    train_cpu = time.process_time() - began
    began = time.process_time()
    images, _, _ = ddpm_variants.sample_set(result.pipeline_dir, p, AuditParams(), progress=False)
    sample_cpu = time.process_time() - began
    written = np.stack([resize(image, p.output_size) for image in images])  # as the set is written: 32 px
    np.save(ddpm3_dir(task, out, epochs) / "samples.npy", written)
    write(out, "ddpm3", {"task": task.name, "set": f"ddpm 3_mixed {epochs} epochs", "epochs": epochs,
                         "train_cpu_seconds": train_cpu, "sample_cpu_seconds": sample_cpu, **judge.score(written)})


def samplers(task: Task, out: Path, epochs: int, n: int) -> None:
    """The sampler benchmark's ordering on `ddpm3`'s generator: DDIM x50 (whose images are noise) must score
    below SDE-DPM-Solver++ x20 (the study's sampler, as good as 1000-step DDPM by KID)."""
    judge = Judge(task, out)
    pipeline = ddpm_sampling.load_pipeline(ddpm3_dir(task, out, epochs) / "pipeline")
    for sampler, steps in (("dpmsolver", 20), ("ddim", 50)):
        images, _ = ddpm_sampling.sample_images(pipeline, sampler, steps, n, 40, 0, "cpu", progress=False)
        written = np.stack([resize(image, 32) for image in images])
        write(out, "samplers", {"task": task.name, "set": f"ddpm3 {sampler} x{steps}", **judge.score(written)})


def rescore(task: Task, out: Path, pattern: str) -> None:
    """Score saved samples (OUT/generators/<pattern>, .npy) again with the current measures."""
    judge = Judge(task, out)
    for path in sorted((out / "generators").glob(pattern)):
        if task.name in str(path):
            write(out, "rescore", {"task": task.name, "set": f"{path.parent.name}/{path.stem}",
                                   **judge.score(np.load(path))})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["sanity", "curve", "ddpm3", "samplers", "rescore"])
    parser.add_argument("--study", type=Path, required=True, help="study output folder with data/frames.csv")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--task", choices=["viral", "pneumonia"], nargs="+", default=["viral", "pneumonia"])
    parser.add_argument("--steps", type=int, nargs="+", default=[250, 500, 1000])
    parser.add_argument("--guidance", type=float, nargs="*", default=[], help="curve: guidance scales sampled "
                        "(default: the parameters')")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="curve: DDPMParams overrides (YAML values), e.g. conditional_batch_size=16")
    parser.add_argument("--epochs", type=int, default=1000, help="ddpm3/samplers: passes over the 3 frames")
    parser.add_argument("--blur-sigma", type=float, default=1.0, help="sanity: blur in px at the encoder's size")
    parser.add_argument("--block-factor", type=int, default=4, help="sanity: shrink factor of block-upsampling")
    parser.add_argument("--pattern", default="*/*.npy", help="rescore: saved samples under OUT/generators")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    frames = dataset.read_frames(args.study / "data" / "frames.csv")
    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    for name in args.task:
        task = make_task(name, frames)
        if args.command == "sanity":
            sanity(task, args.out, args.blur_sigma, args.block_factor)
        elif args.command == "curve":
            curve(task, args.out, args.steps, overrides, args.guidance)
        elif args.command == "ddpm3":
            ddpm3(task, args.out, args.epochs)
        elif args.command == "samplers":
            samplers(task, args.out, args.epochs, 60)
        else:
            rescore(task, args.out, args.pattern)


if __name__ == "__main__":
    main()
