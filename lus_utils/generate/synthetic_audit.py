"""The audit of a synthetic set: does it copy its training frames, and does it look like the real class?

Why: a generator trained on three frames can reach a low loss by memorizing them; its "synthetic" images
would then add copies, not new data, and a classifier gain would mean little. Both generators of the study
(DDPM, notebook 05; textual inversion, notebook 04) are audited here the same way, so their numbers compare.

Memorization: each synthetic image's nearest real frame by pixel correlation (Pearson, grey, resized to
`audit_size`), among (a) the minority frames of the training split, (b) every frame of the training split,
and, for the leakage ablation, (c) the minority test frames; SSIM (scikit-image) is computed for the
`ssim_candidates` frames nearest by correlation (SSIM against every frame would cost a filter pass per
pair). An image counts as memorized above `memorization_threshold` (correlation) or `ssim_threshold`.
What "close" means for real data is shown beside it: held-out minority frames (other patients) against the
training frames, and each minority training frame against the other training frames (its own video's
neighbours, which are near-copies).

Realism (`realism` module): KID with a subset interval and a classifier two-sample test (C2ST AUROC) of the
synthetic images against held-out real minority frames (patients the generator never saw), beside the
real reference (the minority training frames against the same held-out frames, same sizes), in a feature
space fixed across conditions: a seeded random CNN by default; Inception or DINOv2 where their weights are
on disk; the baseline classifier's or raw pixels on request. `reached_realism` says whether the set meets
`realism.REALISM_CRITERION`. The quality gate is also applied to real frames and to noise, so its pass
rates can be read. Plus grey-level histograms.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lus_utils.generate import realism, synthetic
from lus_utils.images import load_image, load_images
from lus_utils.params import MINORITY_CLASS, AuditParams
from lus_utils.provenance import code_version, write_csv_atomic, write_json_atomic

NO_FEATURES = "none (no baseline classifier run given)"
HISTOGRAM_BINS = 32
NOISE_IMAGES = 50  # noise images per kind the gate is checked on
PIXEL_FEATURE_SIZE = 16  # "pixels" feature space: grey images at 16 x 16, 256 numbers
INCEPTION_SIZE = 299
DINOV2_MODEL = "facebook/dinov2-small"


# --- loading -------------------------------------------------------------------------------------------------
def load_grey(paths: list[str], size: int) -> np.ndarray:
    """Grey uint8 images (N, size, size)."""
    return load_images(paths, size, grayscale=True)


def load_rgb_nchw(paths: list[str], size: int) -> np.ndarray:
    """uint8 RGB images (N, 3, size, size): what the classifiers read."""
    return load_images(paths, size).transpose(0, 3, 1, 2).copy()


# --- similarity ----------------------------------------------------------------------------------------------
def correlation_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of every image of `a` with every image of `b` (N_a, N_b); flat images give 0."""
    def standardize(x: np.ndarray) -> np.ndarray:
        x = x.reshape(len(x), -1).astype(np.float64)
        x = x - x.mean(axis=1, keepdims=True)
        norm = np.linalg.norm(x, axis=1, keepdims=True)
        return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)

    return standardize(a) @ standardize(b).T


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a, b, data_range=255))


def nearest(queries: np.ndarray, pool: np.ndarray, candidates: int, exclude_self: bool = False) -> dict[str, np.ndarray]:
    """For each query: the pool image nearest by correlation and the best SSIM among the `candidates` nearest.

    With `exclude_self` (queries and pool are the same images) an image is never its own neighbour.
    """
    n = len(queries)
    empty = {"index": np.full(n, -1), "correlation": np.full(n, np.nan), "ssim_index": np.full(n, -1),
             "ssim": np.full(n, np.nan)}
    if n == 0 or len(pool) == 0 or (exclude_self and len(pool) < 2):
        return empty
    corr = correlation_matrix(queries, pool)
    if exclude_self:
        np.fill_diagonal(corr, -np.inf)
    best = corr.argmax(axis=1)
    k = min(candidates, len(pool) - (1 if exclude_self else 0))
    top = np.argsort(-corr, axis=1)[:, :k]
    ssim_values = np.array([[ssim(queries[i], pool[j]) for j in top[i]] for i in range(n)])
    pick = ssim_values.argmax(axis=1)
    return {"index": best, "correlation": corr[np.arange(n), best],
            "ssim_index": top[np.arange(n), pick], "ssim": ssim_values[np.arange(n), pick]}


