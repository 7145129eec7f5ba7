"""A synthetic set is one type: its name, folder, provenance and leakage flag; the planner names sets torch-free."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lus_utils.generate import synthetic
from lus_utils.generate.synthetic import SyntheticSet, SyntheticSetError


def test_generator_names():
    assert synthetic.ddpm_set_name("3_mixed", -1) == "ddpm_3_mixed"
    assert synthetic.ddpm_set_name("train_all", 2) == "ddpm_train_all_fold2"
    assert synthetic.ti_set_names() == {"txt2img": "ti_txt2img", "img2img": "ti_img2img"}
    assert synthetic.ti_set_names("domain_fold1")["img2img"] == "ti_img2img_domain_fold1"


def test_a_name_and_a_path_resolve_by_one_rule(tmp_path):
    by_name = SyntheticSet.resolve("ddpm_3_mixed", tmp_path)
    assert by_name.folder == tmp_path / "synthetic" / "ddpm_3_mixed" and by_name.name == "ddpm_3_mixed"
    elsewhere = tmp_path / "sets" / "my set"
    by_path = SyntheticSet.resolve(str(elsewhere) + "/", tmp_path)
    assert by_path.folder == elsewhere and by_path.name == "my-set"
    assert synthetic.set_name("") == ""
    with pytest.raises(SyntheticSetError, match="no synthetic set"):
        SyntheticSet.resolve("", tmp_path)


def test_leakage_flag_comes_from_provenance_never_from_the_name(tmp_path):
    def make(name: str, record: dict | None) -> SyntheticSet:
        folder = tmp_path / "synthetic" / name
        folder.mkdir(parents=True)
        if record is not None:
            (folder / "provenance.json").write_text(json.dumps(record))
        return SyntheticSet.resolve(name, tmp_path)

    assert not make("ddpm_3_mixed_any_split", {"leakage_ablation": False, "training_frames": []}).leakage_ablation
    assert make("plain", {"leakage_ablation": True, "training_frames": ["a"]}).leakage_ablation
    unknown = make("no_provenance", None)
    assert unknown.leakage_ablation  # frames unknown: it cannot be shown free of leakage
    with pytest.raises(SyntheticSetError, match="provenance.json"):
        unknown.training_frames


def test_planning_a_study_imports_no_torch_or_diffusers(tmp_path, tiny_root):
    code = ("import sys; from pathlib import Path; from lus_utils import params as P; "
            "from lus_utils.run.planning import plan; "
            f"runs = plan(P.load_profile('smoke'), Path({str(tmp_path / 'out')!r}), Path({str(tiny_root)!r})); "
            "print(len(runs), sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'diffusers', 'transformers')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr[-2000:]
    n_runs, modules = out.stdout.strip().split(" ", 1)
    assert int(n_runs) > 0 and modules == "[]", out.stdout
