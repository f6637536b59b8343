"""LeJEPA training: the step (``step.py``), the epoch loop (``loop.py``) and its hooks (``hooks.py``), setting a run
up (``run.py``: ``pretrain``; ``setup.py``, ``builders.py``, ``state.py``), and launching it on more devices or a cluster
(``launch.py``, ``distributed.py``, ``slurm.py``). Progress is reported through ``progress.Reporter``."""

from .hooks import Hook, RunResult
from .run import pretrain
from .progress import Reporter
from .sampler import EpochSampler
from .schedule import lr_factor, param_groups, plan_total_steps
from .step import StepMetrics, step_inputs, train_step

__all__ = ["pretrain", "train_step", "step_inputs", "RunResult", "StepMetrics", "Hook", "Reporter", "EpochSampler",
           "lr_factor", "param_groups", "plan_total_steps"]
