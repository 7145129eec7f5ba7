"""Frame extraction, skips, caching, data-root handling and the fetch, on a generated tiny dataset."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest

from lus_utils.data import dataset
from lus_utils.config.data import DataParams
from lus_utils.provenance import read_json

from conftest import FPS, N_FRAMES, make_tiny_dataset, write_video, _frames


def build(root: Path, out: Path, params: DataParams, cache: Path) -> pd.DataFrame:
    return dataset.build_frames(root, out, params, cache_root=cache)


def test_labels_from_prefix():
    assert dataset.label_from_name("Cov-Atlas.gif") == "covid"
    assert dataset.label_from_name("pneu-radiopaeda.mp4") == "pneumonia"
    assert dataset.label_from_name("Pneu_x.avi") == "pneumonia"
    assert dataset.label_from_name("Reg_x.mpeg") == "regular"
    assert dataset.label_from_name("Vir_x.mp4") == "viral"
    assert dataset.label_from_name("Xyz.mp4") is None


def test_pocovid_frame_step():
    assert dataset.frame_step(30, 3) == 10
    assert dataset.frame_step(25, 3) == 8
    assert dataset.frame_step(2, 3) == 1  # slow videos keep every frame
    assert dataset.frame_step(0, 3) == 1 and dataset.frame_step(float("nan"), 3) == 1


def test_frames_csv_contract_and_skips(tiny_root, tiny_params, tmp_path, cache):
    frames = build(tiny_root, tmp_path / "out", tiny_params, cache)
    required = ["path", "video_id", "patient_id", "label", "probe", "frame_index", "width", "height", "split", "fold"]
    assert all(c in frames.columns for c in required)
    assert set(frames.label) == {"covid", "pneumonia", "regular", "viral"}
    video = frames[frames.video_id == "Cov_clip0"]
    assert video.frame_index.tolist() == list(range(0, N_FRAMES, int(FPS / 3)))
    assert (frames[frames.video_id == "Vir_d"].frame_index == 0).all()  # images copied as they are
    assert frames.loc[frames.video_id == "Reg_still", "patient_id"].iloc[0] == "v:Reg_still"  # no id: own group
    report = read_json(tmp_path / "out" / "data" / "report.json")
    reasons = {r["file"].split("/")[-1]: r["reason"] for r in report["skipped"]}
    assert "truncated" in reasons["Cov_truncated.mp4"]
    assert "unreadable" in reasons["Reg_corrupt.mov"]
    assert "unknown label prefix" in reasons["Xyz_unknown.mp4"]
    assert "label_uncertain" in reasons["Vir_or_Pneu_x.mp4"]
    assert not {"Cov_truncated", "Reg_corrupt", "Xyz_unknown", "Vir_or_Pneu_x"} & set(frames.video_id)
    assert all(Path(p).is_file() for p in frames.abspath)
    assert (tmp_path / "out" / "data" / "provenance.json").is_file()


def test_max_frames_and_rate_are_parameters(tiny_root, tmp_path, cache):
    frames = build(tiny_root, tmp_path / "out", DataParams(n_workers=1, max_frames_per_video=2, sample_hz=9.0), cache)
    assert frames[frames.video_id == "Cov_clip0"].frame_index.tolist() == [0, 1]


def test_probe_filter(tiny_root, tmp_path, cache):
    frames = build(tiny_root, tmp_path / "out", DataParams(n_workers=1, probe="convex", classes=["covid", "pneumonia", "viral"]), cache)
    assert set(frames.probe) == {"convex"}
    report = read_json(tmp_path / "out" / "data" / "report.json")
    assert any("probe linear" in r["reason"] for r in report["excluded"])


def test_truncated_video_with_some_frames_is_skipped(tmp_path, cache):
    root = make_tiny_dataset(tmp_path / "data", broken=False)
    path = root / "pocus_videos" / "convex" / "Cov_long.avi"
    write_video(path, _frames(5) * 10)
    blob = path.read_bytes()
    path.write_bytes(blob[: int(len(blob) * 0.3)])
    result = dataset.extract_one(dataset.SourceFile(str(path), "x", "video", "convex", "covid", "Cov_long"), DataParams(), cache)
    assert "error" in result and ("truncated" in result["error"] or "unreadable" in result["error"])


def test_second_run_decodes_nothing(tiny_root, tiny_params, tmp_path, cache, monkeypatch):
    first = build(tiny_root, tmp_path / "a", tiny_params, cache)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again although the cache holds these frames")

    monkeypatch.setattr(dataset, "_decode_video", no_decoding)
    monkeypatch.setattr(dataset, "_copy_image", no_decoding)
    second = build(tiny_root, tmp_path / "b", tiny_params, cache)
    assert read_json(tmp_path / "b" / "data" / "report.json")["n_cached"] == read_json(tmp_path / "b" / "data" / "report.json")["n_sources"]
    pd.testing.assert_frame_equal(first.drop(columns=["abspath"]), second.drop(columns=["abspath"]))


def test_parallel_extraction_matches_serial(tiny_root, tmp_path, cache):
    serial = build(tiny_root, tmp_path / "a", DataParams(n_workers=1), tmp_path / "c1")
    parallel = build(tiny_root, tmp_path / "b", DataParams(n_workers=2), tmp_path / "c2")
    pd.testing.assert_frame_equal(serial.drop(columns=["abspath", "path"]), parallel.drop(columns=["abspath", "path"]))


def test_interrupted_extraction_leaves_no_cache_entry(tiny_root, tiny_params, tmp_path, monkeypatch):
    def crash(path, out, params):
        (out / "frame_00000.png").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(dataset, "_decode_video", crash)
    source = dataset.discover(tiny_root, tiny_params)[0][0]
    with pytest.raises(KeyboardInterrupt):
        dataset.extract_one(source, tiny_params, tmp_path / "cache")
    assert not list((tmp_path / "cache" / "frames").glob("*/index.json"))
    assert not [p for p in (tmp_path / "cache" / "frames").iterdir() if not p.name.startswith(".")]


def test_missing_data_root_names_path_and_fix(tmp_path, monkeypatch):
    monkeypatch.delenv("LUS_DATA_ROOT", raising=False)
    missing = tmp_path / "nowhere"
    with pytest.raises(dataset.DataRootError) as err:
        dataset.resolve_data_root(missing, fetch_if_missing=True)
    assert str(missing) in str(err.value) and "fetch" in str(err.value) and "LUS_DATA_ROOT" in str(err.value)


def test_explicit_or_env_root_is_never_fetched(tmp_path, monkeypatch):
    monkeypatch.setattr(dataset, "fetch", lambda *a, **k: pytest.fail("fetched for an explicit root"))
    monkeypatch.setenv("LUS_DATA_ROOT", str(tmp_path / "absent"))
    with pytest.raises(dataset.DataRootError):
        dataset.resolve_data_root(None, fetch_if_missing=True)


def test_layout_is_checked(tmp_path):
    (tmp_path / "pocus_videos").mkdir()
    with pytest.raises(dataset.DataRootError, match="dataset_metadata.csv"):
        dataset.check_layout(tmp_path)


def _git(*args, cwd):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_fetch_sparse_clone_from_local_bare_repo(tmp_path):
    work = tmp_path / "work"
    make_tiny_dataset(work / "data", broken=False)
    (work / "data" / "other_big_folder").mkdir()
    (work / "data" / "other_big_folder" / "weights.bin").write_bytes(b"0" * 1000)
    (work / "README.md").write_text("dataset")
    _git("init", "-q", "-b", "main", cwd=work)
    _git("add", ".", cwd=work)
    _git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", "data", cwd=work)
    bare = tmp_path / "remote.git"
    _git("clone", "-q", "--bare", str(work), str(bare), cwd=tmp_path)
    _git("config", "uploadpack.allowFilter", "true", cwd=bare)
    dest = tmp_path / "clone"
    root = dataset.fetch(dest, bare.as_uri())
    assert (root / "dataset_metadata.csv").is_file()
    assert (root / "pocus_videos" / "convex" / "Cov_clip0.mp4").is_file()
    assert not (root / "other_big_folder").exists() and not (dest / "README.md").exists()
    assert dataset.check_layout(root) == root
    assert dataset.fetch(dest, bare.as_uri()) == root  # second call: already there


def test_fetch_failure_is_clear(tmp_path):
    with pytest.raises(dataset.DataRootError, match="--data-root"):
        dataset.fetch(tmp_path / "clone", (tmp_path / "no-such-repo.git").as_uri())
    assert not (tmp_path / "clone").exists()


def test_fetch_command_line(tmp_path, capsys):
    assert dataset.main(["fetch", "--dest", str(tmp_path / "c"), "--repo-url", (tmp_path / "none.git").as_uri()]) == 1
    assert "error" in capsys.readouterr().err


def test_an_output_folder_stands_on_its_own(tiny_root, tiny_params, tmp_path, cache):
    """frames.csv names frames inside the output folder: moved away from the decode cache, it still reads."""
    import shutil

    import numpy as np

    from lus_utils.images import load_image

    built = build(tiny_root, tmp_path / "out", tiny_params, cache)
    assert all(p.startswith("frames/") and ".." not in Path(p).parts for p in built["path"])
    before = [load_image(p, 16) for p in built["abspath"][:5]]
    shutil.move(tmp_path / "out", tmp_path / "elsewhere")
    shutil.rmtree(cache)
    moved = dataset.read_frames(tmp_path / "elsewhere" / "data" / "frames.csv")
    assert moved["path"].tolist() == built["path"].tolist()
    assert all(Path(p).is_file() and str(tmp_path / "elsewhere") in p for p in moved["abspath"])
    assert all(np.array_equal(a, load_image(p, 16)) for a, p in zip(before, moved["abspath"][:5]))


def test_rebuilt_frames_folder_holds_only_what_frames_csv_names(tiny_root, tmp_path, cache):
    build(tiny_root, tmp_path / "out", DataParams(n_workers=1), cache)
    fewer = build(tiny_root, tmp_path / "out", DataParams(n_workers=1, max_frames_per_video=1), cache)
    on_disk = {p.relative_to(tmp_path / "out" / "data").as_posix()
               for p in (tmp_path / "out" / "data" / "frames").rglob("*") if p.is_file()}
    assert on_disk == set(fewer["path"])


def test_renamed_metadata_column_is_named_with_the_fix(tiny_root, tiny_params, tmp_path, cache):
    meta = tiny_root / "dataset_metadata.csv"
    meta.write_text(meta.read_text().replace("Patient ID / Name", "Patient ID", 1).replace(",License", ",Licence", 1))
    with pytest.raises(dataset.DataRootError) as err:
        build(tiny_root, tmp_path / "out", tiny_params, cache)
    message = str(err.value)
    assert "['Patient ID / Name', 'License']" in message and str(meta) in message
    assert "'Patient ID / Name' looks renamed to 'Patient ID'" in message and "restore those column names" in message


def test_data_root_without_the_minority_class_is_refused(tiny_root, tiny_params, tmp_path, cache):
    for path in list(tiny_root.rglob("Vir_*")):
        path.unlink()
    with pytest.raises(dataset.DataRootError, match="no usable frame of the minority class 'viral'.*Vir\\*"):
        build(tiny_root, tmp_path / "out", tiny_params, cache)
    without = DataParams(n_workers=1, classes=["covid", "pneumonia", "regular"], protocol="holdout")
    assert "viral" not in set(build(tiny_root, tmp_path / "out", without, cache)["label"])  # not asked for: fine


def test_two_studies_decoding_the_same_file_decode_it_once(tiny_root, tiny_params, tmp_path, monkeypatch):
    """The decode cache is shared by output folders: a second decoder of the same file waits for the first."""
    import threading

    source = next(s for s in dataset.discover(tiny_root, tiny_params)[0] if s.kind == "video")
    decode = dataset._decode_video
    calls, seen = [], {}

    def decode_while_another_tries(path, out, params):
        calls.append(path)
        if len(calls) == 1:
            other = threading.Thread(target=lambda: seen.update(result=dataset.extract_one(source, tiny_params, cache)))
            other.start()
            other.join(2.0)
            seen["waited"] = other.is_alive()  # it cannot finish while this decoder holds the lock
            seen["thread"] = other
        return decode(path, out, params)

    cache = tmp_path / "cache"
    monkeypatch.setattr(dataset, "_decode_video", decode_while_another_tries)
    first = dataset.extract_one(source, tiny_params, cache)
    seen["thread"].join()
    assert seen["waited"] and len(calls) == 1
    assert seen["result"]["cached"] and seen["result"]["frames"] == first["frames"] and not first["cached"]


def test_python_dash_m_lus_utils_data_runs_the_fetch_command():
    import sys

    proc = subprocess.run([sys.executable, "-m", "lus_utils.data", "fetch", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "--repo-url" in proc.stdout
