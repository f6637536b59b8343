"""Where the evaluation's numbers come from, said in the console and the report: how each split was made (the
data's official split, carved from train with its fraction and seed, a random split of an unsplit folder) and how
many images were left out as unreadable — at evaluation and, before it, at pretraining."""

from __future__ import annotations

from typing import Any

from ..data.loading import split_made

__all__ = ["split_facts", "splits_line", "provenance_lines"]


def split_facts(sets: dict[str, Any], val_info: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """role → {"images", "made", "skipped", "skipped_files"} of the loaded splits (``val_info``: a val carved by the
    evaluation itself)."""
    out: dict[str, dict[str, Any]] = {}
    for role, ds in sets.items():
        skipped = list((getattr(ds, "meta", None) or {}).get("skipped", []))
        out[role] = {"images": int(len(ds.labels)), "made": split_made(getattr(ds, "meta", None)),
                     "skipped": len(skipped), "skipped_files": [str(x) for x in skipped[:20]]}
    if "val" not in sets and "train" in out:
        out["val"] = {"images": None, "made": str(val_info.get("source")), "skipped": 0, "skipped_files": []}
    return out


def _skipped_text(role: str, facts: dict[str, Any]) -> str | None:
    if not facts.get("skipped"):
        return None
    total = facts["images"] + facts["skipped"]
    return f"{facts['images']:,} of {total:,} {role} images used; {facts['skipped']} unreadable left out"


def provenance_lines(report: dict[str, Any]) -> list[str]:
    """Sentences for the report and the console: how each split was made, what was skipped and where it is listed."""
    sp = report.get("splits", {})
    made = sp.get("made") or {}
    lines = []
    if made:
        parts = []
        for role in ("train", "val", "test"):
            if role in made:
                n = sp.get(role) if made[role]["images"] is None else made[role]["images"]
                parts.append(f"{role} {n}: {made[role]['made']}")
        lines.append("How the splits were made — " + "; ".join(parts) + ".")
    skipped = [t for role in ("train", "val", "test") if role in made and (t := _skipped_text(role, made[role]))]
    ck = report.get("checkpoint") or {}
    if ck.get("skipped_bad_samples"):
        where = ck.get("skipped_listed_in") or "the run folder"
        skipped.append(f"{ck['skipped_bad_samples']} skipped at pretraining, listed in {where}")
    if skipped:
        lines.append("Unreadable images (--skip-bad-samples): " + "; ".join(skipped) + ".")
    return lines


def splits_line(rec, splits, facts: dict[str, dict[str, Any]], device) -> str:
    """The console's line about the splits, each with how it was made."""
    parts = []
    for role, n in (("train", len(splits.train)), ("val", len(splits.val)), ("test", len(splits.test))):
        f = facts.get(role, {})
        extra = f"; {f['skipped']} unreadable skipped" if f.get("skipped") else ""
        parts.append(f"{role} {n} ({f.get('made', '?')}{extra})")
    return f"[bold]eval:[/] recipe {rec.name!r}: " + ", ".join(parts) + f"; device {device}"
