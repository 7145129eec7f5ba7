"""Every path the study uses, in one place.

The project root is the folder holding `pyproject.toml` (the package is installed editable, so
`lus_utils` lives inside it). Outputs of one study go to `outputs/<profile>/`, laid out by `OutLayout`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
PARAMS_DIR = PROJECT_ROOT / "params"
OUTPUTS_DIR = PROJECT_ROOT / "outputs"
# Where `python -m lus_utils.data fetch` puts the dataset; the clone's `data/` folder is the data root.
DEFAULT_DATA_CLONE = PROJECT_ROOT / "data" / "covid19_ultrasound"
DEFAULT_DATA_ROOT = DEFAULT_DATA_CLONE / "data"
DATA_ROOT_ENV = "LUS_DATA_ROOT"
CACHE_DIR_ENV = "LUS_CACHE_DIR"


def cache_dir() -> Path:
    """Content-addressed caches shared by all profiles (decoded frames, base models)."""
    return Path(os.environ.get(CACHE_DIR_ENV) or OUTPUTS_DIR / ".cache")


def default_out_dir(profile: str) -> Path:
    return OUTPUTS_DIR / profile


@dataclass(frozen=True)
class OutLayout:
    """Where each artefact of one study output folder lives (the contract later stages read)."""

    root: Path
    FRAMES = "frames"  # frames.csv `path` values start with it: frames/<decode cache key>/<file>

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def frames(self) -> Path:
        """The decoded frames frames.csv names (linked from the decode cache), inside the output folder."""
        return self.data / self.FRAMES

    @property
    def frames_csv(self) -> Path:
        return self.data / "frames.csv"

    @property
    def data_report(self) -> Path:
        return self.data / "report.json"

    @property
    def data_provenance(self) -> Path:
        return self.data / "provenance.json"

    @property
    def notebooks(self) -> Path:
        return self.root / "notebooks"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def synthetic(self) -> Path:
        return self.root / "synthetic"

    @property
    def generators(self) -> Path:
        return self.root / "generators"

    @property
    def encoders(self) -> Path:
        """The audit's ultrasound encoders, one per split and judged class (`generate.ultrasound_encoder`)."""
        return self.generators / "encoders"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    def run_dir(self, run_id: str) -> Path:
        return self.runs / run_id


def resolve_out_dir(out_dir: str | Path | None) -> Path:
    """A notebook's output folder: as given, else `outputs/notebook` (a notebook run on its own)."""
    return Path(out_dir) if out_dir else OUTPUTS_DIR / "notebook"
