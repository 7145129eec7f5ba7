"""A synthetic set's folder: which one a run on a split reads, its leakage flag from its provenance, and a planner
that names sets torch-free."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lus_utils import synthetic_sets
from lus_utils.synthetic_sets import SyntheticSetError
from lus_utils.vocabulary import CV, HOLDOUT, SIMULATED, Split


def test_a_split_reads_its_own_folder_or_a_path(tmp_path):
    synthetic = tmp_path / "synthetic"
    for name in ("ddpm_3_mixed_fold1", "ddpm_3_mixed", "ti_txt2img_domain_r1_fold0", "ddpm_3_mixed_covid_k3_d2",
                 "ddpm_seed_3_mixed"):
        (synthetic / name).mkdir(parents=True)
    assert synthetic_sets.resolve("ddpm_3_mixed", tmp_path, Split(CV, 1, 1)).name == "ddpm_3_mixed_fold1"
    assert synthetic_sets.resolve("ddpm_3_mixed", tmp_path, Split(HOLDOUT)).name == "ddpm_3_mixed"
    assert synthetic_sets.resolve("ti_txt2img_domain", tmp_path, Split(CV, 1, 0)).name == "ti_txt2img_domain_r1_fold0"
    assert synthetic_sets.resolve("ddpm_3_mixed", tmp_path, Split(SIMULATED, target="covid", draw=2), k=3).name == \
        "ddpm_3_mixed_covid_k3_d2"
    assert synthetic_sets.resolve("ddpm_seed_3_mixed", tmp_path, Split(CV, 0, 3)).name == "ddpm_seed_3_mixed"
    with pytest.raises(SyntheticSetError, match="ddpm_3_mixed_fold2.*notebook 05"):
        synthetic_sets.resolve("ddpm_3_mixed", tmp_path, Split(CV, 0, 2))
    elsewhere = tmp_path / "sets" / "my set"
    elsewhere.mkdir(parents=True)
    assert synthetic_sets.resolve(str(elsewhere), tmp_path, Split(CV, 0, 2)) == elsewhere


def test_leakage_flag_comes_from_provenance_never_from_the_name(tmp_path):
    def make(name: str, record: dict | None) -> Path:
        folder = tmp_path / "synthetic" / name
        folder.mkdir(parents=True)
        if record is not None:
            (folder / "provenance.json").write_text(json.dumps(record))
        return folder

    assert not synthetic_sets.leakage_ablation(make("ddpm_3_mixed_any_split", {"leakage_ablation": False,
                                                                               "training_frames": []}))
    assert synthetic_sets.leakage_ablation(make("plain", {"leakage_ablation": True, "training_frames": ["a"]}))
    unknown = make("no_provenance", None)
    assert synthetic_sets.leakage_ablation(unknown)  # frames unknown: it cannot be shown free of leakage
    with pytest.raises(SyntheticSetError, match="provenance.json"):
        synthetic_sets.read_provenance(unknown)


def test_planning_a_study_imports_no_torch_or_diffusers(tmp_path, tiny_root):
    code = ("import sys; from pathlib import Path; from lus_utils.config.profiles import load_profile; "
            "from lus_utils.run.planning import plan; "
            f"runs = plan(load_profile('smoke'), Path({str(tmp_path / 'out')!r}), Path({str(tiny_root)!r})); "
            "print(len(runs), sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'diffusers', 'transformers')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr[-2000:]
    n_runs, modules = out.stdout.strip().split(" ", 1)
    assert int(n_runs) > 0 and modules == "[]", out.stdout
