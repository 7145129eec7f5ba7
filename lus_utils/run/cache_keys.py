"""Cache keys: when a run is done, and why it must run again.

Each run has a cache key, the hash of
- its parameters (without data_root/out_dir: what they point to is fingerprinted instead),
- its notebook's code cells, by what they mean (comments and layout aside: the syntax tree; a cell with
  IPython magics as written) and their tags, without outputs, execution counts or metadata. Markdown counts
  only for notebook 06, whose prose is the report and which runs in seconds: a markdown edit re-runs no
  training, and the executed notebooks keep the prose they ran with until they run again (`--force`),
- the lus_utils code it runs, by what it means (`provenance.code_meaning`: the syntax tree without
  docstrings, so a comment or docstring edit changes no key): the modules its notebook imports and,
  transitively, theirs (all modules when that cannot be told; never the `run` subpackage, which decides
  what runs, not what a run computes), so editing comparison.py re-runs notebook 06 but no training,
- fingerprints of the inputs it reads: 01 the data root's files (path, size, mtime); 02-05 frames.csv,
  every synthetic-set folder it trains on (each fold's or draw's: the content of every file, images included,
  as `Run.reads` lists them) and the classifier folder its audit uses; 06 every runs/*/metrics.json and
  predictions.csv and synthetic/*/audit.json plus the stamps of all other runs (its report renders their
  notebooks), so 06 re-runs whenever anything it shows has changed,
- the keys of the runs it comes after, except notebook 01's: runs after 01 are keyed on the frames.csv it
  wrote, so changing a parameter that leaves frames.csv as it was re-runs notebook 01 alone.
A run that succeeded leaves `<out>/.stamps/<run_id>.json` holding its key; `why_run` compares a stamp with
the key a run would have now and names what changed.

A run's outputs (`run_outputs`: notebook 01's frames, a classifier's run folder, a generator's set folders, the
comparison's tables) are recorded in its stamp, file by file (size, mtime, content digest), and checked before
the run counts as done: an output edited, truncated or deleted by hand re-runs the run that wrote it
("output changed: runs/<id>/predictions.csv"), before any run that reads it. An unchanged size and mtime is taken
for unchanged content; anything else is hashed, so a copied or moved output folder stays cached.
Nothing in a key is an absolute path: planned paths are relative to the output folder.
"""
from __future__ import annotations

import ast
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lus_utils.paths import OutLayout
from lus_utils.provenance import PACKAGE_DIR, code_hash, read_json, sha256_file, stable_hash
from lus_utils.synthetic_sets import set_dir
from lus_utils.run.planning import Run
from lus_utils.stages import STAGES, TABLE

PATH_PARAMS = ("data_root", "out_dir")
KEYED_BY_OUTPUTS = tuple(s.id for s in TABLE if s.keyed_by_outputs)
PROSE_KEYED = tuple(s.id for s in TABLE if s.reads == "runs")  # notebook 06: its markdown is the report's prose
NOT_CODE = ("run",)  # the subpackage that decides what runs, not what a run computes
STAMPS = ".stamps"


@dataclass(frozen=True)
class RunPaths:
    out: Path
    run_id: str

    @property
    def stamp(self) -> Path:
        return self.out / STAMPS / f"{self.run_id}.json"

    @property
    def executed(self) -> Path:
        return OutLayout(self.out).notebooks / f"{self.run_id}.ipynb"

    @property
    def failed(self) -> Path:
        return OutLayout(self.out).notebooks / f"{self.run_id}.failed.ipynb"

    @property
    def running(self) -> Path:
        return OutLayout(self.out).notebooks / f".{self.run_id}.running.ipynb"

    @property
    def logs(self) -> Path:
        return self.out / "logs" / self.run_id


def read_stamp(out: Path, run_id: str) -> dict[str, Any] | None:
    path = RunPaths(out, run_id).stamp
    try:
        stamp = read_json(path)
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) and "key" in stamp else None