def similarity_summary(result: dict[str, np.ndarray], params: AuditParams, pool_size: int) -> dict[str, Any]:
    """Distribution of nearest-frame similarities and the share counted as memorized."""
    corr, ssim_values = result["correlation"], result["ssim"]
    valid = ~np.isnan(corr)
    if not valid.any():
        return {"n": 0, "pool_size": pool_size}
    corr, ssim_values = corr[valid], ssim_values[valid]
    above_corr = corr > params.memorization_threshold
    above_ssim = ssim_values > params.ssim_threshold
    return {"n": int(valid.sum()), "pool_size": pool_size,
            "correlation": {"median": float(np.median(corr)), "p90": float(np.quantile(corr, 0.9)),
                            "max": float(corr.max()), "share_above": float(above_corr.mean())},
            "ssim": {"median": float(np.median(ssim_values)), "p90": float(np.quantile(ssim_values, 0.9)),
                     "max": float(ssim_values.max()), "share_above": float(above_ssim.mean())},
            "share_memorized": float((above_corr | above_ssim).mean()),
            "values": {"correlation": corr.round(4).tolist(), "ssim": ssim_values.round(4).tolist()}}


# --- realism -------------------------------------------------------------------------------------------------
class FeatureExtractorUnavailable(RuntimeError):
    """The chosen feature space cannot be built here (weights not on disk, or no classifier run)."""


def feature_function(kind: str, feature_run_dir: str = "", batch_size: int = 32):
    """A function paths -> features (N, D) for `kind`, and the feature space's description.

    classifier: `lus_utils.classify.training.load_run_model(run_dir)` then `lus_utils.classify.models.extract_features`;
    inception: torchvision Inception-v3 pool features (ImageNet weights from torchvision's cache);
    dinov2: transformers `facebook/dinov2-small` CLS features (Hugging Face cache);
    pixels: grey images at 16 x 16 (a crude space that needs no weights);
    random_cnn: `realism.RandomCNN` (seeded random weights, the default: fixed across conditions).
    Returns (None, NO_FEATURES) for `classifier` without a run folder.
    """
    if kind == "random_cnn":
        network = realism.RandomCNN()

        def random_cnn(paths: list[str]) -> np.ndarray:
            return network(load_grey(paths, realism.FEATURE_SIZE))

        return random_cnn, network.description
    if kind == "pixels":
        def pixels(paths: list[str]) -> np.ndarray:
            return load_grey(paths, PIXEL_FEATURE_SIZE).reshape(len(paths), -1).astype(np.float64) / 255.0

        return pixels, f"pixels (grey {PIXEL_FEATURE_SIZE}x{PIXEL_FEATURE_SIZE}, no learned features)"
    if kind == "classifier":
        if not feature_run_dir:
            return None, NO_FEATURES
        from lus_utils.classify.models import extract_features
        from lus_utils.classify.training import load_run_model

        model, _, image_size = load_run_model(Path(feature_run_dir))

        def classifier(paths: list[str]) -> np.ndarray:
            return np.asarray(extract_features(model, load_rgb_nchw(paths, image_size), batch_size))

        return classifier, f"baseline classifier penultimate layer ({Path(feature_run_dir).name}, {image_size} px)"
    if kind == "inception":
        return _inception_features(batch_size), "Inception-v3 pool3 (ImageNet weights)"
    if kind == "dinov2":
        return _dinov2_features(batch_size), f"DINOv2 CLS ({DINOV2_MODEL})"
    raise ValueError(f"unknown feature_extractor '{kind}'; known: random_cnn, classifier, inception, dinov2, pixels")


def _inception_features(batch_size: int):
    import torch
    from torchvision.models import Inception_V3_Weights, inception_v3

    try:
        model = inception_v3(weights=Inception_V3_Weights.IMAGENET1K_V1)
    except Exception as err:  # torchvision raises URLError/RuntimeError variants when it cannot download
        raise FeatureExtractorUnavailable(
            f"Inception-v3 ImageNet weights are not available ({type(err).__name__}: {err}). torchvision keeps them "
            "in $TORCH_HOME/hub/checkpoints; download them once online, or use feature_extractor 'classifier' "
            "(with feature_run_dir) or 'pixels'.") from err
    model.fc = torch.nn.Identity()
    model.eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    @torch.no_grad()
    def inception(paths: list[str]) -> np.ndarray:
        out = []
        for start in range(0, len(paths), batch_size):
            x = torch.from_numpy(load_rgb_nchw(paths[start:start + batch_size], INCEPTION_SIZE)).float() / 255
            out.append(model((x - mean) / std).numpy())
        return np.concatenate(out)

    return inception


