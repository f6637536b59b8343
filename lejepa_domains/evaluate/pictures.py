"""Pictures of the evaluation report that a scientist reads at a glance, every backbone side by side:

- ``retrieval.png``: fixed test queries (one per class, the first ``n_queries`` classes, seeded) and their ``k``
  nearest training images by cosine similarity of each backbone's features; a red frame marks a neighbour whose
  label differs from the query's.
- ``embedding_map.png``: the test features in 2-D, coloured by class — PCA (default), t-SNE (scikit-learn) or UMAP
  (``pip install 'lejepa-domains[umap]'``), on the same seeded sample of at most 2,000 test images per backbone.
- ``label_efficiency.png``: the :mod:`.protocols.label_efficiency` curves (top-1 against labelled images per class,
  95 % intervals over draws).

:class:`ReportPictures` takes each backbone's features through the evaluation's ``on_features`` hook (so nothing is
extracted twice, and only the queries' neighbours and the map's sample are kept), then renders the PNGs.
"""

from __future__ import annotations

import io
from typing import Callable

import numpy as np

from ..errors import UserError

__all__ = ["ReportPictures", "MAPS", "pictures_markdown", "embedding_2d"]

MAPS = ("pca", "tsne", "umap")
MAP_SAMPLE = 2000


def embedding_2d(x: np.ndarray, method: str, seed: int = 0) -> np.ndarray:
    """(N, 2) layout of ``x`` by ``method`` (cosine geometry: rows are L2-normalised first)."""
    x = np.asarray(x, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    if method == "pca" or len(x) < 5:
        xc = x - x.mean(0)
        _, _, vt = np.linalg.svd(xc, full_matrices=False)
        z = xc @ vt[:2].T
        return np.pad(z, ((0, 0), (0, 2 - z.shape[1]))) if z.shape[1] < 2 else z
    if method == "tsne":
        from sklearn.manifold import TSNE  # lazy: only this map needs it

        return TSNE(n_components=2, init="pca", random_state=seed, perplexity=min(30.0, (len(x) - 1) / 3)
                    ).fit_transform(x)
    try:
        import umap  # optional extra (and ~seconds of numba compilation): imported only when asked for
    except ImportError:
        raise UserError("--map umap needs umap-learn: pip install 'lejepa-domains[umap]' (or --map tsne / pca)") \
            from None
    return umap.UMAP(n_components=2, random_state=seed, n_neighbors=min(15, len(x) - 1)).fit_transform(x)


def _fig():
    import matplotlib  # lazy: plotting only when the report draws (plots=True)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _fig().close(fig)
    return buf.getvalue()


def _show(ax, img: np.ndarray, marked: bool = False) -> None:
    img = np.asarray(img)
    if img.dtype != np.uint8:  # scientific values: a 1–99 % stretch per image, for the eye only
        x = img.astype(np.float32)
        lo, hi = np.percentile(x, [1, 99])
        img = np.clip((x - lo) / max(hi - lo, 1e-12), 0, 1)
    if img.shape[-1] == 1:
        img = img[..., 0]
    elif img.shape[-1] not in (3, 4):
        img = img[..., :3] if img.shape[-1] > 3 else img.mean(-1)
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_edgecolor("red" if marked else "0.8")
        s.set_linewidth(2.5 if marked else 0.5)


class ReportPictures:
    """Collects what the pictures need from each backbone (``hook``) and renders them (``files``)."""

    def __init__(self, sets: dict, splits, recipe, method: str = "pca", seed: int = 0, n_queries: int = 8,
                 k: int = 8):
        if method not in MAPS:
            raise UserError(f"--map must be one of {', '.join(MAPS)}, got {method!r}")
        self.sets, self.splits, self.recipe, self.method, self.seed, self.k = sets, splits, recipe, method, seed, k
        y = np.asarray(splits.test)
        rng = np.random.default_rng(seed)
        self.queries = np.array([rng.choice(np.flatnonzero(y == c)) for c in np.unique(y)[:n_queries]], dtype=int)
        n = len(y)
        self.sample = np.sort(rng.choice(n, size=min(n, MAP_SAMPLE), replace=False))
        self.neighbours: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.maps: dict[str, np.ndarray] = {}

    def hook(self, name: str, then: Callable | None = None) -> Callable:
        """An ``on_features(encoder, features by role)`` that keeps backbone ``name``'s retrieval and map sample,
        then calls ``then`` (another hook) when given."""

        def on_features(enc, fx: dict) -> None:
            tr, te = np.asarray(fx["train"], np.float32), np.asarray(fx["test"], np.float32)
            tr = tr / np.maximum(np.linalg.norm(tr, axis=1, keepdims=True), 1e-12)
            q = te[self.queries] / np.maximum(np.linalg.norm(te[self.queries], axis=1, keepdims=True), 1e-12)
            sims = q @ tr.T
            rows = np.argsort(-sims, axis=1, kind="stable")[:, :self.k]
            self.neighbours[name] = (rows, np.take_along_axis(sims, rows, 1))
            self.maps[name] = te[self.sample]
            if then is not None:
                then(enc, fx)

        return on_features

    def _names(self, c: int) -> str:
        names = self.recipe.class_names
        return str(names[c]) if names is not None and c < len(names) else str(c)

    def retrieval_png(self) -> bytes | None:
        tr_img, te_img = self.sets["train"].images, self.sets["test"].images
        if hasattr(tr_img, "batches") or hasattr(te_img, "batches") or not self.neighbours:
            return None  # streamed splits hold no indexable images
        plt = _fig()
        names = list(self.neighbours)
        nq, k = len(self.queries), self.k
        fig = plt.figure(figsize=(len(names) * 0.95 * (k + 1), 1.05 * nq + 0.6))
        subs = fig.subfigures(1, len(names), wspace=0.03) if len(names) > 1 else [fig]
        y_tr, y_te = self.splits.train, self.splits.test
        for sub, name in zip(np.atleast_1d(subs), names):
            rows, sims = self.neighbours[name]
            axes = sub.subplots(nq, k + 1, squeeze=False)
            wrong = 0
            for i, qi in enumerate(self.queries):
                _show(axes[i][0], te_img[qi])
                axes[i][0].set_ylabel(self._names(int(y_te[qi])), fontsize=6)
                for j in range(k):
                    r = int(rows[i, j])
                    bad = bool(y_tr[r] != y_te[qi])
                    wrong += bad
                    _show(axes[i][j + 1], tr_img[r], marked=bad)
                    axes[i][j + 1].set_title(f"{sims[i, j]:.2f}", fontsize=5, pad=1)
            axes[0][0].set_title("query", fontsize=6, pad=1)
            sub.suptitle(f"{name}: {wrong} of {nq * k} neighbours of another class (red)", fontsize=8)
        return _png(fig)

    def map_png(self) -> bytes | None:
        if not self.maps:
            return None
        plt = _fig()
        names = list(self.maps)
        y = np.asarray(self.splits.test)[self.sample]
        classes = np.unique(y)
        cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
        fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 4), squeeze=False)
        for ax, name in zip(axes[0], names):
            z = embedding_2d(self.maps[name], self.method, self.seed)
            for i, c in enumerate(classes):
                m = y == c
                ax.scatter(z[m, 0], z[m, 1], s=4, alpha=0.7, color=cmap(i % cmap.N),
                           label=self._names(int(c)) if len(classes) <= 20 else None)
            ax.set_title(f"{name} ({self.method.upper() if self.method != 'tsne' else 't-SNE'})", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        if len(classes) <= 20:
            axes[0][-1].legend(fontsize=6, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5))
        fig.suptitle(f"test features of {len(y)} images, coloured by class", fontsize=9)
        return _png(fig)

    @staticmethod
    def label_efficiency_png(report: dict) -> bytes | None:
        models = {n: e["label_efficiency"] for n, e in report["models"].items() if "label_efficiency" in e}
        if not models:
            return None
        plt = _fig()
        fig, ax = plt.subplots(figsize=(6, 4))
        budgets = sorted({str(p["per_class"]) for m in models.values() for p in m["points"]},
                         key=lambda s: (s == "all", int(s) if s != "all" else 0))
        xs = {b: i for i, b in enumerate(budgets)}
        for name, m in models.items():
            x = [xs[str(p["per_class"])] for p in m["points"]]
            y = [100 * p["top1"] for p in m["points"]]
            lo = [100 * (p["top1"] - p["ci95"][0]) if p["ci95"] else 0 for p in m["points"]]
            hi = [100 * (p["ci95"][1] - p["top1"]) if p["ci95"] else 0 for p in m["points"]]
            ax.errorbar(x, y, yerr=[lo, hi], marker="o", capsize=3, label=name)
        ax.set_xticks(range(len(budgets)))
        ax.set_xticklabels(budgets)
        ax.set_xlabel("labelled training images per class")
        ax.set_ylabel("test top-1 (%)")
        ax.set_title(f"Label efficiency, {report['recipe']['name']} (frozen linear; bars: 95% over draws)",
                     fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        return _png(fig)

    def files(self, report: dict) -> dict[str, bytes]:
        """``{file name: PNG bytes}`` for the report folder."""
        out = {"retrieval.png": self.retrieval_png(), "embedding_map.png": self.map_png(),
               "label_efficiency.png": self.label_efficiency_png(report)}
        report.setdefault("pictures", {"map": self.method, "queries": self.queries.tolist(), "k": self.k,
                                       "map_sample": int(len(self.sample))})
        return {k: v for k, v in out.items() if v is not None}


def pictures_markdown(report: dict) -> list[str]:
    """The report's label-efficiency table (backbones × labels per class) and links to the pictures."""
    models = {n: e["label_efficiency"] for n, e in report["models"].items() if "label_efficiency" in e}
    lines: list[str] = []
    if models:
        budgets = []
        for m in models.values():
            for p in m["points"]:
                if str(p["per_class"]) not in budgets:
                    budgets.append(str(p["per_class"]))
        lines += ["## Label efficiency (frozen linear top-1, labelled images per class)", "",
                  "| backbone | " + " | ".join(budgets) + " |", "|---|" + "---:|" * len(budgets)]
        for name, m in models.items():
            cells = {str(p["per_class"]): p for p in m["points"]}
            row = []
            for b in budgets:
                p = cells.get(b)
                if p is None:
                    row.append("–")
                else:
                    ci = f" [{100 * p['ci95'][0]:.1f}, {100 * p['ci95'][1]:.1f}]" if p["ci95"] else ""
                    row.append(f"{100 * p['top1']:.1f}{ci}")
            lines.append(f"| `{name}` | " + " | ".join(row) + " |")
        lines.append("")
    files = [f for f in ("retrieval.png", "embedding_map.png", "label_efficiency.png") if f in report.get("files", [])]
    if files:
        lines += ["Pictures: " + ", ".join(f"[{f}]({f})" for f in files) + ".", ""]
    return lines


