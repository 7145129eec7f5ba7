"""The config: one typed definition per section, composed into profiles, refused when unknown, mistyped or out
of range, and rendered as each notebook's parameters."""
from __future__ import annotations

import ast
import json
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from lus_utils.config import profiles as PR
from lus_utils.config.classify import TrainParams
from lus_utils.config.data import DataParams
from lus_utils.config.notebooks import NOTEBOOK_PARAMS, from_notebook, notebook_defaults, parameters_cell
from lus_utils.config.schema import ParamError, as_dict, build, planned_keys
from lus_utils.paths import NOTEBOOKS_DIR, PARAMS_DIR

PROFILES = ["smoke", "quick", "full"]  # whole profiles over the defaults
OVERLAYS = ["convex_only", "rehearsal"]  # profiles meant to be composed over another


@pytest.mark.parametrize("name", PROFILES + OVERLAYS)
def test_profiles_load(name):
    profile = PR.load_profile(name)
    assert set(profile.sections) == set(PR.SECTIONS)
    assert profile.description


def test_the_defaults_are_the_quick_profile():
    raw = yaml.safe_load((PARAMS_DIR / "quick.yaml").read_text())
    assert set(raw) == {"description"}
    quick = PR.load_profile("quick")
    assert quick.to_dict() == {name: as_dict(cls()) for name, cls in PR.SECTIONS.items()}


@pytest.mark.parametrize("name", PROFILES)
def test_profiles_state_only_what_they_change(name):
    raw = yaml.safe_load((PARAMS_DIR / f"{name}.yaml").read_text())
    for section, values in raw.items():
        if section in PR.FILE_KEYS:
            continue
        defaults = as_dict(PR.SECTIONS[section]())
        same = [k for k, v in values.items() if v == defaults[k]]
        assert not same, f"{name}.yaml [{section}] restates defaults {same}"


def test_overlays_compose_left_to_right_and_set_overrides_one_key():
    full, convex = PR.load_profile("full"), PR.load_profile("full+convex_only")
    assert convex.data.probe == "convex" and full.data.probe == "both"
    assert convex.to_dict() | {"data": {}} == full.to_dict() | {"data": {}}  # only data changed
    assert convex.name == "full+convex_only" and [p.stem for p in convex.files] == ["full", "convex_only"]
    rehearsal = PR.load_profile("full+rehearsal")
    assert rehearsal.train.image_size == full.train.image_size and rehearsal.train.epochs == 1
    assert rehearsal.seed_replica.ddpm["sampler"] == "ddpm"  # an overlay of a mapping merges key by key
    assert rehearsal.seed_replica.ddpm["sampling_steps"] == 2
    changed = PR.load_profile("smoke", ["train.lr=0.001", "grid.seeds=[0, 1]", "seed_replica.ddpm.n_samples=3"])
    assert changed.train.lr == 0.001 and changed.grid.seeds == [0, 1] and changed.seed_replica.ddpm["n_samples"] == 3
    assert changed.seed_replica.ddpm["sampling_steps"] == PR.load_profile("smoke").seed_replica.ddpm["sampling_steps"]


def test_a_base_key_in_a_file_composes_and_a_loop_is_refused(tmp_path):
    (tmp_path / "mine.yaml").write_text("description: mine\nbase: smoke\ntrain:\n  epochs: 3\n")
    mine = PR.load_profile(str(tmp_path / "mine.yaml"))
    assert mine.train.epochs == 3 and mine.train.batch_size == PR.load_profile("smoke").train.batch_size
    (tmp_path / "a.yaml").write_text(f"description: a\nbase: {tmp_path / 'b.yaml'}\n")
    (tmp_path / "b.yaml").write_text(f"description: b\nbase: {tmp_path / 'a.yaml'}\n")
    with pytest.raises(ParamError, match="loops"):
        PR.load_profile(str(tmp_path / "a.yaml"))


@pytest.mark.parametrize("assignment, match", [
    ("train.lr=.inf", "lr.*finite float"), ("train.lr=-1", "lr"), ("data.split_seed=-1", "split_seed"),
    ("grid.seeds=[]", "seeds"), ("grid.seeds=[-1]", "seeds"), ("grid.synthetic_amounts=[1.0, 1.0]", "distinct"),
    ("nosection.key=1", "unknown section"), ("train.lr", "section.key=value"), ("train.lr=[1", "not valid YAML"),
    ("data.classes=[covid, pneumonia, regular]", "lacks 'viral'.*keep 'viral'"),
    ("seed_replica.ddpm.samplr=ddpm", "samplr"), ("seed_replica.audit.gate=other", "gate"),
    ("ddpm.output_size=48", "set for each run by the runner"),
])
def test_bad_values_are_refused_with_the_key_and_the_fix(assignment, match):
    with pytest.raises(ParamError, match=match):
        PR.load_profile("smoke", [assignment])


