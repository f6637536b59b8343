"""Report folders: the names of the files each command's report writes, and one rule for all of them — a folder
that already holds a report is refused (one line naming ``--overwrite``) unless the command was given
``--overwrite``, which removes that report's files (stale plots included) just before the new report is written.

Files of anything else in the folder (a run, another tool's output) are never touched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError

__all__ = ["ReportKind", "ReportDir", "EVAL_REPORT", "ABLATION_REPORT", "COMPARE_REPORT", "EVAL_JSON", "EVAL_MD"]

EVAL_JSON = "report.json"
EVAL_MD = "report.md"


@dataclass(frozen=True)
class ReportKind:
    """What one command's report consists of: exact names and glob patterns (its plots). ``resumable``: the JSON
    file of a study whose report says ``"complete": false`` — running the same command again continues it, so such
    a folder is not refused."""

    command: str
    names: tuple[str, ...]
    patterns: tuple[str, ...] = ()
    resumable: str | None = None


EVAL_REPORT = ReportKind("eval", (EVAL_JSON, EVAL_MD, "fewshot_support.json", "fewshot.png", "leakage.png",
                                  "retrieval.png", "embedding_map.png", "label_efficiency.png"), ("pca_*.png",))
ABLATION_REPORT = ReportKind("ablate", ("ablation.json", "ablation.md", "ablation.png"), resumable="ablation.json")
COMPARE_REPORT = ReportKind("compare", ("compare.json", "compare.md"), resumable="compare.json")


@dataclass(frozen=True)
class ReportDir:
    """One report folder of one kind. Cheap to construct; nothing is read until a method is called."""

    path: Path
    kind: ReportKind = EVAL_REPORT

    def __init__(self, path: str | Path, kind: ReportKind = EVAL_REPORT) -> None:
        object.__setattr__(self, "path", Path(path))
        object.__setattr__(self, "kind", kind)

    def report_files(self) -> list[Path]:
        """The files of a report of this kind present in the folder, sorted by name."""
        if not self.path.is_dir():
            return []
        found = {self.path / n for n in self.kind.names if (self.path / n).is_file()}
        for pattern in self.kind.patterns:
            found.update(p for p in self.path.glob(pattern) if p.is_file())
        return sorted(found, key=lambda p: (p.name not in self.kind.names[:2], p.name))  # report.json, .md first

    def claim(self, overwrite: bool, flag: str = "--out") -> list[Path]:
        """Refuse a folder that holds a report unless ``overwrite``; returns the files ``clear()`` will remove."""
        files = self.report_files()
        if files and self.kind.resumable and self._incomplete():
            return files  # an unfinished study: the same command continues it and rewrites its report
        if files and not overwrite:
            shown = ", ".join(p.name for p in files[:4]) + (f" and {len(files) - 4} more" if len(files) > 4 else "")
            raise UserError(f"{self.kind.command} {flag} {self.path} already holds a report ({shown}); pass "
                            f"--overwrite to replace it (its files are removed first) or choose another {flag}")
        return files

    def _incomplete(self) -> bool:
        try:
            rep = json.loads((self.path / self.kind.resumable).read_text())
        except (OSError, ValueError):
            return False
        return isinstance(rep, dict) and rep.get("complete") is False

    def clear(self) -> list[str]:
        """Remove the previous report's files (called just before the new report is written). Returns their names."""
        removed = []
        for p in self.report_files():
            p.unlink(missing_ok=True)
            removed.append(p.name)
        return removed
