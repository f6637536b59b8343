"""The exported model's licence follows its training data's: the data card's free-text licence → a Hugging Face
licence identifier, and whether that reading is clear.

The weights are a product of the data they were trained on, so the model card carries the data's licence, not the
code's (MIT). A text that names no licence we recognise, says ``unknown`` / ``none declared``, names several, or adds
terms (research only, fair use, non-commercial conditions written out) is **unclear**: the card then says so in its
licence section and quotes the data card's words. Several licences: the most restrictive one goes into the metadata
(a non-commercial one over the others).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["LicenceReading", "read_licence"]

# (pattern on the free text, Hugging Face licence id); the longer, more specific patterns come first
_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"cc[\s-]*by[\s-]*nc[\s-]*sa[\s-]*4\.0", "cc-by-nc-sa-4.0"),
    (r"cc[\s-]*by[\s-]*nc[\s-]*nd[\s-]*4\.0", "cc-by-nc-nd-4.0"),
    (r"cc[\s-]*by[\s-]*nc[\s-]*4\.0", "cc-by-nc-4.0"),
    (r"cc[\s-]*by[\s-]*sa[\s-]*4\.0", "cc-by-sa-4.0"),
    (r"cc[\s-]*by[\s-]*nd[\s-]*4\.0", "cc-by-nd-4.0"),
    (r"cc[\s-]*by[\s-]*4\.0", "cc-by-4.0"),
    (r"cc[\s-]*by[\s-]*3\.0", "cc-by-3.0"),
    (r"cc0|public domain dedication", "cc0-1.0"),
    (r"bsd[\s-]*3[\s-]*clause", "bsd-3-clause"),
    (r"bsd[\s-]*2[\s-]*clause", "bsd-2-clause"),
    (r"apache[\s-]*(license[\s-]*)?2\.0", "apache-2.0"),
    (r"\bmit\b", "mit"),
    (r"odbl", "odbl"),
)
_UNKNOWN_START = re.compile(r"^\s*(unknown|none|no licen[cs]e|not (stated|declared)|unclear|todo)", re.I)
_CAVEATS = re.compile(r"research (use )?only|for research|fair use|negotiat|do not redistribute|check the terms|"
                      r"not (verified|stated|declared)|non-commercial use only", re.I)
_RESTRICTIVE = ("cc-by-nc-nd-4.0", "cc-by-nc-sa-4.0", "cc-by-nc-4.0")


@dataclass(frozen=True)
class LicenceReading:
    """``hf_id``: the Hugging Face ``license:`` value (``unknown`` when none is recognised); ``clear``: the text names
    exactly one licence and adds no terms; ``text``: the data card's own words; ``why``: one sentence for the card
    when the reading is not clear (else empty); ``found``: every licence id recognised, in order of appearance."""

    hf_id: str
    clear: bool
    text: str
    why: str
    found: tuple[str, ...]


def read_licence(text: str | None) -> LicenceReading:
    """Read a data card's licence text (see the module docstring)."""
    words = " ".join(str(text or "").split())
    if not words or _UNKNOWN_START.match(words):
        found = _found(words)
        return LicenceReading("unknown", False, words or "not stated",
                              "the data card does not state a licence for the data"
                              + (f" (it mentions {', '.join(found)} for related material)" if found else ""), found)
    found = _found(words)
    if not found:
        return LicenceReading("unknown", False, words, "the data card's licence is not one this tool recognises", ())
    restrictive = [f for f in found if f in _RESTRICTIVE]
    hf_id = restrictive[0] if restrictive else found[0]
    reasons = []
    if len(found) > 1:
        reasons.append(f"the data card names more than one licence ({', '.join(found)}); the metadata carries "
                       f"{hf_id}" + (", the most restrictive" if restrictive else ", the first named"))
    if _CAVEATS.search(words):
        reasons.append("the data card adds terms of use beyond the licence name")
    return LicenceReading(hf_id, not reasons, words, "; ".join(reasons), found)


def _found(words: str) -> tuple[str, ...]:
    hits: list[tuple[int, str]] = []
    taken: list[tuple[int, int]] = []
    for pattern, hf_id in _PATTERNS:
        for m in re.finditer(pattern, words, re.I):
            if any(a < m.end() and m.start() < b for a, b in taken):  # inside a longer match (CC BY-NC ⊃ CC BY)
                continue
            taken.append((m.start(), m.end()))
            hits.append((m.start(), hf_id))
    out: list[str] = []
    for _, hf_id in sorted(hits):
        if hf_id not in out:
            out.append(hf_id)
    return tuple(out)
