"""Checkpoint files (``checkpoint.pt``, ``checkpoint_best.pt``) as untrusted input: written so that the safe loader
reads them, and read only by it.

A checkpoint holds tensors, numbers, strings, lists/tuples and dicts — everything ``torch.load(weights_only=True)``
accepts — and nothing else: :func:`safe_state` checks that when one is written (the RNG states are stored as plain
lists and tensors by :func:`rng_state`). Reading goes through :func:`read_checkpoint`, which never unpickles
arbitrary objects:

- a checkpoint written by this release loads with ``weights_only=True``;
- one written by a release before issue 30 stored NumPy's RNG state as a pickled ``ndarray`` (and the torch version
  as a ``TorchVersion``); it loads with ``weights_only=True`` plus an explicit allowlist of exactly the globals that
  needs (:data:`LEGACY_GLOBALS`: numpy's array reconstructor, ``ndarray``, ``dtype``, the ``uint32`` dtype class, and
  ``TorchVersion``, a ``str``) — none of them runs code of the file's choosing;
- anything else (a file that names other Python globals: a crafted payload, or a checkpoint of another tool) is
  refused with one line naming ``--trust-checkpoint``, the explicit opt-in for a file the user wrote themselves.
  Only under that opt-in (:func:`trusted_checkpoints`) is the file unpickled in full.
"""

from __future__ import annotations

import contextlib
import contextvars
import pickle
import random
import re
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch.torch_version import TorchVersion

from ..errors import UserError

__all__ = ["rng_state", "set_rng_state", "safe_state", "read_checkpoint", "trusted_checkpoints", "trusting",
           "UnsafeCheckpoint", "LEGACY_GLOBALS", "TRUST_FLAG"]

TRUST_FLAG = "--trust-checkpoint"

