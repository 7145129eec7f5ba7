"""Shared fixtures: a tiny dataset laid out like the real one, generated on the fly."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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


def cv_data(**changes) -> DataParams:
    """The data section with cv folds (the defaults, quick's, run hold-out), two repeats unless changed."""
    return DataParams(**{"protocol": "cv", "repeats": 2, **changes})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Integration tests last: the smoke study they check runs in the background while the unit tests run."""
    items.sort(key=lambda item: item.get_closest_marker("integration") is not None)  # stable: order kept otherwise


SMOKE_STUDY = pytest.StashKey[dict]()
SMOKE_SECONDS = pytest.StashKey[float]()  # the smoke study's wall time, for the summary


def _may_check_the_smoke_study(config: pytest.Config) -> bool:
    """Whether this session may hold integration tests: real data, no finished study given, and a whole folder
    or the integration module among the paths, not excluded by -m."""
    if not REAL_DATA_ROOT or os.environ.get("LUS_SMOKE_OUT") or config.option.collectonly:
        return False
    if "not integration" in (config.option.markexpr or ""):
        return False
    paths = [Path(str(arg).split("::")[0]) for arg in config.args]
    return any(path.is_dir() or path.name == "test_integration.py" for path in paths)


def _start_smoke_study(config: pytest.Config) -> None:
    from lus_utils.paths import PROJECT_ROOT

    out = Path(tempfile.mkdtemp(prefix="lus-smoke-"))
    command = [sys.executable, "run_all.py", "--profile", "smoke", "--data-root", REAL_DATA_ROOT,
               "--out", str(out / "study"), "--jobs", "2"]
    # Its log is a file, not a pipe (a full pipe would stall the study); its own process group, so that stopping
    # it stops its pool workers too. The child holds its own copy of the file, so ours closes at once.
    with open(out / "run_all.log", "w") as log:
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    config.stash[SMOKE_STUDY] = {"process": process, "out": out, "started": time.perf_counter()}


def _stop_smoke_study(config: pytest.Config, keep: bool) -> None:
    study = config.stash.get(SMOKE_STUDY, None)
    if study is None:
        return
    if study["process"].poll() is None:
        os.killpg(study["process"].pid, signal.SIGKILL)
        study["process"].wait()
    del config.stash[SMOKE_STUDY]
    if keep:
        print(f"\nsmoke study outputs kept in {study['out']}")
    else:
        shutil.rmtree(study["out"], ignore_errors=True)


def pytest_configure(config: pytest.Config) -> None:
    """Start the smoke study before collecting (about 20 s of imports on one core) when integration tests may
    check it: on two cores it then overlaps collection and the unit tests (about 4 CPU-minutes each)."""
    if _may_check_the_smoke_study(config):
        _start_smoke_study(config)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Keep the smoke study only if an integration test was collected (-k or a node id may select none)."""
    if not any(item.get_closest_marker("integration") for item in session.items):
        _stop_smoke_study(session.config, keep=False)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if SMOKE_SECONDS in config.stash:
        terminalreporter.write_line(f"smoke study: {config.stash[SMOKE_SECONDS]:.0f} s wall, beside the unit tests")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop a smoke study nobody waited for (an interrupted run); keep its outputs only when a test failed."""
    _stop_smoke_study(session.config, keep=exitstatus != 0)


@pytest.fixture(scope="session")
def smoke_out(request: pytest.FixtureRequest) -> Path:
    """The smoke study's output folder once it has finished (LUS_SMOKE_OUT: a finished one, checked again)."""
    if os.environ.get("LUS_SMOKE_OUT"):
        return Path(os.environ["LUS_SMOKE_OUT"])
    if SMOKE_STUDY not in request.config.stash:  # selected in a way _may_check_the_smoke_study did not foresee
        _start_smoke_study(request.config)
    study = request.config.stash[SMOKE_STUDY]
    # A guard against a hung study, not a budget check (per-fold generators make smoke slower on a busy CPU).
    returncode = study["process"].wait(timeout=3600)
    request.config.stash[SMOKE_SECONDS] = time.perf_counter() - study["started"]
    tail = (study["out"] / "run_all.log").read_text()[-8000:]
    assert returncode == 0, f"smoke study failed (log: {study['out'] / 'run_all.log'}):\n{tail}"
    return study["out"] / "study"


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
    return cv_data(n_workers=1, few_patients=5)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("LUS_CACHE_DIR", str(path))
    return path


# --- ultrasound-like frames with clear structure (realism and conditional generator tests) -------------------
US_KINDS = ("a_lines", "b_lines", "consolidation", "minority")


def ultrasound_frames(n: int, kind: str, seed: int, size: int = 64) -> np.ndarray:
    """`n` grey uint8 frames that look like convex lung ultrasound: a dark background around a fan-shaped
    sector of speckle that fades with depth, and a bright horizontal pleural line; below it, per `kind`,
    A-lines (fainter copies of the pleural line at multiples of its depth), B-lines (bright vertical
    streaks), a consolidation (a dark patch with bright dots) or, for `minority`, a thick broken pleural
    line over B-lines and a patch. Seeded: the same arguments give the same frames."""
    import cv2

    if kind not in US_KINDS:
        raise ValueError(kind)
    rng = np.random.default_rng([seed, US_KINDS.index(kind)])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    out = []
    for _ in range(n):
        apex = (size / 2 + rng.uniform(-2, 2), -0.15 * size)
        radius = np.hypot(xx - apex[0], yy - apex[1])
        angle = np.degrees(np.arctan2(xx - apex[0], yy - apex[1]))
        half = rng.uniform(30, 38)
        sector = (np.abs(angle) < half) & (radius > 0.2 * size) & (radius < 1.1 * size)
        speckle = cv2.GaussianBlur(rng.rayleigh(1.0, (size, size)), (0, 0), 0.6)
        tissue = rng.uniform(70, 100) * np.exp(-yy / (rng.uniform(1.2, 1.8) * size)) * speckle
        depth = int(rng.uniform(0.25, 0.35) * size)
        structure = np.zeros((size, size))
        structure[depth:depth + 2] = 150
        if kind == "a_lines":
            tissue[depth + 2:] *= 0.5
            for m, gain in ((2, 80), (3, 45)):
                if m * depth < size - 1:
                    structure[m * depth:m * depth + 2] = gain
        elif kind == "b_lines":
            for x in rng.integers(int(0.3 * size), int(0.7 * size), rng.integers(1, 4)):
                structure[depth:, x:x + 2] = 110
        elif kind == "consolidation":
            top, left = depth + 3, int(rng.uniform(0.3, 0.55) * size)
            tissue[top:top + size // 4, left:left + size // 4] *= 0.3
            dots = rng.integers(0, size // 4, (6, 2))
            structure[top + dots[:, 0], left + dots[:, 1]] = 160
        else:
            structure[depth:depth + 4] = 150 * (rng.random(size) < 0.7)[None, :]
            for x in rng.integers(int(0.3 * size), int(0.7 * size), 2):
                structure[depth:, x:x + 2] = 90
            top, left = depth + 5, int(rng.uniform(0.35, 0.5) * size)
            tissue[top:top + size // 6, left:left + size // 6] *= 0.4
        image = (tissue + structure * speckle.clip(0.5, 1.5)) * sector
        out.append(np.clip(np.rint(image), 0, 255).astype(np.uint8))
    return np.stack(out)
