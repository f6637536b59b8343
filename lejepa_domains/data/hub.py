"""Sources whose data lives on the Hugging Face hub: :class:`HFSource` (a hub dataset through 🤗
``datasets.load_dataset``) and :class:`MedMNISTSource` (the ``data/{flag}.npz`` files of a hub mirror of MedMNIST).

Both are :class:`~lejepa_domains.data.table.TableSource` subclasses; ``TableSource`` and ``LocalSource`` (a local copy)
live in :mod:`lejepa_domains.data.table` and are importable from here too, as recipe files have always done.
"""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ..errors import DataError, OfflineError, UserError
from .formats import UNSPLIT, HFDatasetReader, NpzReader, Reader, open_local
from .table import LocalSource, TableSource

__all__ = ["TableSource", "HFSource", "MedMNISTSource", "LocalSource", "MEDMNIST_HUB_ID", "MEDMNIST_REVISION",
           "open_hub", "hub_error", "hub_reachable", "set_offline", "PROBE_TIMEOUT"]

MEDMNIST_HUB_ID = "albertvillanova/medmnist-v2"
MEDMNIST_REVISION = "0472595ab51916346dc4ad40f7b77551f2171403"  # the commit that added data/*.npz (unchanged since)


def _offline() -> bool:
    try:
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            return True
    except ImportError:  # pragma: no cover
        pass
    return os.environ.get("HF_DATASETS_OFFLINE", "") in ("1", "true", "TRUE", "yes")


PROBE_TIMEOUT = 2.5  # seconds the hub endpoint gets to answer one HEAD request before the process goes offline
_PROBED: dict[str, bool] = {}  # endpoint → reachable (probed once per process)


def set_offline() -> None:
    """Offline mode for the rest of the process, with ``HF_HUB_OFFLINE=1`` semantics: huggingface_hub and 🤗 datasets
    read only their local caches (and fail at once when the data is not there)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        from huggingface_hub import constants

        constants.HF_HUB_OFFLINE = True
    except ImportError:  # pragma: no cover
        pass
    try:
        import datasets.config as dconf

        dconf.HF_HUB_OFFLINE = dconf.HF_DATASETS_OFFLINE = True
    except ImportError:  # pragma: no cover
        pass


def hub_reachable(timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether the Hugging Face endpoint (``huggingface_hub.constants.ENDPOINT``, i.e. ``HF_ENDPOINT``) answers one
    HEAD request within ``timeout`` seconds (any HTTP status counts; proxies from the environment are used). Asked
    once per process, before the first hub call: unreachable → :func:`set_offline`, so the clear
    :class:`OfflineError` comes at once instead of after ~20 s of retries. Already offline → False, nothing sent."""
    if _offline():
        return False
    try:
        from huggingface_hub import constants

        endpoint = str(constants.ENDPOINT)
    except ImportError:  # pragma: no cover
        return True
    if endpoint in _PROBED:
        return _PROBED[endpoint]

    answer: list[bool] = []

    def probe() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout).close()
            answer.append(True)
        except urllib.error.HTTPError:  # the hub answered (404, 405, ...): it is reachable
            answer.append(True)
        except Exception:  # noqa: BLE001 - refused, timed out, no DNS, TLS failure: unreachable
            answer.append(False)

    t = threading.Thread(target=probe, name="hub-probe", daemon=True)
    t.start()
    t.join(timeout)  # a hard bound, DNS included
    ok = bool(answer and answer[0])
    _PROBED[endpoint] = ok
    if not ok:
        set_offline()
    return ok


def _is_network_error(e: BaseException) -> bool:
    names = {c.__name__ for c in type(e).__mro__}
    net = {"ConnectionError", "LocalEntryNotFoundError", "OfflineModeIsEnabled", "Timeout", "ReadTimeout",
           "ConnectTimeout", "HTTPError", "SSLError", "ProxyError", "gaierror", "MaxRetryError", "ConnectError"}
    return bool(names & net) or "network" in str(e).lower() or "reach" in str(e).lower()


def hub_error(e: BaseException, what: str, fix: str) -> UserError:
    """The one-line error for a failed hub access (no traceback)."""
    kind = type(e).__name__
    if _offline() or _is_network_error(e):
        return OfflineError(f"{what} is not reachable (offline, HF_HUB_OFFLINE=1 or no network) and not in the local "
                            f"Hugging Face cache; {fix}")
    if kind in ("DatasetNotFoundError", "RepositoryNotFoundError", "GatedRepoError", "EntryNotFoundError",
                "FileNotFoundError", "DataFilesNotFoundError"):
        return DataError(f"{what} was not found on the hub ({kind}: {str(e).splitlines()[0] if str(e) else ''}); "
                         f"check the id/config/revision, log in for gated data, or {fix}")
    return DataError(f"{what} could not be loaded ({kind}: {str(e).splitlines()[0] if str(e) else ''}); {fix}")


