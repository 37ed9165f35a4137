"""The package's layering, read from the source with ``ast`` (issue 24 item 4).

Every ``import`` statement counts, at module level or inside a function, absolute or relative,
under ``if TYPE_CHECKING`` or not: a deferred import still ties the two modules together.
Three rules, each a test:

* no import cycle between modules;
* a module imports only from its own folder or from folders of lower rank (``RANKS``);
* no module imports the package face ``codegraph_ad`` (``__init__.py``): the face imports the
  API, so a module that reads it drags in the whole package and closes a circle.

The registries' ``importlib.import_module`` of their built-in entries is a plugin hook, not
an import statement, and is deliberately not an edge here.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = ROOT / "src" / "codegraph_ad"
PACKAGE = "codegraph_ad"

# The rank table, written once. Units are the top-level folders of the package and its
# top-level modules; a module may import from its own unit, from a unit of lower rank, or
# (rank 0 only: the package's foundation) from another unit of rank 0.
RANKS: dict[str, int] = {
    "errors": 0, "config": 0, "registry": 0, "params": 0, "_version": 0, "options": 0, "progress": 0,
    "io": 1,
    "datasets": 2, "backbones": 2,
    "features": 3,
    "engine": 4, "metrics": 4, "decision": 4, "pixel_decision": 4,
    "graph": 5,
    "methods": 6,
    "evaluation": 7,
    "report": 8,
    "api": 9, "demo": 9,
    "analysis": 10, "volumes": 10, "distill": 10, "suite": 10,
    "cli": 11,
}

# Violations that exist on this branch in code owned by other engineers of issue 24. Each
# entry is (importer, imported); the lead empties this set once their branches are merged.
# Anything not listed here fails the tests below.
KNOWN_VIOLATIONS: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute name ``from ... import`` refers to (relative levels resolved)."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Package modules that ``module`` imports, anywhere in its body.

    ``from pkg import name`` is an edge to ``pkg.name`` where that is a module, else to
    ``pkg`` itself (so ``from codegraph_ad import RunConfig`` is an edge to the package face).
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package, node)
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for name in names:
            # ``import codegraph_ad.io.masks`` binds through the face but names the module.
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module and (name == PACKAGE or name.startswith(PACKAGE + ".")):
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = package_modules()
    return {m: imports_of(m, p, modules) for m, p in modules.items()}


def unit(module: str) -> str:
    return module.split(".")[1]


def rank_violations(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    bad = set()
    for src, targets in graph.items():
        if src == PACKAGE:
            continue  # the face sits above everything and may import anything
        for dst in targets:
            if dst == PACKAGE:
                continue  # reported by test_nothing_imports_the_package_face
            a, b = unit(src), unit(dst)
            if a == b or RANKS[b] < RANKS[a] or RANKS[a] == RANKS[b] == 0:
                continue
            bad.add((src, dst))
    return bad


def face_imports(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    return {(src, PACKAGE) for src, targets in graph.items() if PACKAGE in targets}


def cycle_edges(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    """Edges inside a strongly connected component (Tarjan): exactly the edges on a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    component: dict[str, int] = {}
    counter = [0]

    def visit(v: str) -> None:
        # Iterative DFS: the package's chains are short, but recursion limits are not a rule.
        work = [(v, iter(sorted(graph.get(v, ()))))]
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component[w] = index[node]
                    if w == node:
                        break

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return {(a, b) for a, targets in graph.items() for b in targets if component[a] == component.get(b)}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def _report(edges: set[tuple[str, str]]) -> str:
    return "\n".join(f"  {a} -> {b}" for a, b in sorted(edges))


def test_rank_table_covers_every_unit(graph):
    units = {unit(m) for m in graph if m != PACKAGE}
    assert not units - RANKS.keys(), f"folders/modules missing from RANKS: {sorted(units - RANKS.keys())}"


def test_no_import_cycle(graph):
    new = cycle_edges(graph) - KNOWN_VIOLATIONS
    assert not new, "imports on a cycle:\n" + _report(new)


def test_no_import_from_a_higher_rank(graph):
    new = rank_violations(graph) - KNOWN_VIOLATIONS
    assert not new, "imports from a folder of higher (or equal, foreign) rank:\n" + _report(new)


def test_nothing_imports_the_package_face(graph):
    new = face_imports(graph) - KNOWN_VIOLATIONS
    assert not new, "modules that import the package face codegraph_ad:\n" + _report(new)


def test_known_violations_are_still_real(graph):
    """An entry fixed by someone must leave the set, or it would hide its return."""
    real = cycle_edges(graph) | rank_violations(graph) | face_imports(graph)
    stale = KNOWN_VIOLATIONS - real
    assert not stale, "KNOWN_VIOLATIONS entries that no longer occur (remove them):\n" + _report(stale)


def test_checker_sees_cycles_ranks_and_the_face():
    """The checker itself: a made-up graph with one of each fault."""
    toy = {
        "codegraph_ad": {"codegraph_ad.api"},
        "codegraph_ad.io.a": {"codegraph_ad.graph.b"},
        "codegraph_ad.graph.b": {"codegraph_ad.io.a", "codegraph_ad.errors"},
        "codegraph_ad.errors": set(),
        "codegraph_ad.api": {"codegraph_ad"},
        "codegraph_ad.analysis.x": {"codegraph_ad.suite.y"},
        "codegraph_ad.suite.y": set(),
    }
    assert cycle_edges(toy) == {("codegraph_ad.io.a", "codegraph_ad.graph.b"), ("codegraph_ad.graph.b", "codegraph_ad.io.a"),
                                ("codegraph_ad", "codegraph_ad.api"), ("codegraph_ad.api", "codegraph_ad")}
    assert rank_violations(toy) == {("codegraph_ad.io.a", "codegraph_ad.graph.b"),
                                    ("codegraph_ad.analysis.x", "codegraph_ad.suite.y")}
    assert face_imports(toy) == {("codegraph_ad.api", "codegraph_ad")}


def test_parser_reads_function_level_and_relative_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "codegraph_ad"
    (pkg / "io").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "errors.py").write_text("")
    (pkg / "io" / "__init__.py").write_text("")
    (pkg / "io" / "masks.py").write_text("")
    (pkg / "io" / "a.py").write_text(
        "def f():\n    from .masks import x\n    from .. import errors\n    import codegraph_ad.io.masks\n"
        "    from codegraph_ad import RunConfig\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE_DIR", pkg)
    modules = package_modules()
    assert imports_of("codegraph_ad.io.a", pkg / "io" / "a.py", modules) == {
        "codegraph_ad.io.masks", "codegraph_ad.errors", "codegraph_ad"}


def test_version_matches_pyproject():
    from codegraph_ad._version import __version__

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project.get("version") == __version__
