"""The lung-ultrasound dataset: find it (or fetch it), read its files, extract frames, write frames.csv.

Frame extraction follows the POCOVID protocol (Born et al. 2021): from each video keep every
`int(fps / sample_hz)`-th frame, at most `max_frames_per_video`; still images are copied as they are.
Decoded frames are cached by the content of their source file and the two extraction numbers, so a
second run with the same inputs decodes nothing.

Run `python -m lus_utils.data fetch` to download the dataset (a sparse, partial git clone).
"""
from __future__ import annotations

import argparse
import difflib
import logging
import os
import shutil
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from lus_utils.data import splits
from lus_utils.params import MINORITY_CLASS, DataParams
from lus_utils.paths import DATA_ROOT_ENV, DEFAULT_DATA_CLONE, DEFAULT_DATA_ROOT, OutLayout, cache_dir
from lus_utils.provenance import (atomic_dir, file_lock, fingerprint_files, provenance, read_json, sha256_file,
                                  stable_hash,
                         write_csv_atomic, write_json_atomic)

log = logging.getLogger(__name__)

DATASET_REPO_URL = "https://github.com/jannisborn/covid19_ultrasound.git"
# Only these paths of the repository are checked out (about 80 MB of its several GB).
DATASET_SPARSE_PATHS = ("/data/pocus_videos/", "/data/pocus_images/", "/data/dataset_metadata.csv")
DATASET_APPROX_MB = 85
LABEL_PREFIXES = {"cov": "covid", "pne": "pneumonia", "reg": "regular", "vir": "viral"}
VIDEO_EXTENSIONS = {".mp4", ".mov", ".avi", ".gif", ".mpeg", ".m4v"}
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png"}
PROBES = ("convex", "linear")
EXCLUDED_FOLDERS = {"label_uncertain"}
# A video that decodes to fewer than this share of the frames its header announces is truncated.
MIN_DECODED_SHARE = 0.5
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


def check_layout(root: Path) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise DataRootError(f"data root {root} does not exist. {how_to_get_data()}")
    needed = [root / "dataset_metadata.csv"]
    missing = [p.name for p in needed if not p.is_file()]
    if not any((root / d).is_dir() for d in ("pocus_videos", "pocus_images")):
        missing.append("pocus_videos/ or pocus_images/")
    if missing:
        raise DataRootError(f"data root {root} lacks {missing}: it must be laid out like the dataset's data/ "
                            f"folder (pocus_videos/{{convex,linear}}, pocus_images/{{convex,linear}}, "
                            f"dataset_metadata.csv). {how_to_get_data()}")
    return root


def resolve_data_root(explicit: str | Path | None = None, fetch_if_missing: bool = False) -> Path:
    """The data root to use: explicit, else $LUS_DATA_ROOT, else the default (fetched when asked).

    An explicit root or $LUS_DATA_ROOT that does not exist is an error, never a fetch.
    """
    if explicit:
        return check_layout(Path(explicit).expanduser())
    if os.environ.get(DATA_ROOT_ENV):
        return check_layout(Path(os.environ[DATA_ROOT_ENV]).expanduser())
    if not DEFAULT_DATA_ROOT.exists() and fetch_if_missing:
        fetch()
    return check_layout(DEFAULT_DATA_ROOT)


