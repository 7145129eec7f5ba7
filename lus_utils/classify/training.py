"""One classifier run, the measuring instrument of the study (notebooks 02 and 03 call `run_classifier`).

A run is one (arch, condition, repeat, seed) and covers every split of its protocol, one model each: under
`cv`, one model per fold of the repeat, each trained on that fold's training part, its epoch chosen on that
fold's validation part, and its test part predicted once at the end; the test predictions of all folds are
pooled out of fold, so every frame of the data set is predicted exactly once by a model that never saw its
patient. Under `simulated`, one model per draw of the target class, each tested on its draw's test patients
(the draw, not the pool, is the unit the comparison pairs). Under `holdout` the one split is the one model.
Training chooses nothing on a test part: early stopping, the learning-rate schedule and the checkpoint look at
the validation loss only, and the minority threshold of each model (`fixed_specificity` on its validation
negatives) is chosen on validation too. All of a run's models see the same seed (common random numbers across
conditions).

Everything lands in `<out>/runs/<run_id>/` (built under a temporary name, renamed when complete):
metrics.json, predictions.csv (test, every model), val_predictions.csv, history.csv, curves.png and the
checkpoints best_fold<f>.pt / best_draw<d>.pt (best.pt for a single split). The metadata reference writes no
checkpoint or curves.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from lus_utils import records
from lus_utils.classify import metadata_reference
from lus_utils.classify import metrics as M
from lus_utils.classify import models
from lus_utils.classify.frame_tensors import table_images
from lus_utils.classify.loop import fit
from lus_utils.classify.run_data import RunData, data_fingerprint, part_counts, prepare_data, run_splits
from lus_utils.config.classify import ClassifierRunParams, EvaluationParams, TrainParams
from lus_utils.config.runtime import RuntimeParams
from lus_utils.config.schema import as_dict, build
from lus_utils.paths import OutLayout, resolve_out_dir
from lus_utils.classify.figures import training_curves
from lus_utils.provenance import atomic_dir, atomic_path, code_version, environment, write_csv_atomic, write_json_atomic
from lus_utils.reproducibility import resolve_device, resolve_precision, seed_everything
from lus_utils.vocabulary import METADATA_REFERENCE, SIMULATED, RunKey, Split

RUN_FILES = ("metrics.json", "predictions.csv", "val_predictions.csv", "history.csv")


def _params(obj: Any, cls: type, source: str) -> Any:
    return obj if isinstance(obj, cls) else build(cls, dict(obj), source)


def checkpoint_name(split: Split, checkpoint: str = "best") -> str:
    """`best.pt` for a single split, `best_fold<f>.pt` / `best_draw<d>.pt` per model, or `last...` for a run
    tested at its last epoch (`run.checkpoint`)."""
    if split.unit < 0:
        return f"{checkpoint}.pt"
    return f"{checkpoint}_{'draw' if split.protocol == SIMULATED else 'fold'}{split.unit}.pt"


def minority_threshold(negative_scores: np.ndarray, specificity: float) -> float:
    """`metrics.threshold_at_specificity` on a model's validation negatives; nan when it has none."""
    if len(negative_scores) == 0:
        return float("nan")
    return M.threshold_at_specificity(negative_scores, specificity)


def predictions_table(rows: pd.DataFrame, prob: np.ndarray, classes: list[str], split: Split, repeat: int,
                      seed: int, threshold: float) -> pd.DataFrame:
    """The contract's prediction rows (`records.prediction_columns`): keys, the model that predicted them (fold
    or draw), pred, prob_<class> (class order) and the model's threshold."""
    table = rows[["path", "video_id", "patient_id", "label", "probe"]].reset_index(drop=True).copy()
    simulated = split.protocol == SIMULATED
    table = table.assign(fold=-1 if simulated else split.unit, draw=split.unit if simulated else -1, repeat=repeat,
                         seed=seed)
    table["pred"] = [classes[i] for i in prob.argmax(axis=1)] if len(prob) else []
    for i, c in enumerate(classes):
        table[f"prob_{c}"] = prob[:, i] if len(prob) else []
    table["threshold"] = threshold
    return table


