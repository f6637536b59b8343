"""``lejepa-domains pretrain … --slurm nodes=2,gpus_per_node=8,partition=gpu,time=24:00:00``: the same run as
``torchrun`` on every node, submitted through ``submitit`` (a well-kept launcher: it writes the sbatch script,
pickles the job, starts one task per GPU and requeues on preemption or timeout — no sbatch templating here).

Each task exports the torch.distributed environment of its Slurm task (``submitit.helpers.TorchDistributedEnvironment``:
RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) and calls :func:`lejepa_domains.train.pretrain`, which joins
the process group exactly as under torchrun (NCCL on GPUs). The run folder is fixed at submission (``--out``, else
``runs/RECIPE-stamp``), so a requeued job finds it: when it holds a checkpoint the job continues with the exact
``--resume`` (same weights as an uninterrupted run). On preemption / time-out Slurm signals the job (``USR2``,
``signal_delay_s`` before the end); submitit calls :meth:`PretrainJob.checkpoint` and requeues. The steps since the
last checkpoint (epoch end, or every ``--checkpoint-every`` steps: set it for long epochs) are recomputed identically.

Spec keys: ``nodes``, ``gpus_per_node`` (one task per GPU), ``partition``, ``time`` (minutes, ``HH:MM:SS`` or
``D-HH:MM:SS``), ``cpus_per_task``, ``mem_gb``, ``account``, ``qos``, ``constraint``, ``name``, ``signal_delay_s``,
``max_requeues``, and ``executor`` = ``slurm`` (default) | ``local`` (submitit's LocalExecutor: tasks on this
machine, how the tests run it offline) | ``debug`` (in this process).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..recipe import DEFAULT_RECIPE, load_recipe
from ..runs import CHECKPOINT, RunDir, default_run_path
from .run import pretrain
from .setup import resumed_recipe

__all__ = ["parse_slurm_spec", "PretrainJob", "submit_pretrain"]

_INT_KEYS = ("nodes", "gpus_per_node", "cpus_per_task", "mem_gb", "signal_delay_s", "max_requeues", "tasks_per_node")
_STR_KEYS = ("partition", "account", "qos", "constraint", "name", "executor")


def _minutes(text: str) -> float:
    m = re.fullmatch(r"(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)", text)
    if m:
        d, h, mi, s = (int(x) if x else 0 for x in m.groups())
        return d * 1440 + h * 60 + mi + s / 60
    try:
        return float(text)
    except ValueError:
        raise UserError(f"--slurm time={text!r}: expected minutes, HH:MM:SS or D-HH:MM:SS") from None


def parse_slurm_spec(spec: str) -> dict[str, Any]:
    """``"nodes=2,gpus_per_node=8,partition=gpu,time=4:00:00"`` → checked keys (see the module docstring)."""
    out: dict[str, Any] = {}
    for part in [p for p in str(spec).split(",") if p.strip()]:
        if "=" not in part:
            raise UserError(f"--slurm {spec!r}: {part!r} is not KEY=VALUE (e.g. nodes=2,gpus_per_node=8,"
                            "partition=gpu,time=24:00:00)")
        k, v = (x.strip() for x in part.split("=", 1))
        k = k.replace("-", "_")
        if k == "time":
            out["timeout_min"] = _minutes(v)
        elif k in _INT_KEYS:
            try:
                out[k] = int(v)
            except ValueError:
                raise UserError(f"--slurm {k}={v!r}: expected an integer") from None
            if out[k] < (0 if k in ("signal_delay_s", "max_requeues") else 1):
                raise UserError(f"--slurm {k}={v}: must be >= 1")
        elif k in _STR_KEYS:
            out[k] = v
        else:
            raise UserError(f"--slurm: unknown key {k!r}; expected some of "
                            f"{', '.join(sorted((*_INT_KEYS, *_STR_KEYS, 'time')))}")
    if out.get("executor", "slurm") not in ("slurm", "local", "debug"):
        raise UserError(f"--slurm executor={out['executor']!r}: expected slurm, local or debug")
    return out


class PretrainJob:
    """The callable submitit runs in every task: ``pretrain`` in the fixed run folder, resuming when it holds a
    checkpoint. Checkpointable: requeued as itself after preemption (submitit's protocol)."""

    def __init__(self, recipe: str, out: str, options: dict[str, Any]):
        self.recipe, self.out, self.options = recipe, str(out), dict(options)

    def __call__(self) -> str:
        import submitit

        env = submitit.JobEnvironment()
        if env.num_tasks > 1:
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)

        resume = self.out if (Path(self.out) / CHECKPOINT).is_file() else None
        opts = dict(self.options)
        if resume is not None:
            opts.pop("overwrite", None)
        res = pretrain(self.recipe, out=None if resume else self.out, resume=resume, progress=False, **opts)
        return str(res.run_dir)

    def checkpoint(self, *args: Any, **kwargs: Any):
        """Called by submitit on preemption / time-out: requeue this same job (it resumes from the run folder)."""
        import submitit

        return submitit.helpers.DelayedSubmission(PretrainJob(self.recipe, self.out, self.options))


