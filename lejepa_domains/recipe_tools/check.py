"""``recipes check``: load a few images of every split of a recipe through :func:`lejepa_domains.data.load_split`,
check them and the views against the recipe, measure the normalisation statistics and draw the views PNG."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import timm
import torch

from ..data import has_split, load_split
from ..data.cards import card_for
from ..data.coverage import coverage_warnings, missing_from_counts
from ..data.views import MultiCropDataset
from ..errors import DataError, UserError
from ..evaluate.leakage import audit
from ..method.model import create_backbone
from ..recipe import load_recipe
from ..utils import atomic_path, ensure_writable
from .infer import channel_stats

__all__ = ["check_recipe", "CheckReport", "backbone_check", "STATS_TOLERANCE"]

#: largest difference between the recipe's and the measured mean/std that passes silently: 0.05 on the [0, 1] scale
#: of 8-bit data (about 13 grey levels: far below what changes training), 0.05 of the recipe's std otherwise
STATS_TOLERANCE = 0.05


@dataclass
class CheckReport:
    """The outcome of ``recipes check``: named checks (name, ok, detail), warnings, measured normalisation, the
    views PNG and the data card found."""

    recipe: str
    checks: list[tuple[str, bool, str]]
    warnings: list[str]
    mean: list[float] | None
    std: list[float] | None
    n_stats: int
    png: Path | None
    card: Path | None
    leakage: dict | None = None  # ``--leakage``: the hash audit of val/test against train (see evaluate.leakage)

    @property
    def ok(self) -> bool:
        return all(ok for _, ok, _ in self.checks)


def check_recipe(recipe_ref, *, data: str | Path | None = None, out: str | Path = ".", samples: int = 6,
                 stats_samples: int = 256, seed: int = 0, leakage: bool = False) -> CheckReport:
    """Load a few samples of every split, validate the recipe against them, measure per-channel statistics on
    training samples and save ``NAME-views.png`` (samples with their global and local views) into ``out``.

    ``leakage``: also load every image of every split and audit val and test against the train split (the
    pretraining pool) for exact and perceptual-hash duplicates (:func:`lejepa_domains.evaluate.leakage.audit`,
    without features: no backbone is trained yet); counts in ``CheckReport.leakage``, a warning when any is found."""
    r = load_recipe(recipe_ref)
    ensure_writable(Path(out).expanduser(), "recipes check --out")  # before any sample is loaded
    checks: list[tuple[str, bool, str]] = []
    warnings: list[str] = []
    sets = {}
    missing: dict[str, list] = {}
    for role, split in r.splits.items():
        try:
            s = load_split(r, role, data, sample=stats_samples if role == "train" else samples)
        except DataError as e:
            checks.append((f"{role} split {split!r} loads", False, str(e)))
            continue
        sets[role] = s
        checks += _split_checks(r, role, split, s, missing)
    warnings += coverage_warnings(r, missing)
    checks.append(backbone_check(r))
    if "train" in sets:
        checks += _view_checks(r, sets["train"], seed)
        mean, std = _stats_warnings(r, sets["train"], warnings)
    else:
        mean = std = None
    png = None
    if "train" in sets and all(ok for _, ok, _ in checks):
        out = Path(out).expanduser()
        out.mkdir(parents=True, exist_ok=True)
        png = _views_png(r, sets["train"], out / f"{r.name}-views.png", samples, seed)
    leak = None
    if leakage and all(ok for _, ok, _ in checks):
        leak = _leakage(r, data)
        for role, e in leak["splits"].items():
            if e["any"]:
                warnings.append(f"leakage: {e['any']} of {e['n']} {role} images are copies of training images "
                                f"({e['exact']} exact, {e['exact_low_information']} of them near-constant; {e['phash']} "
                                "perceptual-hash near copies); `lejepa-domains eval --drop-leaked hash` evaluates "
                                "without them")
    card = None
    try:
        c = card_for(r)
        card = c.path
        warnings += [f"card {c.path.name}: {e}" for e in c.errors]
    except UserError as e:
        warnings.append(str(e))
    return CheckReport(r.name, checks, warnings, mean, std, 0 if mean is None else len(sets["train"]), png, card,
                       leak)


def _split_checks(r, role: str, split, s, missing: dict[str, list]) -> list[tuple[str, bool, str]]:
    """The checks of one loaded split's samples: size, channels, value type, finite values, labels (classes the
    split lacks go to ``missing``)."""
    checks: list[tuple[str, bool, str]] = []
    info = s.meta
    lc = info.get("label_counts")
    checks.append((f"{role} split {split!r} loads", True, f"{info.get('rows', len(s)):,} images"
                   + (f" from {info['where']}" if info.get("where") else "")))
    shape = tuple(s.images.shape[1:])
    want = (r.image_size, r.image_size, r.channels)
    checks.append((f"{role}: image size and channels", shape == want,
                   f"{shape[0]}x{shape[1]}, {shape[2]} channel(s)" + ("" if shape == want else
                                                                      f"; the recipe says {want}")))
    dt_ok = s.images.dtype == np.dtype(r.dtype)
    checks.append((f"{role}: value type", dt_ok, f"{s.images.dtype}" + ("" if dt_ok else
                                                                     f"; the recipe says {r.dtype}")))
    if s.images.dtype.kind == "f":
        fin = bool(np.isfinite(np.asarray(s.images)).all())
        checks.append((f"{role}: finite values", fin, "" if fin else "NaN or inf in the sampled images"))
    if lc is not None:
        present = [i for i, c in enumerate(lc) if c]
        ok = len(lc) <= r.num_classes
        checks.append((f"{role}: labels in [0, {r.num_classes})", ok,
                       f"{len(present)} classes present" + ("" if ok else f", labels up to {len(lc) - 1}")))
        if ok and len(present) < r.num_classes:  # a class absent from test: its metrics cannot see it
            missing[role] = missing_from_counts(r, lc)
    elif role != "train":
        checks.append((f"{role}: labels", False, "no labels; evaluation needs labelled val/test splits"))
    return checks


def _view_checks(r, tr, seed: int) -> list[tuple[str, bool, str]]:
    """Build the multi-crop views of one training sample: their shapes and finiteness."""
    try:
        ds = MultiCropDataset(tr, r, seed=seed)
        g, loc, _ = ds[0]
        gw = (r.n_global, r.channels, r.global_size, r.global_size)
        lw = (r.n_local, r.channels, r.local_size, r.local_size)
        ok = tuple(g.shape) == gw and (r.n_local == 0 or tuple(loc.shape) == lw)
        finite = bool(torch.isfinite(g).all() and torch.isfinite(loc).all())
        return [("views: shapes", ok, f"global {tuple(g.shape)}, local {tuple(loc.shape)}"),
                ("views: finite values", finite, "" if finite else "NaN/inf after the augmentations")]
    except Exception as e:  # noqa: BLE001 - an augmentation failing is a recipe error to report
        return [("views: build and run", False, f"{type(e).__name__}: {e}")]


def _stats_warnings(r, tr, warnings: list[str]) -> tuple[list[float], list[float]]:
    """Per-channel mean/std of the scaled training samples; warnings when the view sizes or the recipe's
    normalisation look off."""
    if r.global_size > r.image_size:
        warnings.append(f"global_size {r.global_size} > image_size {r.image_size}: views are upsampled")
    if r.local_size >= r.global_size:
        warnings.append(f"local_size {r.local_size} >= global_size {r.global_size}")
    sc = r.pixel_scaling
    mean, std = channel_stats(tr.images, sc)  # of the *scaled* values (what the recipe's mean/std normalise)
    if sc.is_uint8_default:
        far = max(max(abs(a - b) for a, b in zip(mean, r.mean)), max(abs(a - b) for a, b in zip(std, r.std)))
    elif len(mean) == len(r.mean):  # differences measured in units of the recipe's std
        far = max(max(abs(a - b) / sd for a, b, sd in zip(mean, r.mean, r.std)),
                  max(abs(a - b) / sd for a, b, sd in zip(std, r.std, r.std)))
    else:
        far = 0.0  # the channel count check above already failed
    if far > STATS_TOLERANCE:
        unit = "" if sc.is_uint8_default else " recipe std"
        warnings.append(f"the recipe's mean={tuple(r.mean)}, std={tuple(r.std)} differ from those measured on "
                        f"{len(tr)} training images by up to {far:.3g}{unit} (tolerance {STATS_TOLERANCE}"
                        f"{unit}); paste into the recipe (and its card): "
                        f"mean={tuple(mean)!r}, std={tuple(std)!r}")
    return mean, std


def _leakage(r, data) -> dict:
    """The hash audit (exact + perceptual) of every evaluation split against the whole train split."""

    pool = load_split(r, "train", data).images
    roles = [role for role in ("val", "test") if role != "val" or has_split(r, "val")]
    res = audit(pool, {role: load_split(r, role, data).images for role in roles})
    res.pop("_arrays", None)
    return res


def backbone_check(r) -> tuple[str, bool, str]:
    """The recipe's backbone is a timm model and builds with its channels (and backbone_kwargs), and a global view
    goes through it: built on the meta device (no memory, no compute), on the CPU where meta fails."""

    name = f"backbone {r.backbone!r}"
    if not timm.is_model(r.backbone):
        close = difflib.get_close_matches(str(r.backbone), timm.list_models(), n=3, cutoff=0.7)
        return (name, False, "not a timm model" + (f" (did you mean {', '.join(close)}?)" if close else "")
                + "; see timm.list_models()")
    kw = dict(r.backbone_kwargs)
    err = None
    for dev in ("meta", "cpu"):
        try:
            with torch.device(dev):
                net = create_backbone(r.backbone, in_chans=r.channels, **kw)
                net.eval()
                with torch.no_grad():  # both view sizes go through the backbone in training
                    for side in sorted({r.global_size, r.local_size} if r.n_local else {r.global_size}):
                        out = net(torch.zeros(2 if dev == "meta" else 1, r.channels, side, side))
            feats = int(out.shape[-1])
            return (name, True, f"builds with {r.channels} input channel(s), takes {r.global_size}/{r.local_size} px "
                    f"views; {feats}-d features" + (" (checked on the CPU)" if dev == "cpu" else ""))
        except Exception as e:  # noqa: BLE001 - any failure to build or run is the recipe's to fix
            err = e
            if dev == "meta" and isinstance(e, (NotImplementedError, RuntimeError)):
                continue  # an op without a meta kernel: try for real, on the CPU
            break
    return (name, False, f"does not build or run with channels={r.channels}, views {r.global_size}/{r.local_size} px"
            + (f", backbone_kwargs={kw}" if kw else "") + f": {type(err).__name__}: {str(err).splitlines()[0][:200]}")


def _views_png(r, sample, path: Path, rows: int, seed: int) -> Path:
    """The views grid: per row a training image and its global and local views, one row per class first."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    ds = MultiCropDataset(sample, r, seed=seed)
    n = min(rows, len(sample))
    n_loc = min(r.n_local, 4)
    cols = 1 + r.n_global + n_loc
    mean = np.asarray(r.mean, dtype=np.float32)
    std = np.asarray(r.std, dtype=np.float32)

    eight_bit = r.pixel_scaling.is_uint8_default
    if r.channels == 3 or r.channels == 1:
        bands = None
    elif r.rgb_bands is not None:
        bands = [int(b) for b in r.rgb_bands]
    else:
        bands = [0]  # first channel as grey

    def display(img):
        """(H, W, C) values in the recipe's [0, 1] scale (8-bit) or standardised units → what imshow takes."""
        if not eight_bit:
            img = img / 4.0 + 0.5  # z-scores −2..2 → 0..1
        return img if bands is None else img[:, :, bands]

    def show(ax, img):
        img = np.clip(display(img), 0, 1)
        if img.shape[-1] == 1:
            ax.imshow(img[:, :, 0], cmap="gray", vmin=0, vmax=1)
        else:
            ax.imshow(img)
        ax.set_xticks([])
        ax.set_yticks([])

    # one row per class first (so the grid shows the variety of the data), then further samples
    picks: list[int] = []
    if sample.labels is not None:
        for c in dict.fromkeys(int(v) for v in sample.labels):
            picks.append(int(np.flatnonzero(sample.labels == c)[0]))
    picks = (picks + [i for i in range(len(sample)) if i not in picks])[:n]
    fig, axes = plt.subplots(n, cols, figsize=(1.6 * cols, 1.6 * n), squeeze=False)
    for i, idx in enumerate(picks):
        g, loc, y = ds[idx]
        if eight_bit:
            show(axes[i, 0], np.asarray(sample.images[idx], dtype=np.float32) / 255.0)
        else:  # the stored image, scaled and standardised like the views, so both share one display scale
            show(axes[i, 0], (r.pixel_scaling.numpy(sample.images[idx]) - mean) / std)
        label = sample.class_names[y] if sample.class_names is not None and 0 <= y < len(sample.class_names) else y
        axes[i, 0].set_ylabel(str(label)[:18], fontsize=7)
        back = (std, mean) if eight_bit else (1.0, 0.0)  # 8-bit: undo the normalisation; else show z-scores
        for j in range(r.n_global):
            show(axes[i, 1 + j], g[j].numpy().transpose(1, 2, 0) * back[0] + back[1])
        for j in range(n_loc):
            show(axes[i, 1 + r.n_global + j], loc[j].numpy().transpose(1, 2, 0) * back[0] + back[1])
    titles = ["image"] + [f"global {j + 1}" for j in range(r.n_global)] + [f"local {j + 1}" for j in range(n_loc)]
    for j, t in enumerate(titles):
        axes[0, j].set_title(t, fontsize=8)
    shown = "" if bands is None else (f"; bands {bands} as RGB" if len(bands) == 3 else
                                      f"; channel {bands[0]} of {r.channels} as grey")
    fig.suptitle(f"{r.name}: {r.global_size}px global / {r.local_size}px local views{shown}", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path