def _network(data: RunData, run: ClassifierRunParams, train: TrainParams, runtime: RuntimeParams,
             device: torch.device, folder: Path) -> dict[str, Any]:
    """Train one split's network; its validation and test probabilities and what the record keeps."""
    seed_everything(run.seed, runtime.threads)
    precision = resolve_precision(runtime.precision, device)
    images = table_images(data.table, train.image_size, runtime.threads)
    model = models.prepare(models.build_model(run.arch, len(data.classes), train.image_size, train.pretrained), device)
    print(f"{data.split_column}: train/val/test frames {len(data.part('train'))}/{len(data.part('val'))}/"
          f"{len(data.part('test'))}")
    result = fit(model, data, images, train, run.strategy, run.seed, augment=run.augment, precision=precision,
                 checkpoint=run.checkpoint)
    probs = {}
    for part in ("val", "test"):
        rows = data.part(part)
        probs[part] = models.predict_proba(model, images[torch.tensor(rows.index.to_numpy(dtype=np.int64))],
                                           train.batch_size * 2, precision=precision)
    torch.save({"state_dict": result.tested_state, "arch": run.arch, "classes": data.classes,
                "split": data.split_column, "image_size": train.image_size, "epoch": result.tested_epoch,
                "checkpoint": run.checkpoint, "repeat": run.repeat},
               folder / checkpoint_name(data.split, run.checkpoint))
    training = {"epochs_run": int(len(result.history)), "best_epoch": result.best_epoch,
                "tested_epoch": result.tested_epoch, "checkpoint": run.checkpoint,
                "best_val_loss": result.best_val_loss, "stopped_early": result.stopped_early,
                "device": device.type, "precision": precision, "seconds": result.seconds, **result.extra}
    return {"probs": probs, "history": result.history.assign(split=data.split_column), "training": training}


def _metadata(data: RunData, run: ClassifierRunParams) -> dict[str, Any]:
    """Fit the metadata reference on one split's (real) training part; its validation and test probabilities."""
    started = time.perf_counter()
    train_rows = data.table[(data.table.part == "train") & ~data.table.synthetic]
    val, test = metadata_reference.fit_predict(train_rows, [data.part("val"), data.part("test")], data.classes,
                                               run.seed)
    training = {"model": "logistic regression on " + ", ".join(metadata_reference.FEATURES),
                "seconds": time.perf_counter() - started}
    return {"probs": {"val": val, "test": test}, "history": None, "training": training}


def operating_point(predictions: pd.DataFrame, minority: str) -> dict[str, Any]:
    """Pooled test sensitivity and specificity of the minority class at each model's validation threshold."""
    if f"prob_{minority}" not in predictions.columns or predictions["threshold"].isna().all():
        return {"sensitivity": None, "specificity": None}
    called = predictions[f"prob_{minority}"] >= predictions["threshold"]
    positive = predictions["label"] == minority
    return {"sensitivity": float(called[positive].mean()) if positive.any() else None,
            "specificity": float((~called[~positive]).mean()) if (~positive).any() else None}


