"""Notebook 01's tables of the frame dataset, computed from frames.csv (its figures: `data.figures`)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from lus_utils.data import splits
from lus_utils.images import intensity_stats, load_image
from lus_utils.vocabulary import CONVEX_CLASSES, VIRAL as MINORITY_CLASS

GATE_STD, GATE_ENTROPY = 30.0, 4.7  # the original study's thresholds for synthetic images, drawn for reference


def videos_table(frames: pd.DataFrame) -> pd.DataFrame:
    """One row per video (or still image): label, probe, patient, split, fold, frames kept."""
    return (frames.groupby("video_id")
            .agg(label=("label", "first"), probe=("probe", "first"), kind=("kind", "first"),
                 patient_id=("patient_id", "first"), split=("split", "first"), fold=("fold", "first"),
                 n_frames=("path", "size"), width=("width", "first"), height=("height", "first"))
            .reset_index().sort_values(["label", "video_id"]).reset_index(drop=True))


def sample_frames(frames: pd.DataFrame, per_group: int, seed: int) -> pd.DataFrame:
    """`per_group` frames per class and probe, from distinct videos where possible."""
    rng = np.random.default_rng(seed)
    picks = []
    for _, group in frames.groupby(["label", "probe"]):
        one_per_video = group.groupby("video_id").head(1)
        pool = one_per_video if len(one_per_video) >= per_group else group
        picks.append(pool.iloc[rng.permutation(len(pool))[:per_group]])
    return pd.concat(picks).reset_index(drop=True)


def intensity_table(frames: pd.DataFrame, per_class: int, seed: int) -> pd.DataFrame:
    """Grey-level mean, std and histogram entropy (nats) of up to `per_class` frames per class (0 = all)."""
    rng = np.random.default_rng(seed)
    rows = []
    for label, group in frames.groupby("label"):
        if per_class and len(group) > per_class:
            group = group.iloc[np.sort(rng.permutation(len(group))[:per_class])]
        for record in group.itertuples():
            rows.append({"label": label, "video_id": record.video_id,
                         **intensity_stats(load_image(record.abspath))})
    return pd.DataFrame(rows)


def gate_pass_rates(stats: pd.DataFrame) -> pd.DataFrame:
    """Share of real frames per class that would pass the original study's synthetic-image gate."""
    passed = (stats["std"] > GATE_STD) & (stats["entropy"] > GATE_ENTROPY)
    return passed.groupby(stats["label"]).mean().rename("share passing seed gate").to_frame()


def minority_table(frames: pd.DataFrame) -> pd.DataFrame:
    videos = videos_table(frames)
    return videos[videos.label == MINORITY_CLASS].reset_index(drop=True)


def split_tables(frames: pd.DataFrame, n_folds: int) -> dict[str, pd.DataFrame]:
    """The printable class x part table of the hold-out split and of every fold."""
    tables = {"hold-out": splits.summary_wide(frames, "split")}
    for fold in range(n_folds):
        tables[f"fold {fold}"] = splits.summary_wide(frames, splits.cv_column(0, fold))
    seed_split = splits.original_video_column(0)
    if seed_split in frames.columns:  # the original study's replica's video split (patients may straddle parts)
        tables["seed video split (repeat 0)"] = splits.summary_wide(frames, seed_split)
    return tables


def skipped_table(report: dict) -> pd.DataFrame:
    """The input files that were skipped or excluded, with why."""
    rows = ([{**r, "status": "skipped"} for r in report["skipped"]]
            + [{**r, "status": "excluded by parameters"} for r in report["excluded"]])
    return pd.DataFrame(rows, columns=["file", "reason", "status"])


