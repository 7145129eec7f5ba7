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

Realism: the synthetic images against held-out real minority frames (patients the generator never saw), beside
the real reference (the minority training frames against the same held-out frames, same sizes), in two feature
spaces. The deciding one knows ultrasound (`structure_figures`): an encoder trained on the split's training
frames of the other classes (`ultrasound_encoder`, cached per split under the output folder's
`generators/encoders`), where a permutation test, KID, density and coverage are read (`structure_realism`);
`reached_realism` says whether the set meets `structure_realism.STRUCTURE_CRITERION`. The second opinion is the
earlier measure (`realism_figures`): KID with a subset interval and a classifier two-sample test (C2ST AUROC) in a
space fixed across conditions (`synthetic_audit_features`, a seeded random CNN by default), which reads intensity
statistics rather than structure; its verdict is `second_opinion_reached_realism`. The quality gate is also
applied to real frames and to noise, so its pass rates can be read. Plus grey-level histograms. The audit's
tables and sentences are `synthetic_audit_summary`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import wasserstein_distance
from skimage.metrics import structural_similarity

from lus_utils import records, synthetic_sets
from lus_utils.config.generate import AuditParams
from lus_utils.data.simulated_minority import within_real_patients
from lus_utils.generate import realism
from lus_utils.generate.structure_realism import STRUCTURE_CRITERION, compare_structure
from lus_utils.generate.synthetic_audit_features import feature_function, load_grey
from lus_utils.generate.ultrasound_encoder import EncoderSpec, encoder_for_split
from lus_utils.images import load_image
from lus_utils.paths import OutLayout
from lus_utils.provenance import code_version, write_csv_atomic, write_json_atomic
from lus_utils.vocabulary import VIRAL, SetRef

HISTOGRAM_BINS = 32
NOISE_IMAGES = 50  # noise images per kind the gate is checked on


def correlation_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of every image of `a` with every image of `b` (N_a, N_b); flat images give 0."""
    def standardize(x: np.ndarray) -> np.ndarray:
        x = x.reshape(len(x), -1).astype(np.float64)
        x = x - x.mean(axis=1, keepdims=True)
        norm = np.linalg.norm(x, axis=1, keepdims=True)
        return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)

    return standardize(a) @ standardize(b).T


def ssim(a: np.ndarray, b: np.ndarray) -> float:
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


def structure_figures(synthetic_paths: list[str], train_paths: list[str], holdout_paths: list[str],
                      frames: pd.DataFrame, split_column: str, label: str, params: AuditParams,
                      encoder_cache: Path | None) -> dict[str, Any]:
    """The deciding realism figures: in the split's ultrasound encoder (trained on its training frames of the
    classes other than `label`), KID, density and coverage of the synthetic images and of the real reference
    against held-out real frames, the permutation test, and whether the set meets STRUCTURE_CRITERION."""
    n = {"synthetic": len(synthetic_paths), "minority_train": len(train_paths), "minority_holdout": len(holdout_paths)}
    result: dict[str, Any] = {"feature_space": "", "n": n, "reached_realism": None,
                              "criterion": STRUCTURE_CRITERION.text}
    k = params.structure_neighbours
    if min(n.values()) <= k:
        result["not_measured"] = f"too few images ({n}); density and coverage with k={k} need more than {k} per side"
        return result
    spec = EncoderSpec(size=params.encoder_size, steps=params.encoder_steps, seed=params.audit_seed)
    try:
        encoder = encoder_for_split(frames, split_column, label, spec, encoder_cache)
    except ValueError as err:  # fewer than two other classes to train an encoder on (tiny test data)
        result["not_measured"] = f"no ultrasound encoder for {split_column}: {err}"
        return result
    result["feature_space"] = encoder.description
    result["encoder"] = {key: encoder.record.get(key) for key in ("classes", "n_frames", "frames_per_class",
                                                                  "key_hash", "train_cpu_seconds")}
    features = [encoder(load_grey(paths, params.encoder_size)) for paths in (synthetic_paths, train_paths,
                                                                              holdout_paths)]
    result.update(compare_structure(*features, params.kid_subset, params.kid_subsets, k, params.audit_seed,
                                    params.structure_permutations))
    result["reached_realism"] = STRUCTURE_CRITERION(result)
    return result


def default_encoder_cache(set_dir: Path) -> Path | None:
    """Where a set's split encoder is cached: its output folder's `generators/encoders` when the set sits in an
    output folder's `synthetic/`, else nowhere (trained in memory)."""
    set_dir = Path(set_dir)
    return OutLayout(set_dir.parent.parent).encoders if set_dir.parent.name == "synthetic" else None


