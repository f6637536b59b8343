"""Layout of the data package (issue 12): imports between ``lejepa_domains/data/*.py`` and ``recipe.py`` go one way.

The graph is read from the source text (``ast``), imports inside functions included: a function-level import that
closes a loop is a cycle too, only a later one. Importing ``lejepa_domains.data.x`` from outside the package also
runs ``lejepa_domains/data/__init__.py``, so that counts as an edge to the package as well.
"""

from __future__ import annotations

import ast
from pathlib import Path

import lejepa_domains

ROOT = Path(lejepa_domains.__file__).resolve().parent


def module_name(path: Path) -> str:
    parts = ("lejepa_domains", *path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return (ROOT / rel).with_suffix(".py").is_file() or (ROOT / rel / "__init__.py").is_file()


def imports_of(path: Path) -> set[str]:
    """The lejepa_domains modules ``path`` imports anywhere in its text, and the packages that importing them runs."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            target = ".".join(p for p in (base, node.module) if p)
            found.add(target)
            found |= {f"{target}.{a.name}" for a in node.names if is_module(f"{target}.{a.name}")}
    out: set[str] = set()
    for name in found:
        if not name.startswith("lejepa_domains.") or not is_module(name) or me.startswith(name + "."):
            continue  # outside the package, or the importer's own package (``from . import x``)
        out.add(name)
        parts = name.split(".")
        for i in range(2, len(parts)):  # packages run on the way, unless the importer is already inside them
            pkg = ".".join(parts[:i])
            if not (me == pkg or me.startswith(pkg + ".")):
                out.add(pkg)
    out.discard(me)
    return out


def graph() -> dict[str, set[str]]:
    files = sorted((ROOT / "data").glob("*.py")) + [ROOT / "recipe.py"]
    nodes = {module_name(f): f for f in files}
    return {m: imports_of(f) & set(nodes) for m, f in nodes.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """One loop per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_function_level_and_package_imports():
    g = graph()
    assert "lejepa_domains.data.decode" in g["lejepa_domains.data.table"]  # module level
    assert {"lejepa_domains.data", "lejepa_domains.data.pixels"} <= g["lejepa_domains.recipe"]  # in a function
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles_in_data_and_recipe():
    assert cycles(graph()) == []


def test_data_never_imports_the_recipe_module():
    g = graph()
    assert [m for m, deps in g.items() if m.startswith("lejepa_domains.data") and "lejepa_domains.recipe" in deps] == []


def test_no_private_names_imported_across_modules():
    """data/ and recipe_tools/ use each other's public functions only (recipe_tools once imported decode's privates)."""
    files = sorted((ROOT / "data").glob("*.py")) + sorted((ROOT / "recipe_tools").glob("*.py")) + [ROOT / "recipe.py"]
    private = [f"{f.relative_to(ROOT)}:{node.lineno} {a.name}" for f in files
               for node in ast.walk(ast.parse(f.read_text(encoding="utf-8")))
               if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("lejepa_domains"))
               for a in node.names if a.name.startswith("_") and a.name != "__version__"]
    assert private == []
