"""The machinery every section of the config uses: typed fields with choices, planned fields, validation.

A section is a dataclass; the comment after each field is its documentation (profiles need none, notebooks'
parameters cells show it). `build` makes a section from a mapping, refusing unknown keys, wrong types and values
outside their choices with the key and the source named, then runs the section's `check`.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
import types
import typing
from dataclasses import field, fields
from typing import Any, Mapping


class ParamError(ValueError):
    """A parameter that is unknown, mistyped or out of range; the message names it, its source and the fix."""


def choice(default: Any, choices: tuple, **kwargs: Any) -> Any:
    """A field whose value (or every item, for a list) must be one of `choices`."""
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: list(default), metadata={"choices": choices, **kwargs})
    return field(default=default, metadata={"choices": choices, **kwargs})


def listof(default: list) -> Any:
    return field(default_factory=lambda: list(default))


def mapping(default: dict) -> Any:
    """A dict field (an overlay of another section's keys): a profile's mapping is merged over the default."""
    return field(default_factory=lambda: dict(default), metadata={"merge": True})


def planned(default: Any, by: str, choices: tuple | None = None) -> Any:
    """A field the runner sets for each run from `by` (another key): a notebook parameter, never a profile key.
    Its default is what a notebook run by hand gets: `by`'s own default where `by` is a key."""
    return field(default=default, metadata={"planned": by, **({"choices": choices} if choices else {})})


def require(ok: bool, key: str, why: str) -> None:
    if not ok:
        raise ParamError(f"parameter '{key}' {why}")


def _type_ok(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, arg) for arg in typing.get_args(hint))
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        return isinstance(value, (list, tuple)) and all(_type_ok(v, item) for v in value)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if hint is type(None):
        return value is None
    if hint is float:  # finite: an infinite or NaN rate, fraction or size is always a typo
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    name = getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
    return "finite float" if hint is float else name


def planned_keys(cls: type) -> dict[str, str]:
    """The `planned` fields of a class and the key each is planned from."""
    return {f.name: f.metadata["planned"] for f in fields(cls) if "planned" in f.metadata}


def build(cls: type, values: Mapping[str, Any], source: str, profile: bool = False) -> Any:
    """Make `cls` from `values` (missing keys keep their defaults), refusing unknown keys and wrong types,
    naming `source`. With `profile`, planned keys are refused too (the runner sets them per run)."""
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ParamError(f"{source}: unknown parameter(s) {unknown}; allowed: {sorted(known)}")
    per_run = {k: by for k, by in planned_keys(cls).items() if k in values} if profile else {}
    if per_run:
        raise ParamError(f"{source}: {sorted(per_run)} are set for each run by the runner, not by a profile "
                         f"(from {sorted(set(per_run.values()))}); remove them")
    for key, value in values.items():
        hint = hints[key]
        if not _type_ok(value, hint):
            raise ParamError(f"{source}: parameter '{key}' must be {_type_name(hint)}, "
                             f"got {value!r} ({type(value).__name__})")
        choices = known[key].metadata.get("choices")
        if choices is not None:
            items = value if isinstance(value, (list, tuple)) else [value]
            bad = [v for v in items if v not in choices]
            if bad:
                raise ParamError(f"{source}: parameter '{key}' has {bad}; allowed: {list(choices)}"
                                 f"{getattr(choices, 'hint', '')}")
    coerced = {}
    for key, value in values.items():
        if hints[key] is float:
            value = float(value)
        elif isinstance(value, tuple):
            value = list(value)
        elif known[key].metadata.get("merge"):
            value = {**known[key].default_factory(), **value}
        coerced[key] = value
    obj = cls(**coerced)
    if hasattr(obj, "check"):
        try:
            obj.check()
        except ParamError as err:
            raise ParamError(f"{source}: {err}") from None
    return obj


def as_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def field_comments(cls: type) -> dict[str, str]:
    """The `# comment` written after each field in the dataclass source (the parameter's help)."""
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        for line in inspect.getsource(klass).splitlines():
            name, sep, rest = line.strip().partition(":")
            if sep and name.isidentifier() and "#" in rest:
                comments[name] = rest.split("#", 1)[1].strip()
    return comments
