"""Provenance records (versions, device) and atomic writes (modes, full disks, locks)."""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pandas as pd
import pytest

from lus_utils import provenance as prov

RECORDED = {"torch", "torchvision", "diffusers", "transformers", "timm", "numpy", "scikit-learn"}


def test_every_record_holds_python_package_versions_and_device():
    from importlib import metadata

    record = prov.provenance({"a": 1}, training_frames=["frames/x/0.png"])
    env = record["environment"]
    assert env["python"].count(".") == 2 and set(env["packages"]) == RECORDED
    assert env["packages"]["numpy"] == metadata.version("numpy") and env["packages"]["torch"] == metadata.version("torch")
    assert env["device"].startswith(("cpu", "cuda:")) and env["platform"]
    assert record["params"] == {"a": 1} and record["training_frames"] == ["frames/x/0.png"]
    assert prov.environment("cuda:1 (a named card)")["device"] == "cuda:1 (a named card)"


def test_a_missing_package_is_said_not_hidden(monkeypatch):
    monkeypatch.setattr(prov, "RECORDED_PACKAGES", ("numpy", "no-such-package-xyz"))
    assert prov.environment()["packages"]["no-such-package-xyz"] == "not installed"


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_atomic_writes_honour_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        assert prov.current_umask() == umask
        prov.write_json_atomic(tmp_path / "a.json", {"x": 1})
        prov.write_csv_atomic(tmp_path / "b.csv", pd.DataFrame({"x": [1]}))
        with prov.atomic_dir(tmp_path / "folder") as tmp:
            (tmp / "f.txt").write_text("x")
    finally:
        os.umask(old)
    for name in ("a.json", "b.csv"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE((tmp_path / "folder").stat().st_mode) == 0o777 & ~umask


def test_a_full_disk_leaves_no_half_written_artefact(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    prov.write_json_atomic(target, {"old": True})
    real_write = Path.write_text

    def fill_up(self, text, *args, **kwargs):
        real_write(self, text[: len(text) // 2], *args, **kwargs)  # part of it reaches the disk, then ENOSPC
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", fill_up)
    with pytest.raises(OSError, match="No space left"):
        prov.write_json_atomic(target, {"new": True, "big": "x" * 1000})
    with pytest.raises(OSError, match="No space left"):
        prov.write_json_atomic(tmp_path / "fresh.json", {"new": True})
    monkeypatch.undo()
    assert prov.read_json(target) == {"old": True}  # the previous artefact stands, whole
    assert not (tmp_path / "fresh.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]  # no temporary file left behind


def test_a_full_disk_while_building_a_folder_leaves_nothing(tmp_path):
    with pytest.raises(OSError):
        with prov.atomic_dir(tmp_path / "set") as tmp:
            (tmp / "0.png").write_bytes(b"png")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_file_lock_excludes_a_second_holder(tmp_path):
    with prov.file_lock(tmp_path / ".lock"):
        with pytest.raises(BlockingIOError):
            with prov.file_lock(tmp_path / ".lock", blocking=False):
                pass
    with prov.file_lock(tmp_path / ".lock", blocking=False):  # released: free again
        pass
