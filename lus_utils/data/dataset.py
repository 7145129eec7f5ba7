"""The lung-ultrasound dataset: find it (or fetch it), read its files, extract frames, write frames.csv.

Frame extraction follows the POCOVID protocol (Born et al. 2021): from each video keep every
`int(fps / sample_hz)`-th frame, at most `max_frames_per_video`; still images are copied as they are
(lus_utils.data.decode). Decoded frames are cached by the content of their source file and the two extraction
numbers, so a second run with the same inputs decodes nothing; an entry is checked before it is trusted.
Every file not used is listed in data/report.json with why, also when the build stops early.

Run `python -m lus_utils.data fetch` to download the dataset (a sparse, partial git clone).
"""
from __future__ import annotations

import argparse
import difflib
import logging
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from lus_utils.data import splits
from lus_utils.config.data import DataParams, SimulatedMinorityParams
from lus_utils.data import simulated_minority
# Module-level names, so tests can replace the decoders; frame_step is part of this module's interface.
from lus_utils.data.decode import DECODER_VERSION, frame_step, sound_entry  # noqa: F401
from lus_utils.data.decode import copy_image as _copy_image, decode_video as _decode_video
from lus_utils.vocabulary import VIRAL as MINORITY_CLASS
from lus_utils.paths import DATA_ROOT_ENV, DEFAULT_DATA_CLONE, DEFAULT_DATA_ROOT, OutLayout, cache_dir
from lus_utils.provenance import (atomic_dir, file_lock, fingerprint_files, provenance, sha256_file, stable_hash,
                                  write_csv_atomic, write_json_atomic)

log = logging.getLogger(__name__)

DATASET_REPO_URL = "https://github.com/jannisborn/covid19_ultrasound.git"
# Only these paths of the repository are checked out (about 80 MB of its several GB).
DATASET_SPARSE_PATHS = ("/data/pocus_videos/", "/data/pocus_images/", "/data/dataset_metadata.csv")
DATASET_APPROX_MB = 85
# The dataset names each file by its class, then '_' or '-': Cov_/Cov-, Pneu_/Pneu-/pneu-, Reg_/Reg-, Vir_
# (checked against the real file names). The separator matters: Pneumothorax_* is not pneumonia.
LABEL_PREFIXES = {"cov": "covid", "pneu": "pneumonia", "reg": "regular", "vir": "viral"}
LABEL_PATTERN = re.compile(r"(cov|pneu|reg|vir)[_-]", re.IGNORECASE)
# Two classes named at the start (Vir_or_Pneu_*, the dataset's label_uncertain files): no label.
AMBIGUOUS_PATTERN = re.compile(r"(cov|pneu|reg|vir)[_-]or[_-](cov|pneu|reg|vir)", re.IGNORECASE)
KNOWN_PREFIXES = "Cov_, Cov-, Pneu_, Pneu-, pneu-, Reg_, Reg-, Vir_ (the class, then _ or -)"
VIDEO_EXTENSIONS = {".mp4", ".mov", ".avi", ".gif", ".mpeg", ".m4v"}
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png"}
PROBES = ("convex", "linear")
EXCLUDED_FOLDERS = {"label_uncertain"}
# Metadata columns carried into frames.csv (findings feed the captions of the domain base model).
METADATA_COLUMNS = {
    "Patient ID / Name": "patient_id",
    "Effusion": "effusion",
    "Consolidations": "consolidations",
    "B-lines": "b_lines",
    "A-lines": "a_lines",
    "Pleural line irregularities": "pleural_irregularities",
    "License": "license",
}
FRAME_COLUMNS = ["path", "video_id", "patient_id", "label", "probe", "kind", "frame_index", "width",
                 "height", "source", "split"]


class DataRootError(FileNotFoundError):
    """The data root is missing or not laid out like the dataset's data/ folder."""


def how_to_get_data() -> str:
    return (f"Get the data with `python -m lus_utils.data fetch` (sparse clone into {DEFAULT_DATA_CLONE}), "
            f"or point to a copy of the dataset's data/ folder with --data-root PATH or {DATA_ROOT_ENV}=PATH.")