def cell_meaning(source: str) -> str:
    """What a code cell does: its syntax tree (comments and layout aside), or its source as written when it is
    not plain Python (IPython magics)."""
    try:
        return ast.dump(ast.parse(source))
    except SyntaxError:
        return source


def notebook_hash(path: Path, prose: bool = False) -> str:
    """Hash of what a notebook does: its code cells (`cell_meaning`) and their tags, without outputs or metadata;
    with `prose`, its markdown and raw cells as written too."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    cells = []
    for cell in nb.get("cells", []):
        kind, source = cell.get("cell_type"), "".join(cell.get("source", ""))
        if kind == "code":
            cells.append((kind, cell_meaning(source), sorted(cell.get("metadata", {}).get("tags", []))))
        elif prose:
            cells.append((kind, source))
    return stable_hash(cells, 32)


def _module_file(dotted: str) -> Path | None:
    """The source file of a lus_utils module (`lus_utils.data.splits` -> lus_utils/data/splits.py)."""
    parts = dotted.split(".")[1:]
    for candidate in (PACKAGE_DIR.joinpath(*parts).with_suffix(".py"), PACKAGE_DIR.joinpath(*parts, "__init__.py")):
        if parts and candidate.is_file():
            return candidate
    return None


def _lus_imports(tree: ast.AST, package: str | None) -> set[str]:
    """Dotted lus_utils modules an AST imports (`from lus_utils.x import y`, `import lus_utils.x`, and relative
    imports when `package`, the importing module's package, is given)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                if package is None:
                    continue
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            if module.split(".")[0] != PACKAGE_DIR.name:
                continue
            for alias in node.names:  # `from lus_utils.data import splits` names a module; `import x` a symbol
                sub = f"{module}.{alias.name}"
                found.add(sub if _module_file(sub) else module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == PACKAGE_DIR.name}
    return found


def notebook_modules(path: Path) -> set[str]:
    """The lus_utils modules (dotted) a notebook uses, with everything they import in turn (lazy imports too)."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    todo: set[str] = set()
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            try:
                todo |= _lus_imports(ast.parse("".join(cell.get("source", ""))), package=None)
            except SyntaxError:
                return set()  # cell magics and the like: fall back to the whole package
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        source = _module_file(name)
        if name in seen or source is None:
            continue
        seen.add(name)
        package = name if source.name == "__init__.py" else name.rsplit(".", 1)[0]
        todo |= _lus_imports(ast.parse(source.read_text(encoding="utf-8")), package=package) - seen
    return seen


def code_hashes(notebook: Path) -> dict[str, str]:
    """Hash of what each lus_utils module the notebook runs means (`code_hash`; all modules if that cannot be told;
    never the runner)."""
    modules = notebook_modules(notebook)
    paths = ([_module_file(m) for m in sorted(modules)] if modules else sorted(PACKAGE_DIR.rglob("*.py")))
    paths = [PACKAGE_DIR / "__init__.py", *(p for p in paths if p != PACKAGE_DIR / "__init__.py")]
    return {p.relative_to(PACKAGE_DIR).as_posix(): code_hash(p)[:16] for p in paths
            if p.is_file() and p.relative_to(PACKAGE_DIR).parts[0] not in NOT_CODE}


class Fingerprints:
    """File fingerprints for one invocation, memoized by (path, size, mtime) so each file is read once."""

    def __init__(self) -> None:
        self._files: dict[tuple, str] = {}
        self._code: dict[str, dict[str, str]] = {}

    def code(self, notebook: Path) -> dict[str, str]:
        """code_hashes of a notebook, computed once per invocation (parsing the package takes a moment)."""
        if str(notebook) not in self._code:
            self._code[str(notebook)] = code_hashes(notebook)
        return self._code[str(notebook)]

    def file(self, path: Path) -> str:
        path = Path(path)
        try:
            st = path.stat()
        except OSError:
            return "missing"
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in self._files:
            self._files[key] = sha256_file(path)[:32]
        return self._files[key]

    def files(self, paths: list[Path], root: Path) -> str:
        return stable_hash({Path(p).relative_to(root).as_posix(): self.file(p) for p in paths}, 32)

    def folder(self, root: Path) -> str:
        """Every file under a folder by content (a copied or moved folder keeps its fingerprint)."""
        root = Path(root)
        if not root.is_dir():
            return "missing"
        return self.files(sorted(p for p in root.rglob("*") if p.is_file()), root)

    @staticmethod
    def tree(root: Path) -> str:
        """A folder's file listing (relative path, size, mtime): cheap, and changes when any file does."""
        root = Path(root)
        if not root.is_dir():
            return "missing"
        entries = []
        for dirpath, _, names in os.walk(root):
            for name in names:
                path = Path(dirpath) / name
                st = path.stat()
                entries.append((path.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns))
        return stable_hash(sorted(entries), 32)


def run_outputs(run: Run) -> list[str]:
    """What a run writes that later runs, the comparison or the report read, relative to the output folder (files
    or folders): notebook 01's frames, a generator's set folders, a classifier's run folder, the comparison's
    tables."""
    rel = OutLayout(Path())
    stage = STAGES[run.stage]
    if stage.keyed_by_outputs:
        return [rel.frames_csv.as_posix(), rel.frames.as_posix()]
    if stage.reads == "runs":
        return ["results.csv", "comparison"]
    if run.writes:
        return [set_dir(Path(), ref).as_posix() for ref in run.writes]
    prefix = f"{run.stage}_"  # a classifier run <stage>_<RunKey.run_id> writes runs/<RunKey.run_id>
    return [rel.run_dir(run.run_id[len(prefix):]).as_posix()] if run.run_id.startswith(prefix) else []


def output_files(out: Path, run: Run) -> list[Path]:
    """Every file of a run's outputs that exists now."""
    files = []
    for rel in run_outputs(run):
        path = Path(out) / rel
        files += [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return files


def output_digest(out: Path, run: Run, prints: Fingerprints) -> dict[str, list]:
    """{path relative to the output folder: [size, mtime_ns, content digest]} of a run's outputs, for its stamp."""
    digest = {}
    for path in output_files(out, run):
        st = path.stat()
        digest[path.relative_to(out).as_posix()] = [st.st_size, st.st_mtime_ns, prints.file(path)]
    return digest


def output_check(recorded: dict[str, list], out: Path, prints: Fingerprints) -> tuple[list[str], dict[str, list]]:
    """Outputs that differ from what a stamp recorded (why the run must run again; [] when none), and the record
    with the times of files whose content is unchanged brought up to date (after a copy, so the next check needs
    no hashing)."""
    changed, missing, current = [], [], {}
    for rel, entry in recorded.items():
        path = Path(out) / rel
        try:
            st = path.stat()
        except OSError:
            missing.append(rel)
            continue
        size, mtime, sha = entry if isinstance(entry, list) and len(entry) == 3 else (None, None, None)
        if st.st_size == size and st.st_mtime_ns == mtime:
            current[rel] = [size, mtime, sha]
        elif st.st_size == size and prints.file(path) == sha:
            current[rel] = [size, st.st_mtime_ns, sha]
        else:
            changed.append(rel)
    reasons = [f"output {what}: " + ", ".join(paths[:3]) + (f" (+{len(paths) - 3} more)" if len(paths) > 3 else "")
               for what, paths in (("changed", changed), ("missing", missing)) if paths]
    return reasons, current


def input_fingerprints(run: Run, layout: OutLayout, prints: Fingerprints) -> dict[str, str]:
    """What a run reads, fingerprinted (see the module doc for each stage)."""
    p = run.params
    if STAGES[run.stage].reads == "data_root":
        return {"data_root": prints.tree(Path(p["data_root"]))} if p.get("data_root") else {}
    if STAGES[run.stage].reads == "runs":
        runs = sorted(layout.runs.glob("*/metrics.json"))
        predictions = sorted(layout.runs.glob("*/predictions.csv"))
        audits = sorted(layout.synthetic.glob("*/audit.json"))
        stamps = {s.stem: (read_stamp(layout.root, s.stem) or {}).get("key", "unreadable")
                  for s in sorted((layout.root / STAMPS).glob("*.json")) if s.stem != run.run_id}
        return {"metrics.json": prints.files(runs, layout.root),
                "predictions.csv": prints.files(predictions, layout.root),
                "audit.json": prints.files(audits, layout.root), "other runs": stable_hash(stamps, 32)}
    inputs = {"frames.csv": prints.file(Path(p["frames_csv"]) if p.get("frames_csv") else layout.frames_csv)}
    for ref in run.reads:
        inputs[f"synthetic set {ref.name}"] = prints.folder(set_dir(layout.root, ref))
    if p.get("feature_run_dir"):
        folder = layout.root / p["feature_run_dir"]  # planned relative to the output folder
        files = sorted(f for f in folder.glob("*") if f.is_file()) if folder.is_dir() else []
        inputs["feature_run_dir"] = prints.files(files, folder) if files else "missing"
    return inputs


def cache_components(run: Run, layout: OutLayout, notebooks_dir: Path, after: dict[str, str],
                     prints: Fingerprints) -> dict[str, Any]:
    return {"params": {k: v for k, v in run.params.items() if k not in PATH_PARAMS},
            "notebook": notebook_hash(notebooks_dir / f"{run.notebook}.ipynb", prose=run.stage in PROSE_KEYED),
            "code": prints.code(notebooks_dir / f"{run.notebook}.ipynb"),
            "inputs": input_fingerprints(run, layout, prints),
            "after": dict(sorted(after.items()))}


def cache_key(components: dict[str, Any]) -> str:
    return stable_hash(components, 32)


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def why_run(components: dict[str, Any], stamp: dict[str, Any] | None, paths: RunPaths) -> list[str]:
    """Why a run must run ([] when its stamp says it is done with exactly these components)."""
    if stamp is None:
        if paths.running.exists():
            return ["interrupted last time (no stamp)"]
        if paths.failed.exists():
            return [f"failed last time (see {paths.failed.name})"]
        return ["new"]
    old = stamp.get("components", {})
    reasons = []
    new_params, old_params = components["params"], old.get("params", {})
    changed = sorted(k for k in set(new_params) | set(old_params) if new_params.get(k) != old_params.get(k))
    if changed:
        reasons.append("params changed: " + ", ".join(
            f"{k} {_short(old_params.get(k))} -> {_short(new_params.get(k))}" for k in changed[:4])
            + (f" (+{len(changed) - 4} more)" if len(changed) > 4 else ""))
    if components["notebook"] != old.get("notebook"):
        reasons.append("notebook changed")
    old_code = old.get("code") if isinstance(old.get("code"), dict) else {}
    code = sorted(k for k in set(components["code"]) | set(old_code) if components["code"].get(k) != old_code.get(k))
    if code:
        reasons.append("code changed: " + ", ".join(code[:5]) + (f" (+{len(code) - 5} more)" if len(code) > 5 else ""))
    inputs = [k for k in components["inputs"] if components["inputs"][k] != old.get("inputs", {}).get(k)]
    if inputs:
        reasons.append("input changed: " + ", ".join(inputs))
    deps = [k for k in components["after"] if components["after"][k] != old.get("after", {}).get(k)]
    if deps:
        reasons.append("dependency changed: " + ", ".join(deps))
    if not reasons and stamp.get("key") != cache_key(components):
        reasons.append("cache key changed")
    if not reasons and not paths.executed.exists():
        reasons.append(f"executed notebook {paths.executed.name} missing")
    return reasons
