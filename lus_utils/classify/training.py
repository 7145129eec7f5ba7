"""One classifier run, the measuring instrument of the study (notebooks 02 and 03 call `run_classifier`).

A run is one (arch, condition, repeat, seed) and covers every fold of its protocol: under `cv`, one model per
fold of the repeat, each trained on that fold's training part, its epoch chosen on that fold's validation
part, and its test part predicted once at the end; the test predictions of all folds are pooled out of fold,
so every frame of the data set is predicted exactly once by a model that never saw its patient. Under
`holdout` the one split is the one fold (-1). Training chooses nothing on a test part: early stopping, the
learning-rate schedule and the checkpoint look at the validation loss only, and the minority threshold of
each fold (`fixed_specificity` on that fold's validation negatives, the non-minority frames) is chosen on
validation too. Under cv no minority patient is in validation (see `data.splits`), so model selection never
hangs on one minority patient. All of a run's folds see the same seed (common random numbers across
conditions).

Everything lands in `<out>/runs/<run_id>/` (built under a temporary name, renamed when complete):
metrics.json, predictions.csv (test, every fold), val_predictions.csv, history.csv, curves.png and the
checkpoints best_fold<f>.pt (best.pt for the hold-out). The metadata reference writes no checkpoint or curves.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from lus_utils.classify import metadata_reference
from lus_utils.classify import metrics as M
from lus_utils.classify import models
from lus_utils.classify.frame_tensors import table_images
from lus_utils.classify.loop import fit
from lus_utils.classify.run_data import RunData, data_fingerprint, part_counts, prepare_data, run_folds
from lus_utils.classify.run_identity import condition_name, run_id_for
from lus_utils.params import (MINORITY_CLASS, METADATA_REFERENCE, ClassifierRunParams, TrainParams, as_dict,
                              build)
from lus_utils.paths import OutLayout, resolve_out_dir
from lus_utils.provenance import (atomic_dir, atomic_path, code_version, environment, read_json, write_csv_atomic,
                                  write_json_atomic)
from lus_utils.reproducibility import resolve_device, seed_everything

RUN_FILES = ("metrics.json", "predictions.csv", "val_predictions.csv", "history.csv")
PREDICTION_KEYS = ["path", "video_id", "patient_id", "label", "probe", "fold", "repeat", "seed"]


def _params(obj: Any, cls: type, source: str) -> Any:
    return obj if isinstance(obj, cls) else build(cls, dict(obj), source)


def checkpoint_name(fold: int, checkpoint: str = "best") -> str:
    """`best.pt` / `best_fold<f>.pt`, or `last...` for a run tested at its last epoch (`run.checkpoint`)."""
    return f"{checkpoint}.pt" if fold < 0 else f"{checkpoint}_fold{fold}.pt"


def minority_threshold(negative_scores: np.ndarray, specificity: float) -> float:
    """`metrics.threshold_at_specificity` on a fold's validation negatives; nan when the fold has none."""
    if len(negative_scores) == 0:
        return float("nan")
    return M.threshold_at_specificity(negative_scores, specificity)


def predictions_table(rows: pd.DataFrame, prob: np.ndarray, classes: list[str], fold: int, repeat: int,
                      seed: int, threshold: float) -> pd.DataFrame:
    """The contract's prediction rows: keys, pred, prob_<class> (class order) and the fold's threshold."""
    table = rows[["path", "video_id", "patient_id", "label", "probe"]].reset_index(drop=True).copy()
    table = table.assign(fold=fold, repeat=repeat, seed=seed)
    table["pred"] = [classes[i] for i in prob.argmax(axis=1)] if len(prob) else []
    for i, c in enumerate(classes):
        table[f"prob_{c}"] = prob[:, i] if len(prob) else []
    table["threshold"] = threshold
    return table


