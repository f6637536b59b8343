"""The package's shape in figures (issue 27): read from the source with ``ast``, nothing is imported or run.

    python benchmarks/shape.py [--package lejepa_domains] [--top 10] [--over 80]

Prints: the longest functions (end_lineno − lineno + 1 of every ``def``, decorators not counted), the epoch loop's
length (``train/loop.py:train_epochs``), the modules outside ``runs/`` that spell a run-folder name, the imports
inside functions (intra-package vs third-party/stdlib), the import cycles among the package's modules (module-top
imports only, and all imports), and the README's line count.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the names of things inside a run folder (and a study's markers and locks); runs/ is their one owner. Exact string
# constants with these values are flagged anywhere; the ambiguous ones (also a tracker name, a report key) only as a
# path component: ``x / "eval"``.
RUN_NAMES = {"config.json", "metrics.jsonl", "checkpoint.pt", "checkpoint_best.pt", "backbone.json",
             "backbone.safetensors", "report.json", "stream-skipped", "mlruns", "ablation_run.json", ".lock",
             "snapshot.json"}
PATH_PARTS = {"eval", "tensorboard", "snapshots"}


def package_files(package: Path) -> list[Path]:
    return sorted(p for p in package.rglob("*.py") if "recipes" not in p.relative_to(package).parts[:1])


def module_name(package: Path, path: Path) -> str:
    parts = (package.name, *path.relative_to(package).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def functions(package: Path) -> list[tuple[int, str]]:
    out = []
    for f in package_files(package):
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.append((node.end_lineno - node.lineno + 1, f"{f.relative_to(package)}:{node.name}"))
    return sorted(out, reverse=True)


def run_name_spellings(path: Path) -> list[str]:
    """``line name`` for every run-folder name ``path`` spells (see :data:`RUN_NAMES`, :data:`PATH_PARTS`)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in RUN_NAMES:
            found.append(f"{node.lineno} {node.value!r}")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            for side in (node.left, node.right):
                if isinstance(side, ast.Constant) and side.value in PATH_PARTS:
                    found.append(f"{side.lineno} {side.value!r}")
    return found


def _top_level_imports(tree: ast.Module) -> set[ast.AST]:
    """Imports that run when the module is imported: module body, also under if/try at module level."""
    out: set[ast.AST] = set()

    def visit(body):
        for n in body:
            if isinstance(n, (ast.Import, ast.ImportFrom)):
                out.add(n)
            elif isinstance(n, (ast.If, ast.Try)):
                visit(n.body)
                visit(n.orelse)
                for h in getattr(n, "handlers", []):
                    visit(h.body)
                visit(getattr(n, "finalbody", []))

    visit(tree.body)
    return out


def _targets(package: Path, path: Path, node: ast.AST, modules: set[str]) -> set[str]:
    """The package's modules an import statement names (``from . import x`` names module x when it is one)."""
    me = module_name(package, path)
    pkg = me if path.name == "__init__.py" else me.rpartition(".")[0]
    names: set[str] = set()
    if isinstance(node, ast.Import):
        names = {a.name for a in node.names}
    elif isinstance(node, ast.ImportFrom):
        base = pkg.rsplit(".", node.level - 1)[0] if node.level else ""
        target = ".".join(p for p in (base, node.module) if p)
        names = {target} | {f"{target}.{a.name}" for a in node.names}
    out = set()
    for n in names:
        while n and n not in modules:
            n = n.rpartition(".")[0]
        if n and n != me and not me.startswith(n + "."):  # not the importer's own package (``from . import x``)
            out.add(n)
    return out


def import_graph(package: Path, top_only: bool) -> dict[str, set[str]]:
    files = package_files(package)
    modules = {module_name(package, f) for f in files}
    g: dict[str, set[str]] = {}
    for f in files:
        tree = ast.parse(f.read_text(encoding="utf-8"))
        nodes = _top_level_imports(tree) if top_only else {n for n in ast.walk(tree)
                                                           if isinstance(n, (ast.Import, ast.ImportFrom))}
        g[module_name(package, f)] = set().union(*(_targets(package, f, n, modules) for n in nodes)) if nodes else set()
    return g


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """One entry per strongly connected component of more than one module (Tarjan's DFS)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []
    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(g.get(v, ())):
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


def imports_in_functions(package: Path) -> tuple[list[str], list[str]]:
    """(intra-package, other) imports inside function bodies, as ``file:line module``."""
    intra, other = [], []
    for f in package_files(package):
        tree = ast.parse(f.read_text(encoding="utf-8"))
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for n in ast.walk(fn):
                if isinstance(n, ast.Import):
                    for a in n.names:
                        (intra if a.name.startswith(package.name) else other).append(
                            f"{f.relative_to(package)}:{n.lineno} {a.name}")
                elif isinstance(n, ast.ImportFrom):
                    mod = "." * n.level + (n.module or "")
                    (intra if n.level or mod.startswith(package.name) else other).append(
                        f"{f.relative_to(package)}:{n.lineno} {mod}")
    # nested functions walk their imports twice; count each statement once
    return sorted(set(intra)), sorted(set(other))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--package", default="lejepa_domains")
    ap.add_argument("--top", type=int, default=10, help="how many of the longest functions to list")
    ap.add_argument("--over", type=int, default=80, help="also count the functions longer than this")
    ap.add_argument("--list", action="store_true", help="list every offender, not only the counts")
    a = ap.parse_args(argv)
    package = ROOT / a.package
    fns = functions(package)
    print(f"longest function: {fns[0][1]} {fns[0][0]} lines; {sum(n > a.over for n, _ in fns)} of {len(fns)} "
          f"functions over {a.over} lines")
    for n, name in fns[:a.top]:
        print(f"  {n:5d}  {name}")
    loop = next((n for n, name in fns if name == "train/loop.py:train_epochs"), None)
    print(f"epoch loop (train/loop.py:train_epochs): {loop} lines")
    spelled = {str(f.relative_to(package)): s for f in package_files(package)
               if f.relative_to(package).parts[0] != "runs" and (s := run_name_spellings(f))}
    print(f"modules spelling run-folder names outside runs/: {len(spelled)}")
    for mod, where in sorted(spelled.items()):
        print(f"  {mod}: {', '.join(where)}")
    intra, other = imports_in_functions(package)
    print(f"imports inside functions: {len(intra)} intra-package, {len(other)} third-party/stdlib")
    if a.list:
        for line in intra + other:
            print(f"  {line}")
    for label, top_only in (("module-top imports", True), ("all imports", False)):
        cyc = cycles(import_graph(package, top_only))
        print(f"import cycles ({label}): {len(cyc)}")
        for c in cyc:
            print(f"  {' ↔ '.join(c) if len(c) <= 6 else ', '.join(c[:6]) + f', … ({len(c)} modules)'}")
    readme = ROOT / "README.md"
    print(f"README.md: {len(readme.read_text(encoding='utf-8').splitlines()) if readme.is_file() else None} lines")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
