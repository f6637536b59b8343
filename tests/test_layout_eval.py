"""One-way data flow: nothing under lejepa_domains/evaluate imports the trainer or the CLI (issue 12)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lejepa_domains"
FORBIDDEN = ("lejepa_domains.train", "lejepa_domains.studies", "lejepa_domains.cli")
MODULES = sorted((PACKAGE / "evaluate").rglob("*.py"))


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path = PACKAGE) -> set[str]:
    """Absolute names of every module ``path`` imports, anywhere in the file (relative imports resolved; for
    ``from X import a`` both ``X`` and ``X.a``, since ``a`` may be a submodule)."""
    name = _module_name(path, root)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
              == "import_module" and node.args and isinstance(node.args[0], ast.Constant)):
            out.add(str(node.args[0].value))
    return out


def _forbidden(mods: set[str]) -> list[str]:
    return sorted(m for m in mods if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))


def test_the_checker_sees_relative_and_nested_imports(tmp_path):
    fake = tmp_path / "lejepa_domains" / "evaluate" / "protocols"
    fake.mkdir(parents=True)
    (fake / "x.py").write_text("from ...train import loop\n\ndef f():\n    from ... import cli\n"
                               "    import lejepa_domains.studies as t\n    from ..knn import knn_scores\n")
    mods = imported_modules(fake / "x.py", root=tmp_path / "lejepa_domains")
    assert _forbidden(mods) == ["lejepa_domains.cli", "lejepa_domains.studies", "lejepa_domains.train",
                                "lejepa_domains.train.loop"]
    assert "lejepa_domains.evaluate.knn" in mods


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_evaluate_does_not_import_training_or_cli(path):
    assert _forbidden(imported_modules(path)) == [], f"{path} imports the trainer or the CLI"