def _dinov2_features(batch_size: int):
    import torch
    from transformers import AutoImageProcessor, AutoModel

    try:
        processor = AutoImageProcessor.from_pretrained(DINOV2_MODEL)
        model = AutoModel.from_pretrained(DINOV2_MODEL).eval()
    except Exception as err:  # transformers raises OSError (offline) or HTTP errors
        raise FeatureExtractorUnavailable(
            f"DINOv2 weights '{DINOV2_MODEL}' are not available ({type(err).__name__}: {err}). Download them once "
            "online into the Hugging Face cache, or use feature_extractor 'classifier' (with feature_run_dir) "
            "or 'pixels'.") from err

    @torch.no_grad()
    def dinov2(paths: list[str]) -> np.ndarray:
        out = []
        for start in range(0, len(paths), batch_size):
            images = [load_image(p) for p in paths[start:start + batch_size]]
            inputs = processor(images=images, return_tensors="pt")
            out.append(model(**inputs).last_hidden_state[:, 0].numpy())
        return np.concatenate(out)

    return dinov2


def realism_figures(synthetic_paths: list[str], train_paths: list[str], holdout_paths: list[str],
                    params: AuditParams, feature_run_dir: str = "") -> dict[str, Any]:
    """KID and C2ST of the synthetic images and of the real training frames against held-out real frames
    (`realism.compare_sets`), whether the set reached realism, and the feature space used."""
    extract, space = feature_function(params.feature_extractor, feature_run_dir)
    result: dict[str, Any] = {"feature_space": space, "n": {"synthetic": len(synthetic_paths),
                              "minority_train": len(train_paths), "minority_holdout": len(holdout_paths)},
                              "reached_realism": None, "criterion": realism.REALISM_CRITERION.text}
    smallest = min(result["n"].values())
    if extract is None or smallest < params.c2st_folds:
        result["not_measured"] = (space if extract is None else
                                  f"too few images ({result['n']}); KID and C2ST need {params.c2st_folds} per side")
        return result
    features = [extract(paths) for paths in (synthetic_paths, train_paths, holdout_paths)]
    result.update(realism.compare_sets(*features, params.kid_subset, params.kid_subsets, params.audit_seed,
                                       params.c2st_folds))
    result["feature_dim"] = int(features[0].shape[1])
    result["reached_realism"] = realism.REALISM_CRITERION(result)
    return result


def intensity_histograms(groups: dict[str, np.ndarray]) -> dict[str, Any]:
    """Grey-level histograms (densities over HISTOGRAM_BINS bins) and each group's 1-D Wasserstein
    distance to the real minority training frames."""
    from scipy.stats import wasserstein_distance

    edges = np.linspace(0, 256, HISTOGRAM_BINS + 1)
    out: dict[str, Any] = {"bin_edges": edges.tolist(), "density": {}, "mean": {}, "std": {},
                           "wasserstein_to_minority_train": {}}
    centers = (edges[:-1] + edges[1:]) / 2
    for name, images in groups.items():
        if len(images) == 0:
            continue
        counts, _ = np.histogram(images.ravel(), bins=edges)
        out["density"][name] = (counts / counts.sum()).round(6).tolist()
        out["mean"][name] = float(images.mean())
        out["std"][name] = float(images.std())
    reference = out["density"].get("minority_train")
    for name, density in out["density"].items():
        if reference is not None and name != "minority_train":
            out["wasserstein_to_minority_train"][name] = float(wasserstein_distance(centers, centers, density,
                                                                                    reference))
    return out


# --- the audit -----------------------------------------------------------------------------------------------
@dataclass
class AuditFrames:
    """The real frames an audit compares a set with, from the split its generator was trained for."""

    train: pd.DataFrame  # every training frame (all classes)
    minority_train: pd.DataFrame
    minority_holdout: pd.DataFrame  # minority validation and test frames
    minority_test: pd.DataFrame
    seen: pd.DataFrame  # the frames the generator trained on (its provenance)


