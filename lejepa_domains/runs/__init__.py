"""The run folder's one owner: file names, create / resume / overwrite checks, config and metrics I/O, atomic
checkpoints (RNG states included), the backbone export and its loading, and finding the latest run.

A run folder (``runs/RECIPE-YYYYmmdd-HHMMSS`` by default) holds::

    config.json              recipe, training configuration, data, device, versions       (written once, at the start)
    metrics.jsonl            one JSON line per finished epoch
    checkpoint.pt            everything an exact resume needs (atomic; the last good one survives a failed write)
                             — tensors, numbers, strings, lists, dicts only; read with the safe loader
                             (runs/checkpoint.py: weights_only=True, --trust-checkpoint the one opt-out)
    checkpoint_best.pt       the epoch with the best online-probe accuracy on val (when there is a val split)
    backbone.safetensors     the frozen encoder (timm state dict) ...
    backbone.json            ... and what rebuilds it with timm alone (name, kwargs, input size, normalisation)
    snapshots/epoch-NNNN/    with ``--keep-snapshots N``: the backbone export (the same pair) of chosen epochs, plus
                             snapshot.json (the epoch's metrics line); for label-free checkpoint selection

Training, evaluation, ablation and the launcher go through :class:`RunDir`; no other module opens these files.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import UserError
from ..utils import atomic_path, atomic_write_bytes
from .checkpoint import (TRUST_FLAG, UnsafeCheckpoint, read_checkpoint, rng_state, safe_state, set_rng_state,
                         trusted_checkpoints, trusting)
from .lock import FolderLock
from .names import (BACKBONE_META, BACKBONE_WEIGHTS, BEST, CHECKPOINT, CONFIG, EVAL_DIR, EVAL_REPORT, EXPORT_CARD,
                    EXPORT_CONFIG, EXPORT_WEIGHTS, METRICS, PARTIAL_SUFFIX, RUN_FILES, SKIP_DIR, SNAPSHOT_META,
                    SNAPSHOT_PATTERN, SNAPSHOTS, STUDY_MARKER, TRACKER_DIRS, snapshot_name)

__all__ = ["RunDir", "CONFIG", "METRICS", "CHECKPOINT", "BEST", "BACKBONE_META", "BACKBONE_WEIGHTS", "RUN_FILES",
           "SNAPSHOTS", "Snapshot", "snapshot_epochs",
           "default_run_path", "find_latest_run", "export_backbone", "load_backbone", "read_backbone_meta",
           "read_backbone_weights", "rng_state", "set_rng_state", "clean_state_dict", "read_json", "EXPORT_CONFIG",
           "EXPORT_WEIGHTS", "EXPORT_CARD", "is_timm_export", "FolderLock", "EVAL_DIR", "EVAL_REPORT", "SKIP_DIR",
           "STUDY_MARKER", "eval_report_path", "read_eval_report", "read_checkpoint", "safe_state",
           "trusted_checkpoints", "trusting", "UnsafeCheckpoint", "TRUST_FLAG"]

BACKBONE_KEYS = ("timm_name", "timm_kwargs", "input_size", "channels", "mean", "std")


def read_json(path: Path) -> Any:
    """The parsed JSON file, or None when it is missing or not valid JSON."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def is_timm_export(path: str | Path) -> bool:
    """``path`` is a folder timm loads as ``local-dir:`` (its config.json names an ``architecture`` and holds a
    ``pretrained_cfg``; weights beside it) and not a run folder (no backbone.json)."""
    p = Path(path)
    cfg = read_json(p / EXPORT_CONFIG) if p.is_dir() else None
    return (isinstance(cfg, dict) and "architecture" in cfg and isinstance(cfg.get("pretrained_cfg"), dict)
            and not (p / BACKBONE_META).is_file() and (p / EXPORT_WEIGHTS).is_file())


def eval_report_path(folder: str | Path) -> Path:
    """The report.json inside an evaluation's output folder ``folder``."""
    return Path(folder) / EVAL_REPORT


