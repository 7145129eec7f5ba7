"""What notebooks 02 and 03 share before they train: validated parameters, the environment printed, the frames,
the run's identity and folder (the two notebooks differ only in their default strategy and their last
section)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from lus_utils.config.classify import ClassifierRunParams, EvaluationParams, TrainParams
from lus_utils.config.notebooks import from_notebook
from lus_utils.config.runtime import RuntimeParams
from lus_utils.config.schema import as_dict
from lus_utils.data.dataset import study_frames
from lus_utils.paths import OutLayout, resolve_out_dir
from lus_utils.provenance import print_environment
from lus_utils.reproducibility import seed_everything
from lus_utils.vocabulary import RunKey


@dataclass
class ClassifierSession:
    run: ClassifierRunParams
    train: TrainParams
    evaluation: EvaluationParams
    runtime: RuntimeParams
    layout: OutLayout
    frames: pd.DataFrame
    key: RunKey

    @property
    def run_dir(self) -> Path:
        return self.layout.run_dir(self.key.run_id)

    @property
    def baseline_run_ids(self) -> list[str]:
        """The runs this one is compared with (`Condition.baselines`, the comparison's rule)."""
        return self.key.baseline_run_ids()


def start_session(notebook: str, namespace: Mapping[str, Any]) -> ClassifierSession:
    """Validate the notebook's parameters (its globals), print the environment, read the frames, seed."""
    run, train, evaluation, runtime = from_notebook(notebook, namespace)
    print_environment()
    layout = OutLayout(resolve_out_dir(namespace.get("out_dir", "")))
    frames = study_frames(run.frames_csv, namespace.get("data_root", ""), layout.root)
    key = RunKey.from_params(as_dict(run))
    seed_everything(run.seed, runtime.threads)
    print(f"run {key.run_id}: condition {key.condition.name}\noutputs: {layout.run_dir(key.run_id)}")
    return ClassifierSession(run, train, evaluation, runtime, layout, frames, key)
