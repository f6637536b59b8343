"""Test setup: the installed package (not the checkout), offline, CPU, no network (any non-loopback connection
attempt fails loudly).

The suite tests what users get from ``pip install .``: run it with ``python -P -m pytest`` (``-P``: the current
folder is not put on sys.path) or the ``pytest`` console script. If ``lejepa_domains`` would be imported from a
source tree instead (the checkout, or an editable install), the run stops before collecting anything.
``LEJEPA_TEST_CHECKOUT=1`` tests this checkout on purpose (quick development loops; also for subprocesses).
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import site
import socket
import sys
import sysconfig
import tempfile
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
# the per-user folder (the record of recipe files the user named): a temporary one per test session, inherited by
# subprocesses, so no test reads or writes the real home's record
_HOME = tempfile.mkdtemp(prefix="lejepa-domains-home-")
os.environ["LEJEPA_DOMAINS_HOME"] = _HOME
atexit.register(shutil.rmtree, _HOME, True)

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]  # the checkout: the folder holding tests/
OPT_OUT_VAR = "LEJEPA_TEST_CHECKOUT"
TEST_CHECKOUT = os.environ.get(OPT_OUT_VAR, "").strip().lower() not in ("", "0", "false", "no", "off")

if TEST_CHECKOUT:  # this process and every subprocess import the checkout
    sys.path.insert(0, str(ROOT))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
else:  # subprocesses such as `python -m lejepa_domains` started in the checkout must not import it either (3.11+)
    os.environ.setdefault("PYTHONSAFEPATH", "1")


def _site_dirs() -> list[Path]:
    dirs = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    dirs.update(getattr(site, "getsitepackages", lambda: [])())
    if site.ENABLE_USER_SITE:
        dirs.add(site.getusersitepackages())
    return [Path(d).resolve() for d in dirs]


def _within(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def import_problem() -> str | None:
    """Why ``import lejepa_domains`` would not test an installed copy (None when it would)."""
    how = ("install with `pip install .` (not -e) and run `python -P -m pytest` (or the `pytest` script), or set "
           f"{OPT_OUT_VAR}=1 to test the checkout on purpose")
    spec = importlib.util.find_spec("lejepa_domains")
    if spec is None or not spec.origin:
        return f"lejepa_domains is not installed: {how}"
    origin = Path(spec.origin).resolve()
    in_site = any(_within(origin, d) for d in _site_dirs())
    if _within(origin, ROOT) and not in_site:
        return (f"tests import the checkout ({origin}), not the installed package (the current folder or PYTHONPATH "
                f"puts {ROOT} on sys.path, or the package is installed editable): {how}")
    if not in_site:
        return (f"tests import lejepa_domains from a source tree ({origin}: an editable install or PYTHONPATH), not "
                f"an installed copy: {how}")
    return None


def pytest_configure(config):
    if TEST_CHECKOUT:
        return
    problem = import_problem()
    if problem:
        raise pytest.UsageError(problem)


_real_connect = socket.socket.connect


def _guarded_connect(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and (host in ("localhost", "::1") or host.startswith("127.") or host.startswith("/")):
        return _real_connect(self, address)
    if self.family == getattr(socket, "AF_UNIX", None):
        return _real_connect(self, address)
    raise RuntimeError(f"test tried to reach the network: {address!r}")


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _torch_threads():
    import torch

    torch.set_num_threads(2)
    yield
