"""Bad input files (issue 23): each is listed in data/report.json with why, never kept or crashing."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from lus_utils.data import dataset
from lus_utils.config.data import DataParams
from lus_utils.provenance import read_json

from conftest import _frames, make_tiny_dataset, write_video

PARAMS = DataParams(n_workers=1, few_patients=5)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_tiny_dataset(tmp_path / "data", broken=False)


def build(root: Path, out: Path, cache: Path, params: DataParams = PARAMS):
    return dataset.build_frames(root, out, params, cache_root=cache)


def skipped(out: Path) -> dict[str, str]:
    """File name -> every reason given for it (frame-level reasons joined)."""
    reasons: dict[str, str] = {}
    for entry in read_json(out / "data" / "report.json")["skipped"]:
        name = entry["file"].split("/")[-1]
        reasons[name] = (reasons.get(name, "") + " " + entry["reason"]).strip()
    return reasons


def add_metadata(root: Path, stem: str, patient: str) -> None:
    with open(root / "dataset_metadata.csv", "a") as handle:
        handle.write(f"{stem},{patient},0,1,1,0,1,CC BY\n")


def _truncated_jpeg(path: Path) -> None:
    import cv2

    cv2.imwrite(str(path), _frames(7, size=64)[0])
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])  # decodes, with the missing half filled in grey


def _png_without_its_end(path: Path) -> None:
    import cv2

    cv2.imwrite(str(path), _frames(8, size=64)[0])
    path.write_bytes(path.read_bytes()[:-12])  # the IEND chunk cut off


def _flat_grey_image(path: Path) -> None:
    import cv2

    cv2.imwrite(str(path), np.full((48, 48, 3), 128, np.uint8))


def _flat_grey_video(path: Path) -> None:
    write_video(path, [np.full((32, 32, 3), 128, np.uint8)] * 10)


@pytest.mark.parametrize("name, folder, make, reason", [
    ("Cov_cut.jpg", "pocus_images", _truncated_jpeg, "truncated"),
    ("Cov_cut.png", "pocus_images", _png_without_its_end, "unreadable"),
    ("Cov_grey.jpg", "pocus_images", _flat_grey_image, "flat"),
    ("Cov_grey.mp4", "pocus_videos", _flat_grey_video, "flat"),
])
def test_truncated_or_flat_inputs_are_skipped_with_why(root, tmp_path, cache, name, folder, make, reason):
    make(root / folder / "convex" / name)
    add_metadata(root, Path(name).stem, "77")
    frames = build(root, tmp_path / "out", cache)
    assert Path(name).stem not in set(frames.video_id)
    assert reason in skipped(tmp_path / "out")[name]


def test_flat_frames_inside_a_video_are_dropped_and_listed(root, tmp_path, cache):
    """Frames 3 and 6 (of the 0, 3, 6, 9 kept at 9 fps) decode to one grey level: the others stay."""
    frames = _frames(3)
    for i in (3, 6):
        frames[i] = np.full_like(frames[i], 128)
    write_video(root / "pocus_videos" / "convex" / "Cov_gaps.avi", frames)
    add_metadata(root, "Cov_gaps", "78")
    built = build(root, tmp_path / "out", cache)
    assert built.loc[built.video_id == "Cov_gaps", "frame_index"].tolist() == [0, 9]
    entries = [e for e in read_json(tmp_path / "out" / "data" / "report.json")["skipped"]
               if e["file"].endswith("Cov_gaps.avi")]
    assert sorted(e["frame_index"] for e in entries) == [3, 6] and all("flat" in e["reason"] for e in entries)


def test_a_real_looking_dark_frame_is_kept():
    """Flatness means no structure at all: a dark frame with a faint mark is not flat (the real data has a GIF
    whose first frame is black but for a 20-level speck); a decoder's grey fill, with its codec noise, is."""
    from lus_utils.data.decode import is_flat

    frame = np.zeros((64, 64, 3), np.uint8)
    frame[0, 40:50] = 20
    noisy_grey = np.full((64, 64, 3), 128, np.uint8) + np.random.default_rng(0).integers(0, 4, (64, 64, 3), np.uint8)
    assert not is_flat(frame) and is_flat(noisy_grey)
    rgba = np.dstack([noisy_grey, np.full((64, 64), 255, np.uint8)])
    assert is_flat(rgba)  # the alpha channel is no content


