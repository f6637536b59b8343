"""Data cards: ``data_cards/NAME.md`` = YAML front matter (the facts) + Markdown prose (provenance, caveats, views).

:func:`validate_card` checks that a card is complete and agrees with its recipe. Errors make a card incomplete (a test
fails for any built-in recipe with an incomplete card); warnings point at things a good card should still say.

Required front matter: ``name``; ``source`` (a mapping with ``revision`` and an id: ``hub_id``, ``kind``, ``package``
or ``path``); ``licence``; ``citation``; ``classes`` (one entry per class with ``id`` and ``name``, in class-id order);
``splits`` (with ``train`` and ``test`` and a ``method`` saying how they were made, plus ``seed`` when anything was
carved); ``image_size``; ``channels``; ``normalisation`` (``mean`` and ``std``, one value per channel).
Required prose: a ``Why these views`` section. Recommended: ``Provenance`` and ``Caveats`` sections, per-class counts,
``known_overlaps`` (overlaps with foundation-model training data: ``{model, overlap, source}`` entries or ``unknown``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import DataError, UserError

__all__ = ["Card", "parse_card", "find_card", "validate_card", "card_for", "card_dirs", "REQUIRED_KEYS", "TODO"]

REQUIRED_KEYS = ("name", "source", "licence", "citation", "classes", "splits", "image_size", "channels",
                 "normalisation")
TODO = "TODO"
_SOURCE_IDS = ("hub_id", "kind", "package", "path", "url")


@dataclass
class Card:
    path: Path
    front: dict[str, Any]
    body: str
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.errors


def parse_card(path: str | Path) -> Card:
    """Split a card into its YAML front matter (a mapping) and its Markdown body."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise DataError(f"data card {p}: cannot read it ({e.strerror})") from None
    if not text.startswith("---\n"):
        raise DataError(f"data card {p}: no YAML front matter; expected the file to start with a '---' line")
    end = text.find("\n---", 4)
    if end < 0:
        raise DataError(f"data card {p}: the YAML front matter is not closed by a '---' line")
    try:
        front = yaml.safe_load(text[4:end]) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" at line {mark.line + 2}" if mark is not None else ""
        raise DataError(f"data card {p}: invalid YAML front matter{line} ({getattr(e, 'problem', e)})") from None
    if not isinstance(front, dict):
        raise DataError(f"data card {p}: the front matter must be a YAML mapping, got {type(front).__name__}")
    body = text[end + 4:].split("\n", 1)[1] if "\n" in text[end + 4:] else ""
    return Card(p, front, body)


def card_dirs() -> list[Path]:
    """Folders holding the cards of the built-in recipes: the installed ``lejepa_domains/data_cards`` or the source
    tree's ``data_cards/``."""
    root = Path(__file__).resolve().parent.parent
    return [p for p in (root / "data_cards", root.parent / "data_cards") if p.is_dir()]


def find_card(recipe_or_name: Any) -> Path | None:
    """The card of a recipe: ``data_cards/NAME.md`` of the built-ins, or ``NAME.md`` beside a user recipe file."""
    name = recipe_or_name if isinstance(recipe_or_name, str) else recipe_or_name.card_name
    candidates = []
    path = getattr(recipe_or_name, "path", None)
    if path:
        rp = Path(path)
        candidates += [rp.with_suffix(".md"), rp.parent / f"{name}.md"]
        if rp.parent.name == "recipes":
            candidates.append(rp.parent.parent / "data_cards" / f"{name}.md")
    candidates += [d / f"{name}.md" for d in card_dirs()]
    for c in candidates:
        if c.is_file():
            return c
    return None


def _todo(v: Any) -> bool:
    return isinstance(v, str) and (not v.strip() or TODO in v)


