"""What ``lejepa-domains export`` prints at the end: the files, the licence reading, the evaluation, the upload and
the one line that loads the model."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

__all__ = ["print_export"]


def print_export(result, console: Console | None = None) -> None:
    """A rich table of the exported folder (or the upload) of an :class:`~lejepa_domains.export.ExportResult`."""
    console = console or Console()
    table = Table(title="exported backbone", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", overflow="fold")
    if result.folder is not None:
        for p in sorted(result.folder.iterdir()):
            if p.is_file():
                table.add_row(p.name, f"{p.stat().st_size / 1e6:.2f} MB" if p.stat().st_size > 1e5
                              else f"{p.stat().st_size:,} bytes")
    elif result.push is not None:
        table.add_row("files", ", ".join(result.push.files) + " (uploaded; no local copy kept)")
    pc = result.config["pretrained_cfg"]
    table.add_row("architecture", f"{result.config['architecture']}  input {tuple(pc['input_size'])}, "
                                  f"{len(pc['mean'])} mean/std values")
    lic = result.licence
    table.add_row("licence", f"{lic.hf_id} (follows the data's)" + ("" if lic.clear else f" — unclear: {lic.why}"))
    table.add_row("evaluation", "in the card" if result.eval_included else (result.eval_note or "none"))
    if result.push is not None:
        table.add_row("uploaded", f"{result.push.repo_id} ({'private' if result.push.private else 'public'}) "
                                  f"{result.push.url}")
        ref = f"hf-hub:{result.push.repo_id}"
    else:
        ref = f"local-dir:{result.folder}"
    table.add_row("load", f'timm.create_model("{ref}", pretrained=True)')
    console.print(table)
