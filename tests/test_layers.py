"""The package's layers, read from every import: core -> data -> classify | generate -> compare -> run.

Core is every top-level module of lus_utils and every top-level package that is not a stage (a `params` or
`config` package counts as core). A layer may import its own layer and the layers below it; classify and
generate are siblings and import neither each other. Within a layer, modules import each other without
cycles (module-level imports, `if TYPE_CHECKING:` ones included). Function-local imports count for the
direction as much as top-level ones: a lazy import still ties the importer to what it imports.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import lus_utils

PACKAGE = Path(lus_utils.__file__).resolve().parent
STAGES = ("data", "classify", "generate", "compare", "run")
MAY_IMPORT = {
    "core": {"core"},
    "data": {"core", "data"},
    "classify": {"core", "data", "classify"},
    "generate": {"core", "data", "generate"},
    "compare": {"core", "data", "classify", "generate", "compare"},
    "run": {"core", *STAGES},
}

# Known violations, each to be removed by the change named; delete an entry once its import is gone
# (test_every_allowed_exception_still_exists says when).
ALLOWED_IMPORTS = {
    # The audit's 'classifier' feature space loads a classifier run; issue 21 replaces that feature space.
    ("lus_utils.generate.synthetic_audit_features", "lus_utils.classify.models"): "issue 21: classifier features go",
    ("lus_utils.generate.synthetic_audit_features", "lus_utils.classify.training"): "issue 21: classifier features go",
}
ALLOWED_CYCLES: dict[frozenset, str] = {}


@dataclass(frozen=True)
class Import:
    source: str  # importing module, dotted
    target: str  # imported lus_utils module, dotted
    path: Path
    line: int
    text: str
    module_level: bool  # runs when the module is imported (not inside a function)

    def where(self, root: Path) -> str:
        return f"{self.path.relative_to(root.parent).as_posix()}:{self.line}: {self.text}"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(dotted: str, root: Path) -> bool:
    parts = dotted.split(".")[1:]
    base = root.joinpath(*parts)
    if not parts:
        return dotted == root.name
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def layer(dotted: str) -> str:
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else "core"


def _function_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes inside a function or lambda (imports there run only when it is called)."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            inside |= {id(n) for n in ast.walk(node) if n is not node}
    return inside


def imports_of(path: Path, root: Path) -> list[Import]:
    """Every import of a lus_utils module in one file, top-level and function-local, relative ones resolved."""
    source = module_name(path, root)
    package = source if path.name == "__init__.py" else source.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    local = _function_nodes(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            targets = [f"{module}.{a.name}" if is_module(f"{module}.{a.name}", root) else module for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        for target in dict.fromkeys(targets):
            if target.split(".")[0] == root.name:
                found.append(Import(source, target, path, node.lineno, ast.unparse(node), id(node) not in local))
    return found


def all_imports(root: Path) -> list[Import]:
    return [i for path in sorted(root.rglob("*.py")) for i in imports_of(path, root)]


def layer_violations(imports: list[Import]) -> list[Import]:
    return [i for i in imports if layer(i.target) not in MAY_IMPORT[layer(i.source)]]


def cycles(imports: list[Import]) -> list[list[Import]]:
    """The module-level imports of each import cycle (strongly connected modules, Tarjan's algorithm)."""
    edges: dict[str, set[str]] = {}
    for i in imports:
        if i.module_level and i.source != i.target:
            edges.setdefault(i.source, set()).add(i.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return [[i for i in imports if i.module_level and i.source in g and i.target in g and i.source != i.target]
            for g in groups]


def test_no_import_runs_upward_or_sideways():
    found = [i for i in layer_violations(all_imports(PACKAGE)) if (i.source, i.target) not in ALLOWED_IMPORTS]
    assert not found, ("imports against the layers (core -> data -> classify | generate -> compare -> run):\n"
                       + "\n".join(f"{i.where(PACKAGE)}  ({layer(i.source)} -> {layer(i.target)})" for i in found))


def test_no_import_cycle_within_a_layer():
    found = [c for c in cycles(all_imports(PACKAGE)) if frozenset(i.source for i in c) not in ALLOWED_CYCLES]
    assert not found, "import cycles:\n" + "\n\n".join("\n".join(i.where(PACKAGE) for i in c) for c in found)


def test_every_allowed_exception_still_exists():
    imports = all_imports(PACKAGE)
    present = {(i.source, i.target) for i in layer_violations(imports)}
    gone = [f"{a} -> {b} ({why})" for (a, b), why in ALLOWED_IMPORTS.items() if (a, b) not in present]
    present_cycles = {frozenset(i.source for i in c) for c in cycles(imports)}
    gone += [f"cycle {sorted(c)} ({why})" for c, why in ALLOWED_CYCLES.items() if c not in present_cycles]
    assert not gone, "fixed, so take them out of the allowlist in tests/test_layers.py:\n" + "\n".join(gone)


def test_the_check_finds_what_it_looks_for(tmp_path):
    """On a made-up package: an upward import, a sideways lazy one, a relative one and a cycle are all found."""
    root = tmp_path / "lus_utils"
    files = {
        "__init__.py": "",
        "paths.py": "from lus_utils.generate import synthetic\n",  # core -> generate, upward
        "config/__init__.py": "from . import schema\n",  # a core package: fine
        "config/schema.py": "from lus_utils import paths\n",
        "generate/__init__.py": "",
        "generate/synthetic.py": "def f():\n    from lus_utils.classify import training\n",  # sideways, lazy
        "generate/audit.py": "from .synthetic import f\nfrom ..compare import tables\n",  # relative, upward
        "classify/__init__.py": "",
        "classify/training.py": "from lus_utils.classify.loop import step\n",
        "classify/loop.py": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                             "    from lus_utils.classify import training\n"),
        "compare/__init__.py": "",
        "compare/tables.py": "import lus_utils.run.study\n",  # compare -> run, upward
        "run/__init__.py": "",
        "run/study.py": "from lus_utils.compare import tables\nfrom lus_utils import config\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    imports = all_imports(root)
    bad = {(i.source, i.target, i.module_level) for i in layer_violations(imports)}
    assert bad == {("lus_utils.paths", "lus_utils.generate.synthetic", True),
                   ("lus_utils.generate.synthetic", "lus_utils.classify.training", False),
                   ("lus_utils.generate.audit", "lus_utils.compare.tables", True),
                   ("lus_utils.compare.tables", "lus_utils.run.study", True)}
    assert {frozenset(i.source for i in c) for c in cycles(imports)} == {
        frozenset({"lus_utils.classify.training", "lus_utils.classify.loop"}),
        frozenset({"lus_utils.compare.tables", "lus_utils.run.study"})}
