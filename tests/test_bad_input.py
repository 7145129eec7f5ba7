"""Bad input the study refuses with a message naming the thing and the fix: synthetic sets without a record of
their training frames, and profiles whose grid asks for synthetic sets no generator makes."""
from __future__ import annotations


import numpy as np
import pytest

from lus_utils import synthetic_sets as synthetic
from lus_utils.config.profiles import load_profile
from lus_utils.config.schema import ParamError
from lus_utils.provenance import read_json, write_json_atomic

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


def test_classes_without_the_minority_are_refused_with_the_cause_not_a_protocol_change():
    """Dropping viral from data.classes used to be answered with "use data.protocol: holdout", after which most
    runs failed: the cause is the missing minority class, and the fix is to keep it."""
    with pytest.raises(ParamError, match=r"lacks 'viral', the study's minority class.*keep 'viral'"):
        load_profile("smoke", ["data.classes=[covid, pneumonia, regular]"])
    with pytest.raises(ParamError, match=r"lacks 'viral'"):
        load_profile("smoke", ["data.classes=[covid, pneumonia, regular]", "data.protocol=holdout"])