def intensity_histograms(groups: dict[str, np.ndarray]) -> dict[str, Any]:
    """Grey-level histograms (densities over HISTOGRAM_BINS bins) and each group's 1-D Wasserstein
    distance to the real minority training frames."""
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
              feature_run_dir: str = "", encoder_cache: Path | None = None) -> dict[str, Any]:
    """Audit the synthetic set in `set_dir`; write `<set_dir>/audit.json`, fill the manifest's nearest columns.

    `frames` is frames.csv (with `abspath`); `split_column` the split the generator was trained for.
    Shares are over the images that passed the gate (the ones a classifier would use), or over all images
    when none passed. Realism is measured against minority frames the generator never saw, in the split's
    ultrasound encoder (`structure_figures`, which decides; cached in `encoder_cache`, by default
    `default_encoder_cache`) and in `audit_params.feature_extractor`'s space (`realism_figures`, the second
    opinion); `feature_run_dir` (else `audit_params.feature_run_dir`) is the baseline classifier run (absolute,
    or relative to the output folder `<out>/synthetic/<set>` lies in), needed only for the `classifier` feature
    space.
    """
    set_dir = Path(set_dir)
    p = audit_params
    manifest = synthetic_sets.read_manifest(set_dir)
    record = synthetic_sets.read_provenance(set_dir)
    ref = SetRef.parse(set_dir.name)
    label = str(manifest["label"].iloc[0]) if len(manifest) else VIRAL
    # In a simulated draw the generator learned from the first k pool patients: the others are neither its
    # training frames nor held out (they train other conditions), so they take no part in the audit.
    frames = within_real_patients(frames, split_column, ref.k)
    parts = audit_frames(frames, split_column, label, record)
    kept = synthetic_sets.passed_gate(manifest).to_numpy()
    population = kept if kept.any() else np.ones(len(manifest), bool)
    ablation = synthetic_sets.leakage_ablation(set_dir)

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
    run_dir = feature_run_dir or p.feature_run_dir  # planned relative to the output folder, which holds the set
    run_dir = str(set_dir.parent.parent / run_dir) if run_dir and not Path(run_dir).is_absolute() else run_dir
    compared = (manifest.loc[population, "abspath"].tolist(), parts.minority_train["abspath"].tolist(),
                unseen["abspath"].tolist())
    figures = realism_figures(*compared, p, run_dir)
    figures["structure"] = structure_figures(*compared, frames, split_column, label, p,
                                             encoder_cache or default_encoder_cache(set_dir))
    audit = {
        **records.audit_identity(ref),
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
        "reached_realism": figures["structure"]["reached_realism"],
        "reached_realism_criterion": figures["structure"]["criterion"],
        "second_opinion_reached_realism": figures["reached_realism"],
        "second_opinion_criterion": figures["criterion"],
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
    without that record was gated by the original study's gate)."""
    gate = record.get("quality_gate", {}).get("gate", realism.ORIGINAL_GATE)
    return replace(p, gate=gate if gate in realism.GATES else realism.ORIGINAL_GATE)


def gate_on_real(tables: dict[str, pd.DataFrame], frames: pd.DataFrame, split_column: str,
                 p: AuditParams) -> dict[str, Any]:
    """The quality gate (calibrated as for the set) applied to real frames and to noise: a gate that rejects
    real frames or keeps noise cannot judge synthetic images. Real groups of more than
    realism.CALIBRATION_FRAMES frames are a seeded subset."""
    real = None
    if p.gate != realism.ORIGINAL_GATE:
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
    """The audit's closest pairs with their images loaded (grey): for `figures.closest_pairs`."""
    size = size or audit["params"]["audit_size"]
    abspath = dict(zip(frames["path"], frames["abspath"]))
    pairs = []
    for pair in audit["closest_pairs"].get(pool, []):
        pairs.append({**pair, "synthetic_image": load_image(Path(set_dir) / pair["synthetic"], size, grayscale=True),
                      "real_image": load_image(abspath[pair["real"]], size, grayscale=True)})
    return pairs
