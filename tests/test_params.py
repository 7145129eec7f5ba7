"""Profiles and notebook parameters: one typed definition, refused when unknown or mistyped."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import yaml

from lus_utils import params as P
from lus_utils.paths import NOTEBOOKS_DIR, PARAMS_DIR

PROFILES = ["smoke", "quick", "full"]


@pytest.mark.parametrize("name", PROFILES)
def test_profiles_load(name):
    profile = P.load_profile(name)
    assert set(profile.sections) == set(P.SECTIONS)
    assert profile.description


def test_the_defaults_are_the_quick_profile():
    raw = yaml.safe_load((PARAMS_DIR / "quick.yaml").read_text())
    assert set(raw) == {"description"}
    quick = P.load_profile("quick")
    assert quick.to_dict() == {name: P.as_dict(cls()) for name, cls in P.SECTIONS.items()}
    assert "quick" in P.__doc__


@pytest.mark.parametrize("name", PROFILES)
def test_profiles_state_only_what_they_change(name):
    raw = yaml.safe_load((PARAMS_DIR / f"{name}.yaml").read_text())
    for section, values in raw.items():
        if section == "description":
            continue
        defaults = P.as_dict(P.SECTIONS[section]())
        same = [k for k, v in values.items() if v == defaults[k]]
        assert not same, f"{name}.yaml [{section}] restates defaults {same}"


def test_the_classifier_input_size_is_the_written_size_of_every_synthetic_set(tmp_path, tiny_root):
    from lus_utils.run.planning import plan

    profile = P.load_profile("smoke")
    runs = plan(profile, tmp_path / "out", tiny_root, only=["04", "05"])
    assert runs and all(r.params["output_size"] == profile.train.image_size for r in runs)


def write_profile(tmp_path: Path, edit) -> Path:
    raw = yaml.safe_load((PARAMS_DIR / "smoke.yaml").read_text())
    edit(raw)
    path = tmp_path / "edited.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_unknown_key_names_key_and_file(tmp_path):
    path = write_profile(tmp_path, lambda raw: raw.setdefault("data", {}).update(sample_hzz=3))
    with pytest.raises(P.ParamError) as err:
        P.load_profile(str(path))
    assert "sample_hzz" in str(err.value) and str(path) in str(err.value)


def test_wrong_type_names_key_and_file(tmp_path):
    path = write_profile(tmp_path, lambda raw: raw.setdefault("data", {}).update(max_frames_per_video="thirty"))
    with pytest.raises(P.ParamError) as err:
        P.load_profile(str(path))
    assert "max_frames_per_video" in str(err.value) and str(path) in str(err.value)


def test_bad_choice_planned_key_and_unknown_section(tmp_path):
    with pytest.raises(P.ParamError, match="probe"):
        P.load_profile(str(write_profile(tmp_path, lambda raw: raw.setdefault("data", {}).update(probe="sector"))))
    with pytest.raises(P.ParamError, match=r"output_size.*set for each run by the runner.*train.image_size"):
        P.load_profile(str(write_profile(tmp_path, lambda raw: raw["ddpm"].update(output_size=64))))
    with pytest.raises(P.ParamError, match="variant"):
        P.load_profile(str(write_profile(tmp_path, lambda raw: raw["ddpm"].update(variant="train_all"))))
    with pytest.raises(P.ParamError, match="unknown section"):
        P.load_profile(str(write_profile(tmp_path, lambda raw: raw.update(extra={"a": 1}))))


def test_unknown_profile_lists_available():
    with pytest.raises(P.ParamError, match="smoke"):
        P.load_profile("nonexistent")


def test_range_checks():
    with pytest.raises(P.ParamError, match="val_fraction"):
        P.build(P.DataParams, {"val_fraction": 0.6, "test_fraction": 0.5}, "x")


def notebooks() -> list[Path]:
    return sorted(NOTEBOOKS_DIR.glob("*.ipynb"))


def parameters_cell(path: Path) -> str:
    cells = [c for c in json.loads(path.read_text())["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"{path.name}: exactly one cell must be tagged parameters"
    return "".join(cells[0]["source"])


def test_every_registered_notebook_exists():
    assert {p.stem for p in notebooks()} == set(P.NOTEBOOK_PARAMS)


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.stem)
def test_notebook_parameters_match_the_dataclasses(path):
    source = parameters_cell(path)
    assert source == P.parameters_cell(path.stem)
    values = {}
    for node in ast.parse(source).body:
        assert isinstance(node, ast.AnnAssign), "parameters cell holds annotated literals only"
        values[node.target.id] = ast.literal_eval(node.value)
    assert values == P.notebook_defaults(path.stem)


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.stem)
def test_papermill_documents_every_parameter(path):
    from papermill.inspection import _infer_parameters
    from papermill.iorw import load_notebook_node

    inferred = {p.name: p for p in _infer_parameters(load_notebook_node(str(path)))}
    assert set(inferred) == set(P.notebook_defaults(path.stem))
    assert all(p.help for p in inferred.values())


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.stem)
def test_notebooks_are_narratives_without_outputs_or_definitions(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    for cell in code:
        tree = ast.parse("".join(cell["source"]))
        assert not [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))]
    assert nb["cells"][0]["cell_type"] == "markdown"
    assert "parameters" in nb["cells"][1].get("metadata", {}).get("tags", [])


def test_from_notebook_refuses_mistyped_values():
    namespace = P.notebook_defaults("01_data_exploration")
    namespace["repeats"] = "5"
    with pytest.raises(P.ParamError, match="repeats"):
        P.from_notebook("01_data_exploration", namespace)