def audit_frames(frames: pd.DataFrame, split_column: str, label: str, record: dict[str, Any]) -> AuditFrames:
    if split_column not in frames.columns:
        raise ValueError(f"frames have no column '{split_column}'")
    train = frames[frames[split_column] == "train"].reset_index(drop=True)
    return AuditFrames(
        train=train,
        minority_train=train[train["label"] == label].reset_index(drop=True),
        minority_holdout=frames[(frames["label"] == label) & frames[split_column].isin(["val", "test"])],
        minority_test=frames[(frames["label"] == label) & (frames[split_column] == "test")].reset_index(drop=True),
        seen=frames[frames["path"].isin(set(record.get("training_frames", [])))].reset_index(drop=True))


def memorization_pools(parts: AuditFrames, train_grey: np.ndarray, label: str, size: int,
                       ablation: bool) -> dict[str, tuple[pd.DataFrame, np.ndarray]]:
    """The pools of real frames (table, grey images) a synthetic image may have memorized."""
    is_minority = (parts.train["label"] == label).to_numpy()
    pools = {"minority_train": (parts.minority_train, train_grey[is_minority]), "all_train": (parts.train, train_grey),
             "generator_training_frames": (parts.seen, load_grey(parts.seen["abspath"].tolist(), size))}
    if ablation:  # the ablation's generator saw test frames: how close it comes to them is the point
        pools["minority_test"] = (parts.minority_test, load_grey(parts.minority_test["abspath"].tolist(), size))
    return pools


def real_reference(parts: AuditFrames, pools: dict, train_grey: np.ndarray, p: AuditParams) -> dict[str, Any]:
    """How close real held-out minority frames come to the training frames: the scale for memorization."""
    rng = np.random.default_rng([p.audit_seed, 11])
    holdout = parts.minority_holdout
    if len(holdout):
        holdout = holdout.iloc[sorted(rng.choice(len(holdout), min(p.n_holdout_reference, len(holdout)),
                                                 replace=False))]
    holdout_grey = load_grey(holdout["abspath"].tolist(), p.audit_size)
    minority_grey = pools["minority_train"][1]
    return {
        "holdout_minority_vs_minority_train": similarity_summary(
            nearest(holdout_grey, minority_grey, p.ssim_candidates), p, len(parts.minority_train)),
        "holdout_minority_vs_all_train": similarity_summary(
            nearest(holdout_grey, train_grey, p.ssim_candidates), p, len(parts.train)),
        "minority_train_vs_other_minority_train": similarity_summary(
            nearest(minority_grey, minority_grey, p.ssim_candidates, exclude_self=True),
            p, len(parts.minority_train) - 1),
        "holdout_paths": holdout["path"].tolist(),
    }


def _paths_at(frame_table: pd.DataFrame, index: np.ndarray) -> list[str]:
    return [frame_table["path"].iloc[i] if i >= 0 else "" for i in index]


def note_nearest(manifest: pd.DataFrame, nearest_by_pool: dict) -> None:
    """Fill the manifest's columns naming each image's nearest training frame (all classes, and minority)."""
    table, found = nearest_by_pool["all_train"]
    minority_table, minority_found = nearest_by_pool["minority_train"]
    manifest["nearest_train_path"] = _paths_at(table, found["index"])
    manifest["nearest_train_similarity"] = np.round(found["correlation"], 5)
    manifest["nearest_train_ssim"] = np.round(found["ssim"], 5)
    manifest["nearest_minority_train_path"] = _paths_at(minority_table, minority_found["index"])
    manifest["nearest_minority_train_similarity"] = np.round(minority_found["correlation"], 5)


def closest_pairs(manifest: pd.DataFrame, nearest_by_pool: dict, population: np.ndarray, ablation: bool,
                  n: int) -> dict[str, list[dict[str, Any]]]:
    """The `n` synthetic images closest to a real frame (of the training pool; of the test pool for the ablation)."""
    closest = {}
    for name in ("all_train", "minority_test") if ablation else ("all_train",):
        pool_table, pool_found = nearest_by_pool[name]
        order = [i for i in np.argsort(-np.nan_to_num(pool_found["correlation"], nan=-2)) if population[i]]
        closest[name] = [{"synthetic": manifest["path"].iloc[i], "real": pool_table["path"].iloc[pool_found["index"][i]],
                          "real_label": pool_table["label"].iloc[pool_found["index"][i]],
                          "correlation": float(pool_found["correlation"][i]),
                          "ssim_of_best_candidate": float(pool_found["ssim"][i])}
                         for i in order[:n] if pool_found["index"][i] >= 0]
    return closest


