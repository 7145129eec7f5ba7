"""Test metrics against scikit-learn, including the absent-class conventions (null, never 0)."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (accuracy_score, average_precision_score, balanced_accuracy_score, confusion_matrix,
                             f1_score, precision_recall_fscore_support, precision_score, recall_score,
                             roc_auc_score)

from lus_utils.classify import metrics as M

CLASSES = ["covid", "pneumonia", "regular", "viral"]
TOL = 1e-9


def random_predictions(n: int, k: int, seed: int,
                       absent: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, k, n)
    if absent is not None:
        y_true[y_true == absent] = (absent + 1) % k
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y_true] * rng.random((n, 1))
    prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y_true, prob.argmax(axis=1), prob


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_frame_metrics_match_sklearn(seed: int) -> None:
    y_true, y_pred, prob = random_predictions(300, 4, seed)
    got = M.from_predictions(y_true, y_pred, prob, CLASSES)
    labels = list(range(4))
    assert got["confusion_matrix"] == confusion_matrix(y_true, y_pred, labels=labels).tolist()
    assert got["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred), abs=TOL)
    assert got["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, y_pred), abs=TOL)
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average=average, zero_division=0)
        assert got[f"{average}_precision"] == pytest.approx(p, abs=TOL)
        assert got[f"{average}_recall"] == pytest.approx(r, abs=TOL)
        assert got[f"{average}_f1"] == pytest.approx(f, abs=TOL)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    onehot = np.eye(4)[y_true]
    for c, label in enumerate(CLASSES):
        block = got["per_class"][label]
        assert block["precision"] == pytest.approx(p[c], abs=TOL)
        assert block["recall"] == pytest.approx(r[c], abs=TOL)
        assert block["f1"] == pytest.approx(f[c], abs=TOL)
        assert block["support"] == s[c]
        specificity = recall_score(y_true == c, y_pred == c, pos_label=False)
        assert block["specificity"] == pytest.approx(specificity, abs=TOL)
        assert block["auroc"] == pytest.approx(roc_auc_score(onehot[:, c], prob[:, c]), abs=TOL)
        assert block["ap"] == pytest.approx(average_precision_score(onehot[:, c], prob[:, c]), abs=TOL)
    assert got["macro_auroc"] == pytest.approx(roc_auc_score(y_true, prob, multi_class="ovr", average="macro"), abs=TOL)
    assert got["macro_ap"] == pytest.approx(average_precision_score(onehot, prob, average="macro"), abs=TOL)


def test_class_never_predicted_has_zero_precision_like_sklearn() -> None:
    y_true, _, prob = random_predictions(200, 4, 5)
    y_pred = prob[:, :3].argmax(axis=1)  # viral (index 3) never predicted
    got = M.from_predictions(y_true, y_pred, prob, CLASSES)
    assert got["per_class"]["viral"]["precision"] == 0.0
    assert got["per_class"]["viral"]["recall"] == 0.0
    assert got["macro_precision"] == pytest.approx(precision_score(y_true, y_pred, average="macro", zero_division=0),
                                                   abs=TOL)


def test_absent_class_is_null_not_zero() -> None:
    y_true, y_pred, prob = random_predictions(200, 4, 3, absent=3)
    y_pred[:5] = 3  # a few predictions of the absent class: precision 0, not undefined
    got = M.from_predictions(y_true, y_pred, prob, CLASSES)
    viral = got["per_class"]["viral"]
    for key in ("recall", "f1", "auroc", "ap"):
        assert math.isnan(viral[key]), key
    assert viral["precision"] == 0.0 and viral["support"] == 0
    present = [0, 1, 2]
    assert got["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, y_pred), abs=TOL)
    assert got["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, labels=present, average="macro"), abs=TOL)
    assert got["macro_recall"] == pytest.approx(recall_score(y_true, y_pred, labels=present, average="macro"), abs=TOL)
    onehot = np.eye(4)[y_true][:, present]
    assert got["macro_auroc"] == pytest.approx(roc_auc_score(onehot, prob[:, present], average="macro"), abs=TOL)
    assert got["weighted_f1"] == pytest.approx(f1_score(y_true, y_pred, labels=list(range(4)), average="weighted",
                                                        zero_division=0), abs=TOL)
    assert got["confusion_matrix"][3] == [0, 0, 0, 0]
    written = json.loads(json.dumps(M.to_jsonable(got)))
    assert written["per_class"]["viral"]["auroc"] is None
    assert written["per_class"]["viral"]["ap"] is None
    assert written["per_class"]["viral"]["recall"] is None


def predictions_frame(seed: int = 0, n_patients: int = 8) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        for v in range(2):
            label = CLASSES[(p + v) % 4]
            for f in range(int(rng.integers(2, 6))):
                prob = rng.dirichlet(np.ones(4) + 3 * (np.array(CLASSES) == label))
                rows.append({"path": f"p{p}v{v}f{f}.png", "video_id": f"p{p}v{v}", "patient_id": f"p{p}",
                             "label": label, **{f"prob_{c}": prob[i] for i, c in enumerate(CLASSES)}})
    table = pd.DataFrame(rows)
    table["pred"] = [CLASSES[i] for i in table[[f"prob_{c}" for c in CLASSES]].to_numpy().argmax(axis=1)]
    return table


def test_video_level_is_mean_probability_then_argmax() -> None:
    table = predictions_frame()
    videos = M.video_level(table, CLASSES)
    expected = table.groupby("video_id")[[f"prob_{c}" for c in CLASSES]].mean()
    for _, row in videos.iterrows():
        means = expected.loc[row["video_id"]].to_numpy()
        assert row["pred"] == CLASSES[int(np.argmax(means))]
        assert np.allclose(row[[f"prob_{c}" for c in CLASSES]].to_numpy(dtype=float), means, atol=TOL)
    result = M.evaluate(table, CLASSES)
    y_true = videos["label"].map(CLASSES.index)
    y_pred = videos["pred"].map(CLASSES.index)
    assert result["video"]["n"] == table["video_id"].nunique()
    assert result["video"]["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, y_pred), abs=TOL)


def test_bootstrap_is_seeded_and_over_patients() -> None:
    table = predictions_frame(1)
    a = M.bootstrap_ci(table, CLASSES, n_boot=40, seed=3)
    b = M.bootstrap_ci(table, CLASSES, n_boot=40, seed=3)
    c = M.bootstrap_ci(table, CLASSES, n_boot=40, seed=4)
    assert a == b and a != c
    lo, hi = a["accuracy"]
    assert 0 <= lo <= hi <= 1
    assert M.bootstrap_ci(table, CLASSES, n_boot=0, seed=0) == {}
    # One patient: every resample is that patient, so the interval collapses to the point estimate.
    single = table[table.patient_id == "p0"]
    point = M.evaluate_table(single, CLASSES)["accuracy"]
    assert M.bootstrap_ci(single, CLASSES, n_boot=10, seed=0)["accuracy"] == [pytest.approx(point)] * 2


def test_overview_and_summary_tables() -> None:
    result = M.to_jsonable(M.evaluate(predictions_frame(2), CLASSES, n_boot=10, seed=0))
    overview = M.overview_table(result)
    assert overview.loc["balanced_accuracy", "frame"] == result["balanced_accuracy"]
    assert overview.loc["macro_f1", "frame_ci_lo"] == result["ci"]["macro_f1"][0]
    assert set(M.summary_table(result).index.get_level_values(0)) == {"frame", "video"}


def test_unknown_label_is_refused() -> None:
    table = predictions_frame().assign(label="mystery")
    with pytest.raises(ValueError, match="mystery"):
        M.evaluate_table(table, CLASSES)


# --- the study's endpoints on pooled out-of-fold predictions -----------------------------------------------
@pytest.mark.parametrize("seed", [0, 3])
def test_fast_auroc_and_ap_match_sklearn_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    positive = rng.random(200) < 0.2
    score = np.round(rng.random(200) + 0.3 * positive, 1)  # rounded: many ties
    assert M.binary_auroc(positive, score) == pytest.approx(roc_auc_score(positive, score), abs=TOL)
    assert M.average_precision(positive, score) == pytest.approx(average_precision_score(positive, score), abs=TOL)


def test_auroc_and_ap_by_hand() -> None:
    # scores 0.9 (pos), 0.8 (neg), 0.8 (pos), 0.1 (neg): pairs pos>neg: (0.9>0.8, 0.9>0.1, 0.8=0.8 half, 0.8>0.1)
    positive, score = np.array([1, 0, 1, 0], bool), np.array([0.9, 0.8, 0.8, 0.1])
    assert M.binary_auroc(positive, score) == pytest.approx(3.5 / 4)
    # thresholds 0.9: P=1, R=1/2; 0.8: P=2/3, R=1 -> AP = 0.5*1 + 0.5*2/3
    assert M.average_precision(positive, score) == pytest.approx(0.5 + 1 / 3)
    assert math.isnan(M.binary_auroc(np.ones(3, bool), np.arange(3.0)))


def test_threshold_at_specificity_by_hand() -> None:
    negatives = [0.1, 0.2, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9] * 2  # 20 negatives
    t = M.threshold_at_specificity(negatives, 0.95)  # k = 19 -> just above the 19th smallest (0.9)
    assert t > 0.9 and t == pytest.approx(0.9)
    assert np.mean(np.asarray(negatives) < t) >= 0.95
    t80 = M.threshold_at_specificity(negatives, 0.8)  # k = 16 -> just above 0.7 (the 16th smallest)
    assert 0.7 < t80 < 0.7 + 1e-12 and np.mean(np.asarray(negatives) < t80) == pytest.approx(0.8)
    assert M.threshold_at_specificity(negatives, 0.0) == 0.1
    with pytest.raises(ValueError, match="validation negative"):
        M.threshold_at_specificity([], 0.95)


def pooled_table(seed: int = 0) -> pd.DataFrame:
    """Out-of-fold predictions shaped as CONTRACT.md says: 4 viral patients, 8 others, 2 folds."""
    rng = np.random.default_rng(seed)
    rows = []
    for patient in range(12):
        label = "viral" if patient < 4 else CLASSES[patient % 3]
        for video in range(2):
            for frame in range(5):
                logits = rng.normal(size=4) + 1.5 * np.eye(4)[CLASSES.index(label)]
                prob = np.exp(logits) / np.exp(logits).sum()
                rows.append({"path": f"p{patient}/v{video}/{frame}.png", "video_id": f"p{patient}v{video}",
                             "patient_id": f"p{patient}", "label": label,
                             "probe": "linear" if label == "viral" else "convex",
                             "fold": patient % 2, "repeat": 0, "seed": 0, "pred": CLASSES[int(prob.argmax())],
                             **{f"prob_{c}": prob[i] for i, c in enumerate(CLASSES)},
                             "threshold": 0.4 if patient % 2 else 0.3})
    return pd.DataFrame(rows)


def test_pooled_endpoints_match_sklearn_and_hand() -> None:
    table = pooled_table()
    got = M.evaluate(table, CLASSES, minority="viral", fixed_specificity=0.95)
    y, pred = table["label"], table["pred"]
    positive, score = (y == "viral").to_numpy(), table["prob_viral"].to_numpy()
    assert got["minority_auroc"] == pytest.approx(roc_auc_score(positive, score), abs=TOL)
    assert got["minority_ap"] == pytest.approx(average_precision_score(positive, score), abs=TOL)
    assert got["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred), abs=TOL)
    assert got["accuracy"] == pytest.approx(accuracy_score(y, pred), abs=TOL)
    for key, average in (("weighted_precision", precision_score), ("weighted_recall", recall_score),
                         ("weighted_f1", f1_score)):
        assert got[key] == pytest.approx(average(y, pred, average="weighted", zero_division=0), abs=TOL)
    assert got["minority_recall"] == pytest.approx(recall_score(positive, (pred == "viral").to_numpy()), abs=TOL)
    hand = np.mean(score[positive] >= table["threshold"].to_numpy()[positive])  # each row's own fold threshold
    assert got["minority_sens_at_spec"] == pytest.approx(hand)
    assert got["n_minority_patients"] == 4 and got["n_other_patients"] == 8
    videos = M.video_level(table, CLASSES)
    assert got["video_balanced_accuracy"] == pytest.approx(balanced_accuracy_score(videos["label"], videos["pred"]))


def test_holdout_call_without_threshold_still_works() -> None:
    table = pooled_table().drop(columns=["threshold"])
    got = M.evaluate(table, CLASSES, n_boot=0, seed=0)  # today's call in training.run_classifier
    assert got["minority_class"] == "viral" and math.isnan(got["minority_sens_at_spec"])
    assert "per_class" in got and "video" in got


def test_stratified_bootstrap_keeps_minority_count_and_bounds() -> None:
    patients = list("abcdefgh")
    minority = [True, True, True, False, False, False, False, False]
    draws = M.stratified_patient_draws(patients, minority, 300, seed=1)
    assert ((draws[:, :3] < 3).all() and (draws[:, 3:] >= 3).all())  # each stratum resampled within itself
    assert (draws == M.stratified_patient_draws(patients, minority, 300, seed=1)).all()
    ci = M.evaluate(pooled_table(), CLASSES, minority="viral", n_boot=200, seed=0)["ci"]
    for key in ("minority_auroc", "minority_ap", "minority_sens_at_spec", "balanced_accuracy"):
        lo, hi = ci[key]
        assert 0 <= lo <= hi <= 1, key
