"""The stage table is the one source of stage knowledge: its planners, notebooks and parameter classes exist."""
from __future__ import annotations

from lus_utils.config.notebooks import NOTEBOOK_PARAMS, PARAM_CLASSES
from lus_utils.config.profiles import load_profile
from lus_utils.paths import NOTEBOOKS_DIR
from lus_utils.run import planning
from lus_utils.stages import STAGES, TABLE, by_notebook


def test_every_stage_has_its_notebook_params_and_planners():
    order = [p.__name__ for p in planning.PLAN_ORDER]
    for stage in TABLE:
        assert (NOTEBOOKS_DIR / f"{stage.notebook}.ipynb").is_file()
        assert stage.notebook.startswith(stage.id) and by_notebook(stage.notebook) is stage
        assert NOTEBOOK_PARAMS[stage.notebook] == tuple(PARAM_CLASSES[name] for name in stage.params)
        assert stage.planners and all(name in order for name in stage.planners), stage
        assert all(dep in STAGES and dep < stage.id for dep in stage.after)
        assert stage.reads in ("data_root", "frames", "runs")
    for name in ("smoke", "full"):  # quick leaves out 04 for its CPU hour; smoke and full run every stage
        assert set(load_profile(name).study.stages) == set(STAGES), name


def test_every_planner_serves_a_stage():
    assert all(planning.planned_stages(p) for p in planning.PLAN_ORDER)
    assert planning.planned_stages(planning.plan_classifiers) == {"02", "03"}
