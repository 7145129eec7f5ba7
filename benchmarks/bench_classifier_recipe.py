"""Learning curve of the classifier recipe on the real data: validation macro AUROC against CPU-seconds.

Data: the convex-probe frames of covid, pneumonia and regular. The study's hold-out test patients
(`data.splits.holdout`, split_seed 0) are left out of everything. The other patients are dealt into K
class-stratified patient folds; fold k's patients are the ASSESSMENT part (measured, never trained or stopped
on), and 15% of each class's remaining patients (at least one) form the STOPPING part (`fit`'s validation
part: early stopping, plateau schedule, checkpoint), the rest train: the study's train/val/test shape, with
the assessment part in place of its test. Every training records, per epoch, its cumulative CPU-seconds
(time.process_time, 1 thread, the assessment predictions excluded) and the assessment probabilities, so
`table` can replay any early-stopping patience (<= the run's) and epoch cap of the plateau schedule.
Assessment frames are always the 10-frames-per-video ones, so runs with other frames per video are compared
on the same frames. The schedule is the study's (ReduceLROnPlateau on the validation loss), so a run's course
does not depend on its stopping rule: a run with patience 5 and cap 30 replays patience 3 and cap 10 exactly,
and `table` pools the runs of one configuration made with different stopping rules (a seed and fold once).

    export LUS_DATA_ROOT=/work/shared/covid19_ultrasound/data
    python benchmarks/bench_classifier_recipe.py run --size 32 --fpv 5 --epochs 10 --patience 3 --seeds 0 1 2 \
        --out /work/scratch/bench20b/recipe
    python benchmarks/bench_classifier_recipe.py run --size 32 --small-input --in-chans 1 ...
    python benchmarks/bench_classifier_recipe.py table --out /work/scratch/bench20b/recipe --rules 3:10

`table` prints and writes recipe.csv / recipe.md (one row per configuration and early-stopping rule: pooled
macro AUROC over the folds per seed, mean and range over seeds, per-class AUROC, CPU-s per training) and
epochs.csv (the curve over the epoch cap).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from lus_utils.classify import models
from lus_utils.classify.frame_tensors import load_images
from lus_utils.classify.loop import fit
from lus_utils.classify.run_data import RunData
from lus_utils.config.classify import TrainParams
from lus_utils.config.data import DataParams
from lus_utils.data import splits
from lus_utils.data.dataset import build_frames, read_frames
from lus_utils.reproducibility import seed_everything
from lus_utils.vocabulary import CONVEX_CLASSES, HOLDOUT, Split

CLASSES = list(CONVEX_CLASSES)
ASSESS_FPV = 10


def frames(out: Path, fpv: int) -> pd.DataFrame:
    """The convex probe's three classes at `fpv` frames per video (frames.csv built once under `out`), with the
    study's hold-out `split` over these three classes (its test patients are never used here)."""
    csv = out / f"data_mf{fpv}" / "data" / "frames.csv"
    params = DataParams(max_frames_per_video=fpv, probe="convex", protocol=HOLDOUT, n_workers=1)
    table = read_frames(csv) if csv.is_file() else build_frames(None, out / f"data_mf{fpv}", params)
    table = table[table["label"].isin(CLASSES)].reset_index(drop=True)
    return table.assign(split=splits.holdout(table, DataParams(classes=CLASSES, protocol=HOLDOUT)))


def patient_folds(table: pd.DataFrame, k: int, split_seed: int) -> list[dict[str, str]]:
    """Per fold, patient -> assess / val (stopping) / train, over the non-test patients."""
    patients = splits.patient_table(table[table["split"] != "test"], CLASSES)
    folds = []
    outer = StratifiedKFold(k, shuffle=True, random_state=split_seed)
    for f, (rest, assess) in enumerate(outer.split(patients, patients["label"])):
        part = {p: "assess" for p in patients["patient_id"].iloc[assess]}
        rng = np.random.default_rng([split_seed, f])
        for _, group in patients.iloc[rest].groupby("label"):
            ids = list(rng.permutation(sorted(group["patient_id"])))
            n_val = max(1, round(0.15 * len(ids)))
            part.update({p: "val" if i < n_val else "train" for i, p in enumerate(ids)})
        folds.append(part)
    return folds


def config_name(a: argparse.Namespace) -> str:
    stem = ("small" if a.small_input else "std") + str(a.size)
    return (f"{stem}-c{a.in_chans}-f{a.fpv}-b{a.batch_size}-plateau-lr{a.lr:g}-"
            f"{'aug' if a.augment else 'noaug'}-e{a.epochs}p{a.patience}")


