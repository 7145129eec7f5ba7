"""Every data-root check (issue 23): a missing root, a wrong layout, explicit roots never fetched, fetch refusals;
each error names the thing and the fix."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lus_utils.data import dataset

from conftest import make_tiny_dataset


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("LUS_DATA_ROOT", raising=False)


@pytest.fixture
def no_fetch(monkeypatch):
    monkeypatch.setattr(dataset, "fetch", lambda *a, **k: pytest.fail("fetched although it must not"))


def test_explicit_root_that_does_not_exist_is_an_error_never_a_fetch(tmp_path, no_env, no_fetch):
    missing = tmp_path / "nowhere"
    with pytest.raises(dataset.DataRootError) as err:
        dataset.resolve_data_root(missing, fetch_if_missing=True)
    message = str(err.value)
    assert f"data root {missing} (from --data-root or the data_root parameter) does not exist" in message
    assert "python -m lus_utils.data fetch" in message


def test_env_root_that_does_not_exist_names_the_variable(tmp_path, monkeypatch, no_fetch):
    monkeypatch.setenv("LUS_DATA_ROOT", str(tmp_path / "absent"))
    with pytest.raises(dataset.DataRootError, match=r"\(from \$LUS_DATA_ROOT\) does not exist"):
        dataset.resolve_data_root(None, fetch_if_missing=True)


def test_missing_default_root_without_fetch_names_the_fetch_command(tmp_path, monkeypatch, no_env, no_fetch):
    monkeypatch.setattr(dataset, "DEFAULT_DATA_ROOT", tmp_path / "clone" / "data")
    with pytest.raises(dataset.DataRootError) as err:
        dataset.resolve_data_root(None, fetch_if_missing=False)
    message = str(err.value)
    assert str(tmp_path / "clone" / "data") in message and "(the default)" in message
    assert "python -m lus_utils.data fetch" in message


def test_missing_default_root_is_fetched_when_asked(tmp_path, monkeypatch, no_env):
    default = tmp_path / "clone" / "data"
    monkeypatch.setattr(dataset, "DEFAULT_DATA_ROOT", default)
    monkeypatch.setattr(dataset, "fetch", lambda *a, **k: make_tiny_dataset(default, broken=False))
    assert dataset.resolve_data_root(None, fetch_if_missing=True) == default


def test_a_file_given_as_root_is_named_as_not_a_folder(tmp_path, no_env):
    path = tmp_path / "data.zip"
    path.write_bytes(b"zip")
    with pytest.raises(dataset.DataRootError, match=f"{path} .*is a file, not a folder"):
        dataset.resolve_data_root(path)


def test_root_without_metadata(tmp_path):
    (tmp_path / "pocus_videos" / "convex").mkdir(parents=True)
    with pytest.raises(dataset.DataRootError, match=r"lacks \['dataset_metadata.csv'\].*fetch"):
        dataset.check_layout(tmp_path)


def test_root_without_any_probe_folder(tmp_path):
    """pocus_videos/ without convex/ or linear/ inside: the layout is wrong, not the data empty."""
    (tmp_path / "pocus_videos" / "Cov_x.mp4").parent.mkdir()
    (tmp_path / "pocus_videos" / "Cov_x.mp4").write_bytes(b"x")
    (tmp_path / "dataset_metadata.csv").write_text("Filename\n")
    with pytest.raises(dataset.DataRootError, match=r"pocus_videos/\{convex,linear\} or pocus_images/\{convex,linear\}"):
        dataset.check_layout(tmp_path)


def test_the_clone_folder_instead_of_its_data_folder_names_the_right_one(tmp_path):
    make_tiny_dataset(tmp_path / "covid19_ultrasound" / "data", broken=False)
    with pytest.raises(dataset.DataRootError, match=f"did you mean {tmp_path / 'covid19_ultrasound' / 'data'}"):
        dataset.check_layout(tmp_path / "covid19_ultrasound")


def test_a_good_root_passes(tmp_path):
    root = make_tiny_dataset(tmp_path / "data", broken=False)
    assert dataset.check_layout(root) == root


# --- fetch refusals ---------------------------------------------------------------------------------------
def test_fetch_refuses_a_destination_holding_something_else(tmp_path, monkeypatch):
    dest = tmp_path / "clone"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine")
    monkeypatch.setattr(dataset.subprocess, "run", lambda *a, **k: pytest.fail("cloned into a used folder"))
    with pytest.raises(dataset.DataRootError) as err:
        dataset.fetch(dest, "file:///nowhere.git")
    assert str(dest) in str(err.value) and "--dest" in str(err.value)
    assert (dest / "notes.txt").read_text() == "mine"


def test_fetch_without_git_says_so(tmp_path, monkeypatch):
    def no_git(*args, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", "git")

    monkeypatch.setattr(dataset.subprocess, "run", no_git)
    with pytest.raises(dataset.DataRootError, match="git is not installed.*--data-root"):
        dataset.fetch(tmp_path / "clone", "file:///nowhere.git")
    assert not (tmp_path / "clone").exists() and not (tmp_path / "clone.partial").exists()


def test_fetch_of_a_repository_without_the_data_is_refused(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "README.md").write_text("not the dataset")
    for args in (["init", "-q", "-b", "main"], ["add", "."],
                 ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", "x"]):
        subprocess.run(["git", *args], cwd=work, check=True, capture_output=True)
    with pytest.raises(dataset.DataRootError, match="does not hold the dataset"):
        dataset.fetch(tmp_path / "clone", work.as_uri())
    assert not (tmp_path / "clone").exists()


def test_fetch_command_line_error_is_one_line(tmp_path, capsys):
    dest = tmp_path / "clone"
    dest.mkdir()
    (dest / "x").write_text("x")
    assert dataset.main(["fetch", "--dest", str(dest), "--repo-url", "file:///nowhere.git"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "--dest" in err