# --- the same content under two names ------------------------------------------------------------------
def test_same_content_under_two_names_is_kept_once(root, tmp_path, cache):
    videos = root / "pocus_videos" / "convex"
    shutil.copyfile(videos / "Cov_clip0.mp4", videos / "Cov_clip0_again.mp4")
    add_metadata(root, "Cov_clip0_again", "10")  # the same patient: a plain copy
    frames = build(root, tmp_path / "out", cache)
    assert "Cov_clip0" in set(frames.video_id) and "Cov_clip0_again" not in set(frames.video_id)
    assert "same content as pocus_videos/convex/Cov_clip0.mp4" in skipped(tmp_path / "out")["Cov_clip0_again.mp4"]
    assert not read_json(tmp_path / "out" / "data" / "report.json")["warnings"]


def test_a_content_duplicate_across_patients_is_warned_about(root, tmp_path, cache):
    videos = root / "pocus_videos" / "convex"
    shutil.copyfile(videos / "Cov_clip0.mp4", videos / "Cov_other_patient.mp4")
    add_metadata(root, "Cov_other_patient", "99")
    build(root, tmp_path / "out", cache)
    warnings = read_json(tmp_path / "out" / "data" / "report.json")["warnings"]
    assert any("Cov_other_patient.mp4" in w and "Cov_clip0.mp4" in w and "patient" in w for w in warnings)


def test_a_content_duplicate_with_another_label_drops_both(root, tmp_path, cache):
    videos = root / "pocus_videos" / "convex"
    shutil.copyfile(videos / "Cov_clip1.mp4", videos / "Pneu_same_as_cov.mp4")
    add_metadata(root, "Pneu_same_as_cov", "11")
    frames = build(root, tmp_path / "out", cache)
    assert not {"Cov_clip1", "Pneu_same_as_cov"} & set(frames.video_id)
    reasons = skipped(tmp_path / "out")
    assert "labelled" in reasons["Cov_clip1.mp4"] and "labelled" in reasons["Pneu_same_as_cov.mp4"]


# --- writes into the decode cache ---------------------------------------------------------------------
def test_a_failed_frame_write_stops_with_the_file_and_the_fix(root, tmp_path, cache, monkeypatch):
    import cv2

    monkeypatch.setattr(cv2, "imwrite", lambda *args, **kwargs: False)  # what a full disk does
    with pytest.raises(OSError) as err:
        build(root, tmp_path / "out", cache)
    message = str(err.value)
    assert "frame_00000.png" in message and "LUS_CACHE_DIR" in message and "free" in message.lower()
    assert not list((cache / "frames").glob("*/index.json"))  # nothing half-written is trusted later


def test_a_failed_image_copy_stops_with_the_file_and_the_fix(root, tmp_path, cache, monkeypatch):
    import errno

    def full(src, dst, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(dst))

    source = next(s for s in dataset.discover(root, PARAMS)[0] if s.kind == "image")
    monkeypatch.setattr(dataset.shutil, "copyfile", full)
    with pytest.raises(OSError, match="LUS_CACHE_DIR"):
        dataset.extract_one(source, PARAMS, cache)
    assert not list((cache / "frames").glob("*/index.json"))


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_a_broken_cache_entry_is_rebuilt(root, tmp_path, cache, damage):
    first = build(root, tmp_path / "a", cache)
    entry = next(p for p in (cache / "frames").glob("*/frame_00003.png"))
    if damage == "delete":
        entry.unlink()  # a frame whose write failed on a full disk
    else:
        entry.write_bytes(entry.read_bytes()[:20])
    second = build(root, tmp_path / "b", cache)
    assert read_json(tmp_path / "b" / "data" / "report.json")["n_cached"] == len(set(first.video_id)) - 1
    assert entry.is_file() and entry.stat().st_size > 20
    assert second["path"].tolist() == first["path"].tolist()
    assert all(Path(p).is_file() for p in second.abspath)


def test_a_cache_entry_from_before_the_input_checks_is_rebuilt(root, tmp_path, cache):
    """Entries decoded before flat/truncation checks existed may hold what the checks now refuse."""
    _truncated_jpeg(root / "pocus_images" / "convex" / "Cov_cut.jpg")
    add_metadata(root, "Cov_cut", "77")
    source = next(s for s in dataset.discover(root, PARAMS)[0] if s.video_id == "Cov_cut")
    folder = cache / "frames" / dataset.cache_key(source, PARAMS)
    folder.mkdir(parents=True)
    shutil.copyfile(source.path, folder / "image.jpg")
    (folder / "index.json").write_text('{"frames": [{"file": "image.jpg", "frame_index": 0, "width": 64, '
                                       '"height": 64}]}')  # what the old decoder cached for it
    frames = build(root, tmp_path / "out", cache)
    assert "Cov_cut" not in set(frames.video_id) and "truncated" in skipped(tmp_path / "out")["Cov_cut.jpg"]


