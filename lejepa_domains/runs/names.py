"""The names of everything inside a run folder (and a study's markers, an evaluation's outputs, locks).

Only :mod:`lejepa_domains.runs` spells these; everyone else asks :class:`~lejepa_domains.runs.RunDir`
(``run.checkpoint_path``, ``run.eval_report_path``, ``run.skip_dir``, ``run.tracker_dir("tensorboard")`` …) or
imports the constant from here. ``tests/test_layout.py`` fails when a module outside ``runs/`` spells one.
"""

from __future__ import annotations

__all__ = ["CONFIG", "METRICS", "CHECKPOINT", "BEST", "BACKBONE_META", "BACKBONE_WEIGHTS", "RUN_FILES",
           "EXPORT_CONFIG", "EXPORT_WEIGHTS", "EXPORT_CARD", "SNAPSHOTS", "SNAPSHOT_META", "SNAPSHOT_PATTERN",
           "PARTIAL_SUFFIX", "EVAL_DIR", "EVAL_REPORT", "EVAL_REPORT_MD", "SKIP_DIR", "TRACKER_DIRS", "STUDY_MARKER",
           "LOCK", "snapshot_name"]

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
BEST = "checkpoint_best.pt"
BACKBONE_META = "backbone.json"
BACKBONE_WEIGHTS = "backbone.safetensors"
RUN_FILES = (CONFIG, CHECKPOINT, BEST, METRICS, BACKBONE_META, BACKBONE_WEIGHTS)
# a folder written by `lejepa-domains export` holds timm's own files (loaded with timm.create_model("local-dir:DIR",
# pretrained=True)) and a Hugging Face model card; its config.json is timm's, not a run's
EXPORT_CONFIG = "config.json"
EXPORT_WEIGHTS = "model.safetensors"
EXPORT_CARD = "README.md"
SNAPSHOTS = "snapshots"  # per-epoch backbone exports (``--keep-snapshots``), one sub-folder each
SNAPSHOT_META = "snapshot.json"
SNAPSHOT_PATTERN = "epoch-[0-9][0-9][0-9][0-9]"
PARTIAL_SUFFIX = ".partial"  # a snapshot folder being written (renamed when whole)
EVAL_DIR = "eval"  # `lejepa-domains eval`'s default output folder inside the run (a study's per-seed evaluations)
EVAL_REPORT = "report.json"  # the evaluation report inside an evaluation's output folder ...
EVAL_REPORT_MD = "report.md"  # ... and its human-readable table
SKIP_DIR = "stream-skipped"  # a streamed run's readers record the samples they skip here (one file per epoch, reader)
TRACKER_DIRS = {"tensorboard": "tensorboard", "mlflow": "mlruns"}  # trackers' local stores inside the run folder
STUDY_MARKER = "ablation_run.json"  # a study's done-marker of a finished run (its spec and figures)
LOCK = ".lock"  # the lock file of a folder one process writes into (:class:`~lejepa_domains.runs.lock.FolderLock`)


def snapshot_name(epoch: int) -> str:
    """The sub-folder of :data:`SNAPSHOTS` holding epoch ``epoch``'s backbone."""
    return f"epoch-{int(epoch):04d}"
