"""Write requirements.lock from pip's resolution report: `make lock` runs it (see the Makefile).

    python tools/lock.py REPORT.json > requirements.lock

REPORT.json is what `pip install --dry-run --ignore-installed --report REPORT.json -e ".[test]"` wrote: the
whole dependency tree pip's resolver chose for pyproject.toml's ranges. The project itself is left out (it is
installed with `pip install --no-deps -e .` after the lock).
"""
from __future__ import annotations

import json
import platform
import re
import sys


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_lines(report: dict, project: str = "lus-utils") -> list[str]:
    pins = {canonical(item["metadata"]["name"]): item["metadata"]["version"] for item in report["install"]}
    pins.pop(canonical(project), None)
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def main(path: str) -> None:
    with open(path, encoding="utf-8") as handle:
        report = json.load(handle)
    print(f"# Exact versions of the whole dependency tree (Python {platform.python_version()}, {platform.system()} "
          f"{platform.machine()}),\n# resolved by pip from pyproject.toml's ranges. Regenerate with `make lock`; "
          "do not edit by hand.")
    print("\n".join(lock_lines(report)))


if __name__ == "__main__":
    main(sys.argv[1])
