"""The terminal and picture side of ``embed``, ``search`` and ``outliers``: the progress bar (images/s, ETA), the
rich tables, and the PNG grids (matplotlib)."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from ..utils import atomic_path

__all__ = ["log_fn", "EmbedProgress", "print_embed_summary", "print_search", "print_outliers", "image_grid",
           "print_index_built"]


def log_fn(console: Console | None, quiet: bool) -> Callable[[str], None]:
    console = console or Console(stderr=True)

    def log(msg: str) -> None:
        if not quiet:
            console.print(msg, highlight=False, soft_wrap=True)

    return log


class _Rate(TextColumn):
    def __init__(self):
        super().__init__("")

    def render(self, task):
        speed = task.finished_speed or task.speed
        text = "– img/s" if not speed else f"{speed:,.0f} img/s" if speed >= 10 else f"{speed:.1f} img/s"
        return Text(text, style="cyan")


class EmbedProgress:
    """Images encoded so far, images/s and ETA: a rich bar in a terminal, a plain line every 30 s otherwise."""

    def __init__(self, enabled: bool, total: int, label: str = "", log_seconds: float = 30.0):
        self.enabled, self.total, self.label, self.log_seconds = enabled, total, label, log_seconds
        self.done, self.t0 = 0, time.perf_counter()
        self.t_log = self.t0
        self.console = Console(stderr=True)
        self.live = enabled and self.console.is_terminal
        self.progress = Progress(TextColumn("[bold]embed[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                                 _Rate(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                 console=self.console, transient=False) if self.live else None
        self.task = None

    def __enter__(self) -> "EmbedProgress":
        if self.progress is not None:
            self.progress.start()
            self.task = self.progress.add_task(escape(self.label), total=self.total)
        return self

    def advance(self, n: int) -> None:
        self.done += n
        if self.progress is not None:
            self.progress.advance(self.task, n)
        elif self.enabled and time.perf_counter() - self.t_log >= self.log_seconds:
            self.t_log = time.perf_counter()
            rate = self.done / max(self.t_log - self.t0, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else math.inf
            print(f"embed: {self.done:,}/{self.total:,} images, {rate:,.1f} img/s, ETA {eta:,.0f}s", file=sys.stderr,
                  flush=True)

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()


def print_embed_summary(result: dict, sidecar: dict, console: Console | None = None) -> None:
    console = console or Console(stderr=True)
    t = Table(title=f"embeddings → {escape(result['out'])}", show_header=False)
    t.add_column(style="bold")
    t.add_column()
    c = sidecar["counts"]
    t.add_row("backbone", f"{escape(sidecar['backbone']['spec'])} (sha256 {sidecar['backbone']['sha256'][:12]}…)")
    t.add_row("vectors", f"{c['embedded']:,} × {sidecar['dim']} {sidecar['dtype']}")
    t.add_row("splits", ", ".join(f"{r} {c[r]:,}" for r in sidecar["recipe"]["splits"]))
    t.add_row("skipped", f"{c['skipped']:,}" + (" (named in embeddings.json)" if c["skipped"] else ""))
    t.add_row("parts", f"{sidecar['chunks']} × ≤ {sidecar['chunk_size']:,} rows")
    rate = result.get("images_per_s")
    t.add_row("time", f"{result['seconds']:.1f}s" + (f", {rate:,.1f} img/s encoding" if rate else ""))
    console.print(t)


def print_index_built(kind: str, n: int, k: int, recall: float, seconds: float, console: Console | None = None
                      ) -> None:
    console = console or Console(stderr=True)
    console.print(f"[bold]search:[/] built a faiss {kind} index over {n:,} vectors in {seconds:.1f}s; "
                  f"recall@{k} against exact search: {recall:.3f} (100 sampled queries)", highlight=False)


def print_search(queries: Sequence[str], ids: np.ndarray, scores: np.ndarray, labels: np.ndarray | None,
                 class_names: Sequence[str] | None, method: str, console: Console | None = None) -> None:
    console = console or Console()
    for q, row_ids, row_s, row_y in zip(queries, ids, scores, labels if labels is not None else [None] * len(ids)):
        t = Table(title=f"nearest to {escape(q)} ({method}, cosine)")
        t.add_column("#", justify="right")
        t.add_column("id")
        t.add_column("score", justify="right")
        if row_y is not None:
            t.add_column("label")
        for i, (n, s) in enumerate(zip(row_ids, row_s), 1):
            cells = [str(i), escape(str(n)), f"{s:.4f}"]
            if row_y is not None:
                y = int(row_y[i - 1])
                cells.append("" if y < 0 else (class_names[y] if class_names and y < len(class_names) else str(y)))
            t.add_row(*cells)
        console.print(t)


def print_outliers(ids: Sequence[str], scores: np.ndarray, k: int, out: Path, console: Console | None = None,
                   top: int = 16) -> None:
    console = console or Console()
    t = Table(title=f"strangest images (mean cosine distance to the {k} nearest others) — all {len(scores):,} "
                    f"ranked in {escape(str(out))}")
    t.add_column("rank", justify="right")
    t.add_column("id")
    t.add_column("score", justify="right")
    for i in range(min(top, len(ids))):
        t.add_row(str(i + 1), escape(str(ids[i])), f"{scores[i]:.4f}")
    console.print(t)


def _show(ax, img: np.ndarray) -> None:
    img = np.asarray(img)
    if img.dtype != np.uint8:  # 16-bit / float scientific images: a per-image 1–99 % stretch for the eye only
        x = img.astype(np.float32)
        lo, hi = np.percentile(x, [1, 99]) if x.size else (0.0, 1.0)
        img = np.clip((x - lo) / max(hi - lo, 1e-12), 0, 1)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    elif img.ndim == 3 and img.shape[2] not in (3, 4):
        img = img[..., :3] if img.shape[2] > 3 else img.mean(2)
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def image_grid(rows: Sequence[Sequence[tuple[np.ndarray, str, bool]]], path: Path, title: str = "") -> Path:
    """A PNG of image rows; each cell ``(image, caption, marked)`` (a marked cell gets a red frame: a label that
    differs from the query's). Written atomically."""
    import matplotlib  # lazy: matplotlib costs ~0.5 s of import, and only the PNG needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_rows = max(1, len(rows))
    n_cols = max(1, max((len(r) for r in rows), default=1))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.6 * n_cols, 1.8 * n_rows + (0.4 if title else 0)),
                             squeeze=False)
    for r in range(n_rows):
        for c in range(n_cols):
            ax = axes[r][c]
            if r < len(rows) and c < len(rows[r]):
                img, caption, marked = rows[r][c]
                _show(ax, img)
                ax.set_title(caption, fontsize=6)
                if marked:
                    for s in ax.spines.values():
                        s.set_edgecolor("red")
                        s.set_linewidth(2.5)
            else:
                ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path