def train_one(a: argparse.Namespace, data: pd.DataFrame, images: torch.Tensor, assess: pd.DataFrame,
              assess_images: torch.Tensor, seed: int, fold: int) -> dict:
    """One training on `data` (parts train/val), with the assessment probabilities of every epoch."""
    table = data.assign(synthetic=False, oversampled=False).reset_index(drop=True)
    run = RunData(CLASSES, Split(fold=fold), "pneumonia", table)
    train = TrainParams(image_size=a.size, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, patience=a.patience)
    seed_everything(seed, 1)
    model = models.prepare(models.build_model("resnet18", len(CLASSES), a.size, in_chans=a.in_chans,
                                              small_input=a.small_input), torch.device("cpu"))
    epochs, outside = [], 0.0
    started = time.process_time()

    def on_epoch(row: dict, model: torch.nn.Module) -> None:
        nonlocal outside
        t0 = time.process_time()
        prob = models.predict_proba(model, assess_images, 256)
        model.train()
        epochs.append({**{k: row[k] for k in ("epoch", "train_loss", "val_loss", "lr")},
                       "cpu_s": t0 - started - outside, "prob": prob.tolist()})
        outside += time.process_time() - t0

    load = os.getloadavg()
    result = fit(model, run, images, train, "none", seed, augment=a.augment, on_epoch=on_epoch)
    return {"config": config_name(a), "seed": seed, "fold": fold, "epochs": epochs, "best_epoch": result.best_epoch,
            "labels": assess["label"].map(CLASSES.index).tolist(), "n_train": run.counts("train"),
            "n_val": run.counts("val"), "n_assess": int(len(assess)), "load_start": load, "load_end": os.getloadavg(),
            "cpu": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__}


