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
             "backbone.safetensors", "report.json", "report.md", "stream-skipped", "mlruns", "ablation_run.json",
             ".lock", "snapshot.json", ".partial", "epoch-[0-9][0-9][0-9][0-9]"}
# names that are also ordinary words elsewhere (a tracker's name, a report key, a CLI command): spelled outside
# runs/ only as a path component (``x / "eval"``) is an offence
RUN_PATH_PARTS = {"eval", "tensorboard", "snapshots"}


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


def _run_names_spelled(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in RUN_FILES:
            found.append((node.lineno, node.value))
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            found += [(side.lineno, side.value) for side in (node.left, node.right)
                      if isinstance(side, ast.Constant) and side.value in RUN_PATH_PARTS]
    return found


def test_only_runs_names_the_run_folder_files():
    offenders = []
    for path in ALL:
        if path.relative_to(PACKAGE).parts[0] == "runs":
            continue
        for line, name in _run_names_spelled(ast.parse(path.read_text(encoding="utf-8"))):
            offenders.append(f"{path.relative_to(PACKAGE)}:{line} {name!r}")
    assert not offenders, "run-folder file names outside runs/ (use lejepa_domains.runs): " + ", ".join(offenders)


def test_every_name_runs_owns_is_checked():
    """Each name runs/names.py defines is in the check above, so a new one cannot be spelled elsewhere unnoticed."""
    from lejepa_domains.runs import names

    defined = {v for k, v in vars(names).items() if k.isupper() and isinstance(v, str)}
    defined |= {v for k, v in vars(names).items() if k.isupper() and isinstance(v, dict) for v in v.values()}
    # an exported folder's README.md and model.safetensors are the Hugging Face hub's names, spelled by hub code too
    unchecked = defined - RUN_FILES - RUN_PATH_PARTS - {"README.md", "model.safetensors"}
    assert not unchecked, f"runs/names.py defines {sorted(unchecked)}: add them to RUN_FILES or RUN_PATH_PARTS"
    assert sorted(_run_names_spelled(ast.parse("p = run / 'eval' / 'report.json'\nq = run / 'tensorboard'"))) == [
        (1, "eval"), (1, "report.json"), (2, "tensorboard")]
    assert _run_names_spelled(ast.parse("TRACKERS = {'tensorboard': 1}\ncli = 'eval'")) == []


def test_the_checks_see_a_violation(tmp_path):
    fake = tmp_path / "lejepa_domains" / "data"
    fake.mkdir(parents=True)
    (fake / "x.py").write_text("def f():\n    from ..train import pretrain\n    return 'checkpoint.pt'\n")
    mods = imported_modules(fake / "x.py", root=tmp_path / "lejepa_domains")
    assert "lejepa_domains.train" in mods
