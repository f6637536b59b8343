"""``export_run``: a run folder → a folder timm loads as it is, with a Hugging Face model card; optionally uploaded.

Order of work: check the run, the target and (with ``push``) the hub and token — every refusal is one line before
anything is written or sent → write ``config.json`` + ``model.safetensors`` (timm) and ``README.md`` (the card) into
a hidden staging folder beside the target, check that timm loads the weights back and that huggingface_hub parses
the card → move the folder into place (readers see no half-written export) → upload it in one commit.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import UserError
from ..runs import EXPORT_CARD, RunDir, eval_report_path, read_backbone_meta, read_json
from ..utils import ensure_writable
from .card import build_card, data_card_of
from .hub import PushResult, check_push, push_folder
from .licence import LicenceReading, read_licence
from .timm_folder import commit_folder, staging_folder, write_timm_folder

__all__ = ["export_run", "ExportResult", "find_eval_report"]


@dataclass
class ExportResult:
    """``folder``: the exported folder (None when only pushed); ``card``: its README.md text; ``licence``: how the
    data's licence was read; ``eval_included``: the card carries an evaluation table; ``push``: the upload."""

    folder: Path | None
    card: str
    config: dict[str, Any]
    licence: LicenceReading
    eval_included: bool
    eval_note: str | None
    push: PushResult | None = None


def find_eval_report(run: RunDir, meta: dict, eval_report: str | Path | None) -> tuple[dict | None, str | None]:
    """(report, None) when an evaluation report of exactly these weights exists (``eval_report``, else
    ``RUN/eval/report.json``); otherwise (None, why not)."""
    path = Path(eval_report) if eval_report is not None else run.eval_report_path
    if path.is_dir():
        path = eval_report_path(path)
    report = read_json(path)
    if report is None:
        if eval_report is not None:
            raise UserError(f"--eval-report {eval_report}: no readable report.json there (expected the output of "
                            "`lejepa-domains eval`)")
        return None, (f"No evaluation report was found ({path}); run `lejepa-domains eval --checkpoint {run.path}` "
                      "and export again to add the evaluation table.")
    ck = report.get("checkpoint") or {}
    if "lejepa" not in (report.get("models") or {}):
        return None, f"The evaluation report {path} has no entry for this backbone (baselines only): left out."
    want, got = meta.get("weights_sha256_16"), ck.get("weights_sha256_16")
    if want and got and want != got:
        return None, (f"The evaluation report {path} is of other weights (sha256[:16] {got}, these are {want}: the run "
                      "trained on after it was evaluated); left out — evaluate the run again and export again.")
    return report, None


def export_run(run_dir: str | Path, to: str | Path | None = None, *, push: str | None = None, private: bool = True,
               eval_report: str | Path | None = None, overwrite: bool = False,
               log: Callable[[str], None] | None = None, api: Any = None, token: str | None = None) -> ExportResult:
    """Export the backbone of ``run_dir`` (the Python API of ``lejepa-domains export``).

    ``to``: the folder to write (must not exist or be empty, unless ``overwrite``); ``push``: ``ORG/NAME`` to upload
    to (private unless ``private=False``); without ``to`` the folder is written to a temporary place, uploaded and
    removed. ``eval_report``: the report.json (or its folder) to put in the card; default ``RUN/eval/report.json``
    when it is of these weights. ``api``: a stand-in for :class:`huggingface_hub.HfApi` (tests). ``token``: the Hub
    token for ``push`` (default: where ``huggingface_hub`` looks, ``HF_TOKEN`` or ``hf auth login``'s file); it is
    only handed to the hub client, never written to the folder, the card, a log line or an error message."""
    log = log or (lambda msg: None)
    run = RunDir(Path(run_dir).expanduser())
    if not run.path.is_dir():
        raise UserError(f"export {run.path}: no such run folder")
    meta = read_backbone_meta(run.path, flag="export")
    if to is None and push is None:
        raise UserError("export needs --to DIR (a folder to write) and/or --push ORG/NAME (a Hugging Face repository)")
    out = Path(to).expanduser() if to is not None else None
    if out is not None:
        if out.exists() and not out.is_dir():
            raise UserError(f"--to {out}: exists and is not a folder")
        if out.resolve() == run.path.resolve():
            raise UserError(f"--to {out}: that is the run folder itself; choose another folder (e.g. {out}/export)")
        if out.is_dir() and any(out.iterdir()) and not overwrite:
            raise UserError(f"--to {out}: the folder exists and is not empty; choose another or pass --overwrite")
        ensure_writable(out.parent, "export --to")  # the staging folder is made beside the target
    token = check_push(push, token) if push is not None else None
    if run.lock().holder() is not None:
        log(f"[yellow]export:[/] run {run.path} is still training; exporting its latest backbone (epoch "
            f"{meta.get('epoch')}, step {meta.get('step')})")

    config = run.read_config()
    metrics = run.read_metrics()
    data_card = data_card_of(config, meta)
    rec_licence = ((config or {}).get("recipe") or {}).get("licence")
    licence = read_licence(data_card.front.get("licence") if data_card is not None else rec_licence)
    report, note = find_eval_report(run, meta, eval_report)

    target = out if out is not None else Path(tempfile.mkdtemp(prefix="lejepa-export-")) / "model"
    tmp = staging_folder(target)
    try:
        timm_cfg = write_timm_folder(run, tmp, licence=licence.hf_id, config=config)
        card = build_card(repo_name=push or target.name, meta=meta, config=config, metrics=metrics,
                          data_card=data_card, report=report, report_note=note, licence=licence, timm_cfg=timm_cfg)
        card.save(str(tmp / EXPORT_CARD))
        _check_card(tmp / EXPORT_CARD)
        commit_folder(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if out is None:
            shutil.rmtree(target.parent, ignore_errors=True)
        raise
    result = ExportResult(out, str(card), timm_cfg, licence, report is not None, note)
    if out is not None:
        log(f"[bold]export:[/] {out}: config.json + model.safetensors (timm `local-dir:{out}`) and README.md "
            f"(licence {licence.hf_id}{'' if licence.clear else ', unclear'}; evaluation "
            f"{'included' if report is not None else 'not included'})")
    if push is not None:
        try:
            result.push = push_folder(target, push, private=private, token=token, api=api, kept=out is not None)
        finally:
            if out is None:
                shutil.rmtree(target.parent, ignore_errors=True)
        log(f"[bold]export:[/] uploaded to {push} ({'private' if private else 'public'}): {result.push.url}")
    return result


def _check_card(path: Path) -> None:
    """huggingface_hub must parse the card's metadata (licence, model-index) as the hub would."""
    from huggingface_hub import ModelCard

    card = ModelCard.load(path)
    data = card.data.to_dict()
    if not data.get("license"):
        raise UserError(f"internal: the model card {path} lost its licence on parsing")