def _run_split(data: RunData, run: ClassifierRunParams, train: TrainParams, evaluation: EvaluationParams,
               runtime: RuntimeParams, device: torch.device, folder: Path) -> dict[str, Any]:
    """Train and test one split: its validation and test predictions (with the model's threshold), its history
    and what metrics.json records of it."""
    started = time.perf_counter()
    minority = data.minority
    out = _metadata(data, run) if run.arch == METADATA_REFERENCE else _network(data, run, train, runtime, device,
                                                                                folder)
    val_rows, test = data.part("val"), data.part("test")
    scores = out["probs"]["val"][:, data.classes.index(minority)] if minority in data.classes else []
    threshold = minority_threshold(np.asarray(scores)[(val_rows["label"] != minority).to_numpy()],
                                   evaluation.fixed_specificity) if len(scores) else float("nan")
    record = {
        "threshold": threshold, "n_train": data.counts("train"),
        "n_train_real": part_counts(data)["train (real)"].to_dict(),
        "n_synthetic": int(data.table.synthetic.sum()), "n_oversampled": int(data.table.oversampled.sum()),
        "n_val": data.counts("val"), "n_test": data.counts("test"),
        "n_test_videos": int(test["video_id"].nunique()), "n_test_patients": int(test["patient_id"].nunique()),
        "synthetic": data.synthetic, "oversampling": data.oversampling,
        "training": out["training"], "seconds": time.perf_counter() - started,
    }
    return {"val": predictions_table(val_rows, out["probs"]["val"], data.classes, data.split, run.repeat, run.seed,
                                     threshold),
            "test": predictions_table(test, out["probs"]["test"], data.classes, data.split, run.repeat, run.seed,
                                      threshold),
            "history": out["history"], "record": record}


PER_SPLIT_KEYS = ("n_train", "n_train_real", "n_synthetic", "n_oversampled", "n_val", "n_test", "n_test_videos",
                  "n_test_patients", "training")


def _run_record(key: RunKey, run: ClassifierRunParams, train: TrainParams, evaluation: EvaluationParams,
                runtime: RuntimeParams, frames: pd.DataFrame, classes: list[str], predictions: pd.DataFrame,
                per_split: dict[str, dict[str, Any]], started: float) -> dict[str, Any]:
    """metrics.json: what was run (its identity in the vocabulary's types), the pooled endpoints, each split's
    counts and what made it."""
    minority = key.condition.minority
    columns = list(per_split)
    record = {
        **records.run_identity(key, classes, columns),
        "thresholds": {c: per_split[c]["threshold"] for c in columns},
        "fixed_specificity": evaluation.fixed_specificity,
        **M.evaluate(predictions, classes, minority=minority, fixed_specificity=evaluation.fixed_specificity,
                     n_boot=evaluation.n_boot, seed=run.seed),
        "operating_point": {"fixed_specificity": evaluation.fixed_specificity, **operating_point(predictions, minority)},
        **{name: {c: per_split[c][name] for c in columns} for name in PER_SPLIT_KEYS},
        "synthetic": _synthetic_summary(per_split),
        "oversampling": next((v["oversampling"] for v in per_split.values() if v["oversampling"]), None),
        "params": {"run": as_dict(run), "train": as_dict(train), "evaluation": as_dict(evaluation),
                   "runtime": as_dict(runtime)},
        "code_version": code_version(), "environment": environment(), "data_fingerprint": data_fingerprint(frames),
        "timing": {"split_seconds": {c: per_split[c]["seconds"] for c in columns},
                   "total_seconds": time.perf_counter() - started},
    }
    return M.to_jsonable(record)