def _sections(body: str) -> set[str]:
    return {m.group(1).strip().lower() for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", body, re.M)}


def validate_card(card: Card, recipe: Any | None = None) -> Card:
    """Fill ``card.errors`` / ``card.warnings``; with a recipe, also check that the card agrees with it."""
    f, err, warn = card.front, card.errors, card.warnings
    err.clear()
    warn.clear()
    for k in REQUIRED_KEYS:
        if k not in f or f[k] is None or f[k] == "" or f[k] == [] or f[k] == {}:
            err.append(f"missing {k!r}")
        elif _todo(f[k]):
            err.append(f"{k!r} is still a TODO")
    src = f.get("source")
    if "source" in f and src is not None:
        if not isinstance(src, dict):
            err.append("'source' must be a mapping (hub_id/kind/package/path, revision, …)")
        else:
            if not any(src.get(k) for k in _SOURCE_IDS):
                err.append(f"'source' needs one of {_SOURCE_IDS}")
            if "revision" not in src or src.get("revision") in (None, ""):
                err.append("'source' needs a 'revision' (a commit, a package version, or why it is not pinned)")
            elif _todo(src.get("revision")):
                err.append("'source.revision' is still a TODO")
    classes = f.get("classes")
    if isinstance(classes, list) and classes:
        for i, c in enumerate(classes):
            if not isinstance(c, dict) or "name" not in c:
                err.append(f"classes[{i}] needs a 'name' (entries like {{id: 0, name: cat, train: 120}})")
                break
            if c.get("id", i) != i:
                err.append(f"classes[{i}] has id {c.get('id')}; classes must be listed in class-id order from 0")
                break
        if all(isinstance(c, dict) for c in classes) and not any(
                any(k in c for k in ("train", "val", "test", "total", "count")) for c in classes):
            warn.append("classes have no counts (train/val/test or total)")
    elif "classes" in f and classes is not None and not isinstance(classes, list):
        err.append("'classes' must be a list of {id, name, counts…} entries")
    splits = f.get("splits")
    if isinstance(splits, dict):
        for k in ("train", "test"):
            if k not in splits:
                err.append(f"'splits' needs {k!r} (its size)")
        if not splits.get("method") or _todo(splits.get("method")):
            err.append("'splits' needs a 'method' saying how the splits were made")
        elif "seed" not in splits:
            method = re.sub(r"\b(nothing (is )?carved|not carved|no carving)\b", "", str(splits["method"]), flags=re.I)
            if re.search(r"\b(carv|stratif|random|shuffl|seed)", method, re.I):
                err.append("'splits' carves or cuts data: record its 'seed'")
    elif splits is not None and "splits" in f:
        err.append("'splits' must be a mapping (train/val/test sizes, method, seed)")
    norm = f.get("normalisation")
    if isinstance(norm, dict):
        for k in ("mean", "std"):
            if not isinstance(norm.get(k), list) or not norm.get(k):
                err.append(f"'normalisation' needs a {k!r} list (one value per channel)")
        ch = f.get("channels")
        for k in ("mean", "std"):
            if isinstance(ch, int) and isinstance(norm.get(k), list) and norm[k] and len(norm[k]) != ch:
                err.append(f"'normalisation' has {len(norm[k])} {k} value(s) for {ch} channel(s)")
    elif norm is not None and "normalisation" in f:
        err.append("'normalisation' must be a mapping with 'mean' and 'std'")
    _check_overlaps(f, err, warn)
    secs = _sections(card.body)
    if not any("why these views" in s for s in secs):
        err.append("the prose needs a '## Why these views' section justifying the recipe's augmentations")
    for s in ("provenance", "caveats"):
        if not any(s in x for x in secs):
            warn.append(f"the prose has no '## {s.capitalize()}' section")
    if TODO in card.body:
        warn.append("the prose still contains TODO markers")
    if recipe is not None:
        _agree(card, recipe)
    return card


def _check_overlaps(f: dict, err: list[str], warn: list[str]) -> None:
    """``known_overlaps``: known overlaps of the data with foundation-model training data — a list of
    ``{model, overlap, source}`` (every fact names where it comes from) or a sentence starting with ``unknown``."""
    ko = f.get("known_overlaps")
    if ko is None:
        warn.append("no 'known_overlaps' field (overlaps with foundation-model training data, each with its source; "
                    "'unknown' when none are known)")
    elif isinstance(ko, str):
        if not ko.strip().lower().startswith(("unknown", "none")):
            err.append("'known_overlaps' must be a list of {model, overlap, source} entries or a sentence starting "
                       "with 'unknown' or 'none'")
    elif isinstance(ko, list):
        for i, o in enumerate(ko):
            if not isinstance(o, dict) or any(not str(o.get(k) or "").strip() for k in ("model", "overlap", "source")):
                err.append(f"known_overlaps[{i}] needs 'model', 'overlap' and 'source' (where the fact comes from)")
                break
    else:
        err.append("'known_overlaps' must be a list of {model, overlap, source} entries or 'unknown'")


def _close(a: Any, b: Any, tol: float = 1e-6) -> bool:
    try:
        return len(a) == len(b) and all(abs(float(x) - float(y)) <= tol for x, y in zip(a, b))
    except TypeError:
        return False


def _agree(card: Card, recipe: Any) -> None:
    f, err = card.front, card.errors
    checks = [("name", f.get("name"), recipe.card_name), ("image_size", f.get("image_size"), recipe.image_size),
              ("channels", f.get("channels"), recipe.channels)]
    for key, mine, theirs in checks:
        if mine is not None and mine != theirs:
            err.append(f"{key!r} is {mine!r} in the card but {theirs!r} in the recipe")
    classes = f.get("classes")
    if isinstance(classes, list) and classes and len(classes) != recipe.num_classes:
        err.append(f"the card lists {len(classes)} classes, the recipe has num_classes={recipe.num_classes}")
    elif isinstance(classes, list) and recipe.class_names is not None and all(isinstance(c, dict) for c in classes):
        names = [str(c.get("name")) for c in classes]
        if names != [str(n) for n in recipe.class_names]:
            err.append("class names differ between the card and the recipe's class_names")
    norm = f.get("normalisation")
    if isinstance(norm, dict):
        for k in ("mean", "std"):
            if isinstance(norm.get(k), list) and not _close(norm[k], list(getattr(recipe, k)), 5e-4):
                err.append(f"normalisation {k} {norm[k]} in the card differs from the recipe's "
                           f"{list(getattr(recipe, k))}")


def card_for(recipe: Any) -> Card:
    """Find, parse and validate the card of a recipe; :class:`UserError` when there is none."""
    path = find_card(recipe)
    if path is None:
        name = recipe if isinstance(recipe, str) else recipe.card_name
        raise UserError(f"no data card for recipe {name!r}; expected data_cards/{name}.md (built-in) or {name}.md "
                        "beside the recipe file")
    card = parse_card(path)
    return validate_card(card, None if isinstance(recipe, str) else recipe)