def _fold_network(data: RunData, run: ClassifierRunParams, train: TrainParams, device: torch.device,
                  folder: Path) -> dict[str, Any]:
    """Train one fold's network; its validation and test probabilities and what the record keeps."""
    seed_everything(run.seed, train.num_threads)
    images = table_images(data.table, train.image_size, train.num_threads)
    model = models.prepare(models.build_model(run.arch, len(data.classes), train.image_size, train.pretrained), device)
    print(f"fold {data.fold}: train/val/test frames {len(data.part('train'))}/{len(data.part('val'))}/"
          f"{len(data.part('test'))}")
    result = fit(model, data, images, train, run.strategy, run.seed, checkpoint=run.checkpoint)
    probs = {}
    for part in ("val", "test"):
        rows = data.part(part)
        probs[part] = models.predict_proba(model, images[torch.tensor(rows.index.to_numpy(dtype=np.int64))],
                                           train.batch_size * 2, amp=train.amp)
    torch.save({"state_dict": result.tested_state, "arch": run.arch, "classes": data.classes, "fold": data.fold,
                "image_size": train.image_size, "epoch": result.tested_epoch, "checkpoint": run.checkpoint,
                "repeat": run.repeat},
               folder / checkpoint_name(data.fold, run.checkpoint))
    training = {"epochs_run": int(len(result.history)), "best_epoch": result.best_epoch,
                "tested_epoch": result.tested_epoch, "checkpoint": run.checkpoint,
                "best_val_loss": result.best_val_loss, "stopped_early": result.stopped_early,
                "device": device.type, "amp": bool(train.amp), "seconds": result.seconds, **result.extra}
    return {"probs": probs, "history": result.history.assign(fold=data.fold), "training": training}


def _fold_metadata(data: RunData, run: ClassifierRunParams) -> dict[str, Any]:
    """Fit the metadata reference on one fold's (real) training part; its validation and test probabilities."""
    started = time.perf_counter()
    train_rows = data.table[(data.table.part == "train") & ~data.table.synthetic]
    val, test = metadata_reference.fit_predict(train_rows, [data.part("val"), data.part("test")], data.classes,
                                               run.seed)
    training = {"model": "logistic regression on " + ", ".join(metadata_reference.FEATURES),
                "seconds": time.perf_counter() - started}
    return {"probs": {"val": val, "test": test}, "history": None, "training": training}


def _evaluate(predictions: pd.DataFrame, classes: list[str], run: ClassifierRunParams,
              train: TrainParams) -> dict[str, Any]:
    """`metrics.evaluate` on the pooled predictions, for the minority class at the run's fixed specificity."""
    return M.evaluate(predictions, classes, minority=MINORITY_CLASS, fixed_specificity=run.fixed_specificity,
                      n_boot=train.n_boot, seed=run.seed)


def operating_point(predictions: pd.DataFrame, minority: str = MINORITY_CLASS) -> dict[str, Any]:
    """Pooled test sensitivity and specificity of the minority class at each fold's validation threshold."""
    if f"prob_{minority}" not in predictions.columns or predictions["threshold"].isna().all():
        return {"sensitivity": None, "specificity": None}
    called = predictions[f"prob_{minority}"] >= predictions["threshold"]
    positive = predictions["label"] == minority
    return {"sensitivity": float(called[positive].mean()) if positive.any() else None,
            "specificity": float((~called[~positive]).mean()) if (~positive).any() else None}


def _run_fold(data: RunData, run: ClassifierRunParams, train: TrainParams, device: torch.device,
              folder: Path) -> dict[str, Any]:
    """Train and test one fold: its validation and test predictions (with the fold's threshold), its history
    and what metrics.json records of it."""
    started = time.perf_counter()
    minority = MINORITY_CLASS
    reference = run.arch == METADATA_REFERENCE
    out = _fold_metadata(data, run) if reference else _fold_network(data, run, train, device, folder)
    val_rows, test = data.part("val"), data.part("test")
    scores = out["probs"]["val"][:, data.classes.index(minority)] if minority in data.classes else []
    threshold = minority_threshold(np.asarray(scores)[(val_rows["label"] != minority).to_numpy()],
                                   run.fixed_specificity) if len(scores) else float("nan")
    record = {
        "threshold": threshold, "n_train": data.counts("train"),
        "n_train_real": part_counts(data)["train (real)"].to_dict(),
        "n_synthetic": int(data.table.synthetic.sum()), "n_oversampled": int(data.table.oversampled.sum()),
        "n_val": data.counts("val"), "n_test": data.counts("test"),
        "n_test_videos": int(test["video_id"].nunique()), "n_test_patients": int(test["patient_id"].nunique()),
        "split_column": data.split_column, "synthetic": data.synthetic, "oversampling": data.oversampling,
        "training": out["training"], "seconds": time.perf_counter() - started,
    }
    return {"val": predictions_table(val_rows, out["probs"]["val"], data.classes, data.fold, run.repeat, run.seed,
                                     threshold),
            "test": predictions_table(test, out["probs"]["test"], data.classes, data.fold, run.repeat, run.seed,
                                      threshold),
            "history": out["history"], "record": record}


