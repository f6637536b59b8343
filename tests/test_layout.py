"""The package's shape (issue 12): data flows one way — recipe → data → training → run folder → evaluation →
report — and the run folder has one owner. Checked on the installed package's source files."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import lejepa_domains
from test_layout_eval import imported_modules

PACKAGE = Path(lejepa_domains.__file__).resolve().parent
ALL = sorted(p for p in PACKAGE.rglob("*.py") if "recipes" not in p.relative_to(PACKAGE).parts[:1])

# module group → groups it must never import (the direction of the flow)
LOWER_THAN = {
    "method": ("data", "runs", "train", "evaluate", "studies", "ui", "recipe", "recipe_tools", "export", "embed",
               "foundation", "cli"),
    "data": ("train", "method", "runs", "evaluate", "studies", "cli", "ui"),
    "runs": ("train", "evaluate", "studies", "cli", "ui"),
    "train": ("evaluate", "studies", "cli"),
    "ui": ("train", "evaluate", "studies", "cli"),
    "evaluate": ("train", "studies", "cli"),
}
RUN_FILES = {"config.json", "metrics.jsonl", "checkpoint.pt", "checkpoint_best.pt", "backbone.json",
             "backbone.safetensors"}


def _group(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _groups_imported(path: Path) -> set[str]:
    out = set()
    for mod in imported_modules(path, root=PACKAGE):
        parts = mod.split(".")
        if parts[0] == "lejepa_domains" and len(parts) > 1:
            out.add(parts[1])
    return out


@pytest.mark.parametrize("path", ALL, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_data_flow(path):
    group = _group(path)
    bad = sorted(_groups_imported(path) & set(LOWER_THAN.get(group, ())))
    assert not bad, f"{path.relative_to(PACKAGE)} ({group}) imports {bad}: against the one-way data flow"
    if group != "__main__":
        assert "cli" not in _groups_imported(path) or group == "cli", f"{path} imports the CLI"


def test_only_runs_names_the_run_folder_files():
    offenders = []
    for path in ALL:
        if path.relative_to(PACKAGE).parts[0] == "runs":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in RUN_FILES:
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.value!r}")
    assert not offenders, "run-folder file names outside runs/ (use lejepa_domains.runs): " + ", ".join(offenders)


def test_the_checks_see_a_violation(tmp_path):
    fake = tmp_path / "lejepa_domains" / "data"
    fake.mkdir(parents=True)
    (fake / "x.py").write_text("def f():\n    from ..train import pretrain\n    return 'checkpoint.pt'\n")
    mods = imported_modules(fake / "x.py", root=tmp_path / "lejepa_domains")
    assert "lejepa_domains.train" in mods
