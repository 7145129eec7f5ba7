"""Bad input the study refuses with a message naming the thing and the fix: synthetic sets without a record of
their training frames, and profiles whose grid asks for synthetic sets no generator makes."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from lus_utils import params as P
from lus_utils.generate import synthetic
from lus_utils.provenance import read_json, write_json_atomic
from lus_utils.run.planning import plan

CLASSES = ["covid", "viral"]


def make_set(set_dir, training_frames=("frames/k/0.png",)):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (16, 16), dtype=np.uint8) for _ in range(2)]
    rows = [{"label": "viral", "generator": "test", "variant": "v", "sampler": "-", "steps": 0, "seed": i,
             "passed_gate": True} for i in range(2)]
    synthetic.write_set(set_dir, images, rows, {"training_frames": list(training_frames)})
    return set_dir


def test_a_set_with_its_training_frames_is_read(tmp_path):
    assert len(synthetic.load_for_training(make_set(tmp_path / "s"), CLASSES, ["frames/k/0.png"])) == 2


def test_a_set_without_provenance_is_refused(tmp_path):
    set_dir = make_set(tmp_path / "s")
    (set_dir / "provenance.json").unlink()
    with pytest.raises(synthetic.SyntheticSetError, match="no provenance.json.*leakage"):
        synthetic.load_for_training(set_dir, CLASSES, ["frames/k/0.png"])


@pytest.mark.parametrize("record", [{}, {"training_frames": []}, {"training_frames": "frames/k/0.png"}])
def test_a_set_whose_provenance_lists_no_training_frames_is_refused(tmp_path, record):
    set_dir = make_set(tmp_path / "s")
    write_json_atomic(set_dir / "provenance.json", {**{k: v for k, v in read_json(set_dir / "provenance.json").items()
                                                       if k != "training_frames"}, **record})
    with pytest.raises(synthetic.SyntheticSetError) as err:
        synthetic.load_for_training(set_dir, CLASSES, ["frames/k/0.png"])
    assert "lists no training_frames" in str(err.value) and "regenerate the set with notebook 04 or 05" in str(err.value)
    assert str(set_dir / "provenance.json") in str(err.value)


def test_cv_without_two_minority_patients_is_a_planner_error_naming_the_fix(tmp_path, tiny_root):
    profile = P.load_profile("smoke")
    three = replace(profile.data, classes=["covid", "pneumonia", "regular"])
    profile = replace(profile, sections={**profile.sections, "data": three})
    with pytest.raises(P.ParamError) as err:
        plan(profile, tmp_path / "out", tiny_root)
    assert "at least 2 'viral' patients" in str(err.value) and "data.protocol: holdout" in str(err.value)
    holdout = replace(profile, sections={**profile.sections, "data": replace(three, protocol="holdout")})
    assert plan(holdout, tmp_path / "out", tiny_root)  # the hold-out protocol needs no minority folds
