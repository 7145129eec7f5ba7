"""What made an artefact: code version, software versions and device, data fingerprints, and atomic writes.

Every artefact is written to a temporary name in the same folder and renamed into place, so a crash (or a
full disk) never leaves a half-written file that a later run could take for done. Files and folders get the
modes the umask allows (as `open` and `mkdir` would give them), so a group can read a study's outputs.
"""
from __future__ import annotations

import ast
import fcntl
import functools
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from lus_utils.paths import PROJECT_ROOT

PACKAGE_DIR = Path(__file__).resolve().parent


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def code_meaning(source: str) -> str:
    """What Python source means: its syntax tree without the docstrings of the module, its classes and functions.

    Comments and layout are not in the tree, so editing prose or reformatting leaves it as it was; any change to
    what runs (a name, a value, a statement) does not. The tree's printout depends on the Python version.
    """
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            constant = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            if constant and isinstance(first.value.value, str):
                node.body = node.body[1:]
    return ast.dump(tree)


def code_hash(path: Path) -> str:
    """sha256 of what a Python file means (`code_meaning`): the same after a comment or docstring edit."""
    return sha256_text(code_meaning(Path(path).read_text(encoding="utf-8")))


def stable_hash(obj: Any, length: int = 16) -> str:
    """Hash of a JSON-able object that does not depend on key order."""
    return sha256_text(json.dumps(obj, sort_keys=True, default=str))[:length]


def package_hash() -> str:
    """Hash of the `lus_utils` sources: changes whenever the study's logic changes."""
    return fingerprint_files(PACKAGE_DIR.rglob("*.py"), PACKAGE_DIR)


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The project's git commit, with `-dirty` when the working tree differs; `unknown` outside git.

    Once per process. The nbstripout filter is bypassed (`cat`): starting it per notebook made each call take
    seconds, and a notebook saved with outputs does differ from the committed one."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                                text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-c", "filter.nbstripout.clean=cat", "status", "--porcelain",
                                "--untracked-files=no", "--", "lus_utils", "notebooks", "params"],
                               cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def code_version() -> dict[str, str]:
    return {"git_commit": git_commit(), "lus_utils_sha256": package_hash()}


# The packages whose versions decide a study's numbers, as their distributions are named.
RECORDED_PACKAGES = ("torch", "torchvision", "diffusers", "transformers", "timm", "numpy", "scikit-learn")


def device_used() -> str:
    """The accelerator this process computed on: the CUDA device once CUDA was initialised, else the CPU."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        index = torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return f"cpu ({platform.processor() or platform.machine()})"


def _cpu_flags() -> tuple[str, set[str]]:
    """The CPU's model name and feature flags (Linux /proc/cpuinfo; the platform's processor elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or platform.machine(), set()
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")),
                 platform.machine())
    flags = next((set(line.split(":", 1)[1].split()) for line in text.splitlines() if line.startswith("flags")), set())
    return model, flags


@functools.lru_cache(maxsize=1)
def machine() -> dict[str, Any]:
    """The CPU that computed (model, the widest vector/matrix instruction set, cores): figures reproduce exactly
    on the same machine and move within their intervals on another (bf16 kernels differ between AMX, AVX-512
    and AVX2)."""
    model, flags = _cpu_flags()
    isa = next((name for name, flag in (("AMX", "amx_tile"), ("AVX-512 bf16", "avx512_bf16"),
                                         ("AVX-512", "avx512f"), ("AVX2", "avx2")) if flag in flags), "baseline")
    return {"cpu": model, "isa": isa, "cores": os.cpu_count() or 1}


def machine_line(device: str | None = None) -> str:
    """`AMD EPYC (AVX2, 2 cores)`, plus the accelerator when one computed."""
    m = machine()
    line = f"{m['cpu']} ({m['isa']}, {m['cores']} cores)"
    device = device or device_used()
    return line if device.startswith("cpu") else f"{device} on {line}"


def environment(device: str | None = None) -> dict[str, Any]:
    """Python, the recorded packages' versions, the device (`device` when the caller knows it better) and the
    machine (CPU model and instruction set)."""
    packages = {}
    for name in RECORDED_PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = "not installed"
    torch = sys.modules.get("torch")
    return {"python": platform.python_version(), "packages": packages,
            "cuda": (torch.version.cuda or "none") if torch is not None else "torch not imported",
            "device": device or device_used(), "platform": platform.platform(), "machine": machine()}


def print_environment() -> None:
    """What every notebook prints first (MONAI's `print_config`): the versions and the machine its numbers come
    from, so a reader can tell a reproduction from a regression."""
    env = environment()
    print(f"python {env['python']}; " + ", ".join(f"{k} {v}" for k, v in env["packages"].items()))
    print(f"machine: {machine_line()}; cuda {env['cuda']}; code {git_commit()}")


def fingerprint_files(paths: Iterable[Path], root: Path | None = None,
                      file_hash: Callable[[Path], str] = sha256_file) -> str:
    """One hash over the names and contents of many files (order-independent); `file_hash=code_hash` hashes
    Python files by what they mean."""
    digest = hashlib.sha256()
    entries = []
    for path in paths:
        path = Path(path)
        name = path.relative_to(root).as_posix() if root else path.name
        entries.append((name, file_hash(path)))
    for name, file_hash in sorted(entries):
        digest.update(f"{name}\0{file_hash}\n".encode())
    return digest.hexdigest()[:16]


def provenance(params: Any, **inputs: Any) -> dict[str, Any]:
    """The record written beside every artefact: what made it."""
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "code_version": code_version(),
        "environment": environment(),
        "params": params,
        **inputs,
    }


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return obj.as_posix()
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def current_umask() -> int:
    """The process's umask (read from /proc where it can be, so no other thread sees a changed one)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; it replaces `target` only if the block succeeds.

    The temporary file (mkstemp makes it 0600) gets the mode a plain `open` would give (0666 less the umask)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    os.chmod(tmp, 0o666 & ~current_umask())
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(target: Path, text: str) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def write_json_atomic(target: Path, obj: Any) -> Path:
    return write_text_atomic(target, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_csv_atomic(target: Path, frame: Any) -> Path:
    """Write a pandas DataFrame atomically."""
    with atomic_path(target) as tmp:
        frame.to_csv(tmp, index=False)
    return Path(target)


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Build a folder under a temporary name and rename it into place when the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    os.chmod(tmp, 0o777 & ~current_umask())
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def file_lock(path: Path, blocking: bool = True) -> Iterator[None]:
    """An exclusive lock on `path` (created if absent) held for the block, across processes (flock).

    With blocking=False, raises BlockingIOError at once when another process holds it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