PER_FOLD_KEYS = ("n_train", "n_train_real", "n_synthetic", "n_oversampled", "n_val", "n_test", "n_test_videos",
                 "n_test_patients", "split_column", "training")


def _run_record(run: ClassifierRunParams, train: TrainParams, frames: pd.DataFrame, classes: list[str],
                predictions: pd.DataFrame, per_fold: dict[int, dict[str, Any]], started: float) -> dict[str, Any]:
    """metrics.json: what was run, the pooled endpoints, each fold's counts and what made it."""
    flat = {**as_dict(run), **as_dict(train)}
    folds = list(per_fold)
    record = {
        "run_id": run_id_for(flat), "condition": condition_name(flat), "classes": classes, "protocol": run.protocol,
        "repeat": run.repeat, "seed": run.seed, "folds": folds,
        "thresholds": {f: per_fold[f]["threshold"] for f in folds}, "fixed_specificity": run.fixed_specificity,
        **_evaluate(predictions, classes, run, train),
        "operating_point": {"fixed_specificity": run.fixed_specificity,
                            **operating_point(predictions, MINORITY_CLASS)},
        **{key: {f: per_fold[f][key] for f in folds} for key in PER_FOLD_KEYS},
        "synthetic": _synthetic_summary(per_fold),
        "oversampling": next((v["oversampling"] for v in per_fold.values() if v["oversampling"]), None),
        "params": {"run": as_dict(run), "train": as_dict(train)},
        "code_version": code_version(), "environment": environment(), "data_fingerprint": data_fingerprint(frames),
        "timing": {"fold_seconds": {f: per_fold[f]["seconds"] for f in folds},
                   "total_seconds": time.perf_counter() - started},
    }
    return M.to_jsonable(record)


def run_classifier(frames: pd.DataFrame, run_params: Any, train_params: Any, out_dir: str | Path) -> dict[str, Any]:
    """Train every fold, select by validation loss, test once; write the run folder; return the record."""
    started = time.perf_counter()
    run = _params(run_params, ClassifierRunParams, "run_classifier run_params")
    train = _params(train_params, TrainParams, "run_classifier train_params")
    if run.arch != METADATA_REFERENCE:
        models.check_arch(run.arch, train.image_size)
    run_id = run_id_for({**as_dict(run), **as_dict(train)})
    layout = OutLayout(resolve_out_dir(out_dir))
    folds = run_folds(frames, run)
    datas = [prepare_data(frames, run, train, layout.root, f) for f in folds]  # every fold checked first
    device = resolve_device(train.device)
    print(f"run {run_id}: {run.arch} at {train.image_size} px on {device}, protocol {run.protocol}, "
          f"repeat {run.repeat}, folds {folds}")
    with atomic_dir(layout.run_dir(run_id)) as folder:
        done = {data.fold: _run_fold(data, run, train, device, folder) for data in datas}
        predictions = pd.concat([d["test"] for d in done.values()], ignore_index=True)
        record = _run_record(run, train, frames, datas[0].classes, predictions,
                             {f: d["record"] for f, d in done.items()}, started)
        write_csv_atomic(folder / "predictions.csv", predictions)
        val_predictions = pd.concat([d["val"] for d in done.values()], ignore_index=True)
        write_csv_atomic(folder / "val_predictions.csv", val_predictions)
        histories = [d["history"] for d in done.values() if d["history"] is not None]
        history = pd.concat(histories, ignore_index=True) if histories else pd.DataFrame(columns=["fold", "epoch"])
        write_csv_atomic(folder / "history.csv", history)
        if histories:
            _save_curves(histories[0], folder / "curves.png")
        write_json_atomic(folder / "metrics.json", record)
    print(f"run {run_id} done in {time.perf_counter() - started:.1f} s -> {layout.run_dir(run_id)}")
    return record


