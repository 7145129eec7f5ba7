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
- Minority endpoints (`minority_*`, flat keys): one-vs-rest AUROC and average precision of the minority
  probability; sensitivity at a fixed specificity reads each row's `threshold` (chosen per fold on that
  fold's VALIDATION negatives by `threshold_at_specificity`, never on test): a frame is called minority when
  its minority probability is >= its threshold. Without a `threshold` column it is NaN.
- 95% CIs: percentile bootstrap over test patients stratified by class (minority patients and the other
  patients are resampled separately, so every resample holds as many minority patients as the data; a
  patient's frames and videos move together), seeded. Percentiles of a bounded metric stay in its range.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

from lus_utils.params import MINORITY_CLASS

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


def midranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given the mean of the ranks they span (as scipy's rankdata 'average')."""
    _, inverse, counts = np.unique(np.asarray(values, dtype=np.float64), return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return (ends - (counts - 1) / 2.0)[inverse]


def binary_auroc(positive: np.ndarray, score: np.ndarray) -> float:
    """AUROC as the Mann-Whitney statistic with mid-ranks (ties count one half); NaN without both classes."""
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = midranks(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(positive: np.ndarray, score: np.ndarray) -> float:
    """Average precision as scikit-learn defines it: sum over distinct thresholds of recall step x precision."""
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    if n_pos == 0:
        return math.nan
    order = np.argsort(-np.asarray(score, dtype=np.float64), kind="mergesort")
    sorted_score, hits = np.asarray(score, dtype=np.float64)[order], positive[order]
    last = np.r_[np.flatnonzero(np.diff(sorted_score)), len(order) - 1]  # last row of each tied score
    tp = np.cumsum(hits)[last]
    precision = tp / (last + 1)
    recall_step = np.diff(np.r_[0, tp]) / n_pos
    return float(np.sum(recall_step * precision))


def _ovr_scores(y_true: np.ndarray, prob: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """One-vs-rest AUROC and average precision per class; NaN where a class is absent (or alone)."""
    auroc = np.array([binary_auroc(y_true == c, prob[:, c]) for c in range(k)], dtype=np.float64)
    ap = np.array([average_precision(y_true == c, prob[:, c]) for c in range(k)], dtype=np.float64)
    return auroc, ap


def threshold_at_specificity(negative_scores: Sequence[float], specificity: float) -> float:
    """The lowest threshold t with share(negative score < t) >= `specificity` (call minority at score >= t).

    Chosen on a fold's VALIDATION negatives. The lowest such t calls the most frames minority, so it gives the
    highest sensitivity at that specificity. t lies just above the k-th smallest negative score,
    k = ceil(specificity x n) (a 1e-9 tolerance keeps 0.95 x 20 at 19); k = 0 gives the smallest score.
    """
    scores = np.sort(np.asarray([float(v) for v in negative_scores], dtype=np.float64))
    if len(scores) == 0 or not np.isfinite(scores).all():
        raise ValueError("threshold_at_specificity needs at least one finite validation negative score; "
                         "check that the fold's validation part holds frames of the other classes")
    if not 0 <= specificity <= 1:
        raise ValueError(f"specificity {specificity} must lie in [0, 1] (compare.fixed_specificity)")
    k = math.ceil(specificity * len(scores) - 1e-9)
    return float(scores[0]) if k == 0 else float(np.nextafter(scores[k - 1], np.inf))


def sensitivity_at_threshold(positive: np.ndarray, score: np.ndarray, threshold: np.ndarray) -> float:
    """Share of minority frames whose minority score reaches their row's threshold; NaN without any."""
    positive = np.asarray(positive, dtype=bool)
    threshold = np.asarray(threshold, dtype=np.float64)
    if not positive.any() or not np.isfinite(threshold[positive]).all():
        return math.nan
    return float(np.mean(np.asarray(score)[positive] >= threshold[positive]))


def specificity_at_threshold(positive: np.ndarray, score: np.ndarray, threshold: np.ndarray) -> float:
    """Share of the other frames whose minority score stays below their row's threshold (test specificity)."""
    negative = ~np.asarray(positive, dtype=bool)
    threshold = np.asarray(threshold, dtype=np.float64)
    if not negative.any() or not np.isfinite(threshold[negative]).all():
        return math.nan
    return float(np.mean(np.asarray(score)[negative] < threshold[negative]))


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
    missing = [f"prob_{c}" for c in classes if f"prob_{c}" not in table]
    if missing:
        raise ValueError(f"predictions lack the columns {missing}: predictions.csv needs one prob_<class> "
                         "column per class, in class order")
    prob = table[[f"prob_{c}" for c in classes]].to_numpy(dtype=np.float64)
    y_true = table["label"].map(index).to_numpy()
    y_pred = table["pred"].map(index).to_numpy() if "pred" in table else prob.argmax(axis=1)
    if np.isnan(np.asarray(y_pred, dtype=np.float64)).any():
        raise ValueError(f"predictions hold a `pred` outside the classes {list(classes)}")
    return y_true, np.asarray(y_pred, dtype=np.int64), prob


def thresholds_of(table: pd.DataFrame) -> np.ndarray:
    """Each row's minority threshold (NaN when predictions.csv has no `threshold` column: hold-out runs)."""
    if "threshold" not in table:
        return np.full(len(table), math.nan)
    return pd.to_numeric(table["threshold"], errors="coerce").to_numpy(dtype=np.float64)


def default_minority(classes: Sequence[str], minority: str | None) -> str | None:
    """`minority`, else the study's minority class when the run has it; an unknown name is an error."""
    if minority is None:
        return MINORITY_CLASS if MINORITY_CLASS in classes else None
    if minority not in classes:
        raise ValueError(f"minority class '{minority}' is not among the classes {list(classes)}")
    return minority


def evaluate_table(table: pd.DataFrame, classes: Sequence[str], ranking: bool = True) -> dict[str, Any]:
    """Metrics of a predictions table (label, pred, prob_<class> columns)."""
    y_true, y_pred, prob = _arrays(table, classes)
    return from_predictions(y_true, y_pred, prob, classes, ranking=ranking)


def _video_arrays(y_true: np.ndarray, prob: np.ndarray, video: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per video (integer codes per frame): its label and its mean frame probabilities."""
    codes, inverse = np.unique(video, return_inverse=True)
    video_prob = np.zeros((len(codes), prob.shape[1]))
    np.add.at(video_prob, inverse, prob)
    video_prob /= np.bincount(inverse, minlength=len(codes))[:, None]
    video_true = np.empty(len(codes), dtype=np.int64)
    video_true[inverse] = y_true
    return video_true, video_prob


FLAT_FRAME_KEYS = ("accuracy", "balanced_accuracy", "macro_f1", "weighted_precision", "weighted_recall",
                   "weighted_f1")
FLAT_VIDEO_KEYS = ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1")


def endpoints(y_true: np.ndarray, y_pred: np.ndarray, prob: np.ndarray, threshold: np.ndarray,
              video: np.ndarray | None, classes: Sequence[str], minority: str | None,
              wanted: Sequence[str] | None = None) -> dict[str, float]:
    """The flat endpoints of the study (see the module doc), frame level and, given video codes, video level.

    `wanted` (metric names) skips the video level or the ranking when none of their metrics is asked for."""
    frame = from_predictions(y_true, y_pred, None, classes, ranking=False)
    out = {key: frame[key] for key in FLAT_FRAME_KEYS}
    if wanted is not None and not any(str(w).startswith("video_") for w in wanted):
        video = None
    if minority is not None:
        m = list(classes).index(minority)
        positive, score = y_true == m, prob[:, m]
        block = frame["per_class"][minority]
        out.update({f"minority_{key}": block[key] for key in ("recall", "precision", "f1", "specificity")})
        out["minority_auroc"] = binary_auroc(positive, score)
        out["minority_ap"] = average_precision(positive, score)
        out["minority_sens_at_spec"] = sensitivity_at_threshold(positive, score, threshold)
        out["minority_spec_at_threshold"] = specificity_at_threshold(positive, score, threshold)
    if video is not None:
        video_true, video_prob = _video_arrays(y_true, prob, video)
        per_video = from_predictions(video_true, video_prob.argmax(axis=1), None, classes, ranking=False)
        out.update({f"video_{key}": per_video[key] for key in FLAT_VIDEO_KEYS})
        if minority is not None:
            m = list(classes).index(minority)
            out["video_minority_recall"] = per_video["per_class"][minority]["recall"]
            out["video_minority_auroc"] = binary_auroc(video_true == m, video_prob[:, m])
            out["video_minority_ap"] = average_precision(video_true == m, video_prob[:, m])
    return out


def _ci_values(y_true: np.ndarray, y_pred: np.ndarray, prob: np.ndarray, threshold: np.ndarray,
               video: np.ndarray, classes: Sequence[str], minority: str | None) -> dict[str, float]:
    """The flat set of numbers that get a bootstrap CI: the endpoints, per-class figures, video summaries."""
    values = endpoints(y_true, y_pred, prob, threshold, video, classes, minority)
    frame = from_predictions(y_true, y_pred, prob, classes)
    values.update(macro_auroc=frame["macro_auroc"], macro_ap=frame["macro_ap"])
    for label in classes:
        for key in ("recall", "precision", "f1", "auroc", "ap"):
            values[f"{key}_{label}"] = frame["per_class"][label][key]
    return values


def patient_strata(table: pd.DataFrame, minority: str | None) -> dict[Any, bool]:
    """Per patient: whether any of its frames is of the minority class (its bootstrap stratum)."""
    if minority is None:
        return {p: False for p in table["patient_id"].unique()}
    return (table["label"] == minority).groupby(table["patient_id"]).any().to_dict()


def stratified_patient_draws(patients: Sequence[Any], is_minority: Sequence[bool], n_boot: int,
                             seed: int) -> np.ndarray:
    """n_boot x n_patients indices into `patients`: minority patients drawn with replacement among the
    minority patients, the others among the others (each resample keeps both counts), seeded."""
    flags = np.asarray(is_minority, dtype=bool)
    rng = np.random.default_rng([seed, 20250101])
    draws = np.empty((n_boot, len(patients)), dtype=np.int64)
    for stratum in (True, False):
        members = np.flatnonzero(flags == stratum)
        if len(members):
            draws[:, flags == stratum] = members[rng.integers(0, len(members), size=(n_boot, len(members)))]
    return draws


def resample_rows(groups: Sequence[np.ndarray], draw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the drawn patients (`groups[i]`: rows of patient i) and the copy each row belongs to."""
    index = np.concatenate([groups[i] for i in draw])
    copy = np.concatenate([np.full(len(groups[i]), j) for j, i in enumerate(draw)])
    return index, copy


def percentile_interval(values: Sequence[float], level: float) -> list[float]:
    """Percentile interval of the finite draws; [NaN, NaN] when none is finite."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    tail = (1 - level) / 2 * 100
    if not len(values):
        return [math.nan, math.nan]
    return [float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))]


def bootstrap_ci(predictions: pd.DataFrame, classes: Sequence[str], n_boot: int, seed: int,
                 level: float = 0.95, minority: str | None = None) -> dict[str, list[float]]:
    """Percentile CIs from resampling test patients with replacement, stratified by class (module doc).

    Each drawn copy of a patient counts as its own videos. A resample where a number is undefined (e.g.
    a class drawn out) is skipped for that number; a number undefined in every resample gets [NaN, NaN].
    """
    if n_boot <= 0 or predictions.empty:
        return {}
    y_true, y_pred, prob = _arrays(predictions, classes)
    threshold = thresholds_of(predictions)
    video_codes = pd.factorize(predictions["video_id"])[0]
    n_videos = int(video_codes.max()) + 1
    groups = predictions.groupby("patient_id", sort=True).indices
    patients = sorted(groups)
    strata = patient_strata(predictions, minority)
    draws: dict[str, list[float]] = {}
    for draw in stratified_patient_draws(patients, [strata[p] for p in patients], n_boot, seed):
        index, copy = resample_rows([groups[p] for p in patients], draw)
        values = _ci_values(y_true[index], y_pred[index], prob[index], threshold[index],
                            video_codes[index] + copy * n_videos, classes, minority)
        for key, value in values.items():
            draws.setdefault(key, []).append(value)
    return {key: percentile_interval(values, level) for key, values in draws.items()}


def evaluate(predictions: pd.DataFrame, classes: Sequence[str], minority: str | None = None,
             fixed_specificity: float | None = None, n_boot: int = 0, seed: int = 0,
             level: float = 0.95) -> dict[str, Any]:
    """Metrics of pooled (out-of-fold) or hold-out test predictions.

    Flat endpoints at the top (`endpoints`: accuracy ... minority_auroc, minority_ap, minority_sens_at_spec,
    video_*), the nested per-class figures (`per_class`, `confusion_matrix`, `video`) as before, stratified
    patient-bootstrap `ci` of every flat number, and `n_minority_patients` (the minority clusters the CIs
    resample). `fixed_specificity` is recorded only: the thresholds come with the rows.
    """
    minority = default_minority(classes, minority)
    y_true, y_pred, prob = _arrays(predictions, classes)
    video_codes = pd.factorize(predictions["video_id"])[0] if "video_id" in predictions else None
    result = evaluate_table(predictions, classes)
    if video_codes is not None:
        result["video"] = evaluate_table(video_level(predictions, classes), classes)
    result.update(endpoints(y_true, y_pred, prob, thresholds_of(predictions), video_codes, classes, minority))
    strata = patient_strata(predictions, minority) if "patient_id" in predictions else {}
    result.update(minority_class=minority, fixed_specificity=fixed_specificity,
                  n_minority_patients=int(sum(strata.values())),
                  n_other_patients=int(len(strata) - sum(strata.values())))
    result["ci"] = bootstrap_ci(predictions, classes, n_boot, seed, level, minority)
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
