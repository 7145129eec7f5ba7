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
