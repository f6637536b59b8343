"""Experiment trackers for ``pretrain --logger tensorboard|wandb|mlflow`` (repeatable): each gets the resolved
configuration once, the metrics line of every epoch (the numbers of ``metrics.jsonl``) and a final report.

The trackers are optional extras (``pip install 'lejepa-domains[wandb]'`` …) and imported only here, only when asked
for; nothing else in the package imports them. A tracker that is asked for but not installed is one error line naming
the extra, before anything is written. Only the main process (rank 0) logs.

- ``tensorboard``: ``torch.utils.tensorboard.SummaryWriter`` in ``RUN/tensorboard`` (scalars per epoch, the config
  and final report as text).
- ``wandb``: ``wandb.init(dir=RUN, config=…)``; project ``$WANDB_PROJECT`` or ``lejepa-domains``, run name = the run
  folder's name. The mode is ``$WANDB_MODE`` when set; otherwise online when an API key is configured
  (``WANDB_API_KEY`` or ``~/.netrc``) and **offline** (files in ``RUN/wandb``, ``wandb sync`` later) when not, so
  training never stops at a login prompt.
- ``mlflow``: ``$MLFLOW_TRACKING_URI`` when set (your server or database), else a local file store
  ``RUN/mlruns`` (MLflow 3 keeps that backend in maintenance mode and asks for an opt-in, which is given for this
  run-local default only: ``MLFLOW_ALLOW_FILE_STORE=true``); experiment ``$MLFLOW_EXPERIMENT_NAME`` or
  ``lejepa-domains``. ``mlflow-skinny`` is enough.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..errors import UserError
from ..runs import RunDir

__all__ = ["TRACKERS", "resolve_loggers", "open_loggers", "Trackers"]

# name → (module to import, the extra that installs it)
TRACKERS = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb"), "mlflow": ("mlflow", "mlflow")}


def resolve_loggers(loggers: Iterable[str] | str | None, tensorboard: bool = False) -> list[str]:
    """``--logger`` values (and the older ``--tensorboard`` switch) → tracker names, each checked to be importable.
    Raises one :class:`UserError` naming the extra of a missing package."""
    names: list[str] = []
    given = [loggers] if isinstance(loggers, str) else list(loggers or ())
    for raw in given + (["tensorboard"] if tensorboard else []):
        for name in str(raw).split(","):
            name = name.strip().lower()
            if not name:
                continue
            if name not in TRACKERS:
                raise UserError(f"--logger {name!r}: unknown tracker; expected some of {', '.join(TRACKERS)}")
            if name not in names:
                names.append(name)
    import importlib.util

    for name in names:
        module, extra = TRACKERS[name]
        if importlib.util.find_spec(module) is None:
            raise UserError(f"--logger {name} needs the {module} package: pip install 'lejepa-domains[{extra}]'")
    return names


def _scalars(record: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in record.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "epoch"}


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        else:
            out[key] = json.dumps(v, default=str) if not isinstance(v, str) else v
    return out


class _TensorBoard:
    def __init__(self, run_path: Path, config: dict[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.w = SummaryWriter(log_dir=str(RunDir(run_path).tracker_dir("tensorboard")))
        self.w.add_text("config", "```\n" + json.dumps(config, indent=2, default=str) + "\n```", 0)

    def log_epoch(self, record: dict[str, Any], epoch: int) -> None:
        for k, v in _scalars(record).items():
            self.w.add_scalar(k, v, epoch)

    def log_final(self, summary: dict[str, Any]) -> None:
        self.w.add_text("final_report", "```\n" + json.dumps(summary, indent=2, default=str) + "\n```", 0)
        for k, v in _scalars(summary.get("final", {})).items():
            self.w.add_scalar(f"final/{k}", v, int(summary.get("epochs_done") or 0))

    def close(self) -> None:
        self.w.close()


def _wandb_has_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


class _WandB:
    def __init__(self, run_path: Path, config: dict[str, Any]) -> None:
        import wandb

        mode = os.environ.get("WANDB_MODE") or ("online" if _wandb_has_key() else "offline")
        self.offline = mode in ("offline", "dryrun")
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT") or "lejepa-domains", name=run_path.name,
                              dir=str(run_path), config=config, mode=mode, job_type="pretrain")

    def log_epoch(self, record: dict[str, Any], epoch: int) -> None:
        self.run.log({**_scalars(record), "epoch": epoch}, step=epoch)

    def log_final(self, summary: dict[str, Any]) -> None:
        self.run.summary.update({"final_report": summary, **{f"final/{k}": v
                                                            for k, v in _scalars(summary.get("final", {})).items()}})

    def close(self) -> None:
        self.run.finish()


class _MLflow:
    def __init__(self, run_path: Path, config: dict[str, Any]) -> None:
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:  # a store inside the run folder; MLflow 3 wants the file backend opted into
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            uri = RunDir(run_path).tracker_dir("mlflow").resolve().as_uri()
        import mlflow

        self.mlflow = mlflow
        self.client = mlflow.MlflowClient(tracking_uri=uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or "lejepa-domains"
        exp = self.client.get_experiment_by_name(name)
        exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(name)
        self.run_id = self.client.create_run(exp_id, run_name=run_path.name,
                                             tags={"lejepa_domains.run_dir": str(run_path)}).info.run_id
        self.uri = uri
        params = _flat(config)
        for k, v in params.items():  # MLflow caps a parameter value at 6000 characters
            self.client.log_param(self.run_id, k[:250], v[:6000])
        self.client.log_dict(self.run_id, config, "run_config.json")

    def log_epoch(self, record: dict[str, Any], epoch: int) -> None:
        for k, v in _scalars(record).items():
            self.client.log_metric(self.run_id, k, v, step=epoch)

    def log_final(self, summary: dict[str, Any]) -> None:
        self.client.log_dict(self.run_id, summary, "final_report.json")

    def close(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)


_CLASSES = {"tensorboard": _TensorBoard, "wandb": _WandB, "mlflow": _MLflow}


class Trackers:
    """The opened trackers of one run; every call goes to each of them."""

    def __init__(self, items: Sequence[Any]) -> None:
        self.items = list(items)

    def log_epoch(self, record: dict[str, Any], epoch: int) -> None:
        for t in self.items:
            t.log_epoch(record, epoch)

    def log_final(self, summary: dict[str, Any]) -> None:
        for t in self.items:
            t.log_final(summary)

    def close(self, failed: bool = False) -> None:
        for t in self.items:
            if isinstance(t, _MLflow):
                t.close("FAILED" if failed else "FINISHED")
            else:
                t.close()


def open_loggers(names: Sequence[str], run_path: str | Path, config: dict[str, Any]) -> Trackers | None:
    """Open the trackers ``names`` (already :func:`resolve_loggers`-checked) for the run in ``run_path``, each given
    ``config``; None when there are none."""
    if not names:
        return None
    run_path = Path(run_path)
    return Trackers([_CLASSES[n](run_path, config) for n in names])