# ------------------------------------------------------------------------------------------------------ RNG states


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) generator states of this process, as plain lists, numbers and uint8 tensors
    (what the safe loader reads back)."""
    version, internal, gauss = random.getstate()
    npst = np.random.get_state(legacy=False)  # {"bit_generator", "state": {"key", "pos"}, "has_gauss", "gauss"}
    state = {"python": [int(version), [int(x) for x in internal], gauss],
             "numpy": {"bit_generator": str(npst["bit_generator"]), "key": npst["state"]["key"].tolist(),
                       "pos": int(npst["state"]["pos"]), "has_gauss": int(npst["has_gauss"]),
                       "gauss": float(npst["gauss"])},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state`'s states; also reads the form of releases before issue 30 (Python's state as
    tuples, NumPy's as ``np.random.get_state()``'s tuple)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    npst = state["numpy"]
    if isinstance(npst, dict):
        np.random.set_state({"bit_generator": npst["bit_generator"],
                             "state": {"key": np.asarray(npst["key"], dtype=np.uint32), "pos": int(npst["pos"])},
                             "has_gauss": int(npst["has_gauss"]), "gauss": float(npst["gauss"])})
    else:
        np.random.set_state(tuple(npst))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------------------------------ writing

_LEAVES = (bool, int, float, str, bytes, type(None))
_TORCH_LEAVES = (torch.Tensor, torch.dtype, torch.device, torch.Size)


def safe_state(obj: Any, where: str = "checkpoint") -> Any:
    """``obj`` with only what ``torch.load(weights_only=True)`` reads back: ``str`` subclasses (e.g. ``TorchVersion``)
    become ``str``, NumPy scalars Python numbers; containers are rebuilt only when something inside changed (a state
    dict keeps its ``_metadata``). Anything else is a programming error (``TypeError`` naming where it is)."""
    t = type(obj)
    if t in _LEAVES or isinstance(obj, _TORCH_LEAVES):
        return obj
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, (np.bool_, np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, dict):
        out = {k: safe_state(v, f"{where}[{k!r}]") for k, v in obj.items()}
        if all(out[k] is obj[k] for k in obj) and t in (dict, OrderedDict):
            return obj
        new = OrderedDict(out) if isinstance(obj, OrderedDict) else out
        if hasattr(obj, "_metadata"):
            new._metadata = obj._metadata  # type: ignore[attr-defined]
        return new
    if isinstance(obj, (list, tuple)):
        items = [safe_state(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        if all(a is b for a, b in zip(items, obj)) and t in (list, tuple):
            return obj
        return items if isinstance(obj, list) else tuple(items)
    raise TypeError(f"{where} is a {t.__module__}.{t.__qualname__}: a checkpoint holds only tensors, numbers, "
                    "strings, lists and dicts (what torch.load(weights_only=True) reads)")


# ------------------------------------------------------------------------------------------------------ reading

def _legacy_globals() -> list[Any]:
    """The globals a checkpoint of the releases before issue 30 needs: NumPy's RNG key (a uint32 ``ndarray``) and the
    ``TorchVersion`` (a ``str``) in its config. Both names of the array reconstructor (NumPy 1: ``numpy.core``,
    NumPy 2: ``numpy._core``) are accepted."""
    core = getattr(np, "_core", None) or np.core  # numpy 1 has no _core
    reconstruct = core.multiarray._reconstruct
    out: list[Any] = [reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32)), TorchVersion]
    for name in ("numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct"):
        out.append((reconstruct, name))
    return out


LEGACY_GLOBALS = _legacy_globals()


def _global_name(g: Any) -> str:
    if isinstance(g, tuple):
        return g[1]
    return f"{g.__module__}.{g.__qualname__}"


_ALLOWED_NAMES = {_global_name(g) for g in LEGACY_GLOBALS}

_TRUST: contextvars.ContextVar[bool] = contextvars.ContextVar("lejepa_trust_checkpoint", default=False)


@contextlib.contextmanager
def trusted_checkpoints(enabled: bool = True) -> Iterator[None]:
    """Within this block, checkpoints the safe loader refuses are unpickled in full (``--trust-checkpoint``). Only
    for files you wrote yourself: unpickling runs whatever code the file names."""
    token = _TRUST.set(bool(enabled) or _TRUST.get())
    try:
        yield
    finally:
        _TRUST.reset(token)


def trusting() -> bool:
    """Whether :func:`trusted_checkpoints` is in effect."""
    return _TRUST.get()


class UnsafeCheckpoint(UserError):
    """The checkpoint names Python objects the safe loader does not read; loading it anyway could run code."""


def _safe_globals(globs: list[Any]):
    ctx = getattr(torch.serialization, "safe_globals", None)
    if ctx is not None:
        return ctx(globs)
    torch.serialization.add_safe_globals([g for g in globs if not isinstance(g, tuple)])  # torch < 2.5
    return contextlib.nullcontext()


def _unsafe_globals(path: Path, err: BaseException) -> list[str]:
    """What the file names beyond :data:`LEGACY_GLOBALS`: the globals of its pickle (read from the opcodes, nothing
    run), else the one the safe loader stopped at (its message)."""
    find = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if find is not None and zipfile.is_zipfile(path):
        try:
            names = [g for g in find(str(path)) if g not in _ALLOWED_NAMES]
            if names:
                return names
        except Exception:  # a damaged archive: fall back to the loader's message
            pass
    m = re.search(r"GLOBAL (\S+) was not an allowed global|but got <class '([^']+)'>", str(err))
    return [m.group(1) or m.group(2)] if m else []


def read_checkpoint(path: str | Path, trust: bool | None = None) -> Any:
    """The object ``path`` holds, read with ``torch.load(weights_only=True)`` (plus :data:`LEGACY_GLOBALS`).

    Raises :class:`UnsafeCheckpoint` (one line naming ``--trust-checkpoint``) when the file needs other globals;
    other load errors (truncated, not a checkpoint) propagate for the caller to report. ``trust`` (default: whether
    :func:`trusted_checkpoints` is in effect) unpickles a refused file in full instead."""
    path = Path(path)
    trust = trusting() if trust is None else trust
    try:
        with _safe_globals(LEGACY_GLOBALS), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols: the answer is the error line below
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # the safe loader met something it does not read (a corrupt file is another error)
        if not trust:
            names = _unsafe_globals(path, e)
            what = (f"names Python objects a safe load does not read ({', '.join(names[:3])}"
                    f"{', …' if len(names) > 3 else ''})" if names
                    else "holds pickle content a safe load does not read")
            raise UnsafeCheckpoint(f"checkpoint {path} {what}: unpickling it could run code, so it was not loaded; "
                                   f"if you wrote this file yourself, pass {TRUST_FLAG} to load it anyway") from None
    # --trust-checkpoint: the user vouches for this file (docs/explanation/security.md); the package's one full unpickling
    return torch.load(path, map_location="cpu", weights_only=False)