def run(a: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    reference = frames(a.out, ASSESS_FPV)
    trained = frames(a.out, a.fpv)
    folder = a.out / "runs" / config_name(a)
    folder.mkdir(parents=True, exist_ok=True)
    images = load_images(trained["abspath"].tolist(), a.size, workers=1)
    reference_images = load_images(reference["abspath"].tolist(), a.size, workers=1)
    for fold, part in enumerate(patient_folds(reference, a.folds, a.split_seed)):
        for seed in a.seeds:
            target = folder / f"seed{seed}_fold{fold}.json"
            if target.is_file():
                continue
            parts = trained["patient_id"].map(part)
            keep = parts.isin(["train", "val"]).to_numpy()
            assess = (reference["patient_id"].map(part) == "assess").to_numpy()
            record = train_one(a, trained[keep].assign(part=parts[keep]), images[torch.from_numpy(keep)],
                               reference[assess], reference_images[torch.from_numpy(assess)], seed, fold)
            target.write_text(json.dumps(record))
            last = record["epochs"][-1]
            print(f"{config_name(a)} seed {seed} fold {fold}: {len(record['epochs'])} epochs, best "
                  f"{record['best_epoch']}, {last['cpu_s']:.0f} CPU-s, load {record['load_end'][0]:.1f}", flush=True)


def replay(record: dict, patience: int, cap: int) -> tuple[int, int]:
    """(epochs run, epoch chosen) had training stopped after `patience` epochs without a better validation loss,
    or at `cap`: exact for the plateau schedule, whose course does not depend on either."""
    best, best_loss = 0, np.inf
    for row in record["epochs"][:cap]:
        if row["val_loss"] < best_loss:
            best, best_loss = row["epoch"], row["val_loss"]
        if row["epoch"] - best >= patience:
            return row["epoch"], best
    return min(cap, len(record["epochs"])), best


def summarise(records: list[dict], patience: int, cap: int) -> dict:
    """Pooled (over folds) macro and per-class AUROC per seed, their mean and range; CPU-s per training."""
    per_seed, cpu, run_epochs = {}, [], []
    for seed in sorted({r["seed"] for r in records}):
        labels, probs = [], []
        for r in (r for r in records if r["seed"] == seed):
            ran, chosen = replay(r, patience, cap)
            labels += r["labels"]
            probs.append(np.array(r["epochs"][chosen - 1]["prob"]))
            cpu.append(r["epochs"][ran - 1]["cpu_s"])
            run_epochs.append(ran)
        y, p = np.array(labels), np.concatenate(probs)
        per_seed[seed] = [roc_auc_score(y == c, p[:, c]) for c in range(len(CLASSES))]
    macro = [np.mean(v) for v in per_seed.values()]
    out = {"macro_auroc": np.mean(macro), "seed_min": min(macro), "seed_max": max(macro), "n_seeds": len(macro),
           "n_trainings": len(cpu), "epochs_run": np.mean(run_epochs), "cpu_s_per_training": np.mean(cpu),
           "train_frames": np.mean([sum(r["n_train"].values()) for r in records])}
    out.update({f"auroc_{c}": np.mean([v[i] for v in per_seed.values()]) for i, c in enumerate(CLASSES)})
    return out


def stopping_rule(folder: str) -> tuple[str, int, int]:
    """(configuration, patience, epoch cap) of a run folder named by `config_name`."""
    config, tail = folder.rsplit("-e", 1)
    cap, patience = tail.split("p")
    return config, int(patience), int(cap)


def pooled(runs: list[tuple[dict, int, int]], patience: int, cap: int, folds: int) -> list[dict]:
    """The records that replay `patience` and `cap` exactly (made with a patience and cap at least as large),
    one per seed and fold, of the seeds with every fold in."""
    chosen: dict[tuple[int, int], dict] = {}
    for record, run_patience, run_cap in runs:
        if patience <= run_patience and cap <= run_cap:
            chosen.setdefault((record["seed"], record["fold"]), record)
    complete = {s for s, _ in chosen if sum(seed == s for seed, _ in chosen) == folds}
    return [r for (seed, _), r in sorted(chosen.items()) if seed in complete]


def table(a: argparse.Namespace) -> None:
    runs: dict[str, list[tuple[dict, int, int]]] = {}
    for folder in sorted((a.out / "runs").iterdir()):
        config, patience, cap = stopping_rule(folder.name)
        runs.setdefault(config, []).extend((json.loads(p.read_text()), patience, cap)
                                           for p in sorted(folder.glob("seed*_fold*.json")))
    rows, curve = [], []
    for config, group in runs.items():
        made = {(patience, cap) for _, patience, cap in group}
        for patience, cap in sorted(made | set(a.rules)):
            records = pooled(group, patience, cap, a.folds)
            if records:
                rows.append({"config": config, "patience": patience, "epoch_cap": cap,
                             **summarise(records, patience, cap),
                             "load_mean": np.mean([r["load_end"][0] for r in records])})
        for cap in range(2, max(c for _, c in made) + 1):
            records = pooled(group, a.curve_patience, cap, a.folds)
            if records:
                curve.append({"config": config, "patience": a.curve_patience, "epoch_cap": cap,
                              **summarise(records, a.curve_patience, cap)})
    result = pd.DataFrame(rows)
    a.out.mkdir(parents=True, exist_ok=True)
    result.to_csv(a.out / "recipe.csv", index=False)
    pd.DataFrame(curve).to_csv(a.out / "epochs.csv", index=False)
    shown = result[["config", "patience", "epoch_cap", "macro_auroc", "seed_min", "seed_max", "n_seeds",
                    "auroc_covid", "auroc_pneumonia", "auroc_regular", "epochs_run", "cpu_s_per_training",
                    "train_frames", "n_trainings", "load_mean"]]
    (a.out / "recipe.md").write_text(markdown(shown))
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(shown.round(3).to_string(index=False))


def markdown(frame: pd.DataFrame) -> str:
    """A pipe table (tabulate, pandas' own route, is not a dependency)."""
    cells = [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row] for row in frame.itertuples(index=False)]
    lines = [list(frame.columns), ["---"] * len(frame.columns), *cells]
    return "".join("| " + " | ".join(line) + " |\n" for line in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("run", "table"))
    parser.add_argument("--out", type=Path, default=Path("bench_recipe"))
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--small-input", action="store_true", help="CIFAR-style stem (3x3 stride 1, no max-pool)")
    parser.add_argument("--in-chans", type=int, default=3, choices=(1, 3))
    parser.add_argument("--fpv", type=int, default=10, help="frames per video of the training and stopping parts")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--no-augment", dest="augment", action="store_false")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--rules", nargs="+", default=[(2, 30), (3, 10), (3, 30), (4, 10), (5, 10)],
                        type=lambda t: tuple(int(v) for v in t.split(":")),
                        help="table: early-stopping rules PATIENCE:EPOCH_CAP replayed on the runs")
    parser.add_argument("--curve-patience", type=int, default=3, help="table: the patience of epochs.csv's curve")
    a = parser.parse_args()
    run(a) if a.command == "run" else table(a)


if __name__ == "__main__":
    main()