# --- report.json when 01 stops early -------------------------------------------------------------------
def test_report_is_written_when_the_build_stops_early(tmp_path, cache):
    root = make_tiny_dataset(tmp_path / "data")  # with the broken files
    for path in list(root.rglob("Vir_*")):
        path.unlink()
    with pytest.raises(dataset.DataRootError, match="minority"):
        build(root, tmp_path / "out", cache)
    report = read_json(tmp_path / "out" / "data" / "report.json")
    assert "minority class 'viral'" in report["error"]
    names = {e["file"].split("/")[-1] for e in report["skipped"]}
    assert {"Cov_truncated.mp4", "Reg_corrupt.mov", "Xyz_unknown.mp4"} <= names


def test_a_later_successful_build_clears_the_error(root, tmp_path, cache):
    layout_report = tmp_path / "out" / "data" / "report.json"
    with pytest.raises(ValueError):
        build(root, tmp_path / "out", cache, DataParams(n_workers=1, probe="linear"))  # covid: convex only
    assert "covid" in read_json(layout_report)["error"]
    build(root, tmp_path / "out", cache)
    assert "error" not in read_json(layout_report)


# --- labels from the dataset's real prefixes ------------------------------------------------------------
@pytest.mark.parametrize("name, label", [
    ("Cov-Atlas+(44).gif", "covid"), ("Cov_combatting_Image1.mp4", "covid"),
    ("Pneu-Atlas-pneumonia.gif", "pneumonia"), ("Pneu_Avi_Video_001.mp4", "pneumonia"),
    ("pneu-radiopaeda.mp4", "pneumonia"), ("Reg-Atlas.gif", "regular"), ("Reg_Avi_lung-sliding.MP4", "regular"),
    ("Reg_liftl_pneucase3_clip1.mp4", "regular"), ("Vir_liftl_H1N1_case2_clip1.mp4", "viral"),
    ("Pneumothorax_case1.mp4", None), ("pneumothorax-x.mp4", None), ("Covered_x.mp4", None),
    ("Regional_block.mp4", None), ("Virtual_x.mp4", None), ("Vir_or_Pneu_prospective_file4.mp4", None),
    ("Xyz_unknown.mp4", None),
])
def test_labels_follow_the_datasets_real_prefixes(name, label):
    assert dataset.label_from_name(name) == label


def test_files_without_a_known_prefix_are_listed(root, tmp_path, cache):
    videos = root / "pocus_videos" / "convex"
    write_video(videos / "Pneumothorax_case1.mp4", _frames(60))
    write_video(videos / "Vir_or_Pneu_elsewhere.mp4", _frames(61))
    add_metadata(root, "Pneumothorax_case1", "80")
    frames = build(root, tmp_path / "out", cache)
    assert not {"Pneumothorax_case1", "Vir_or_Pneu_elsewhere"} & set(frames.video_id)
    reasons = skipped(tmp_path / "out")
    assert "unknown label prefix" in reasons["Pneumothorax_case1.mp4"]
    assert "Pneu" in reasons["Pneumothorax_case1.mp4"]  # the known prefixes are named
    assert "ambiguous" in reasons["Vir_or_Pneu_elsewhere.mp4"]


# --- names that differ only in their extension ------------------------------------------------------------
def test_names_differing_only_in_extension_are_one_clear_error(root):
    write_video(root / "pocus_videos" / "convex" / "Cov_clip0.avi", _frames(62))
    with pytest.raises(dataset.DataRootError) as err:
        dataset.discover(root, PARAMS)
    message = str(err.value)
    assert "pocus_videos/convex/Cov_clip0.avi" in message and "pocus_videos/convex/Cov_clip0.mp4" in message
    assert "rename" in message and "dataset_metadata.csv" in message


def test_twins_across_probes_and_kinds_are_found_whatever_the_profile_keeps(root):
    import cv2

    (root / "pocus_images" / "linear").mkdir()
    assert cv2.imwrite(str(root / "pocus_images" / "linear" / "Cov_clip0.png"), _frames(63)[0])
    with pytest.raises(dataset.DataRootError, match="Cov_clip0.png.*Cov_clip0.mp4|Cov_clip0.mp4.*Cov_clip0.png"):
        dataset.discover(root, DataParams(n_workers=1, probe="convex"))
