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

Realism: Fréchet distance and KID between synthetic and real minority frames in the feature space of a
baseline classifier trained on real training data only (no hub weights needed); Inception or DINOv2
features are a parameter away where their weights are on disk. Plus grey-level histograms.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lus_utils.generate import synthetic
from lus_utils.images import load_image, load_images
from lus_utils.params import MINORITY_CLASS, AuditParams
from lus_utils.provenance import code_version, write_csv_atomic, write_json_atomic

NO_FEATURES = "none (no baseline classifier run given)"
HISTOGRAM_BINS = 32
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
def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (FID's formula, any feature space).

    tr(sqrt(S_a S_b)) is computed as the trace of sqrt(S_a^1/2 S_b S_a^1/2), a symmetric matrix, so it stays
    real and stable when few samples make the covariances singular.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"Fréchet distance needs at least 2 samples per side, got {len(a)} and {len(b)}")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    middle = root_a @ cov_b @ root_a
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    diff = mu_a - mu_b
    return float(max(0.0, diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root))


def kernel_inception_distance(a: np.ndarray, b: np.ndarray, subset: int, n_subsets: int,
                              seed: int) -> dict[str, float]:
    """KID: unbiased MMD^2 with the cubic polynomial kernel (x.y/d + 1)^3, averaged over seeded subsets."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    m = min(subset, len(a), len(b))
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per side, got {len(a)} and {len(b)}")
    d = a.shape[1]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
        values.append((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                      - 2 * kxy.mean())
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "subset_size": int(m),
            "n_subsets": int(n_subsets)}


class FeatureExtractorUnavailable(RuntimeError):
    """The chosen feature space cannot be built here (weights not on disk, or no classifier run)."""


def feature_function(kind: str, feature_run_dir: str = "", batch_size: int = 32):
    """A function paths -> features (N, D) for `kind`, and the feature space's description.

    classifier: `lus_utils.classify.training.load_run_model(run_dir)` then `lus_utils.classify.models.extract_features`;
    inception: torchvision Inception-v3 pool features (ImageNet weights from torchvision's cache);
    dinov2: transformers `facebook/dinov2-small` CLS features (Hugging Face cache);
    pixels: grey images at 16 x 16 (a crude space that needs no weights).
    Returns (None, NO_FEATURES) for `classifier` without a run folder.
    """
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
    raise ValueError(f"unknown feature_extractor '{kind}'; known: classifier, inception, dinov2, pixels")


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


def _subset(paths: list[str], n: int, rng: np.random.Generator) -> list[str]:
    if len(paths) <= n:
        return list(paths)
    return [paths[i] for i in sorted(rng.choice(len(paths), n, replace=False))]


def realism(synthetic_paths: list[str], train_paths: list[str], holdout_paths: list[str], params: AuditParams,
            feature_run_dir: str) -> dict[str, Any]:
    """FD and KID of the synthetic images against real minority frames, and real train vs held-out as scale."""
    extract, space = feature_function(params.feature_extractor, feature_run_dir)
    result: dict[str, Any] = {"feature_space": space, "fd": None, "kid": None}
    if extract is None:
        return result
    rng = np.random.default_rng([params.audit_seed, 7])
    sets = {"synthetic": _subset(synthetic_paths, params.fd_subset, rng),
            "minority_train": _subset(train_paths, params.fd_subset, rng),
            "minority_holdout": _subset(holdout_paths, params.fd_subset, rng)}
    features = {name: extract(paths) if len(paths) else None for name, paths in sets.items()}
    pairs = {"synthetic_vs_minority_train": ("synthetic", "minority_train"),
             "synthetic_vs_minority_holdout": ("synthetic", "minority_holdout"),
             "minority_train_vs_minority_holdout (real reference)": ("minority_train", "minority_holdout")}
    result["fd"], result["kid"] = {}, {}
    for label, (x, y) in pairs.items():
        fx, fy = features[x], features[y]
        if fx is None or fy is None or len(fx) < 2 or len(fy) < 2:
            result["fd"][label] = result["kid"][label] = None
            continue
        result["fd"][label] = frechet_distance(fx, fy)
        result["kid"][label] = kernel_inception_distance(fx, fy, params.kid_subset, params.kid_subsets,
                                                         params.audit_seed)
    result["n"] = {name: len(paths) for name, paths in sets.items()}
    result["feature_dim"] = int(next(f.shape[1] for f in features.values() if f is not None))
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
def audit_set(set_dir: Path, frames: pd.DataFrame, split_column: str, audit_params: AuditParams,
              feature_run_dir: str = "") -> dict[str, Any]:
    """Audit the synthetic set in `set_dir`; write `<set_dir>/audit.json`, fill the manifest's nearest columns.

    `frames` is frames.csv (with `abspath`); `split_column` the split the generator was trained for.
    Shares are over the images that passed the gate (the ones a classifier would use), or over all images
    when none passed. `feature_run_dir` (else `audit_params.feature_run_dir`) is the baseline classifier
    run for the classifier feature space; without one, FD/KID are null and the audit says so.
    """
    set_dir = Path(set_dir)
    p = audit_params
    manifest = synthetic.read_manifest(set_dir)
    record = synthetic.read_provenance(set_dir)
    if split_column not in frames.columns:
        raise ValueError(f"frames have no column '{split_column}'")
    label = str(manifest["label"].iloc[0]) if len(manifest) else MINORITY_CLASS
    kept = synthetic.passed_gate(manifest).to_numpy()
    population = kept if kept.any() else np.ones(len(manifest), bool)

    train = frames[frames[split_column] == "train"].reset_index(drop=True)
    minority_train = train[train["label"] == label].reset_index(drop=True)
    minority_holdout = frames[(frames["label"] == label) & frames[split_column].isin(["val", "test"])]
    minority_test = frames[(frames["label"] == label) & (frames[split_column] == "test")].reset_index(drop=True)
    seen = frames[frames["path"].isin(set(record.get("training_frames", [])))].reset_index(drop=True)
    ablation = synthetic.SyntheticSet(set_dir.name, Path(set_dir)).leakage_ablation

    size = p.audit_size
    synthetic_grey = load_grey(manifest["abspath"].tolist(), size)
    train_grey = load_grey(train["abspath"].tolist(), size)
    is_minority = (train["label"] == label).to_numpy()
    pools = {"minority_train": (minority_train, train_grey[is_minority]), "all_train": (train, train_grey),
             "generator_training_frames": (seen, load_grey(seen["abspath"].tolist(), size))}
    if ablation:
        pools["minority_test"] = (minority_test, load_grey(minority_test["abspath"].tolist(), size))

    memorization, nearest_by_pool = {}, {}
    for name, (table, grey) in pools.items():
        found = nearest(synthetic_grey, grey, p.ssim_candidates)
        nearest_by_pool[name] = (table, found)
        memorization[name] = similarity_summary({k: v[population] for k, v in found.items()}, p, len(table))

    rng = np.random.default_rng([p.audit_seed, 11])
    holdout = minority_holdout.iloc[sorted(rng.choice(len(minority_holdout), min(p.n_holdout_reference,
                                                                                   len(minority_holdout)),
                                                      replace=False))] if len(minority_holdout) else minority_holdout
    holdout_grey = load_grey(holdout["abspath"].tolist(), size)
    reference = {
        "holdout_minority_vs_minority_train": similarity_summary(
            nearest(holdout_grey, pools["minority_train"][1], p.ssim_candidates), p, len(minority_train)),
        "holdout_minority_vs_all_train": similarity_summary(
            nearest(holdout_grey, train_grey, p.ssim_candidates), p, len(train)),
        "minority_train_vs_other_minority_train": similarity_summary(
            nearest(pools["minority_train"][1], pools["minority_train"][1], p.ssim_candidates, exclude_self=True),
            p, len(minority_train) - 1),
        "holdout_paths": holdout["path"].tolist(),
    }

    table, found = nearest_by_pool["all_train"]
    minority_table, minority_found = nearest_by_pool["minority_train"]

    def path_at(frame_table: pd.DataFrame, index: np.ndarray) -> list[str]:
        return [frame_table["path"].iloc[i] if i >= 0 else "" for i in index]

    manifest["nearest_train_path"] = path_at(table, found["index"])
    manifest["nearest_train_similarity"] = np.round(found["correlation"], 5)
    manifest["nearest_train_ssim"] = np.round(found["ssim"], 5)
    manifest["nearest_minority_train_path"] = path_at(minority_table, minority_found["index"])
    manifest["nearest_minority_train_similarity"] = np.round(minority_found["correlation"], 5)

    closest = {}
    for name in ("all_train", "minority_test") if ablation else ("all_train",):
        pool_table, pool_found = nearest_by_pool[name]
        order = [i for i in np.argsort(-np.nan_to_num(pool_found["correlation"], nan=-2)) if population[i]]
        closest[name] = [{"synthetic": manifest["path"].iloc[i], "real": pool_table["path"].iloc[pool_found["index"][i]],
                          "real_label": pool_table["label"].iloc[pool_found["index"][i]],
                          "correlation": float(pool_found["correlation"][i]),
                          "ssim_of_best_candidate": float(pool_found["ssim"][i])}
                         for i in order[:p.n_closest_pairs] if pool_found["index"][i] >= 0]

    synthetic_paths = manifest.loc[population, "abspath"].tolist()
    audit = {
        "set": set_dir.name,
        "generator": str(manifest["generator"].iloc[0]) if len(manifest) and "generator" in manifest else "",
        "variant": str(manifest["variant"].iloc[0]) if len(manifest) and "variant" in manifest else "",
        "label": label, "split_column": split_column, "leakage_ablation": ablation,
        "n_images": int(len(manifest)), "n_kept": int(kept.sum()),
        "rejection_rate": float(1 - kept.mean()) if len(manifest) else None,
        "population": "kept" if kept.any() else "all (no image passed the gate)",
        "gate_on_real": gate_on_real({"minority_train": minority_train, "minority_holdout": minority_holdout}, p),
        "generator_training_frames": record.get("training_frames", []),
        "generator_training_frame_parts": seen[split_column].value_counts().to_dict(),
        "thresholds": {"correlation": p.memorization_threshold, "ssim": p.ssim_threshold},
        "memorization": memorization,
        "real_reference": reference,
        "closest_pairs": closest,
        "realism": realism(synthetic_paths, minority_train["abspath"].tolist(), minority_holdout["abspath"].tolist(),
                           p, feature_run_dir or p.feature_run_dir),
        "intensity": intensity_histograms({"synthetic": synthetic_grey[population],
                                           "minority_train": pools["minority_train"][1],
                                           "minority_holdout": load_grey(minority_holdout["abspath"].tolist(), size)}),
        "params": asdict(p),
        "code_version": code_version(),
    }
    write_csv_atomic(set_dir / "manifest.csv", manifest.drop(columns=["abspath"]))
    write_json_atomic(set_dir / "audit.json", audit)
    return audit


def gate_on_real(tables: dict[str, pd.DataFrame], p: AuditParams) -> dict[str, Any]:
    """The quality gate applied to real frames: a gate that rejects real minority frames cannot judge fakes."""
    out = {}
    for name, table in tables.items():
        verdicts = [synthetic.gate(load_image(path, grayscale=True), p.min_std, p.min_entropy)["passed_gate"]
                    for path in table["abspath"]]
        out[name] = {"n": len(verdicts), "pass_rate": float(np.mean(verdicts)) if verdicts else None}
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
    """FD and KID per comparison; one row saying why when there is no feature space."""
    info = audit["realism"]
    if info["fd"] is None:
        return pd.DataFrame([{"comparison": "-", "feature space": info["feature_space"], "FD": None, "KID": None}])
    return pd.DataFrame([{"comparison": k, "feature space": info["feature_space"], "FD": v,
                          "KID": (info["kid"][k] or {}).get("mean"), "KID std": (info["kid"][k] or {}).get("std")}
                         for k, v in info["fd"].items()])


def interpretation(audit: dict[str, Any]) -> str:
    """A few plain sentences reading the audit's numbers (no verdict that the numbers do not support)."""
    threshold = audit["thresholds"]["correlation"]
    lines = [f"{audit['n_kept']} of {audit['n_images']} images passed the quality gate "
             f"(rejection rate {audit['rejection_rate']:.0%})."]
    real = audit.get("gate_on_real", {}).get("minority_train", {})
    if real.get("n"):
        lines.append(f"The same gate keeps {real['pass_rate']:.0%} of the {real['n']} real minority training frames.")
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
    realism_info = audit["realism"]
    if realism_info["fd"] is None:
        lines.append(f"Realism in feature space: not measured, feature space {realism_info['feature_space']}.")
    else:
        fd = realism_info["fd"]
        real_fd = fd.get("minority_train_vs_minority_holdout (real reference)")
        syn_fd = fd.get("synthetic_vs_minority_holdout")
        if real_fd is not None and syn_fd is not None:
            lines.append(f"Fréchet distance to held-out minority frames: synthetic {syn_fd:.3g}, real training "
                         f"frames {real_fd:.3g} ({realism_info['feature_space']}); with so few frames both carry "
                         "large sampling noise.")
    return "\n".join(lines)
