"""The lock file pins every dependency pyproject.toml names, within pyproject's ranges, each once."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and version and ";" not in version, f"not an exact pin: {line!r}"
            assert canonical(name) not in pins, f"{name} pinned twice"
            pins[canonical(name)] = version.strip()
    return pins


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]


def test_the_lock_pins_every_declared_dependency_within_its_range():
    pins = lock_pins()
    missing = [r.name for r in declared() if canonical(r.name) not in pins]
    assert not missing, f"requirements.lock lacks {missing}: run `make lock`"
    outside = [f"{r.name}=={pins[canonical(r.name)]} (pyproject: {r.specifier})" for r in declared()
               if not r.specifier.contains(pins[canonical(r.name)], prereleases=True)]
    assert not outside, f"requirements.lock is out of pyproject.toml's ranges: {outside}; run `make lock`"
    assert "lus-utils" not in pins  # the project is installed on its own, with --no-deps
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1" and "accelerate" in pins


def test_the_lock_tool_writes_sorted_exact_pins_without_the_project():
    import importlib.util

    spec = importlib.util.spec_from_file_location("lock_tool", ROOT / "tools" / "lock.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    report = {"install": [{"metadata": {"name": n, "version": v}}
                          for n, v in (("Torch", "2.14.1"), ("lus_utils", "0.1.0"), ("PyYAML", "6.0"))]}
    assert tool.lock_lines(report) == ["pyyaml==6.0", "torch==2.14.1"]


def test_make_and_conda_install_from_the_same_lock():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "--no-deps --no-compile -r $(LOCK)" in makefile and "--no-deps -e ." in makefile
    assert "pip check" in makefile  # --no-deps trusts the lock to be the whole tree: pip check confirms it
    assert "-r requirements.lock" in (ROOT / "environment.yml").read_text(encoding="utf-8")