def check_layout(root: Path, origin: str = "") -> Path:
    """`root` when it is laid out like the dataset's data/ folder, else a DataRootError naming what is wrong
    (origin: where the root came from, for the message)."""
    root = Path(root)
    where = f"data root {root}" + (f" ({origin})" if origin else "")
    if not root.exists():
        raise DataRootError(f"{where} does not exist. {how_to_get_data()}")
    if not root.is_dir():
        raise DataRootError(f"{where} is a file, not a folder: point it at the dataset's data/ folder (unpack an "
                            f"archive first). {how_to_get_data()}")
    if not (root / "dataset_metadata.csv").is_file() and (root / "data" / "dataset_metadata.csv").is_file():
        raise DataRootError(f"{where} is the dataset's repository, not its data/ folder: did you mean "
                            f"{root / 'data'}?")
    missing = [] if (root / "dataset_metadata.csv").is_file() else ["dataset_metadata.csv"]
    if not any((root / d / p).is_dir() for d in ("pocus_videos", "pocus_images") for p in PROBES):
        missing.append("pocus_videos/{convex,linear} or pocus_images/{convex,linear}")
    if missing:
        raise DataRootError(f"{where} lacks {missing}: it must be laid out like the dataset's data/ "
                            f"folder (pocus_videos/{{convex,linear}}, pocus_images/{{convex,linear}}, "
                            f"dataset_metadata.csv). {how_to_get_data()}")
    return root


def resolve_data_root(explicit: str | Path | None = None, fetch_if_missing: bool = False) -> Path:
    """The data root to use: explicit, else $LUS_DATA_ROOT, else the default (fetched when asked).

    An explicit root or $LUS_DATA_ROOT that does not exist is an error, never a fetch.
    """
    if explicit:
        return check_layout(Path(explicit).expanduser(), "from --data-root or the data_root parameter")
    if os.environ.get(DATA_ROOT_ENV):
        return check_layout(Path(os.environ[DATA_ROOT_ENV]).expanduser(), f"from ${DATA_ROOT_ENV}")
    if not DEFAULT_DATA_ROOT.exists() and fetch_if_missing:
        fetch()
    return check_layout(DEFAULT_DATA_ROOT, "the default")