def audit_set(set_dir: Path, frames: pd.DataFrame, split_column: str, audit_params: AuditParams,
              feature_run_dir: str = "") -> dict[str, Any]:
    """Audit the synthetic set in `set_dir`; write `<set_dir>/audit.json`, fill the manifest's nearest columns.

    `frames` is frames.csv (with `abspath`); `split_column` the split the generator was trained for.
    Shares are over the images that passed the gate (the ones a classifier would use), or over all images
    when none passed. Realism is measured in `audit_params.feature_extractor`'s space against minority frames
    the generator never saw (`realism_figures`); `feature_run_dir` (else `audit_params.feature_run_dir`) is
    the baseline classifier run, needed only for the `classifier` feature space.
    """
    set_dir = Path(set_dir)
    p = audit_params
    manifest = synthetic.read_manifest(set_dir)
    record = synthetic.read_provenance(set_dir)
    label = str(manifest["label"].iloc[0]) if len(manifest) else MINORITY_CLASS
    parts = audit_frames(frames, split_column, label, record)
    kept = synthetic.passed_gate(manifest).to_numpy()
    population = kept if kept.any() else np.ones(len(manifest), bool)
    ablation = synthetic.SyntheticSet(set_dir.name, Path(set_dir)).leakage_ablation

    synthetic_grey = load_grey(manifest["abspath"].tolist(), p.audit_size)
    train_grey = load_grey(parts.train["abspath"].tolist(), p.audit_size)
    pools = memorization_pools(parts, train_grey, label, p.audit_size, ablation)
    memorization, nearest_by_pool = {}, {}
    for name, (table, grey) in pools.items():
        found = nearest(synthetic_grey, grey, p.ssim_candidates)
        nearest_by_pool[name] = (table, found)
        memorization[name] = similarity_summary({k: v[population] for k, v in found.items()}, p, len(table))
    note_nearest(manifest, nearest_by_pool)

    unseen = parts.minority_holdout[~parts.minority_holdout["path"].isin(parts.seen["path"])]
    figures = realism_figures(manifest.loc[population, "abspath"].tolist(), parts.minority_train["abspath"].tolist(),
                              unseen["abspath"].tolist(), p, feature_run_dir or p.feature_run_dir)
    audit = {
        "set": set_dir.name,
        "generator": str(manifest["generator"].iloc[0]) if len(manifest) and "generator" in manifest else "",
        "variant": str(manifest["variant"].iloc[0]) if len(manifest) and "variant" in manifest else "",
        "label": label, "split_column": split_column, "leakage_ablation": ablation,
        "n_images": int(len(manifest)), "n_kept": int(kept.sum()),
        "rejection_rate": float(1 - kept.mean()) if len(manifest) else None,
        "population": "kept" if kept.any() else "all (no image passed the gate)",
        "gate_on_real": gate_on_real({"minority_train": parts.minority_train, "minority_holdout": parts.minority_holdout,
                                      "all_train": parts.train}, frames, split_column, set_gate(record, p)),
        "generator_training_frames": record.get("training_frames", []),
        "generator_training_frame_parts": parts.seen[split_column].value_counts().to_dict(),
        "thresholds": {"correlation": p.memorization_threshold, "ssim": p.ssim_threshold},
        "memorization": memorization,
        "real_reference": real_reference(parts, pools, train_grey, p),
        "closest_pairs": closest_pairs(manifest, nearest_by_pool, population, ablation, p.n_closest_pairs),
        "realism": figures,
        "reached_realism": figures["reached_realism"],
        "reached_realism_criterion": figures["criterion"],
        "intensity": intensity_histograms({
            "synthetic": synthetic_grey[population], "minority_train": pools["minority_train"][1],
            "minority_holdout": load_grey(parts.minority_holdout["abspath"].tolist(), p.audit_size)}),
        "params": asdict(p),
        "code_version": code_version(),
    }
    write_csv_atomic(set_dir / "manifest.csv", manifest.drop(columns=["abspath"]))
    write_json_atomic(set_dir / "audit.json", audit)
    return audit


