"""The Hugging Face Hub side of an export: uploading a folder (``--push ORG/NAME``) and turning a model reference
(``local-dir:DIR``, ``hf-hub:ORG/NAME[@REVISION]``) into a local folder for evaluation.

Uploads go through :class:`huggingface_hub.HfApi` (``create_repo(private=True, exist_ok=True)`` then one
``create_commit`` of every file, so the hub shows all files or none). The token comes from where ``huggingface_hub`` looks
(``HF_TOKEN``, the token file written by ``hf auth login``). Offline (``HF_HUB_OFFLINE``, or the endpoint does not
answer one short probe) or without a token: one error line before anything is written or sent.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import OfflineError, UserError
from ..runs import EXPORT_CARD, EXPORT_CONFIG, EXPORT_WEIGHTS

__all__ = ["PushResult", "check_push", "push_folder", "parse_model_ref", "resolve_model_ref", "REPO_ID", "redact"]

REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class PushResult:
    repo_id: str
    url: str
    commit: str | None
    private: bool
    files: tuple[str, ...]


def redact(text: str, token: str | None = None) -> str:
    """``text`` without the Hub token: ``token`` (else the one ``huggingface_hub`` would use) and anything shaped like
    a Hugging Face token (``hf_…``) become ``hf_***`` — for error lines that quote a server's or client's message."""
    if token is None:
        try:
            from huggingface_hub import get_token

            token = get_token()
        except Exception:  # noqa: BLE001 - no client, no token file: nothing to hide beyond the pattern
            token = None
    if token:
        text = text.replace(token, "hf_***")
    return re.sub(r"\bhf_[A-Za-z0-9]{8,}", "hf_***", text)


def _offline_env() -> bool:
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _endpoint() -> str:
    from huggingface_hub import constants

    return str(constants.ENDPOINT)


def _answers(endpoint: str, timeout: float = 2.5) -> bool:
    """One HEAD request to the hub endpoint answers within ``timeout`` s (any HTTP status counts). Unlike the data
    loaders' probe this ignores ``HF_DATASETS_OFFLINE``, which is about datasets, not uploads."""
    import threading
    import urllib.error
    import urllib.request

    answer: list[bool] = []

    def probe() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout).close()
            answer.append(True)
        except urllib.error.HTTPError:
            answer.append(True)
        except Exception:  # noqa: BLE001 - refused, timed out, no DNS: unreachable
            answer.append(False)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return bool(answer and answer[0])


def check_push(repo_id: str, token: str | None = None) -> str:
    """Everything about ``--push ORG/NAME`` that can be checked before exporting: the id's form, not offline, a
    token (``token``, else where ``huggingface_hub`` looks). Returns the token. Raises :class:`UserError` /
    :class:`OfflineError` (one line, never holding the token)."""
    if not REPO_ID.match(repo_id or ""):
        raise UserError(f"--push {repo_id!r}: expected a Hugging Face model id ORG/NAME (letters, digits, '-', '_', "
                        "'.'), e.g. --push my-lab/resnet18-galaxy10-lejepa")
    try:
        from huggingface_hub import get_token
    except ImportError:  # pragma: no cover - a dependency of timm and datasets
        raise UserError("--push needs huggingface_hub: pip install huggingface_hub") from None
    if _offline_env():
        raise OfflineError(f"--push {repo_id}: the Hugging Face hub is switched off here (HF_HUB_OFFLINE is set); "
                           "nothing was uploaded — unset it on a connected machine, or upload the exported folder "
                           "later with `hf upload`")
    token = token or get_token()
    if not token:
        raise UserError(f"--push {repo_id}: no Hugging Face token (set HF_TOKEN or run `hf auth login`); nothing was "
                        "uploaded")
    if not _answers(_endpoint()):
        raise OfflineError(f"--push {repo_id}: the Hugging Face hub {_endpoint()} is not reachable (no network); "
                           "nothing was uploaded — export with --to DIR and upload that folder later")
    return token


def push_folder(folder: Path, repo_id: str, *, private: bool = True, token: str | None = None,
                commit_message: str | None = None, api: Any = None, kept: bool = True) -> PushResult:
    """Upload ``folder`` to the model repository ``repo_id`` (created private unless ``private=False``) in one commit.
    ``api``: an :class:`huggingface_hub.HfApi` (the tests pass a fake). A failure is one line saying nothing was
    committed (the commit is atomic on the hub); ``kept``: the folder stays after this call (said in that line)."""
    if api is None:
        from huggingface_hub import HfApi

        from .._version import __version__

        api = HfApi(token=token, library_name="lejepa-domains", library_version=__version__)
    from huggingface_hub import CommitOperationAdd

    paths = sorted(p for p in Path(folder).iterdir() if p.is_file())
    files = tuple(p.name for p in paths)
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        # one create_commit (not upload_folder, which may split a folder into several commits): all files or none
        info = api.create_commit(repo_id=repo_id, repo_type="model",
                                 operations=[CommitOperationAdd(path_in_repo=p.name, path_or_fileobj=str(p))
                                             for p in paths],
                                 commit_message=commit_message or "Upload a LeJEPA backbone (lejepa-domains export)")
    except Exception as e:  # HTTP errors (401, 403, 409…), connection errors, timeouts
        why = redact(" ".join(f"{type(e).__name__}: {e}".split()), token)[:240]
        hint = ""
        status = getattr(getattr(e, "response", None), "status_code", None)
        if status in (401, 403):
            hint = " — the token is not allowed to write there (check it has write access to the organisation)"
        again = (f" (the exported folder {folder} is complete: push it again later, e.g. `hf upload {repo_id} "
                 f"{folder}`)") if kept else " (export with --to DIR to keep the folder and upload it later)"
        raise UserError(f"--push {repo_id}: the upload failed ({why}){hint}; no files were committed{again}") \
            from None
    commit = getattr(info, "oid", None)
    commit_url = getattr(info, "commit_url", None)
    return PushResult(repo_id, str(commit_url or getattr(url, "url", None) or f"{_endpoint()}/{repo_id}"), commit,
                      private, files)


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

    from ..data.hub import hub_reachable

    patterns = [EXPORT_CONFIG, EXPORT_WEIGHTS, EXPORT_CARD]
    kw = dict(repo_id=repo_id, revision=revision or None, allow_patterns=patterns)
    if _offline_env() or not hub_reachable():
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