class HFSource(TableSource):
    """A dataset on the Hugging Face hub, loaded with ``datasets.load_dataset(hub_id, config, revision=revision)``.

    Offline, or for a dataset that is not in the local 🤗 cache, the load fails with a one-line
    :class:`~lejepa_domains.errors.OfflineError` telling the user to pass ``--data PATH`` (a local copy).
    """

    kind = "hf-hub"

    def __init__(self, hub_id: str, config: str | None = None, revision: str | None = None, **kwargs: Any):
        if not hub_id or not isinstance(hub_id, str):
            raise UserError(f"HFSource needs a hub dataset id such as 'timm/eurosat-rgb', got {hub_id!r}")
        self.hub_id, self.config, self.revision = hub_id, config, revision
        super().__init__(**kwargs)

    def _where_default(self) -> dict[str, Any]:
        return {"hub_id": self.hub_id, "config": self.config, "revision": self.revision}

    def _label(self) -> str:
        return self.hub_id.replace("/", "__") + (f"__{self.config}" if self.config else "")

    def _default_data_fingerprint(self) -> str | None:
        return f"revision:{self.revision}" if self.revision else None

    def _fix(self) -> str:
        cfg = f", {self.config!r}" if self.config else ""
        return (f"on a machine with network access run `python -c \"import datasets; datasets.load_dataset("
                f"'{self.hub_id}'{cfg}).save_to_disk('DIR')\"` (or download its parquet files), copy DIR here and "
                "pass --data DIR")

    def _open(self, data: str | None) -> Reader:
        if data is not None:
            return open_local(data, h5_keys=self.h5_keys)
        return open_hub(self.hub_id, self.config, self.revision, fix=self._fix())


def open_hub(hub_id: str, config: str | None = None, revision: str | None = None, *, fix: str = "pass --data PATH"
             ) -> Reader:
    try:
        import datasets

        hub_reachable()  # unreachable → offline at once: a cached copy still loads, else the clear error below
        dd = datasets.load_dataset(hub_id, config, revision=revision)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - every hub failure becomes one clear line
        raise hub_error(e, f"Hugging Face dataset {hub_id!r}" + (f" (config {config!r})" if config else ""),
                        fix) from None
    where = f"hub dataset {hub_id}" + (f" ({config})" if config else "")
    if isinstance(dd, dict):
        return HFDatasetReader(dict(dd), where)
    return HFDatasetReader({UNSPLIT: dd}, where, unsplit=True)


class MedMNISTSource(TableSource):
    """A MedMNIST 2D subset from its official ``.npz`` layout.

    Without ``--data`` it fetches ``data/{flag}.npz`` (28 px only) from the hub mirror ``albertvillanova/medmnist-v2``
    at a pinned commit with ``huggingface_hub.hf_hub_download`` (the mirror's loading script is not run: 🤗 datasets
    ≥ 4 no longer executes dataset scripts). ``--data`` accepts the official file (``{flag}.npz`` or, for
    MedMNIST+, ``{flag}_{size}.npz`` from Zenodo record 10519652), a folder holding it, or any other local layout.
    """

    kind = "medmnist"

    def __init__(self, flag: str, *, size: int = 28, hub_id: str = MEDMNIST_HUB_ID,
                 revision: str | None = MEDMNIST_REVISION, image_size: int | None = None, **kwargs: Any):
        if size not in (28, 64, 128, 224):
            raise UserError(f"MedMNIST sizes are 28, 64, 128 and 224, got {size}")
        self.flag, self.size, self.hub_id, self.revision = flag, int(size), hub_id, revision
        super().__init__(image_size=image_size, **kwargs)
        if self.image_size is None:  # on its own: the images as stored
            self.image_size = self.size

    def _where_default(self) -> dict[str, Any]:
        return {"flag": self.flag, "size": self.size, "hub_id": self.hub_id, "revision": self.revision}

    def _label(self) -> str:
        return f"medmnist-{self.flag}{'' if self.size == 28 else f'_{self.size}'}"

    def _default_data_fingerprint(self) -> str | None:
        return f"revision:{self.revision}" if self.revision else None

    def _filenames(self) -> list[str]:
        return [f"{self.flag}_{self.size}.npz"] + ([f"{self.flag}.npz"] if self.size == 28 else [])

    def _open(self, data: str | None) -> Reader:
        if data is not None:
            p = Path(data).expanduser()
            if p.is_dir():
                for name in self._filenames():
                    if (p / name).is_file():
                        return NpzReader(p / name)
            return open_local(p, h5_keys=self.h5_keys)
        zenodo = (f"download {self._filenames()[0]} from https://zenodo.org/records/10519652 (or "
                  f"{self.hub_id}/data/{self.flag}.npz for 28 px) and pass --data FILE")
        if self.size != 28:
            raise DataError(f"MedMNIST+ {self.flag} at {self.size} px is not on the hub mirror {self.hub_id} (28 px "
                            f"only); {zenodo}")
        try:
            from huggingface_hub import hf_hub_download

            hub_reachable()
            path = hf_hub_download(self.hub_id, f"data/{self.flag}.npz", repo_type="dataset", revision=self.revision)
        except Exception as e:  # noqa: BLE001
            raise hub_error(e, f"MedMNIST file data/{self.flag}.npz of {self.hub_id}", zenodo) from None
        return NpzReader(Path(path))
