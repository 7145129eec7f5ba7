"""The shortcut reference: a classifier that sees no pixel, only the probe and the frame's native size.

A scikit-learn logistic regression (multinomial, standardised inputs) on one-hot probe and native frame
width and height, fitted on a fold's training part. Its minority AUROC and AP stand beside every image
classifier's, so a reader sees how much of a result the probe geometry or the pixel count alone explains.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from lus_utils.config.schema import ParamError

FEATURES = ("probe", "width", "height")


def features(table: pd.DataFrame) -> pd.DataFrame:
    """probe (one-hot, convex and linear) and native width/height of each frame."""
    missing = [c for c in FEATURES if c not in table.columns or table[c].isna().all()]
    if missing:
        raise ParamError(f"the metadata reference needs frames.csv columns {list(FEATURES)}; {missing} are absent "
                         "or empty: rebuild frames.csv with notebook 01")
    probe = table["probe"].astype(str)
    return pd.DataFrame({"convex": (probe == "convex").astype(float), "linear": (probe == "linear").astype(float),
                         "width": table["width"].astype(float), "height": table["height"].astype(float)})


def fit_predict(train: pd.DataFrame, others: list[pd.DataFrame], classes: list[str], seed: int) -> list[np.ndarray]:
    """Fit on `train` (rows with label), return class probabilities (columns in `classes` order) for each
    table of `others`; a class absent from `train` gets probability 0."""

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    model.fit(features(train), train["label"].to_numpy())
    out = []
    for table in others:
        prob = model.predict_proba(features(table)) if len(table) else np.zeros((0, len(model.classes_)))
        full = np.zeros((len(table), len(classes)))
        for j, label in enumerate(model.classes_):
            full[:, classes.index(label)] = prob[:, j]
        out.append(full)
    return out
