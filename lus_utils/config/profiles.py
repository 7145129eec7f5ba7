"""Profiles: a study's settings as a composition of YAML files over the code's defaults.

The defaults of the section dataclasses ARE the `quick` profile (`params/quick.yaml` states nothing else), and
every profile file states only the keys it changes, so the diff between two profiles is what they mean. A file
may name a `base:` profile it changes (its own keys win); a command line composes profiles left to right with
`+` (`full+convex_only`: full, then convex_only's keys over it) and sets single keys with
`--set section.key=value` (a YAML value: `--set train.lr=0.001`, `--set grid.seeds=[0,1]`), all validated as
one profile: an unknown key, a wrong type, a value out of range or a key the runner sets per run is refused
with the key and its file (or `--set`) named.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lus_utils.config.classify import EvaluationParams, GridParams, TrainParams
from lus_utils.config.compare import CompareParams
from lus_utils.config.data import DataParams, ExploreParams, SimulatedMinorityParams, StudyParams
from lus_utils.config.generate import (AuditParams, DDPMParams, DDPMRunsParams, DomainBaseModelParams,
                                       OriginalReplicaParams, TextualInversionParams, TextualInversionRunsParams)
from lus_utils.config.runtime import RuntimeParams, SlurmParams
from lus_utils.config.schema import ParamError, as_dict, build
from lus_utils.paths import PARAMS_DIR
from lus_utils.vocabulary import CONVEX_CLASSES

SECTIONS: dict[str, type] = {
    "study": StudyParams,
    "data": DataParams,
    "simulated_minority": SimulatedMinorityParams,
    "explore": ExploreParams,
    "runtime": RuntimeParams,
    "evaluation": EvaluationParams,
    "ddpm_runs": DDPMRunsParams,
    "ddpm": DDPMParams,
    "audit": AuditParams,
    "train": TrainParams,
    "grid": GridParams,
    "seed_replica": OriginalReplicaParams,
    "textual_inversion_runs": TextualInversionRunsParams,
    "textual_inversion": TextualInversionParams,
    "domain_base_model": DomainBaseModelParams,
    "compare": CompareParams,
    "slurm": SlurmParams,
}
FILE_KEYS = ("description", "base")  # a profile file's keys besides its sections


@dataclass
class Profile:
    """A validated profile: one dataclass per section, plus where it came from."""

    name: str
    path: Path
    description: str
    sections: dict[str, Any]
    files: tuple[Path, ...] = ()  # every file it was composed of, base first

    def __getattr__(self, item: str) -> Any:
        sections = self.__dict__.get("sections", {})
        if item in sections:
            return sections[item]
        raise AttributeError(item)

    def to_dict(self) -> dict[str, Any]:
        return {name: as_dict(section) for name, section in self.sections.items()}


def profile_path(name_or_path: str) -> Path:
    """`smoke` -> params/smoke.yaml; anything with a suffix or a slash is taken as a path."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or len(candidate.parts) > 1:
        path = candidate
    else:
        path = PARAMS_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))
        raise ParamError(f"profile '{name_or_path}' not found at {path}; available: {available} "
                         "or a path to a .yaml file")
    return path