def _synthetic_summary(per_fold: dict[int, dict[str, Any]]) -> dict[str, Any] | None:
    """The synthetic set of a run across its folds: family-level facts, with each fold's summary."""
    sets = {f: v["synthetic"] for f, v in per_fold.items() if v["synthetic"]}
    if not sets:
        return None
    first = next(iter(sets.values()))
    return {"name": first["name"], "leakage_ablation": any(s["leakage_ablation"] for s in sets.values()),
            "n_used": sum(s["n_used"] for s in sets.values()),
            "n_requested": sum(s["n_requested"] for s in sets.values()),
            "amount": first["amount"], "unit": first["unit"], "labels": first["labels"], "per_fold": sets}


def fold_counts(frames: pd.DataFrame, run_params: Any, train_params: Any, out_dir: str | Path) -> pd.DataFrame:
    """Class x part frame counts of every fold a run covers (what each fold's model trains, validates and tests
    on), checking each fold's split on the way."""
    run = _params(run_params, ClassifierRunParams, "fold_counts run_params")
    train = _params(train_params, TrainParams, "fold_counts train_params")
    tables = {f: part_counts(prepare_data(frames, run, train, out_dir, f)) for f in run_folds(frames, run)}
    return pd.concat(tables, names=["fold", "label"])


def _save_curves(history: pd.DataFrame, target: Path) -> None:
    import matplotlib.pyplot as plt

    from lus_utils.classify.figures import training_curves

    figure = training_curves(history)
    with atomic_path(target) as tmp, open(tmp, "wb") as handle:
        figure.savefig(handle, format="png", dpi=100)
    plt.close(figure)



# --- reading runs back ---------------------------------------------------------------------------------------
def load_run_model(run_dir: str | Path, fold: int | None = None) -> tuple[torch.nn.Module, list[str], int]:
    """One fold's tested checkpoint of a run (best or last epoch), for inference (the first fold's when `fold`
    is None)."""
    run_dir = Path(run_dir)
    found = sorted([p for p in run_dir.glob("*.pt") if p.name.startswith(("best", "last"))],
                   key=lambda p: (len(p.name), p.name))
    if fold is None:
        path = found[0] if found else run_dir / "best.pt"
    else:
        names = [checkpoint_name(fold, which) for which in ("best", "last")]
        path = next((run_dir / n for n in names if (run_dir / n).is_file()), run_dir / names[0])
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run the classifier first (notebook 02/03); "
                                f"checkpoints there: {[p.name for p in found]}")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model = models.build_model(checkpoint["arch"], len(checkpoint["classes"]), int(checkpoint["image_size"]))
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    return model, list(checkpoint["classes"]), int(checkpoint["image_size"])


def read_history(run_dir: str | Path) -> pd.DataFrame:
    """history.csv: one row per epoch of every fold's model (column `fold`)."""
    return pd.read_csv(Path(run_dir) / "history.csv")


def read_predictions(run_dir: str | Path, frames: pd.DataFrame | None = None,
                     name: str = "predictions.csv") -> pd.DataFrame:
    """predictions.csv (or val_predictions.csv), with each frame's `abspath` when `frames` is given."""
    table = pd.read_csv(Path(run_dir) / name, dtype={"video_id": str, "patient_id": str},
                        keep_default_na=False)
    if frames is not None:
        table = table.merge(frames[["path", "abspath"]].drop_duplicates("path"), on="path", how="left")
    return table


def compare_runs(out_dir: str | Path, run_ids: list[str]) -> pd.DataFrame:
    """Headline test figures of finished runs side by side (missing runs are listed as such)."""
    runs_dir = OutLayout(resolve_out_dir(out_dir)).runs
    rows = []
    for run_id in run_ids:
        path = runs_dir / run_id / "metrics.json"
        if not path.is_file():
            rows.append({"run_id": run_id, "condition": "(not run)"})
            continue
        record = read_json(path)
        row = {"run_id": run_id, "condition": record["condition"]}
        for key in ("balanced_accuracy", "macro_f1", "macro_auroc"):
            row[key] = record.get(key)
            row[f"{key}_ci"] = record.get("ci", {}).get(key)
        for label, values in record["per_class"].items():
            row[f"recall_{label}"] = values["recall"]
            row[f"f1_{label}"] = values["f1"]
        row["video_balanced_accuracy"] = record["video"]["balanced_accuracy"]
        rows.append(row)
    return pd.DataFrame(rows).set_index("run_id")
