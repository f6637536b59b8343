"""Imports sit at module top and form no cycles (issue 27).

Imports inside functions hide cycles and routes against the data flow. The only ones allowed are listed in
``LAZY``: optional dependencies (an extra may be missing: the import names it in one error line) and deliberately
lazy heavy imports (``import lejepa_domains`` and ``lejepa-domains --help`` stay fast: the package root and the CLI
import the command implementations when a command runs). Checked on the installed package's source files.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import lejepa_domains
from test_layout_data import cycles  # one Tarjan for both layout checks

PACKAGE = Path(lejepa_domains.__file__).resolve().parent
ALL = sorted(p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] != "recipes")

#: third-party modules that may be imported inside functions, and why
LAZY = {
    # optional extras: missing ones are reported in one line naming the extra
    "pyarrow": "extra", "h5py": "extra (h5)", "astropy": "extra (fits)", "wandb": "extra (wandb)",
    "mlflow": "extra (mlflow)", "submitit": "extra (slurm)", "tensorboard": "extra (tensorboard)",
    "torch.utils.tensorboard": "extra (tensorboard)", "faiss": "extra (faiss)", "umap": "extra (umap)",
    "peft": "adapters, only for --adapt lora/explora",
    # heavy, and needed by one command or one code path only
    "matplotlib": "plots only (≈ 0.5 s import)", "datasets": "hub sources only (pulls pandas, pyarrow)",
    "huggingface_hub": "hub access only", "webdataset": "shards only", "braceexpand": "shard patterns only",
    "cv2": "image decoding paths only", "imagehash": "leakage audit only", "sklearn": "probes only",
    "skimage": "the offline default's images only", "scipy": "statistics only", "tifffile": "TIFF only",
    "PIL": "image files only", "typer": "the CLI only", "pandas": "tables only", "mkdocs": "docs only",
    # a private torch API, looked up only when a process group needs its store (guarded: it may be absent)
    "torch.distributed.distributed_c10d": "private torch API, guarded",
}
#: package modules whose functions may import the package lazily: the entry points, and the recipe module the
#: package root imports (its data-side helpers pull in torch: `import lejepa_domains` and `--help` stay at ≈ 0.3 s)
ENTRY_POINTS = {"__init__.py", "cli.py", "__main__.py", "recipe.py"}


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _targets(node: ast.AST, path: Path) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    mod = _module(path)
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    if node.level:
        base = package.split(".")[: len(package.split(".")) - node.level + 1]
        return [".".join(base + ([node.module] if node.module else []))]
    return [node.module or ""]


def _inner_imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    yield node


def _allowed(target: str, path: Path) -> bool:
    if target.split(".")[0] == "lejepa_domains":
        return str(path.relative_to(PACKAGE)) in ENTRY_POINTS
    return target in LAZY or target.split(".")[0] in LAZY


@pytest.mark.parametrize("path", ALL, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_sit_at_module_top(path):
    bad = [f"line {n.lineno}: {ast.unparse(n)}" for n in _inner_imports(path)
           if not all(_allowed(t, path) for t in _targets(n, path))]
    assert not bad, (f"{path.relative_to(PACKAGE)} imports inside functions (move them to the top, or add an "
                     f"optional/heavy module to LAZY with its reason): " + "; ".join(bad))


def _graph() -> dict[str, set[str]]:
    """module → package modules it imports at module top (``from X import a``: ``X.a`` when that is a module)."""
    modules = {_module(p): p for p in ALL}
    graph: dict[str, set[str]] = {}
    for mod, path in modules.items():
        deps: set[str] = set()
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for t in _targets(node, path):
                names = [a.name for a in node.names] if isinstance(node, ast.ImportFrom) else []
                cands = [f"{t}.{n}" for n in names if f"{t}.{n}" in modules] or [t]
                deps.update(c for c in cands if c in modules and c != mod)
        graph[mod] = deps
    return graph


def _package_parents(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__`` first: those are edges too."""
    out = {m: set(d) for m, d in graph.items()}
    for m, deps in graph.items():
        for d in list(deps):
            parts = d.split(".")
            out[m].update(".".join(parts[:i]) for i in range(2, len(parts)) if ".".join(parts[:i]) in graph
                          and ".".join(parts[:i]) != m and not m.startswith(".".join(parts[:i]) + "."))
    return out


def test_no_import_cycles_among_the_package_modules():
    found = cycles(_package_parents(_graph()))
    assert not found, "import cycles: " + " | ".join(" ↔ ".join(c) for c in found)


def test_the_checks_see_an_inner_import_and_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    tree = ast.parse("def f():\n    from .runs import RunDir\n    import matplotlib\n")
    inner = [n for fn in ast.walk(tree) if isinstance(fn, ast.FunctionDef) for n in ast.walk(fn)
             if isinstance(n, (ast.Import, ast.ImportFrom))]
    path = PACKAGE / "train" / "x.py"
    assert [_allowed(t, path) for n in inner for t in _targets(n, path)] == [False, True]


def test_the_package_root_and_the_cli_stay_light():
    """``import lejepa_domains`` and ``lejepa-domains --help`` import neither torch nor the data stack (≈ 0.3 s
    instead of ≈ 2 s): the lazy imports of the entry points are deliberate."""
    import subprocess
    import sys

    code = ("import sys, lejepa_domains, lejepa_domains.cli; "
            "print(sorted(m for m in ('torch', 'timm', 'albumentations', 'lejepa_domains.data') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout
