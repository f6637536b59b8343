"""Model references: ``local-dir:DIR`` and ``hf-hub:ORG/NAME[@REVISION]`` (timm's spelling) → the local folder of an
exported backbone (a folder ``lejepa-domains export`` wrote). An ``hf-hub:`` model is downloaded into the Hugging Face
cache, or taken from it when offline. Here, below ``evaluate/`` and ``export/``, because both read such folders."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..data.hub import hub_reachable
from ..errors import OfflineError, UserError
from .names import EXPORT_CARD, EXPORT_CONFIG, EXPORT_WEIGHTS

__all__ = ["REPO_ID", "offline_env", "parse_model_ref", "resolve_model_ref"]

REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_TRUE = ("1", "true", "yes", "on")


def offline_env() -> bool:
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


# ------------------------------------------------------------------------------------------------- model references

def parse_model_ref(ref: str | os.PathLike | None) -> tuple[str, str] | None:
    """``("local-dir", PATH)`` / ``("hf-hub", "ORG/NAME[@REV]")`` for a timm-style model reference, else None."""
    if ref is None:
        return None
    text = str(ref)
    for scheme in ("local-dir", "hf-hub"):
        if text.startswith(scheme + ":"):
            rest = text[len(scheme) + 1:]
            if not rest:
                raise UserError(f"--checkpoint {text}: nothing after '{scheme}:' (expected {scheme}:"
                                + ("DIR)" if scheme == "local-dir" else "ORG/NAME)"))
            return scheme, rest
    return None


def resolve_model_ref(ref: str | os.PathLike) -> Path | None:
    """The local folder of a ``local-dir:`` / ``hf-hub:`` reference (an hf-hub model is downloaded into the Hugging
    Face cache, or taken from it when offline); None when ``ref`` is a plain path."""
    parsed = parse_model_ref(ref)
    if parsed is None:
        return None
    scheme, rest = parsed
    if scheme == "local-dir":
        p = Path(rest).expanduser()
        if not p.is_dir():
            raise UserError(f"--checkpoint local-dir:{rest}: no such folder (expected a folder written by "
                            "`lejepa-domains export`)")
        return p
    repo_id, _, revision = rest.partition("@")
    if not REPO_ID.match(repo_id):
        raise UserError(f"--checkpoint hf-hub:{rest}: expected hf-hub:ORG/NAME or hf-hub:ORG/NAME@REVISION")
    from huggingface_hub import snapshot_download

    patterns = [EXPORT_CONFIG, EXPORT_WEIGHTS, EXPORT_CARD]
    kw = dict(repo_id=repo_id, revision=revision or None, allow_patterns=patterns)
    if offline_env() or not hub_reachable():
        try:
            return Path(snapshot_download(local_files_only=True, **kw))
        except Exception:
            raise OfflineError(f"--checkpoint hf-hub:{rest}: the model is not in the local Hugging Face cache and the "
                               "hub is not reachable (offline or HF_HUB_OFFLINE set); download it on a connected "
                               "machine (`hf download " + repo_id + "`) or pass --checkpoint local-dir:DIR") from None
    try:
        return Path(snapshot_download(**kw))
    except Exception as e:
        why = " ".join(f"{type(e).__name__}: {e}".split())[:200]
        raise UserError(f"--checkpoint hf-hub:{rest}: cannot download it ({why}); check the name, the revision and "
                        "that your token may read it (private repositories need HF_TOKEN)") from None
