"""Shared fixtures: a tiny dataset laid out like the real one, generated on the fly."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from lus_utils.config.data import DataParams

REAL_DATA_ROOT = os.environ.get("LUS_DATA_ROOT", "")

# (file name, probe, patient id, kind): enough patients per class for a patient-grouped split.
TINY_FILES = (
    [(f"Cov_clip{i}.mp4", "convex", f"{10 + i}", "video") for i in range(6)]
    + [(f"Pneu_clip{i}.avi", "convex", f"{20 + i}", "video") for i in range(5)]
    + [("pneu-lowercase.mp4", "linear", "26", "video")]
    + [(f"Reg_loop{i}.gif", "linear", f"{30 + i}", "video") for i in range(5)]
    + [("Reg_still.png", "convex", "", "image")]
    + [("Vir_a_clip1.mp4", "convex", "40", "video"), ("Vir_a_clip2.mp4", "linear", "40", "video"),
       ("Vir_b.mp4", "convex", "41", "video"), ("Vir_c.mp4", "linear", "42", "video"),
       ("Vir_d.jpg", "convex", "43", "image")]
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The smoke study (integration tests, one xdist group) first: under `make test`'s two workers it runs
    beside the unit tests instead of after them."""
    items.sort(key=lambda item: item.get_closest_marker("integration") is None)  # stable: order kept otherwise


FPS = 9.0  # POCOVID keeps every int(9 / 3) = 3rd frame
N_FRAMES = 10


def _frames(seed: int, size: int = 32) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    return [np.roll(base, shift=k, axis=1) for k in range(N_FRAMES)]


def write_video(path: Path, frames: list[np.ndarray], fps: float = FPS) -> None:
    import cv2

    if path.suffix == ".gif":
        from PIL import Image

        images = [Image.fromarray(f) for f in frames]
        images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
        return
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix == ".avi" else "mp4v"))
    writer = cv2.VideoWriter(str(path), fourcc, fps, (frames[0].shape[1], frames[0].shape[0]))
    for frame in frames:
        writer.write(frame)
    writer.release()


def make_tiny_dataset(root: Path, broken: bool = True) -> Path:
    """A data root like the dataset's data/ folder; with `broken`, also files that must be skipped."""
    import cv2

    rows = []
    for i, (name, probe, patient, kind) in enumerate(TINY_FILES):
        folder = root / ("pocus_videos" if kind == "video" else "pocus_images") / probe
        folder.mkdir(parents=True, exist_ok=True)
        frames = _frames(i)
        if kind == "video":
            write_video(folder / name, frames)
        else:
            cv2.imwrite(str(folder / name), frames[0])
        rows.append((Path(name).stem, patient))
    if broken:
        videos = root / "pocus_videos" / "convex"
        write_video(videos / "Cov_truncated.mp4", _frames(99))
        data = (videos / "Cov_truncated.mp4").read_bytes()
        (videos / "Cov_truncated.mp4").write_bytes(data[: len(data) // 3])
        (videos / "Reg_corrupt.mov").write_bytes(b"this is not a video")
        write_video(videos / "Xyz_unknown.mp4", _frames(98))
        uncertain = root / "pocus_videos" / "linear" / "label_uncertain"
        uncertain.mkdir(parents=True)
        write_video(uncertain / "Vir_or_Pneu_x.mp4", _frames(97))
        rows += [("Cov_truncated", "50"), ("Reg_corrupt", "51"), ("Xyz_unknown", "52")]
    lines = ["Filename,Patient ID / Name,Effusion,Consolidations,B-lines,A-lines,Pleural line irregularities,License"]
    lines += [f"{stem},{patient},0,1,1,0,1,CC BY" for stem, patient in rows]
    (root / "dataset_metadata.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def tiny_root(tmp_path: Path) -> Path:
    return make_tiny_dataset(tmp_path / "data")


@pytest.fixture
def tiny_params() -> DataParams:
    return DataParams(n_workers=1, few_patients=5)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("LUS_CACHE_DIR", str(path))
    return path