def run_classifier(frames: pd.DataFrame, run_params: Any, train_params: Any, evaluation: Any, runtime: Any,
                   out_dir: str | Path) -> dict[str, Any]:
    """Train every split's model, select by validation loss, test once; write the run folder; return the record."""
    started = time.perf_counter()
    run = _params(run_params, ClassifierRunParams, "run_classifier run_params")
    train = _params(train_params, TrainParams, "run_classifier train_params")
    evaluation = _params(evaluation, EvaluationParams, "run_classifier evaluation")
    runtime = _params(runtime, RuntimeParams, "run_classifier runtime")
    if run.arch != METADATA_REFERENCE:
        models.check_arch(run.arch, train.image_size)
    key = RunKey.from_params(as_dict(run))
    layout = OutLayout(resolve_out_dir(out_dir))
    datas = [prepare_data(frames, run, train, layout.root, s) for s in run_splits(frames, run)]  # all checked first
    device = resolve_device(runtime.device)
    print(f"run {key.run_id}: {run.arch} at {train.image_size} px on {device}, protocol {run.protocol}, "
          f"repeat {run.repeat}, splits {[d.split_column for d in datas]}")
    with atomic_dir(layout.run_dir(key.run_id)) as folder:
        done = {d.split_column: _run_split(d, run, train, evaluation, runtime, device, folder) for d in datas}
        predictions = pd.concat([d["test"] for d in done.values()], ignore_index=True)
        record = _run_record(key, run, train, evaluation, runtime, frames, datas[0].classes, predictions,
                             {c: d["record"] for c, d in done.items()}, started)
        write_csv_atomic(folder / "predictions.csv", predictions)
        write_csv_atomic(folder / "val_predictions.csv", pd.concat([d["val"] for d in done.values()],
                                                                   ignore_index=True))
        histories = [d["history"] for d in done.values() if d["history"] is not None]
        history = pd.concat(histories, ignore_index=True) if histories else pd.DataFrame(columns=["split", "epoch"])
        write_csv_atomic(folder / "history.csv", history)
        if histories:
            _save_curves(histories[0], folder / "curves.png")
        write_json_atomic(folder / "metrics.json", record)
    print(f"run {key.run_id} done in {time.perf_counter() - started:.1f} s -> {layout.run_dir(key.run_id)}")
    return record


def _synthetic_summary(per_split: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The synthetic set of a run across its splits: family-level facts, with each split's summary."""
    sets = {c: v["synthetic"] for c, v in per_split.items() if v["synthetic"]}
    if not sets:
        return None
    first = next(iter(sets.values()))
    return {"family": first["family"], "leakage_ablation": any(s["leakage_ablation"] for s in sets.values()),
            "n_used": sum(s["n_used"] for s in sets.values()),
            "n_requested": sum(s["n_requested"] for s in sets.values()),
            "amount": first["amount"], "unit": first["unit"], "labels": first["labels"], "per_split": sets}


def split_counts(frames: pd.DataFrame, run_params: Any, train_params: Any, out_dir: str | Path) -> pd.DataFrame:
    """Class x part frame counts of every split a run covers (what each model trains, validates and tests on),
    checking each split on the way."""
    run = _params(run_params, ClassifierRunParams, "split_counts run_params")
    train = _params(train_params, TrainParams, "split_counts train_params")
    tables = {s.column: part_counts(prepare_data(frames, run, train, out_dir, s)) for s in run_splits(frames, run)}
    return pd.concat(tables, names=["split", "label"])


def _save_curves(history: pd.DataFrame, target: Path) -> None:
    figure = training_curves(history)
    with atomic_path(target) as tmp, open(tmp, "wb") as handle:
        figure.savefig(handle, format="png", dpi=100)
    plt.close(figure)


# --- reading runs back ---------------------------------------------------------------------------------------
def load_run_model(run_dir: str | Path, split: str | None = None) -> tuple[torch.nn.Module, list[str], int]:
    """The tested checkpoint (best or last epoch) of one split's model of a run (its first model's when `split`,
    a frames.csv split column, is None), for inference."""
    run_dir = Path(run_dir)
    found = sorted([p for p in run_dir.glob("*.pt") if p.name.startswith(("best", "last"))],
                   key=lambda p: (len(p.name), p.name))
    if split is None:
        path = found[0] if found else run_dir / "best.pt"
    else:
        names = [checkpoint_name(Split.from_column(split), which) for which in ("best", "last")]
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
    """history.csv: one row per epoch of every split's model (column `split`)."""
    return pd.read_csv(Path(run_dir) / "history.csv")


def compare_runs(out_dir: str | Path, run_ids: list[str]) -> pd.DataFrame:
    """Headline test figures of finished runs side by side (missing or unreadable runs are listed as such)."""
    runs_dir = OutLayout(resolve_out_dir(out_dir)).runs
    rows = []
    for run_id in run_ids:
        try:
            _, record = records.read_run_record(runs_dir / run_id / "metrics.json")
        except records.RecordError as err:
            rows.append({"run_id": run_id, "condition": f"(not run: {err})"[:120]})
            continue
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
