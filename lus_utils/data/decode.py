"""One source file to frame files in a decode-cache folder, refusing what does not decode to an image.

A video keeps every `int(fps / sample_hz)`-th frame (POCOVID), a still image is copied as it is. A file that
cannot be opened, is truncated, or decodes to one grey level comes back as {"error": why}; a flat frame inside
an otherwise good video is dropped and listed. Every write is checked: a full disk raises (CacheWriteError),
it never leaves an entry that names frames that are not there.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from lus_utils.config.data import DataParams
from lus_utils.paths import CACHE_DIR_ENV
from lus_utils.provenance import read_json

# Raised whenever what a cache entry holds or how it is checked changes: older entries are then decoded again
# (same key, so frames.csv paths do not move). 2: flat/truncated checks, byte sizes recorded per frame.
DECODER_VERSION = 2
# A video that decodes to fewer than this share of the frames its header announces is truncated.
MIN_DECODED_SHARE = 0.5
# A frame whose colour values all lie within this many levels (of 255) is flat: a decoder's grey fill or a
# blank frame. Conservative on purpose: a near-black frame with any visible mark (real data: a GIF's first
# frame with a 20-level speck) is kept.
FLAT_RANGE = 8


class CacheWriteError(OSError):
    """A frame could not be written into the decode cache (a full or read-only disk)."""


def write_failed(path: Path, why: str) -> CacheWriteError:
    return CacheWriteError(
        f"could not write {path} ({why}). The decode cache {Path(path).parent.parent} is probably full or not "
        f"writable: free space there, or set {CACHE_DIR_ENV} to a folder with room, then run again (a cache "
        "entry with missing frames is decoded again).")


def frame_step(fps: float, sample_hz: float) -> int:
    """POCOVID: keep every int(fps / 3)-th frame; never less than every frame."""
    if not np.isfinite(fps) or fps <= 0:
        return 1
    return max(1, int(fps / sample_hz))


def is_flat(image: np.ndarray) -> bool:
    """One grey level (within FLAT_RANGE of 255) over the colour channels: nothing there to learn from."""
    colour = image[..., :3] if image.ndim == 3 else image
    scale = np.iinfo(colour.dtype).max / 255 if np.issubdtype(colour.dtype, np.integer) else 1 / 255
    return float(colour.max()) - float(colour.min()) <= FLAT_RANGE * scale


def _write_frame(path: Path, image: np.ndarray) -> int:
    if not cv2.imwrite(str(path), image):
        raise write_failed(path, "cv2.imwrite returned False")
    return path.stat().st_size


def decode_video(path: str, out: Path, params: DataParams) -> dict[str, Any]:
    cv2.setNumThreads(1)
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        return {"error": "unreadable or truncated video (cannot be opened)"}
    fps = float(capture.get(cv2.CAP_PROP_FPS))
    announced = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    step = frame_step(fps, params.sample_hz)
    frames, flat, index = [], [], 0
    try:
        while True:
            if index % step == 0:
                ok, image = capture.read()
                if not ok:
                    break
                # The cap counts sampled frames, flat ones too: the kept frames stay on POCOVID's grid.
                if len(frames) + len(flat) < params.max_frames_per_video:
                    if is_flat(image):
                        flat.append({"frame_index": index, "reason": "flat frame (one grey level)"})
                    else:
                        name = f"frame_{index:05d}.png"
                        frames.append({"file": name, "frame_index": index, "width": image.shape[1],
                                       "height": image.shape[0], "bytes": _write_frame(out / name, image)})
            elif not capture.grab():
                break
            index += 1
            # Keep reading after the cap only to count frames for the truncation check.
    finally:
        capture.release()
    if index == 0 or not (frames or flat):
        return {"error": "unreadable video (no frame decodes)"}
    if announced > 0 and index < MIN_DECODED_SHARE * announced:
        return {"error": f"truncated video ({index} of {announced} announced frames decode)"}
    if not frames:
        return {"error": f"flat video (all {len(flat)} sampled frames are one grey level)"}
    return {"fps": fps, "step": step, "n_decoded": index, "frames": frames, "flat_frames": flat}


def _truncation(path: str) -> str | None:
    """Why PIL finds the file cut short, else None (OpenCV fills a truncated JPEG's missing part with grey)."""
    try:
        with Image.open(path) as image:
            image.load()
    except (OSError, SyntaxError, ValueError) as err:
        return str(err)
    return None


def copy_image(path: str, out: Path) -> dict[str, Any]:
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if image is None:
        return {"error": "unreadable image (cannot be decoded)"}
    cut = _truncation(path)
    if cut:
        return {"error": f"truncated or damaged image ({cut})"}
    if is_flat(image):
        return {"error": "flat image (one grey level)"}
    target = out / ("image" + Path(path).suffix.lower())
    try:
        shutil.copyfile(path, target)
    except OSError as err:
        raise write_failed(target, str(err)) from err
    size = os.path.getsize(path)
    if target.stat().st_size != size:
        raise write_failed(target, f"{target.stat().st_size} of {size} bytes written")
    return {"frames": [{"file": target.name, "frame_index": 0, "width": image.shape[1], "height": image.shape[0],
                        "bytes": size}]}


def sound_entry(folder: Path) -> tuple[dict[str, Any] | None, str]:
    """A cache entry's index when it can be trusted (made by this decoder, every frame there at its size),
    else None and why: a frame lost to a full disk, or an entry from before the current checks."""
    index = folder / "index.json"
    if not index.is_file():
        return None, "absent"
    try:
        entry = read_json(index)
    except (OSError, ValueError) as err:
        return None, f"unreadable index.json ({err})"
    if entry.get("decoder") != DECODER_VERSION:
        return None, f"made by decoder version {entry.get('decoder', 1)}, not {DECODER_VERSION}"
    for frame in entry.get("frames", []):
        path = folder / frame["file"]
        if not path.is_file() or not os.access(path, os.R_OK):
            return None, f"{frame['file']} missing or unreadable"
        if path.stat().st_size != frame["bytes"]:
            return None, f"{frame['file']} holds {path.stat().st_size} of its {frame['bytes']} bytes"
    return entry, "sound"