def fetch(dest: Path = DEFAULT_DATA_CLONE, repo_url: str = DATASET_REPO_URL) -> Path:
    """Sparse, partial clone of the dataset repository: only the data paths, blobs fetched on demand."""
    dest = Path(dest)
    if (dest / "data" / "dataset_metadata.csv").is_file():
        print(f"dataset already present at {dest / 'data'}")
        return dest / "data"
    print(f"Fetching the lung-ultrasound dataset (about {DATASET_APPROX_MB} MB: "
          f"{', '.join(p.strip('/') for p in DATASET_SPARSE_PATHS)}) from {repo_url} into {dest} ...",
          flush=True)
    tmp = dest.with_name(dest.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.parent.mkdir(parents=True, exist_ok=True)

    def git(*args: str, cwd: Path | None = None) -> None:
        subprocess.run(["git", *args], cwd=cwd, check=True)

    try:
        git("clone", "--depth", "1", "--filter=blob:none", "--no-checkout", "--sparse", repo_url, str(tmp))
        git("sparse-checkout", "set", "--no-cone", *DATASET_SPARSE_PATHS, cwd=tmp)
        git("checkout", cwd=tmp)
    except (subprocess.CalledProcessError, FileNotFoundError) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataRootError(f"fetching {repo_url} failed ({err}); without network, copy the dataset's data/ "
                            f"folder anywhere and pass --data-root PATH or set {DATA_ROOT_ENV}.") from err
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
    return LABEL_PREFIXES.get(name[:3].lower())


def discover(root: Path, params: DataParams) -> tuple[list[SourceFile], list[dict], list[dict]]:
    """All usable source files, plus the skipped ones (with why) and those excluded by parameters."""
    sources, skipped, excluded = [], [], []
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
                    skipped.append({"file": rel, "reason": f"unknown label prefix '{path.name[:3]}' (known: "
                                                           "Cov, Pne/pne, Reg, Vir)"})
                    continue
                if params.probe != "both" and probe != params.probe:
                    excluded.append({"file": rel, "reason": f"probe {probe} (profile keeps {params.probe})"})
                    continue
                if label not in params.classes:
                    excluded.append({"file": rel, "reason": f"class {label} not in {params.classes}"})
                    continue
                sources.append(SourceFile(str(path), rel, kind, probe, label, path.stem))
    ids = pd.Series([s.video_id for s in sources])
    twins = sorted(ids[ids.duplicated()].unique())
    if twins:
        raise ValueError(f"file names must be unique without their extension; repeated: {twins}")
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
def frame_step(fps: float, sample_hz: float) -> int:
    """POCOVID: keep every int(fps / 3)-th frame; never less than every frame."""
    if not np.isfinite(fps) or fps <= 0:
        return 1
    return max(1, int(fps / sample_hz))


def _decode_video(path: str, out: Path, params: DataParams) -> dict[str, Any]:
    import cv2  # lazy: only decoding needs OpenCV; the runner and every reader of frames.csv import this module

    cv2.setNumThreads(1)
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        return {"error": "unreadable or truncated video (cannot be opened)"}
    fps = float(capture.get(cv2.CAP_PROP_FPS))
    announced = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    step = frame_step(fps, params.sample_hz)
    frames, index = [], 0
    while True:
        if index % step == 0:
            ok, image = capture.read()
            if not ok:
                break
            if len(frames) < params.max_frames_per_video:
                name = f"frame_{index:05d}.png"
                cv2.imwrite(str(out / name), image)
                frames.append({"file": name, "frame_index": index, "width": image.shape[1],
                               "height": image.shape[0]})
        elif not capture.grab():
            break
        index += 1
        # Keep reading after the cap only to count frames for the truncation check.
    capture.release()
    if index == 0 or not frames:
        return {"error": "unreadable video (no frame decodes)"}
    if announced > 0 and index < MIN_DECODED_SHARE * announced:
        return {"error": f"truncated video ({index} of {announced} announced frames decode)"}
    return {"fps": fps, "step": step, "n_decoded": index, "frames": frames}


def _copy_image(path: str, out: Path) -> dict[str, Any]:
    import cv2  # lazy: only decoding needs OpenCV (see _decode_video)

    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if image is None:
        return {"error": "unreadable image"}
    name = "image" + Path(path).suffix.lower()
    shutil.copyfile(path, out / name)
    return {"frames": [{"file": name, "frame_index": 0, "width": image.shape[1], "height": image.shape[0]}]}


def cache_key(source: SourceFile, params: DataParams) -> str:
    settings = {"sample_hz": params.sample_hz, "max_frames_per_video": params.max_frames_per_video,
                "kind": source.kind}
    return f"{sha256_file(Path(source.path))[:20]}-{stable_hash(settings, 8)}"


def extract_one(source: SourceFile, params: DataParams, cache_root: Path) -> dict[str, Any]:
    """Frames of one source file, from the cache when its content was decoded before."""
    folder = cache_root / "frames" / cache_key(source, params)
    index_file = folder / "index.json"
    if index_file.is_file():
        return {**read_json(index_file), "folder": str(folder), "cached": True}
    # Two studies may decode the same file at once: one decodes, the other waits and reads its frames.
    with file_lock(folder.with_name(f".{folder.name}.lock")):
        if index_file.is_file():
            return {**read_json(index_file), "folder": str(folder), "cached": True}
        with atomic_dir(folder) as tmp:
            result = (_decode_video(source.path, tmp, params) if source.kind == "video"
                      else _copy_image(source.path, tmp))
            # Failures are cached too: a file that did not decode is not decoded again.
            write_json_atomic(tmp / "index.json", result)
    return {**result, "folder": str(folder), "cached": False}


def _extract_star(args: tuple) -> dict[str, Any]:
    return extract_one(*args)


def extract_all(sources: list[SourceFile], params: DataParams, cache_root: Path) -> list[dict]:
    jobs = [(s, params, cache_root) for s in sources]
    if params.n_workers == 1 or len(jobs) < 2:
        return [extract_one(*job) for job in tqdm(jobs, desc="frames", unit="file")]
    with ProcessPoolExecutor(max_workers=params.n_workers) as pool:
        return list(tqdm(pool.map(_extract_star, jobs, chunksize=1), total=len(jobs), desc="frames",
                         unit="file"))


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
                 cache_root: Path | None = None) -> pd.DataFrame:
    """Extract frames, attach patients, split them, and write frames.csv, report.json, provenance.json."""
    root = resolve_data_root(data_root)
    layout = OutLayout(Path(out_dir))
    cache_root = Path(cache_root) if cache_root else cache_dir()
    sources, skipped, excluded = discover(root, params)
    meta = read_metadata(root)
    results = extract_all(sources, params, cache_root)
    rows = []
    for source, result in zip(sources, results):
        if "error" in result:
            skipped.append({"file": source.rel, "reason": result["error"]})
            log.warning("skipped %s: %s", source.rel, result["error"])
            continue
        info = meta.loc[source.video_id].to_dict() if source.video_id in meta.index else {}
        patient = str(info.get("patient_id", "")).strip()
        for frame in result["frames"]:
            rows.append({
                "path": frame_path(Path(result["folder"]).name, frame["file"]),
                "video_id": source.video_id,
                # A file without a patient id is its own patient: its frames still never straddle splits.
                "patient_id": f"p{patient}" if patient else f"v:{source.video_id}",
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
    used = [Path(s.path) for s in sources] + [root / "dataset_metadata.csv"]
    record = provenance(asdict(params), data_root=str(root), data_fingerprint=fingerprint_files(used, root),
                        n_frames=len(frames), n_videos=int(frames.video_id.nunique()))
    report = {"data_root": str(root), "n_sources": len(sources), "n_frames": len(frames),
              "n_cached": int(sum(bool(r.get("cached")) for r in results)), "skipped": skipped,
              "excluded": excluded, "split_summary": splits.summary(frames, "split").to_dict(orient="records")}
    link_frames(results, layout)
    write_csv_atomic(layout.frames_csv, frames)
    write_json_atomic(layout.data_report, report)
    write_json_atomic(layout.data_provenance, record)
    return read_frames(layout.frames_csv)


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