def submit_pretrain(spec: str, recipe: str | None, options: dict[str, Any], *, folder: str | Path | None = None,
                    wait: bool = False):
    """Submit ``pretrain(recipe, **options)`` as described by ``spec``; returns the submitit job. The run folder is
    ``options["out"]`` (else a new ``runs/RECIPE-stamp``); submitit's scripts and logs go to ``RUN/slurm``.
    ``recipe`` None: the default recipe, or with ``options["resume"]`` the run's own."""
    try:
        import submitit
    except ImportError:
        raise UserError("--slurm needs submitit: pip install 'lejepa-domains[slurm]'") from None

    cfg = parse_slurm_spec(spec)
    if options.get("resume"):  # bad recipes stop here, before anything is submitted
        resumed = RunDir(options["resume"]).check_resumable()
        rec = resumed_recipe(resumed, resumed.read_config(), recipe)
    else:
        rec = load_recipe(DEFAULT_RECIPE if recipe is None else recipe)
    options = {k: v for k, v in options.items() if v is not None}
    if options.get("devices"):
        raise UserError("--slurm starts one process per GPU itself (gpus_per_node=…): leave --devices out")
    out = Path(options.pop("out", None) or default_run_path(rec.name)).expanduser().resolve()
    if options.get("resume"):
        out = Path(options.pop("resume")).expanduser().resolve()
    folder = Path(folder or out / "slurm")
    kind = cfg.pop("executor", "slurm")
    if kind == "local":
        ex = submitit.LocalExecutor(folder=folder, max_num_timeout=cfg.get("max_requeues", 3))
    elif kind == "debug":
        ex = submitit.DebugExecutor(folder=folder)
    else:
        ex = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=cfg.get("max_requeues", 3))
    gpus = cfg.get("gpus_per_node", 0)
    params: dict[str, Any] = {"timeout_min": cfg.get("timeout_min", 60), "tasks_per_node": cfg.get(
        "tasks_per_node", max(1, gpus)), "signal_delay_s": cfg.get("signal_delay_s", 120)}
    if kind == "slurm":
        params.update(nodes=cfg.get("nodes", 1), gpus_per_node=gpus, name=cfg.get("name", f"lejepa-{rec.name}"),
                      cpus_per_task=cfg.get("cpus_per_task", 8))
        for k in ("partition", "account", "qos", "constraint"):
            if k in cfg:
                params[f"slurm_{k}"] = cfg[k]
        if "mem_gb" in cfg:
            params["mem_gb"] = cfg["mem_gb"]
    elif kind == "local":
        if cfg.get("nodes", 1) != 1:
            raise UserError("--slurm executor=local runs on this machine: nodes must be 1")
        if gpus:
            params["gpus_per_node"] = gpus
    if kind != "debug":
        ex.update_parameters(**params)
    job = ex.submit(PretrainJob(str(rec.path or rec.name), str(out), options))
    print(f"submitted {kind} job {job.job_id}: {cfg.get('nodes', 1)} node(s) × {params['tasks_per_node']} "
          f"task(s); run folder {out}; logs in {folder}", file=sys.stderr, flush=True)
    if wait:
        job.result()
    return job


def _in_job() -> bool:  # pragma: no cover - informative
    return "SLURM_JOB_ID" in os.environ or "SUBMITIT_LOCAL_JOB_ID" in os.environ