def folds_overview(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Patients per class and part for every fold, side by side."""
    per_fold = {name: table["patients"] for name, table in tables.items() if name.startswith("fold")}
    return pd.concat(per_fold or {"hold-out": tables["hold-out"]["patients"]}, axis=1)  # hold-out: no folds


# --- the probe and frame-size confound (issue 12) ------------------------------------------------------
# frames.csv's width/height are each frame's native size as decoded, before any model resizes it.
SIZE_FEATURES = {"native width": "width", "native height": "height"}


def probe_table(frames: pd.DataFrame) -> pd.DataFrame:
    """Class x probe: frames, videos and patients, and each class's share of linear-probe frames."""
    counts = (frames.groupby(["label", "probe"])
              .agg(frames=("path", "size"), videos=("video_id", "nunique"), patients=("patient_id", "nunique"))
              .unstack("probe", fill_value=0))
    counts.columns = [f"{what} {probe}" for what, probe in counts.columns]
    linear = frames["probe"].eq("linear").groupby(frames["label"]).mean()
    return counts.assign(**{"share of frames linear": linear}).astype({c: int for c in counts.columns})


def native_size_table(frames: pd.DataFrame) -> pd.DataFrame:
    """Native frame width and height per class: median and range over frames, distinct sizes over videos."""
    rows = {}
    for label, group in frames.groupby("label"):
        row = {}
        for name, column in SIZE_FEATURES.items():
            values = group[column]
            row[f"{name} median"] = float(values.median())
            row[f"{name} min"] = int(values.min())
            row[f"{name} max"] = int(values.max())
        row["pixels median"] = float((group["width"] * group["height"]).median())
        row["distinct sizes (videos)"] = int(group.drop_duplicates("video_id")[["width", "height"]]
                                             .drop_duplicates().shape[0])
        rows[label] = row
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("label")


def shortcut_scores(frames: pd.DataFrame) -> dict[str, tuple[np.ndarray, str]]:
    """Each metadata-only score, and in which direction of it the minority class lies.

    Directions are fixed from the confound the issue names (viral: linear probe, small frames), not fitted.
    """
    pixels = (frames["width"] * frames["height"]).to_numpy(float)
    return {
        "probe alone (linear = 1)": (frames["probe"].eq("linear").to_numpy(float), "linear -> minority"),
        "native width alone": (-frames["width"].to_numpy(float), "narrower -> minority"),
        "native height alone": (-frames["height"].to_numpy(float), "lower -> minority"),
        "native size alone (pixel count)": (-pixels, "fewer pixels -> minority"),
        # Lexicographic: any linear frame above any convex one, then fewer pixels first.
        "probe then size": (frames["probe"].eq("linear").to_numpy(float) * 1e12 - pixels,
                            "linear, then fewer pixels -> minority"),
    }


def shortcut_separability(frames: pd.DataFrame, minority: str = MINORITY_CLASS) -> pd.DataFrame:
    """How well each metadata-only score separates the minority class from all others (AUROC, AP).

    Per frame (what a classifier is scored on) and per video (one row each). AP's chance level is the
    minority share, given as `prevalence`. Scores are fixed in advance (see `shortcut_scores`), so these
    are in-sample but not fitted: no threshold or direction is chosen on the data.
    """
    if minority not in set(frames["label"]):
        raise ValueError(f"class '{minority}' has no frames here; the shortcut check needs it "
                         f"(classes present: {sorted(frames['label'].unique())})")
    if frames["label"].nunique() < 2:
        raise ValueError("the shortcut check needs frames of the minority class and of at least one other")
    rows = []
    for unit, table in (("frames", frames), ("videos", frames.drop_duplicates("video_id"))):
        positive = table["label"].eq(minority).to_numpy()
        for name, (score, direction) in shortcut_scores(table).items():
            rows.append({"unit": unit, "score": name, "direction": direction, "n": len(table),
                         "n_minority": int(positive.sum()), "prevalence": float(positive.mean()),
                         "auroc": float(roc_auc_score(positive, score)),
                         "ap": float(average_precision_score(positive, score))})
    return pd.DataFrame(rows).set_index(["unit", "score"])


def simulated_draws_table(frames: pd.DataFrame) -> pd.DataFrame:
    """Per simulated draw (`sim_<target>_d<d>`): patients and frames per class and part, the target's pool size."""
    rows = []
    for column in sorted(c for c in frames.columns if c.startswith("sim_") and not c.endswith("_rank")):
        covered = frames[frames[column].isin(splits.PARTS)]
        target = column.split("_")[1]
        for (label, part), group in covered.groupby(["label", column]):
            rows.append({"draw": column, "target": target, "class": label, "part": part,
                         "patients": group["patient_id"].nunique(), "frames": len(group)})
    if not rows:
        return pd.DataFrame(columns=["draw", "target", "class", "part", "patients", "frames"])
    return pd.DataFrame(rows).pivot_table(index=["draw", "class"], columns="part", values=["patients", "frames"],
                                          fill_value=0)


def convex_shortcuts(frames: pd.DataFrame) -> pd.DataFrame:
    """What still tells the three convex classes apart without their pathology: native frame size and source
    (image or video file) per class, within the convex probe."""
    convex = frames[(frames["probe"] == "convex") & frames["label"].isin(CONVEX_CLASSES)]
    return convex.groupby("label").agg(
        frames=("path", "size"), patients=("patient_id", "nunique"),
        median_width=("width", "median"), median_height=("height", "median"),
        distinct_sizes=("width", lambda w: int(pd.Series(list(zip(w, convex.loc[w.index, "height"]))).nunique())),
        share_from_images=("kind", lambda k: float((k == "image").mean())))