def write_profile(tmp_path: Path, edit) -> Path:
    raw = yaml.safe_load((PARAMS_DIR / "smoke.yaml").read_text())
    edit(raw)
    path = tmp_path / "edited.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_unknown_key_and_wrong_type_name_key_and_file(tmp_path):
    path = write_profile(tmp_path, lambda raw: raw.setdefault("data", {}).update(sample_hzz=3))
    with pytest.raises(ParamError, match=f"sample_hzz.*|{path}") as err:
        PR.load_profile(str(path))
    assert "sample_hzz" in str(err.value) and str(path) in str(err.value)
    path = write_profile(tmp_path, lambda raw: raw.setdefault("data", {}).update(max_frames_per_video="thirty"))
    with pytest.raises(ParamError) as err:
        PR.load_profile(str(path))
    assert "max_frames_per_video" in str(err.value) and str(path) in str(err.value)


def test_bad_choice_planned_key_and_unknown_section(tmp_path):
    with pytest.raises(ParamError, match="probe"):
        PR.load_profile(str(write_profile(tmp_path, lambda raw: raw.setdefault("data", {}).update(probe="sector"))))
    with pytest.raises(ParamError, match="variant"):
        PR.load_profile(str(write_profile(tmp_path, lambda raw: raw["ddpm"].update(variant="train_all"))))
    with pytest.raises(ParamError, match="unknown section"):
        PR.load_profile(str(write_profile(tmp_path, lambda raw: raw.update(extra={"a": 1}))))


def test_yaml_that_does_not_parse_names_file_line_and_column(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("description: x\ntrain:\n  epochs: [1, 2\n")
    with pytest.raises(ParamError, match=r"broken.yaml at line \d+, column \d+: not valid YAML"):
        PR.load_profile(str(path))


def test_unknown_profile_lists_available():
    with pytest.raises(ParamError, match="smoke"):
        PR.load_profile("nonexistent")


def test_range_checks():
    with pytest.raises(ParamError, match="val_fraction"):
        build(DataParams, {"val_fraction": 0.6, "test_fraction": 0.5}, "x")


def test_planned_defaults_are_their_sources_defaults():
    """A notebook run by hand gets the value the runner would plan from the defaults (no misleading placeholder)."""
    assert notebook_defaults("05_ddpm")["output_size"] == TrainParams().image_size
    assert notebook_defaults("04_textual_inversion")["output_size"] == TrainParams().image_size
    for cls in {c for classes in NOTEBOOK_PARAMS.values() for c in classes}:
        assert set(planned_keys(cls)) <= {f.name for f in fields(cls)}


def notebooks() -> list[Path]:
    return sorted(NOTEBOOKS_DIR.glob("*.ipynb"))


def notebook_parameters(path: Path) -> str:
    cells = [c for c in json.loads(path.read_text())["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"{path.name}: exactly one cell must be tagged parameters"
    return "".join(cells[0]["source"])


def test_every_registered_notebook_exists():
    assert {p.stem for p in notebooks()} == set(NOTEBOOK_PARAMS)


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.stem)
def test_notebook_parameters_match_the_dataclasses(path):
    source = notebook_parameters(path)
    assert source == parameters_cell(path.stem)
    values = {}
    for node in ast.parse(source).body:
        assert isinstance(node, ast.AnnAssign), "parameters cell holds annotated literals only"
        values[node.target.id] = ast.literal_eval(node.value)
    assert values == notebook_defaults(path.stem)


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.stem)
def test_papermill_documents_every_parameter(path):
    from papermill.inspection import _infer_parameters
    from papermill.iorw import load_notebook_node

    inferred = {p.name: p for p in _infer_parameters(load_notebook_node(str(path)))}
    assert set(inferred) == set(notebook_defaults(path.stem))
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


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.stem)
def test_every_notebook_prints_its_environment_first(path):
    setup = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"][1]
    source = "".join(setup["source"])
    assert "print_environment()" in source or "start_session(" in source or "start_generator_session(" in source


def test_from_notebook_refuses_mistyped_and_misspelt_values():
    namespace = notebook_defaults("01_data_exploration")
    with pytest.raises(ParamError, match="repeats"):
        from_notebook("01_data_exploration", {**namespace, "repeats": "5"})
    with pytest.raises(ParamError, match=r"unknown parameter\(s\) \['repeat'\]"):  # papermill -p repeat 3
        from_notebook("01_data_exploration", {**namespace, "repeat": 3})
    # a re-run in a live kernel: the notebook's own variables and IPython's history are no parameters
    from_notebook("01_data_exploration", {**namespace, "frames": [1], "In": [""], "Out": {}, "_i1": ""})