def read_eval_report(folder: str | Path) -> dict[str, Any] | None:
    """The parsed report.json of the evaluation output folder ``folder``; None when missing or not valid JSON."""
    report = read_json(eval_report_path(folder))
    return report if isinstance(report, dict) else None


def default_run_path(recipe_name: str, root: str | Path = "runs") -> Path:
    """``runs/RECIPE-YYYYmmdd-HHMMSS``."""
    return Path(root) / f"{recipe_name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def clean_state_dict(state: dict[str, Any]) -> dict[str, Any]:
    """Drop the key prefixes torch.compile (``_orig_mod.``) and DDP (``module.``) add, should a state dict carry them
    (the trainer itself always saves the unwrapped model)."""
    out = {}
    for k, v in state.items():
        while k.startswith(("_orig_mod.", "module.")):
            k = k.split(".", 1)[1]
        out[k.replace("._orig_mod.", ".")] = v
    return out


# ------------------------------------------------------------------------------------------------------ the folder

@dataclass(frozen=True)
class RunDir:
    """One run folder. Cheap to construct; nothing is read or written until a method is called."""

    path: Path

    def __init__(self, path: str | Path) -> None:
        object.__setattr__(self, "path", Path(path))

    def __str__(self) -> str:
        return str(self.path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # ---- where things are (ask here; nobody else spells these names)
    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def best_path(self) -> Path:
        return self.path / BEST

    @property
    def backbone_path(self) -> Path:
        return self.path / BACKBONE_WEIGHTS

    @property
    def eval_dir(self) -> Path:
        """``lejepa-domains eval``'s default output folder for this run."""
        return self.path / EVAL_DIR

    @property
    def eval_report_path(self) -> Path:
        """The report.json of this run's default evaluation."""
        return eval_report_path(self.eval_dir)

    @property
    def skip_dir(self) -> Path:
        """Where the readers of a streamed run record the samples they skip."""
        return self.path / SKIP_DIR

    def tracker_dir(self, tracker: str) -> Path:
        """The local store of experiment tracker ``tracker`` (``tensorboard``, ``mlflow``) inside the run folder."""
        return self.path / TRACKER_DIRS[tracker]

    @property
    def study_marker_path(self) -> Path:
        """A study's done-marker of this run (written when it finished training: its spec and figures)."""
        return self.path / STUDY_MARKER

    def read_study_marker(self) -> dict[str, Any] | None:
        marker = read_json(self.study_marker_path)
        return marker if isinstance(marker, dict) else None

    def write_study_marker(self, marker: dict[str, Any]) -> None:
        atomic_write_bytes(self.study_marker_path, json.dumps(marker, indent=2, default=str).encode())

    # ---- what is there
    def holds_run(self) -> bool:
        """A config, checkpoint or metrics file is there (the folder holds a run, finished or not)."""
        return self.path.is_dir() and any((self.path / f).exists() for f in (CONFIG, CHECKPOINT, METRICS))

    def is_resumable(self) -> bool:
        return (self.path / CONFIG).is_file() and (self.path / CHECKPOINT).is_file()

    def has_backbone(self) -> bool:
        return (self.path / BACKBONE_META).is_file()

    def present_files(self) -> list[str]:
        """The run files that exist now, in the order of :data:`RUN_FILES` (backbone pair shown as one)."""
        names = [f for f in RUN_FILES if (self.path / f).is_file()]
        if BACKBONE_META in names and BACKBONE_WEIGHTS in names:
            names.remove(BACKBONE_META)
            names[names.index(BACKBONE_WEIGHTS)] = f"{BACKBONE_WEIGHTS} + {BACKBONE_META}"
        return names

    # ---- create / resume checks
    def check_resumable(self, flag: str = "--resume") -> "RunDir":
        if not self.is_resumable():
            raise UserError(f"{flag} {self.path}: no {CONFIG} and {CHECKPOINT} there (not a run folder)")
        return self

    def lock(self) -> FolderLock:
        """The lock a training process holds on this folder while it writes into it."""
        return FolderLock(self.path, "run folder")

    def check_not_live(self) -> "RunDir":
        """Refuse (one line naming the process) when another process is training into this folder now."""
        info = self.lock().holder()
        if info is not None:
            raise self.lock().refusal(info)
        return self

    def prepare_new(self, overwrite: bool) -> "RunDir":
        """Make the folder for a new run. A folder already holding a run is refused unless ``overwrite``, which then
        removes that run's files (only those); a run that is training right now is refused either way."""
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"--out {self.path} exists and is not a folder")
        self.check_not_live()
        if self.holds_run():
            if not overwrite:
                raise UserError(f"output folder {self.path} already holds a run; use --resume {self.path} to "
                                "continue it or --overwrite to replace it")
            for f in RUN_FILES:
                (self.path / f).unlink(missing_ok=True)
            if (self.path / SNAPSHOTS).is_dir():
                shutil.rmtree(self.path / SNAPSHOTS)
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    # ---- config
    def read_config(self) -> dict[str, Any] | None:
        cfg = read_json(self.path / CONFIG)
        return cfg if isinstance(cfg, dict) else None

    def write_config(self, config: dict[str, Any]) -> None:
        atomic_write_bytes(self.path / CONFIG, json.dumps(config, indent=2, default=str).encode())

    def recipe_name(self) -> str | None:
        """The recipe the run was trained on (config.json, else backbone.json)."""
        cfg = self.read_config()
        if cfg and isinstance(cfg.get("recipe"), dict) and cfg["recipe"].get("name"):
            return str(cfg["recipe"]["name"])
        meta = read_json(self.path / BACKBONE_META)
        return str(meta["recipe"]) if isinstance(meta, dict) and meta.get("recipe") else None

    # ---- metrics
    def read_metrics(self) -> list[dict[str, Any]]:
        """The lines of metrics.jsonl; a line cut short by a kill or a full disk is dropped (its epoch is re-run)."""
        path = self.path / METRICS
        if not path.is_file():
            return []
        out = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and "epoch" in rec:
                out.append(rec)
        return out

    def final_metrics(self) -> dict[str, Any]:
        lines = self.read_metrics()
        return lines[-1] if lines else {}

    def append_metrics(self, record: dict[str, Any]) -> None:
        with open(self.path / METRICS, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def rewrite_metrics(self, records: list[dict[str, Any]]) -> None:
        """Replace metrics.jsonl by ``records`` (atomically); a file that already says exactly that is left alone."""
        text = "".join(json.dumps(r) + "\n" for r in records).encode()
        path = self.path / METRICS
        if not (path.is_file() and path.read_bytes() == text):
            atomic_write_bytes(path, text)

    # ---- checkpoints
    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Atomic ``torch.save``: readers see the previous checkpoint or the complete new one. The state must hold
        only what the safe loader reads (:func:`~lejepa_domains.runs.checkpoint.safe_state` checks it)."""
        state = safe_state(state)
        self._still_there(CHECKPOINT)
        with atomic_path(self.path / CHECKPOINT) as tmp:
            torch.save(state, tmp)

    def load_checkpoint(self, name: str = CHECKPOINT, trust: bool | None = None) -> dict[str, Any]:
        """The checkpoint's state, read with the safe loader (:func:`~lejepa_domains.runs.checkpoint.read_checkpoint`;
        ``trust``: ``--trust-checkpoint``, default: whether :func:`trusted_checkpoints` is in effect). A file the safe
        loader refuses is one error line naming ``--trust-checkpoint``; a truncated or corrupt one, one line naming it
        and the way out."""
        path = self.path / name
        try:
            state = read_checkpoint(path, trust)
            if not isinstance(state, dict) or "step" not in state:
                raise ValueError("not a lejepa-domains checkpoint")
            return state
        except UnsafeCheckpoint:
            raise
        except Exception as e:  # truncated zip, garbage bytes, a file of something else
            why = " ".join(f"{type(e).__name__}: {e}".split()).split(". ")[0][:160]
            way_out = "start the run again with --overwrite"
            if name == CHECKPOINT and (self.path / BEST).is_file():
                try:
                    best = read_checkpoint(self.path / BEST, trust)
                    way_out = (f"{self.path / BEST} (epoch {best['epoch']}, step {best['step']}) is intact: copy it "
                               f"over {path} to resume from there")
                except UnsafeCheckpoint:
                    way_out = (f"{self.path / BEST} is not loaded either (it names objects a safe load does not "
                               f"read); start the run again with --overwrite")
                except Exception:
                    way_out = f"{self.path / BEST} is unreadable too; start the run again with --overwrite"
            raise UserError(f"checkpoint {path} cannot be read, it is truncated or corrupt ({why}); {way_out}") \
                from None

    def checkpoint_step(self, trust: bool | None = None) -> int | None:
        """The optimisation step ``checkpoint.pt`` holds; None when it is missing or unreadable (truncated, corrupt).
        A checkpoint the safe loader refuses is an error (:class:`UnsafeCheckpoint`), not a missing one: a caller
        must not write over it as if there were none."""
        if not (self.path / CHECKPOINT).is_file():
            return None
        try:
            return int(self.load_checkpoint(trust=trust)["step"])
        except UnsafeCheckpoint:
            raise
        except Exception:  # a checkpoint that cannot be read counts as none
            return None

    def keep_best(self) -> None:
        """Copy the current checkpoint to ``checkpoint_best.pt`` (atomically)."""
        with atomic_path(self.path / BEST) as tmp:
            shutil.copyfile(self.path / CHECKPOINT, tmp)

    def write_error(self, target: Path, e: OSError, last_saved_step: int | None) -> UserError:
        """One clear line for an output of this run that could not be written (the previous checkpoint is untouched:
        every write is atomic)."""
        if not (self.path / CONFIG).is_file():  # the folder (or its config.json) went away under the run
            return UserError(f"run folder {self.path} vanished while training (deleted, moved, or its filesystem "
                             f"unmounted): could not write {target.name}; stopped without recreating it (whatever "
                             "was in it is gone; start the run again)")
        why = e.strerror or str(e)
        if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            why += " (the disk or quota is full)"
        prev = (f"the previous checkpoint {self.path / CHECKPOINT} (step {last_saved_step}) is intact; free space, "
                f"then continue with --resume {self.path}") if last_saved_step is not None \
            else "no checkpoint had been written yet"
        return UserError(f"could not write {target}: {why}; {prev}")

    # ---- backbone
    def export_backbone(self, backbone: nn.Module, recipe, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        self._still_there(BACKBONE_WEIGHTS)
        return export_backbone(backbone, self.path, recipe, extra)

    def _still_there(self, name: str) -> None:
        """Writes go through atomic_path, which would recreate a deleted folder; a run whose folder vanished must
        stop instead (OSError → :meth:`write_error`'s "vanished" line)."""
        if not self.path.is_dir():
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(self.path / name))

    def backbone_meta(self) -> dict[str, Any]:
        return read_backbone_meta(self.path)

    def load_backbone(self, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
        return load_backbone(self.path, map_location)

    # ---- per-epoch backbone snapshots (--keep-snapshots)
    def snapshot_dir(self, epoch: int) -> Path:
        return self.path / SNAPSHOTS / snapshot_name(epoch)

    def save_snapshot(self, backbone: nn.Module, recipe, epoch: int, step: int, record: dict[str, Any]) -> Path:
        """Export the backbone of finished epoch ``epoch`` into ``snapshots/epoch-NNNN/`` (the backbone pair, loadable
        like the run's own export, plus ``snapshot.json`` with the epoch's metrics line). The folder is written
        whole or not at all: files go to a temporary sibling that is renamed at the end."""
        final = self.snapshot_dir(epoch)
        tmp = final.with_name(final.name + PARTIAL_SUFFIX)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        export_backbone(backbone, tmp, recipe, {"epoch": int(epoch), "step": int(step), "snapshot_of": str(self.path)})
        atomic_write_bytes(tmp / SNAPSHOT_META, json.dumps({"epoch": int(epoch), "step": int(step),
                                                            "metrics": record}, indent=1, default=str).encode())
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        return final

    def snapshots(self) -> list["Snapshot"]:
        """The complete snapshots of this run, by epoch (a folder without its backbone pair or snapshot.json, e.g.
        one cut short by a kill, is not listed)."""
        root = self.path / SNAPSHOTS
        out = []
        if not root.is_dir():
            return out
        for d in sorted(root.glob(SNAPSHOT_PATTERN)):
            meta = read_json(d / SNAPSHOT_META)
            if not (isinstance(meta, dict) and (d / BACKBONE_META).is_file() and (d / BACKBONE_WEIGHTS).is_file()):
                continue
            out.append(Snapshot(int(meta["epoch"]), int(meta.get("step", 0)), d, dict(meta.get("metrics") or {})))
        return sorted(out, key=lambda s: s.epoch)

    # ---- other JSON files kept in the folder (e.g. an ablation's done-marker)
    def read_json(self, name: str) -> Any:
        return read_json(self.path / name)

    def write_json(self, name: str, obj: Any) -> None:
        atomic_write_bytes(self.path / name, json.dumps(obj, indent=2, default=str).encode())


@dataclass(frozen=True)
class Snapshot:
    """One kept per-epoch backbone: ``path`` is a folder holding a backbone pair (evaluate it like a run folder);
    ``metrics`` is that epoch's metrics.jsonl line (loss, sigreg, rankme, probe_val_acc, …)."""

    epoch: int
    step: int
    path: Path
    metrics: dict[str, Any]


def snapshot_epochs(epochs: int, keep: int) -> list[int]:
    """The 1-based epochs whose backbone ``--keep-snapshots keep`` keeps in a run of ``epochs`` epochs: ``keep``
    epochs spread evenly over the run, always including the last (all of them when ``keep >= epochs``, none when
    ``keep`` is 0). E.g. 10 epochs, keep 4 → [2, 5, 8, 10]."""
    if keep <= 0 or epochs <= 0:
        return []
    if keep >= epochs:
        return list(range(1, epochs + 1))
    return sorted({max(1, round(epochs * (i + 1) / keep)) for i in range(keep)})


def find_latest_run(runs_dir: str | Path = "runs", recipe_name: str | None = None) -> Path | None:
    """The run folder under ``runs_dir`` (one level) whose ``backbone.json`` is newest; optionally only runs of
    ``recipe_name``."""
    root = Path(runs_dir)
    if not root.is_dir():
        return None
    best: tuple[float, Path] | None = None
    for meta in root.glob(f"*/{BACKBONE_META}"):
        run = meta.parent
        if recipe_name is not None and RunDir(run).recipe_name() != recipe_name:
            continue
        t = meta.stat().st_mtime
        if best is None or t > best[0]:
            best = (t, run)
    return best[1] if best else None


# --------------------------------------------------------------------------------------------- the exported backbone

def export_backbone(backbone: nn.Module, out_dir: str | Path, recipe, extra: dict[str, Any] | None = None) -> dict:
    """Write ``backbone.safetensors`` and ``backbone.json`` (timm name and kwargs, input size, channels, normalisation)
    atomically into ``out_dir``. Returns the metadata.

    The pair is all anyone needs to rebuild the frozen encoder with timm alone::

        import json, timm, safetensors.torch
        meta = json.load(open("backbone.json"))
        model = timm.create_model(meta["timm_name"], pretrained=False, **meta["timm_kwargs"])
        model.load_state_dict(safetensors.torch.load_file("backbone.safetensors"))
    """
    from safetensors.torch import save_file

    from ..method.model import weights_hash

    out_dir = Path(out_dir)
    sd = {k: v.detach().to("cpu").contiguous() for k, v in backbone.state_dict().items()}
    meta = {
        "format": "lejepa-domains/backbone-v1",
        "timm_name": recipe.backbone,
        "timm_kwargs": {"num_classes": 0, "in_chans": recipe.channels, **dict(recipe.backbone_kwargs)},
        "num_features": int(getattr(backbone, "num_features", 0)),
        "input_size": [recipe.channels, recipe.image_size, recipe.image_size],
        "channels": recipe.channels,
        "mean": list(recipe.mean),
        "std": list(recipe.std),
        # stored value type and its scaling to floats before mean/std (see lejepa_domains.data.pixels); pixel_scale
        # is the linear divisor (255 for 8-bit images), null for asinh / none scaling
        "pixel_scale": recipe.pixel_scaling.pixel_max if recipe.pixel_scaling.kind == "linear" else None,
        "pixels": recipe.pixel_scaling.describe(),
        "band_names": list(recipe.band_names) if getattr(recipe, "band_names", None) else None,
        "recipe": recipe.name,
        "weights_sha256_16": weights_hash(sd),
        **(extra or {}),
    }
    with atomic_path(out_dir / BACKBONE_WEIGHTS) as tmp:
        save_file(sd, str(tmp), metadata={"timm_name": recipe.backbone})
    atomic_write_bytes(out_dir / BACKBONE_META, json.dumps(meta, indent=2).encode())
    return meta


def _meta_path(path: str | Path) -> Path:
    p = Path(path)
    return p if p.name == BACKBONE_META and not p.is_dir() else p / BACKBONE_META


def read_backbone_meta(path: str | Path, flag: str = "--checkpoint") -> dict[str, Any]:
    """The validated ``backbone.json`` of a run folder (or of that file's path): one error line when it is missing,
    not JSON, or lacks a field the rebuild needs."""
    meta_path = _meta_path(path)
    if not meta_path.is_file():
        raise UserError(f"{flag} {Path(path)}: no {BACKBONE_META} there (expected a run folder written by "
                        "`lejepa-domains pretrain`)")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{meta_path} is not valid JSON ({' '.join(str(e).split())[:120]})") from None
    missing = [k for k in BACKBONE_KEYS if k not in meta] if isinstance(meta, dict) else list(BACKBONE_KEYS)
    if missing:
        raise UserError(f"{meta_path} lacks {missing} (expected the {BACKBONE_META} written by "
                        "`lejepa-domains pretrain`)")
    return meta


def load_backbone(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild an exported backbone from a run folder (or a ``backbone.json`` path) with timm alone; eval mode."""
    import timm
    from safetensors.torch import load_file

    meta_path = _meta_path(path)
    if not meta_path.is_file():
        raise UserError(f"no {BACKBONE_META} in {Path(path)} (expected a run folder written by `lejepa-domains "
                        "pretrain`)")
    meta = json.loads(meta_path.read_text())
    weights = meta_path.with_name(BACKBONE_WEIGHTS)
    if not weights.is_file():
        raise UserError(f"{weights} is missing next to {meta_path}")
    model = timm.create_model(meta["timm_name"], pretrained=False, **meta["timm_kwargs"])
    sd = load_file(str(weights), device=str(map_location))
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise UserError(f"{weights} does not fit {meta['timm_name']}: missing {list(missing)[:3]}, "
                        f"unexpected {list(unexpected)[:3]}")
    return model.eval(), meta


def read_backbone_weights(path: str | Path, flag: str = "--init-from") -> dict[str, torch.Tensor]:
    """The backbone state dict of a run folder (its ``backbone.safetensors``) or of a ``.safetensors`` file."""
    from safetensors.torch import load_file

    p = Path(path)
    f = p / BACKBONE_WEIGHTS if p.is_dir() else p
    if not f.is_file():
        raise UserError(f"{flag} {path}: no {BACKBONE_WEIGHTS} there (expected a run folder or that file)")
    try:
        return load_file(str(f))
    except Exception as e:  # not a safetensors file
        raise UserError(f"{flag} {f}: cannot read it as safetensors ({type(e).__name__})") from None