def set_gate(record: dict[str, Any], p: AuditParams) -> AuditParams:
    """The audit parameters with the gate the set was written with (its provenance's `quality_gate`; a set
    without that record was gated by the seed's gate)."""
    gate = record.get("quality_gate", {}).get("gate", realism.SEED_GATE)
    return replace(p, gate=gate if gate in realism.GATES else realism.SEED_GATE)


def gate_on_real(tables: dict[str, pd.DataFrame], frames: pd.DataFrame, split_column: str,
                 p: AuditParams) -> dict[str, Any]:
    """The quality gate (calibrated as for the set) applied to real frames and to noise: a gate that rejects
    real frames or keeps noise cannot judge synthetic images. Real groups of more than
    realism.CALIBRATION_FRAMES frames are a seeded subset."""
    real = None
    if p.gate != realism.SEED_GATE:
        real = load_grey(realism.calibration_paths(frames, split_column, p.audit_seed), realism.GATE_SIZE)
    rng = np.random.default_rng([p.audit_seed, 17])
    groups = {}
    for name, table in tables.items():
        paths = table["abspath"].tolist()
        if len(paths) > realism.CALIBRATION_FRAMES:
            paths = [paths[i] for i in sorted(rng.choice(len(paths), realism.CALIBRATION_FRAMES, replace=False))]
        groups[name] = load_grey(paths, realism.GATE_SIZE)
    groups.update({f"noise_{k}": v for k, v in realism.noise_images(NOISE_IMAGES, realism.GATE_SIZE,
                                                                      p.audit_seed).items()})
    out = {}
    for name, images in groups.items():
        verdicts, _ = realism.quality_gate(images, p, real) if len(images) else ([], None)
        out[name] = {"n": len(verdicts),
                     "pass_rate": float(np.mean([v["passed_gate"] for v in verdicts])) if verdicts else None,
                     "seed_gate_pass_rate": float(np.mean([v["passed_seed_gate"] for v in verdicts]))
                     if verdicts else None}
    return out


def closest_pair_images(audit: dict[str, Any], set_dir: Path, frames: pd.DataFrame, pool: str = "all_train",
                        size: int | None = None) -> list[dict[str, Any]]:
    """The audit's closest pairs with their images loaded (grey): for `plots.closest_pairs`."""
    size = size or audit["params"]["audit_size"]
    abspath = dict(zip(frames["path"], frames["abspath"]))
    pairs = []
    for pair in audit["closest_pairs"].get(pool, []):
        pairs.append({**pair, "synthetic_image": load_image(Path(set_dir) / pair["synthetic"], size, grayscale=True),
                      "real_image": load_image(abspath[pair["real"]], size, grayscale=True)})
    return pairs


def summary_table(audit: dict[str, Any]) -> pd.DataFrame:
    """One row per comparison: nearest-frame similarity of synthetic images and of real reference frames."""
    rows = []
    for name, stats in [*((f"synthetic vs {k}", v) for k, v in audit["memorization"].items()),
                        *((f"real {k.replace('_vs_', ' vs ')}", v) for k, v in audit["real_reference"].items()
                          if isinstance(v, dict))]:
        if not stats.get("n"):
            continue
        rows.append({"comparison": name, "n": stats["n"], "pool": stats["pool_size"],
                     "median r": stats["correlation"]["median"], "max r": stats["correlation"]["max"],
                     f"share r > {audit['thresholds']['correlation']}": stats["correlation"]["share_above"],
                     "median SSIM": stats["ssim"]["median"], "max SSIM": stats["ssim"]["max"],
                     f"share SSIM > {audit['thresholds']['ssim']}": stats["ssim"]["share_above"],
                     "share memorized": stats["share_memorized"]})
    return pd.DataFrame(rows)


def realism_table(audit: dict[str, Any]) -> pd.DataFrame:
    """KID and C2ST AUROC (with intervals) of the synthetic set and of the real reference against held-out
    real minority frames; one row saying why when nothing was measured."""
    info = audit["realism"]
    if "synthetic_vs_holdout" not in info:
        return pd.DataFrame([{"comparison": "-", "feature space": info["feature_space"],
                              "why not measured": info.get("not_measured", "")}])
    names = {"synthetic_vs_holdout": "synthetic vs held-out real",
             "real_train_vs_holdout": "real training vs held-out real (reference)"}
    return pd.DataFrame([{"comparison": label, "n per side": info["n_per_side"],
                          "KID": info[key]["kid"]["mean"], "KID low": info[key]["kid"]["ci_low"],
                          "KID high": info[key]["kid"]["ci_high"], "C2ST AUROC": info[key]["c2st"]["auroc"],
                          "C2ST low": info[key]["c2st"]["ci_low"], "C2ST high": info[key]["c2st"]["ci_high"],
                          "feature space": info["feature_space"]} for key, label in names.items()])