def fetch(dest: Path = DEFAULT_DATA_CLONE, repo_url: str = DATASET_REPO_URL) -> Path:
    """Sparse, partial clone of the dataset repository: only the data paths, blobs fetched on demand."""
    dest = Path(dest)
    if (dest / "data" / "dataset_metadata.csv").is_file():
        print(f"dataset already present at {dest / 'data'}")
        return dest / "data"
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DataRootError(f"{dest} already exists and holds no dataset clone (no data/dataset_metadata.csv): "
                            "the fetch would not put it there. Remove it, or fetch into another folder with "
                            "--dest PATH.")
    print(f"Fetching the lung-ultrasound dataset (about {DATASET_APPROX_MB} MB: "
          f"{', '.join(p.strip('/') for p in DATASET_SPARSE_PATHS)}) from {repo_url} into {dest} ...",
          flush=True)
    tmp = dest.with_name(dest.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.parent.mkdir(parents=True, exist_ok=True)

    def git(*args: str, cwd: Path | None = None) -> None:
        subprocess.run(["git", *args], cwd=cwd, check=True)

    offline = (f"without network, copy the dataset's data/ folder anywhere and pass --data-root PATH or set "
               f"{DATA_ROOT_ENV}.")
    try:
        git("clone", "--depth", "1", "--filter=blob:none", "--no-checkout", "--sparse", repo_url, str(tmp))
        git("sparse-checkout", "set", "--no-cone", *DATASET_SPARSE_PATHS, cwd=tmp)
        git("checkout", cwd=tmp)
    except FileNotFoundError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataRootError(f"fetching {repo_url} needs git, and git is not installed ({err}): install git, or "
                            f"{offline}") from err
    except subprocess.CalledProcessError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataRootError(f"fetching {repo_url} failed ({err}); {offline}") from err
    if not (tmp / "data" / "dataset_metadata.csv").is_file():
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataRootError(f"{repo_url} does not hold the dataset (no data/dataset_metadata.csv after the "
                            f"clone): give the dataset's repository with --repo-url ({DATASET_REPO_URL}), or "
                            f"{offline}")
    if dest.exists():
        dest.rmdir()  # empty (checked above): os.replace needs it gone
    os.replace(tmp, dest)
    print(f"dataset ready at {dest / 'data'}")
    return dest / "data"


# --- discovery ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SourceFile:
    path: str  # absolute path of the video or image
    rel: str  # path relative to the data root, as it appears in report.json
    kind: str  # video or image
    probe: str
    label: str
    video_id: str  # the file name without extension: unique in the dataset


def label_from_name(name: str) -> str | None:
    """The class a file name starts with (see LABEL_PREFIXES), None when it names none or two."""
    match = LABEL_PATTERN.match(name)
    if match is None or AMBIGUOUS_PATTERN.match(name):
        return None
    return LABEL_PREFIXES[match.group(1).lower()]


def _no_label_reason(name: str) -> str:
    if AMBIGUOUS_PATTERN.match(name):
        return (f"ambiguous label: '{AMBIGUOUS_PATTERN.match(name).group(0)}' names two classes (move it to a "
                "label_uncertain folder, or rename it with one class prefix)")
    head = re.split(r"[_\-.+ ]", name, maxsplit=1)[0]
    return f"unknown label prefix '{head}' (known: {KNOWN_PREFIXES})"


def discover(root: Path, params: DataParams) -> tuple[list[SourceFile], list[dict], list[dict]]:
    """All usable source files, plus the skipped ones (with why) and those excluded by parameters."""
    sources, skipped, excluded = [], [], []
    named: dict[str, list[str]] = {}  # file name without extension -> every labelled file that has it
    for folder, kind in (("pocus_videos", "video"), ("pocus_images", "image")):
        for probe in PROBES:
            base = root / folder / probe
            if not base.is_dir():
                continue
            for path in sorted(base.rglob("*")):
                if not path.is_file():
                    continue
                rel = path.relative_to(root).as_posix()
                inside = set(path.relative_to(base).parts[:-1])
                if inside & EXCLUDED_FOLDERS:
                    skipped.append({"file": rel, "reason": "in a label_uncertain folder (label not certain)"})
                    continue
                allowed = VIDEO_EXTENSIONS if kind == "video" else IMAGE_EXTENSIONS
                if path.suffix.lower() not in allowed:
                    skipped.append({"file": rel, "reason": f"unsupported extension '{path.suffix}' for a {kind}"
                                                           f" (allowed: {sorted(allowed)})"})
                    continue
                label = label_from_name(path.name)
                if label is None:
                    skipped.append({"file": rel, "reason": _no_label_reason(path.name)})
                    continue
                named.setdefault(path.stem, []).append(rel)
                if params.probe != "both" and probe != params.probe:
                    excluded.append({"file": rel, "reason": f"probe {probe} (profile keeps {params.probe})"})
                    continue
                if label not in params.classes:
                    excluded.append({"file": rel, "reason": f"class {label} not in {params.classes}"})
                    continue
                sources.append(SourceFile(str(path), rel, kind, probe, label, path.stem))
    # Checked over every labelled file, whatever the profile keeps: the metadata row is ambiguous for all.
    twins = [files for files in named.values() if len(files) > 1]
    if twins:
        raise DataRootError(
            f"data files in {root} share a name without their extension, so dataset_metadata.csv (one row per "
            f"name without extension) cannot tell them apart: {'; '.join(' and '.join(t) for t in twins)}. Keep "
            "one file per name: rename or remove the others.")
    return sources, skipped, excluded


def read_metadata(root: Path) -> pd.DataFrame:
    """dataset_metadata.csv indexed by file name without extension, with the columns we use renamed."""
    path = root / "dataset_metadata.csv"
    meta = pd.read_csv(path, dtype=str, encoding_errors="replace")
    missing = [c for c in ["Filename", *METADATA_COLUMNS] if c not in meta.columns]
    if missing:
        renamed = {c: difflib.get_close_matches(c, [str(m) for m in meta.columns], n=1, cutoff=0.6) for c in missing}
        hints = "; ".join(f"'{c}' looks renamed to '{m[0]}'" for c, m in renamed.items() if m)
        raise DataRootError(f"{path} lacks the column(s) {missing}{' (' + hints + ')' if hints else ''}: the study "
                            f"reads {['Filename', *METADATA_COLUMNS]} from it. Use the dataset's own "
                            f"dataset_metadata.csv (python -m lus_utils.data fetch) or restore those column names.")
    meta = meta[["Filename", *METADATA_COLUMNS]].rename(columns=METADATA_COLUMNS)
    meta["Filename"] = meta["Filename"].str.strip()
    meta = meta.dropna(subset=["Filename"]).drop_duplicates("Filename").set_index("Filename")
    return meta.fillna("")


# --- extraction -----------------------------------------------------------------------------------------
def cache_key(source: SourceFile, params: DataParams) -> str:
    settings = {"sample_hz": params.sample_hz, "max_frames_per_video": params.max_frames_per_video,
                "kind": source.kind}
    return f"{sha256_file(Path(source.path))[:20]}-{stable_hash(settings, 8)}"


def extract_one(source: SourceFile, params: DataParams, cache_root: Path, key: str | None = None) -> dict[str, Any]:
    """Frames of one source file, from the cache when its content was decoded before and the entry is sound."""
    folder = cache_root / "frames" / (key or cache_key(source, params))
    entry, _ = sound_entry(folder)
    if entry is not None:
        return {**entry, "folder": str(folder), "cached": True}
    # Two studies may decode the same file at once: one decodes, the other waits and reads its frames.
    with file_lock(folder.with_name(f".{folder.name}.lock")):
        entry, why = sound_entry(folder)
        if entry is not None:
            return {**entry, "folder": str(folder), "cached": True}
        if folder.exists():  # an entry from an older decoder is expected after an upgrade; a broken one is not
            (log.info if why.startswith("made by decoder") else log.warning)(
                "decoding %s again: its cache entry %s cannot be trusted (%s)", source.rel, folder, why)
        # Built under a temporary name and renamed into place: an entry is whole or absent.
        with atomic_dir(folder) as tmp:
            result = (_decode_video(source.path, tmp, params) if source.kind == "video"
                      else _copy_image(source.path, tmp))
            # Failures are cached too: a file that did not decode is not decoded again.
            result["decoder"] = DECODER_VERSION
            write_json_atomic(tmp / "index.json", result)
    return {**result, "folder": str(folder), "cached": False}


def _extract_star(args: tuple) -> dict[str, Any]:
    return extract_one(*args)


def extract_all(sources: list[SourceFile], params: DataParams, cache_root: Path,
                keys: list[str] | None = None) -> list[dict]:
    jobs = [(s, params, cache_root, k) for s, k in zip(sources, keys or [None] * len(sources))]
    if params.n_workers == 1 or len(jobs) < 2:
        return [extract_one(*job) for job in tqdm(jobs, desc="frames", unit="file")]
    with ProcessPoolExecutor(max_workers=params.n_workers) as pool:
        return list(tqdm(pool.map(_extract_star, jobs, chunksize=1), total=len(jobs), desc="frames",
                         unit="file"))


def patient_of(source: SourceFile, meta: pd.DataFrame) -> str:
    """The patient a file's frames belong to; a file without a patient id is its own patient."""
    patient = str(meta.loc[source.video_id, "patient_id"]).strip() if source.video_id in meta.index else ""
    return f"p{patient}" if patient else f"v:{source.video_id}"


def drop_content_duplicates(sources: list[SourceFile], keys: list[str], meta: pd.DataFrame
                            ) -> tuple[list[SourceFile], list[str], list[dict], list[str]]:
    """One file per content: the same bytes under two names would be one video counted twice (and its frames
    could land on both sides of a split). Keeps the first, skips the others; the same content under two labels
    keeps none. Returns the sources and keys kept, the skipped entries and the warnings."""
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    dropped, skipped, warnings = set(), [], []
    for members in (m for m in groups.values() if len(m) > 1):
        first, *others = [sources[i] for i in members]
        if len({s.label for s in (first, *others)}) > 1:
            for i in members:
                twins = ", ".join(f"{s.rel} (labelled {s.label})" for s in (first, *others) if s is not sources[i])
                skipped.append({"file": sources[i].rel, "reason": f"same content as {twins}: the label is "
                                                                  "ambiguous, neither is used"})
            dropped.update(members)
            continue
        for i, other in zip(members[1:], others):
            skipped.append({"file": other.rel, "reason": f"same content as {first.rel} (kept that one)"})
            dropped.add(i)
            if patient_of(other, meta) != patient_of(first, meta) or other.probe != first.probe:
                warnings.append(f"{other.rel} has the same content as {first.rel} but is recorded as patient "
                                f"{patient_of(other, meta)} ({other.probe}) against {patient_of(first, meta)} "
                                f"({first.probe}) in dataset_metadata.csv: check which is right")
    kept = [i for i in range(len(sources)) if i not in dropped]
    return [sources[i] for i in kept], [keys[i] for i in kept], skipped, warnings


def check_minority_present(root: Path, rows: list[dict], skipped: list[dict], params: DataParams) -> None:
    """The study is about the minority class: a data root without one usable frame of it is an error."""
    if MINORITY_CLASS not in params.classes or any(r["label"] == MINORITY_CLASS for r in rows):
        return
    prefix = next(k for k, v in LABEL_PREFIXES.items() if v == MINORITY_CLASS)
    unusable = [s for s in skipped if label_from_name(Path(s["file"]).name) == MINORITY_CLASS]
    raise DataRootError(
        f"data root {root} has no usable frame of the minority class '{MINORITY_CLASS}' (files named "
        f"{prefix.capitalize()}* under pocus_videos/ or pocus_images/ with probe {params.probe})"
        + (f"; skipped: {unusable[:5]}" if unusable else "") + ". Point --data-root at the full dataset, or "
        f"keep the probe that has them (data.probe); without it the study has nothing to compare.")


def build_frames(data_root: str | Path | None, out_dir: Path, params: DataParams,
                 cache_root: Path | None = None, simulated: SimulatedMinorityParams | None = None) -> pd.DataFrame:
    """Extract frames, attach patients, split them (the viral design's splits and the simulated minorities'
    draws, none without `simulated`), and write frames.csv, report.json, provenance.json.

    report.json is written also when the build stops early, with the error, so what was skipped can be seen."""
    root = resolve_data_root(data_root)
    layout = OutLayout(Path(out_dir))
    cache_root = Path(cache_root) if cache_root else cache_dir()
    report: dict[str, Any] = {"data_root": str(root), "skipped": [], "excluded": [], "warnings": []}
    try:
        frames, sources, results = _build(root, params, cache_root, report)
        if simulated is not None:
            frames = simulated_minority.assign_draws(frames, params, simulated)
    except Exception as err:
        try:
            write_json_atomic(layout.data_report, {**report, "error": f"{type(err).__name__}: {err}"})
        except OSError as write_err:  # a full disk: the original error matters more
            log.error("could not write %s: %s", layout.data_report, write_err)
        raise
    used = [Path(s.path) for s in sources] + [root / "dataset_metadata.csv"]
    record = provenance({"data": asdict(params), "simulated_minority": asdict(simulated) if simulated else None},
                        data_root=str(root), data_fingerprint=fingerprint_files(used, root),
                        n_frames=len(frames), n_videos=int(frames.video_id.nunique()))
    link_frames(results, layout)
    write_csv_atomic(layout.frames_csv, frames)
    write_json_atomic(layout.data_report, report)
    write_json_atomic(layout.data_provenance, record)
    return read_frames(layout.frames_csv)


def _build(root: Path, params: DataParams, cache_root: Path, report: dict[str, Any]
           ) -> tuple[pd.DataFrame, list[SourceFile], list[dict]]:
    """build_frames' work; fills `report` as it goes, so an error leaves what was found so far."""
    sources, skipped, excluded = discover(root, params)
    report.update(skipped=skipped, excluded=excluded)
    meta = read_metadata(root)
    keys = [cache_key(s, params) for s in sources]
    kept, keys, duplicates, warnings = drop_content_duplicates(sources, keys, meta)
    skipped += duplicates
    report["warnings"] += warnings
    for warning in warnings:
        log.warning(warning)
    results = extract_all(kept, params, cache_root, keys)
    report.update(n_sources=len(kept), n_cached=int(sum(bool(r.get("cached")) for r in results)))
    rows = []
    for source, result in zip(kept, results):
        if "error" in result:
            skipped.append({"file": source.rel, "reason": result["error"]})
            log.warning("skipped %s: %s", source.rel, result["error"])
            continue
        for flat in result.get("flat_frames", []):
            skipped.append({"file": source.rel, "frame_index": flat["frame_index"],
                            "reason": f"frame {flat['frame_index']}: {flat['reason']}"})
        info = meta.loc[source.video_id].to_dict() if source.video_id in meta.index else {}
        for frame in result["frames"]:
            rows.append({
                "path": frame_path(Path(result["folder"]).name, frame["file"]),
                "video_id": source.video_id,
                # A file without a patient id is its own patient: its frames still never straddle splits.
                "patient_id": patient_of(source, meta),
                "label": source.label, "probe": source.probe, "kind": source.kind,
                "frame_index": frame["frame_index"], "width": frame["width"], "height": frame["height"],
                "source": source.rel,
                **{k: info.get(k, "") for k in METADATA_COLUMNS.values() if k not in ("patient_id",)},
            })
    if not rows:
        raise ValueError(f"no frames could be extracted from {root}; see the skipped files: {skipped}")
    check_minority_present(root, rows, skipped, params)
    frames = pd.DataFrame(rows)
    vanished = [c for c in params.classes if c not in set(frames["label"])]
    if vanished:
        raise ValueError(f"class(es) {vanished} have no usable frames with probe '{params.probe}' in {root}: set "
                         "data.probe to both, or drop them from data.classes")
    frames = splits.assign_all(frames, params)
    ordered = FRAME_COLUMNS + [c for c in frames.columns if c not in FRAME_COLUMNS]
    frames = frames[ordered]
    report.update(n_frames=len(frames), split_summary=splits.summary(frames, "split").to_dict(orient="records"))
    return frames, sources, [r for r in results if "error" not in r]


def frame_path(cache_key: str, file: str) -> str:
    """A frame's frames.csv `path`: relative to the csv's folder, inside the output folder, and stable (named
    by the decode cache key: the source file's content and the extraction numbers)."""
    return f"{OutLayout.FRAMES}/{cache_key}/{file}"


def link_frames(results: list[dict], layout: OutLayout) -> Path:
    """Put the decoded frames under <out>/data/frames/ (hard links into the cache, copies across filesystems),
    so an output folder that is moved, copied or archived still holds every frame its frames.csv names."""
    with atomic_dir(layout.frames) as tmp:
        for result in results:
            if "error" in result:
                continue
            folder = Path(result["folder"])
            (tmp / folder.name).mkdir()
            for frame in result["frames"]:
                try:
                    os.link(folder / frame["file"], tmp / folder.name / frame["file"])
                except OSError:
                    shutil.copyfile(folder / frame["file"], tmp / folder.name / frame["file"])
    return layout.frames


def read_frames(frames_csv: str | Path) -> pd.DataFrame:
    """frames.csv with an `abspath` column: each `path` resolved against the csv's folder (the one rule)."""
    frames_csv = Path(frames_csv)
    if not frames_csv.is_file():
        raise FileNotFoundError(f"{frames_csv} does not exist: run notebook 01 first "
                                "(python run_all.py --only 01) or build_frames()")
    frames = pd.read_csv(frames_csv, dtype={"patient_id": str, "video_id": str}, keep_default_na=False)
    frames["abspath"] = [os.path.normpath(frames_csv.parent / p) for p in frames["path"]]
    return frames


def study_frames(frames_csv: str, data_root: str, out_dir: str | Path) -> pd.DataFrame:
    """A notebook's frames: `frames_csv`, else <out>/data/frames.csv, built with the default data parameters
    when absent (a notebook run on its own; notebook 01 builds it in a study)."""
    layout = OutLayout(Path(out_dir))
    path = Path(frames_csv) if frames_csv else layout.frames_csv
    if not path.is_file():
        if frames_csv:
            raise FileNotFoundError(f"frames_csv {path} does not exist; leave it empty to use (or build) "
                                    f"{layout.frames_csv}")
        print(f"{path} is absent: building it with the default data parameters (notebook 01 does this too)")
        build_frames(resolve_data_root(data_root or None, fetch_if_missing=True), layout.root, DataParams(),
                     simulated=SimulatedMinorityParams())
    frames = read_frames(path)
    frames.attrs["frames_csv"] = str(path.resolve())
    return frames


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lus_utils.data", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fetch_cmd = sub.add_parser("fetch", help="sparse-clone the dataset's data/ folder")
    fetch_cmd.add_argument("--dest", type=Path, default=DEFAULT_DATA_CLONE, help="clone folder")
    fetch_cmd.add_argument("--repo-url", default=DATASET_REPO_URL, help="git URL of the dataset repository")
    args = parser.parse_args(argv)
    try:
        root = fetch(args.dest, args.repo_url)
    except DataRootError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"data root: {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
