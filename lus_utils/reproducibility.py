"""Same seed, same numbers: one call seeds every generator and makes CPU kernels deterministic."""
from __future__ import annotations

import os
import random

import numpy as np

from lus_utils.provenance import machine


def thread_count(threads: int) -> int:
    """runtime.threads: as given, or every core for 0."""
    return threads or os.cpu_count() or 1


def seed_everything(seed: int, num_threads: int | None = None) -> None:
    """Seed python, numpy and torch; fix the thread count (0: every core); ask torch for deterministic
    algorithms."""
    import torch  # lazy: the runner and notebook 01 use this module without torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if num_threads is not None:
        torch.set_num_threads(thread_count(num_threads))
    torch.use_deterministic_algorithms(True, warn_only=True)
    if torch.backends.cudnn.is_available():
        torch.backends.cudnn.benchmark = False


def resolve_precision(precision: str, device) -> str:
    """runtime.precision as used on `device`: "auto" is bf16 on a GPU and on a CPU with native bf16 (AMX or
    AVX-512 bf16), fp32 elsewhere (an AVX2 CPU emulates bf16 matmuls, measured ~80x slower than fp32)."""
    if precision != "auto":
        return precision
    if getattr(device, "type", str(device)) == "cuda":
        return "bf16"
    return "bf16" if machine()["isa"] in ("AMX", "AVX-512 bf16") else "fp32"


def resolve_device(name: str):
    """`auto` picks cuda when torch sees a GPU, else cpu; an explicit `cuda` without a GPU is an error."""
    import torch  # lazy: the runner and notebook 01 use this module without torch

    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' asked for but torch sees no GPU; set device to auto or cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