def read_profile_file(path: Path) -> dict[str, Any]:
    """One profile file as a mapping; a file that does not parse is named with its line and column."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ParamError(f"{path}{where}: not valid YAML ({problem}); fix the file (a profile is a mapping of "
                         "sections, each a mapping of keys)") from None
    if not isinstance(raw, dict):
        raise ParamError(f"{path}: a profile is a mapping of sections, got {type(raw).__name__}")
    description = raw.get("description", "")
    if not isinstance(description, str) or not description.strip():
        raise ParamError(f"{path}: 'description' (what this profile is for) is required")
    unknown = sorted(set(raw) - set(SECTIONS) - set(FILE_KEYS))
    if unknown:
        raise ParamError(f"{path}: unknown section(s) {unknown}; allowed: {sorted(SECTIONS)} and {list(FILE_KEYS)}")
    for name in SECTIONS:
        if name in raw and not isinstance(raw[name] or {}, dict):
            raise ParamError(f"{path}: section '{name}' must be a mapping")
    return raw


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over`'s keys over `base`'s, mappings merged key by key (a list or a value replaces)."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _compose_file(path: Path, seen: tuple[Path, ...]) -> tuple[dict[str, Any], list[Path]]:
    """A file's sections over its `base:` chain's, and the files involved (base first)."""
    if path.resolve() in seen:
        raise ParamError(f"{path}: 'base' chain loops ({' -> '.join(str(p) for p in (*seen, path.resolve()))})")
    raw = read_profile_file(path)
    sections = {k: v or {} for k, v in raw.items() if k in SECTIONS}
    files = [path]
    if raw.get("base"):
        base, base_files = _compose_file(profile_path(str(raw["base"])), (*seen, path.resolve()))
        sections, files = _merge(base, sections), [*base_files, path]
    return sections, files


def set_override(sections: dict[str, Any], assignment: str) -> dict[str, Any]:
    """`section.key=value` (or `section.key.subkey=value` in a mapping key) over `sections`; the value is YAML."""
    dotted, sep, text = assignment.partition("=")
    parts = dotted.strip().split(".")
    if not sep or len(parts) < 2 or not all(parts):
        raise ParamError(f"--set {assignment}: expected section.key=value, e.g. --set train.lr=0.001")
    if parts[0] not in SECTIONS:
        raise ParamError(f"--set {assignment}: unknown section '{parts[0]}'; allowed: {sorted(SECTIONS)}")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ParamError(f"--set {assignment}: the value is not valid YAML ({err})") from None
    nested: Any = value
    for part in reversed(parts[1:]):
        nested = {part: nested}
    return _merge(sections, {parts[0]: nested})


def check_together(sections: dict[str, Any], source: str) -> None:
    """Keys of two sections that must agree, each valid on its own."""
    data, sim, compare = sections["data"], sections["simulated_minority"], sections["compare"]
    if sim.targets:
        if data.probe == "linear":
            raise ParamError(f"{source}: simulated_minority.targets {sim.targets} are cut down among the convex "
                             "probe's frames, which data.probe 'linear' leaves out; use data.probe both or convex, "
                             "or simulated_minority.targets: []")
        lacking = [c for c in CONVEX_CLASSES if c not in data.classes]
        if lacking:
            raise ParamError(f"{source}: simulated_minority.targets {sim.targets} draw among the classes "
                             f"{list(CONVEX_CLASSES)}, but data.classes lacks {lacking}; keep them in data.classes "
                             "or set simulated_minority.targets: []")
    if compare.minority_class not in data.classes:
        raise ParamError(f"{source}: compare.minority_class '{compare.minority_class}' is not in data.classes "
                         f"{data.classes}; name one of them")


def load_profile(spec: str, overrides: list[str] | tuple[str, ...] = ()) -> Profile:
    """A profile from `spec` (a name, a path, or several joined by `+`) and `--set` assignments, validated."""
    sections: dict[str, Any] = {}
    files: list[Path] = []
    descriptions = []
    for part in [p for p in str(spec).split("+") if p.strip()] or [str(spec)]:
        path = profile_path(part.strip())
        composed, chain = _compose_file(path, ())
        sections, files = _merge(sections, composed), [*files, *chain]
        descriptions.append(read_profile_file(path)["description"].strip())
    for assignment in overrides:
        sections = set_override(sections, assignment)
    source = " + ".join(str(f) for f in files) + ("".join(f" --set {a}" for a in overrides))
    built = {}
    for name, cls in SECTIONS.items():
        set_here = [a for a in overrides if a.split(".", 1)[0] == name]
        where = f"--set {set_here[0]}" if set_here else f"{' + '.join(str(f) for f in files)} [{name}]"
        built[name] = build(cls, sections.get(name) or {}, where, profile=True)
    check_together(built, source)
    name = "+".join(Path(p.strip()).stem for p in str(spec).split("+") if p.strip())
    description = descriptions[0] if len(descriptions) == 1 else " Then: ".join(descriptions)
    if overrides:
        description += " With " + ", ".join(overrides) + "."
    return Profile(name=name, path=files[-1], description=description, sections=built, files=tuple(files))