def interpretation(audit: dict[str, Any]) -> str:
    """A few plain sentences reading the audit's numbers (no verdict that the numbers do not support)."""
    threshold = audit["thresholds"]["correlation"]
    lines = [f"{audit['n_kept']} of {audit['n_images']} images passed the quality gate "
             f"(rejection rate {audit['rejection_rate']:.0%})."]
    on_real = audit.get("gate_on_real", {})
    shown = [f"{on_real[k]['pass_rate']:.0%} of {on_real[k]['n']} {k.replace('_', ' ')} frames"
             for k in ("minority_train", "minority_holdout", "all_train") if on_real.get(k, {}).get("n")]
    noise = [f"{v['pass_rate']:.0%} of {k.replace('noise_', '')}" for k, v in on_real.items()
             if k.startswith("noise_") and v.get("n")]
    if shown:
        lines.append(f"The same gate keeps {', '.join(shown)} (real), and {', '.join(noise)} noise images.")
    mem = audit["memorization"].get("generator_training_frames", {})
    ref = audit["real_reference"].get("holdout_minority_vs_minority_train", {})
    neighbours = audit["real_reference"].get("minority_train_vs_other_minority_train", {})
    if mem.get("n"):
        lines.append(f"Against the {mem['pool_size']} frames the generator trained on, the median nearest-frame "
                     f"correlation is {mem['correlation']['median']:.3f} (max {mem['correlation']['max']:.3f}); "
                     f"{mem['share_memorized']:.0%} of the images count as memorized (r > {threshold} or SSIM > "
                     f"{audit['thresholds']['ssim']}).")
    if ref.get("n"):
        lines.append(f"For scale: real held-out minority frames (other patients) reach a median of "
                     f"{ref['correlation']['median']:.3f} against the minority training frames, and a training frame "
                     f"against its own video's other frames {neighbours.get('correlation', {}).get('median', float('nan')):.3f}.")
    test = audit["memorization"].get("minority_test")
    if test and test.get("n"):
        lines.append(f"Leakage ablation: against the minority test frames the median is {test['correlation']['median']:.3f} "
                     f"and {test['share_memorized']:.0%} count as copies of test frames; a classifier tested on "
                     "those frames would be flattered.")
    info = audit["realism"]
    if "synthetic_vs_holdout" not in info:
        lines.append(f"Realism: not measured ({info.get('not_measured', info['feature_space'])}).")
    else:
        syn, ref = info["synthetic_vs_holdout"], info["real_train_vs_holdout"]
        lines.append(f"Realism against {info['n_per_side']} held-out real minority frames per side "
                     f"({info['feature_space']}): KID {syn['kid']['mean']:.4f} "
                     f"[{syn['kid']['ci_low']:.4f}, {syn['kid']['ci_high']:.4f}] for the synthetic set, "
                     f"{ref['kid']['mean']:.4f} [{ref['kid']['ci_low']:.4f}, {ref['kid']['ci_high']:.4f}] for real "
                     f"training frames; C2ST AUROC {syn['c2st']['auroc']:.2f} [{syn['c2st']['ci_low']:.2f}, "
                     f"{syn['c2st']['ci_high']:.2f}] against {ref['c2st']['auroc']:.2f} for real frames "
                     "(0.5: indistinguishable).")
        lines.append(("The generator reached realism" if info["reached_realism"] else
                      "The generator did NOT reach realism") + f" by the criterion: {info['criterion']}.")
    return "\n".join(lines)


def gate_table(audit: dict[str, Any]) -> pd.DataFrame:
    """The quality gate's pass rate (and the seed gate's) on real frames and on noise."""
    return pd.DataFrame([{"images": name.replace("_", " "), "n": v["n"], "gate pass rate": v["pass_rate"],
                          "seed gate pass rate": v["seed_gate_pass_rate"]}
                         for name, v in audit.get("gate_on_real", {}).items()])
