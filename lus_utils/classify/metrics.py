"""Test metrics of a classifier run, at frame and video level, with patient-bootstrap confidence intervals.

Why its own module: every condition of the study is compared through these numbers, so they are computed
in one place, checked against scikit-learn in the tests, and written the same way for every run.

Conventions (all documented in the report):
- Classes are the run's classes, in order; labels and predictions are class indices.
- Precision of a class never predicted is 0 (scikit-learn's `zero_division=0`).
- A class absent from the true labels has no recall, F1, AUROC or AP: they are NaN (written as null),
  never 0. Macro averages are over the classes present in the true labels (as balanced accuracy is);
  weighted averages weight by support, so absent classes weigh nothing anyway.
- Video level: the mean of a video's frame probabilities, then argmax.
- 95% CIs: percentile bootstrap over test patients (a patient's frames and videos move together), seeded.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

SUMMARY_KEYS = ("accuracy", "balanced_accuracy", "macro_precision", "macro_recall", "macro_f1",
                "weighted_precision", "weighted_recall", "weighted_f1", "macro_auroc", "macro_ap")
PER_CLASS_KEYS = ("precision", "recall", "f1", "specificity", "auroc", "ap", "support")


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts with rows = true class, columns = predicted class."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _ratio(num: np.ndarray, den: np.ndarray, empty: float) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(num.shape, empty, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else math.nan


def _ovr_scores(y_true: np.ndarray, prob: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """One-vs-rest AUROC and average precision per class; NaN where a class is absent (or alone)."""
    auroc = np.full(k, math.nan)
    ap = np.full(k, math.nan)
    for c in range(k):
        positive = y_true == c
        if positive.any():
            ap[c] = average_precision_score(positive, prob[:, c])
            if not positive.all():
                auroc[c] = roc_auc_score(positive, prob[:, c])
    return auroc, ap


def from_predictions(y_true: Sequence[int], y_pred: Sequence[int], prob: np.ndarray | None,
                     classes: Sequence[str], ranking: bool = True) -> dict[str, Any]:
    """All metrics of one set of predictions (`prob`: n x k class probabilities, for AUROC and AP)."""
    k = len(classes)
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    cm = confusion_matrix(y_true, y_pred, k)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    n = float(cm.sum())
    present = support > 0
    precision = _ratio(tp, predicted, 0.0)
    recall = _ratio(tp, support, math.nan)
    f1 = _ratio(2 * tp, support + predicted, math.nan)
    f1[~present] = math.nan
    negatives = n - support
    specificity = _ratio(n - support - predicted + tp, negatives, math.nan)
    if ranking and prob is not None and len(y_true):
        auroc, ap = _ovr_scores(y_true, np.asarray(prob, dtype=np.float64), k)
    else:
        auroc = ap = np.full(k, math.nan)
    weights = support / n if n else np.zeros(k)
    out: dict[str, Any] = {
        "n": int(n),
        "accuracy": float(tp.sum() / n) if n else math.nan,
        "balanced_accuracy": _nanmean(recall),
        "macro_precision": _nanmean(np.where(present, precision, math.nan)),
        "macro_recall": _nanmean(recall),
        "macro_f1": _nanmean(f1),
        "weighted_precision": float(np.sum(weights * precision)) if n else math.nan,
        "weighted_recall": float(np.nansum(weights * recall)) if n else math.nan,
        "weighted_f1": float(np.nansum(weights * f1)) if n else math.nan,
        "macro_auroc": _nanmean(auroc),
        "macro_ap": _nanmean(ap),
        "confusion_matrix": cm.tolist(),
        "per_class": {
            label: {"precision": float(precision[c]), "recall": float(recall[c]), "f1": float(f1[c]),
                    "specificity": float(specificity[c]), "auroc": float(auroc[c]), "ap": float(ap[c]),
                    "support": int(support[c])}
            for c, label in enumerate(classes)
        },
    }
    return out


def video_level(predictions: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """One row per video: its label, patient, mean frame probabilities and the argmax prediction."""
    prob_cols = [f"prob_{c}" for c in classes]
    grouped = predictions.groupby("video_id", sort=True)
    videos = grouped[prob_cols].mean()
    labels = grouped["label"].agg(lambda s: s.iloc[0])
    mixed = grouped["label"].nunique()
    if (mixed > 1).any():
        raise ValueError(f"videos with frames of several labels: {sorted(mixed[mixed > 1].index)[:5]}")
    videos["label"] = labels
    videos["patient_id"] = grouped["patient_id"].agg(lambda s: s.iloc[0])
    videos["pred"] = [classes[i] for i in np.argmax(videos[prob_cols].to_numpy(), axis=1)]
    return videos.reset_index()


def _arrays(table: pd.DataFrame, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(table["label"]) - set(index))
    if unknown:
        raise ValueError(f"labels {unknown} are not among the run's classes {list(classes)}")
    prob = table[[f"prob_{c}" for c in classes]].to_numpy(dtype=np.float64)
    y_true = table["label"].map(index).to_numpy()
    y_pred = table["pred"].map(index).to_numpy() if "pred" in table else prob.argmax(axis=1)
    return y_true, y_pred, prob


def evaluate_table(table: pd.DataFrame, classes: Sequence[str], ranking: bool = True) -> dict[str, Any]:
    """Metrics of a predictions table (label, pred, prob_<class> columns)."""
    y_true, y_pred, prob = _arrays(table, classes)
    return from_predictions(y_true, y_pred, prob, classes, ranking=ranking)


def _ci_values(y_true: np.ndarray, y_pred: np.ndarray, prob: np.ndarray, video: np.ndarray,
               classes: Sequence[str]) -> dict[str, float]:
    """The flat set of numbers that get a bootstrap CI: summaries, per-class figures, video summaries.

    `video` holds an integer video code per frame; video-level numbers use mean probabilities.
    """
    frame = from_predictions(y_true, y_pred, prob, classes)
    codes, inverse = np.unique(video, return_inverse=True)
    video_prob = np.zeros((len(codes), len(classes)))
    np.add.at(video_prob, inverse, prob)
    video_prob /= np.bincount(inverse, minlength=len(codes))[:, None]
    video_true = np.empty(len(codes), dtype=np.int64)
    video_true[inverse] = y_true
    per_video = from_predictions(video_true, video_prob.argmax(axis=1), None, classes, ranking=False)
    values = {key: frame[key] for key in ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1",
                                          "macro_auroc", "macro_ap")}
    for label in classes:
        for key in ("recall", "precision", "f1", "auroc", "ap"):
            values[f"{key}_{label}"] = frame["per_class"][label][key]
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1"):
        values[f"video_{key}"] = per_video[key]
    for label in classes:
        values[f"video_recall_{label}"] = per_video["per_class"][label]["recall"]
    return values


def bootstrap_ci(predictions: pd.DataFrame, classes: Sequence[str], n_boot: int, seed: int,
                 level: float = 0.95) -> dict[str, list[float]]:
    """Percentile CIs from resampling test patients with replacement (their frames and videos with them).

    Each drawn copy of a patient counts as its own videos. A resample where a number is undefined (e.g.
    a class drawn out) is skipped for that number; a number undefined in every resample gets [NaN, NaN].
    """
    if n_boot <= 0 or predictions.empty:
        return {}
    y_true, y_pred, prob = _arrays(predictions, classes)
    video_codes = pd.factorize(predictions["video_id"])[0]
    n_videos = int(video_codes.max()) + 1
    groups = predictions.groupby("patient_id", sort=True).indices
    patients = sorted(groups)
    rng = np.random.default_rng([seed, 20250101])
    draws: dict[str, list[float]] = {}
    for _ in range(n_boot):
        chosen = rng.integers(0, len(patients), size=len(patients))
        index = np.concatenate([groups[patients[i]] for i in chosen])
        copy = np.concatenate([np.full(len(groups[patients[i]]), j) for j, i in enumerate(chosen)])
        values = _ci_values(y_true[index], y_pred[index], prob[index], video_codes[index] + copy * n_videos,
                            classes)
        for key, value in values.items():
            draws.setdefault(key, []).append(value)
    tail = (1 - level) / 2 * 100
    out = {}
    for key, values in draws.items():
        values = np.asarray(values, dtype=np.float64)
        values = values[~np.isnan(values)]
        out[key] = ([float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))]
                    if len(values) else [math.nan, math.nan])
    return out


def evaluate(predictions: pd.DataFrame, classes: Sequence[str], n_boot: int = 0, seed: int = 0) -> dict[str, Any]:
    """Frame-level metrics at the top, `video` metrics and bootstrap `ci` beside them."""
    result = evaluate_table(predictions, classes)
    result["video"] = evaluate_table(video_level(predictions, classes), classes)
    result["ci"] = bootstrap_ci(predictions, classes, n_boot, seed)
    return result


def to_jsonable(obj: Any) -> Any:
    """NaN and infinities become None (JSON null); numpy scalars become Python numbers."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    return obj


def summary_table(metrics: dict[str, Any]) -> pd.DataFrame:
    """Per-class figures (frame and video level) as one printable table."""
    rows = []
    for level, block in (("frame", metrics), ("video", metrics.get("video", {}))):
        for label, values in block.get("per_class", {}).items():
            rows.append({"level": level, "class": label, **{k: values.get(k) for k in PER_CLASS_KEYS}})
    return pd.DataFrame(rows).set_index(["level", "class"])


def overview_table(metrics: dict[str, Any]) -> pd.DataFrame:
    """Summary figures, frame and video level side by side, with the frame-level 95% CI where computed."""
    ci = metrics.get("ci", {})
    rows = []
    for key in SUMMARY_KEYS:
        frame_ci = ci.get(key) or [None, None]
        video_ci = ci.get(f"video_{key}") or [None, None]
        rows.append({"metric": key, "frame": metrics.get(key), "frame_ci_lo": frame_ci[0],
                     "frame_ci_hi": frame_ci[1], "video": metrics.get("video", {}).get(key),
                     "video_ci_lo": video_ci[0], "video_ci_hi": video_ci[1]})
    return pd.DataFrame(rows).set_index("metric")
