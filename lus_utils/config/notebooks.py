"""Each notebook's parameters: which sections make them up (the stage table's `params`), the `parameters` cell
rendered from the dataclasses, and their validation inside the notebook.

Each notebook's `parameters` cell holds exactly the fields of its classes plus `data_root` and `out_dir`, with
the same defaults (a test checks this), so papermill, JupyterLab and the runner all see one definition. Fields
the runner sets per run (`planned`) say so in their comment; their default is what a notebook run by hand gets.
"""
from __future__ import annotations

import ast
import json
import typing
from dataclasses import fields
from typing import Any, Mapping

from lus_utils.config import classify, compare, data, generate, runtime
from lus_utils.config.schema import ParamError, as_dict, build, field_comments, planned_keys, _type_name
from lus_utils.paths import NOTEBOOKS_DIR
from lus_utils.stages import TABLE as STAGE_TABLE

PARAM_CLASSES: dict[str, type] = {cls.__name__: cls for module in (classify, compare, data, generate, runtime)
                                  for cls in vars(module).values()
                                  if isinstance(cls, type) and cls.__name__.endswith("Params")}
NOTEBOOK_PARAMS: dict[str, tuple[type, ...]] = {
    stage.notebook: tuple(PARAM_CLASSES[name] for name in stage.params) for stage in STAGE_TABLE}
# Every notebook also takes these two paths (name: help); both default to "".
COMMON_NOTEBOOK_PARAMS = {
    "data_root": "dataset data/ folder; empty: $LUS_DATA_ROOT, else data/covid19_ultrasound/data",
    "out_dir": "study output folder; empty: outputs/notebook",
}
LITERALS = (str, int, float, bool, list, dict, type(None))  # what papermill can inject
KERNEL_NAMES = {"In", "Out"}  # IPython's input and output history, never parameters


def assigned_names(notebook: str) -> set[str]:
    """Every name a notebook's own code cells bind (assignments and imports), so neither an import nor a re-run
    in a live kernel is taken for an injected parameter."""
    nb = json.loads((NOTEBOOKS_DIR / f"{notebook}.ipynb").read_text(encoding="utf-8"))
    names: set[str] = set()
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        try:
            tree = ast.parse("".join(cell.get("source", "")))
        except SyntaxError:
            continue
        names |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        names |= {(a.asname or a.name).split(".")[0] for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                  for a in n.names}
    return names


def notebook_defaults(notebook: str) -> dict[str, Any]:
    """The parameters cell of `notebook` as a dict: common params then each section's defaults."""
    values: dict[str, Any] = {key: "" for key in COMMON_NOTEBOOK_PARAMS}
    for cls in NOTEBOOK_PARAMS[notebook]:
        values.update(as_dict(cls()))
    return values


def from_notebook(notebook: str, namespace: Mapping[str, Any]) -> tuple[Any, ...]:
    """Validate a notebook's parameters (taken from its globals) into its section dataclasses.

    Used in the cell after `parameters`, so a mistyped `-p` value stops the notebook at once, and so does a
    misspelt one (`-p epoch 3` would otherwise run on the default `epochs` with only papermill's warning)."""
    known = set(notebook_defaults(notebook))
    unknown = sorted(name for name, value in namespace.items() if not name.startswith("_")
                     and isinstance(value, LITERALS) and name not in known and name not in KERNEL_NAMES
                     and name not in assigned_names(notebook))
    if unknown:
        raise ParamError(f"notebook {notebook} parameters: unknown parameter(s) {unknown}; this notebook takes "
                         f"{sorted(known)} (papermill --help-notebook notebooks/{notebook}.ipynb)")
    out = []
    for cls in NOTEBOOK_PARAMS[notebook]:
        values = {f.name: namespace[f.name] for f in fields(cls) if f.name in namespace}
        out.append(build(cls, values, f"notebook {notebook} parameters"))
    for key in COMMON_NOTEBOOK_PARAMS:
        value = namespace.get(key, "")
        if not isinstance(value, str):
            raise ParamError(f"notebook {notebook} parameters: '{key}' must be a str path, got {value!r}")
    return tuple(out)


def parameters_cell(notebook: str) -> str:
    """The source of `notebook`'s `parameters` cell, rendered from the dataclasses (one literal a line)."""
    lines = [f'{key}: str = ""  # {comment}' for key, comment in COMMON_NOTEBOOK_PARAMS.items()]
    for cls in NOTEBOOK_PARAMS[notebook]:
        comments = field_comments(cls)
        runner_sets = planned_keys(cls)
        # papermill's parser misreads a comment holding "=", and then drops the parameter.
        bad = {k: c for k, c in comments.items() if "=" in c}
        if bad:
            raise ParamError(f"{cls.__name__}: field comments must not contain '=': {bad}")
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            value = getattr(cls(), f.name)
            hint = hints[f.name]
            type_name = "list" if typing.get_origin(hint) is list else _type_name(hint).replace("finite ", "")
            literal = repr(value).replace("'", '"')
            comment = comments.get(f.name, "")
            if f.name in runner_sets:
                comment = f"[set per run by the runner, from {runner_sets[f.name]}] {comment}"
            lines.append(f"{f.name}: {type_name} = {literal}  # {comment}".rstrip())
    return "\n".join(lines)


def sync_notebook_parameters() -> list[str]:
    """Rewrite every notebook's `parameters` cell from the dataclasses; returns the notebooks it changed."""
    changed = []
    for notebook in NOTEBOOK_PARAMS:
        path = NOTEBOOKS_DIR / f"{notebook}.ipynb"
        nb = json.loads(path.read_text())
        cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
        source = parameters_cell(notebook)
        if "".join(cell["source"]) != source:
            cell["source"] = source.splitlines(keepends=True)
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
            changed.append(notebook)
    return changed
