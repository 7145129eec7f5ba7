"""What notebooks 04 and 05 share before they generate: validated parameters, the environment printed, the
frames, the seed, threads and device."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import pandas as pd
import torch

from lus_utils.config.notebooks import from_notebook
from lus_utils.config.runtime import RuntimeParams
from lus_utils.data.dataset import study_frames
from lus_utils.paths import OutLayout, resolve_out_dir
from lus_utils.provenance import print_environment
from lus_utils.reproducibility import resolve_device, seed_everything


@dataclass
class GeneratorSession:
    sections: tuple[Any, ...]  # the notebook's parameter sections, in the stage table's order
    runtime: RuntimeParams
    layout: OutLayout
    frames: pd.DataFrame
    device: torch.device


def start_generator_session(notebook: str, namespace: Mapping[str, Any]) -> GeneratorSession:
    """Validate the notebook's parameters (its globals), print the environment, read the frames, seed."""
    *sections, runtime = from_notebook(notebook, namespace)
    print_environment()
    layout = OutLayout(resolve_out_dir(namespace.get("out_dir", "")))
    frames = study_frames("", namespace.get("data_root", ""), layout.root)
    seed_everything(sections[0].seed, runtime.threads)
    return GeneratorSession(tuple(sections), runtime, layout, frames, resolve_device(runtime.device))
