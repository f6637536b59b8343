"""Recipes: one Python file per dataset describing data, views, backbone and training defaults.

A recipe file defines a module-level ``recipe = Recipe(...)``. Built-in recipes live in ``recipes/`` (installed as
``lejepa_domains.recipes``); a user recipe is any ``.py`` file the user names on the command line. Recipe files are
code: they are only ever loaded from the built-in folder or from a path the user gives explicitly. A run folder's
recipe file (resuming or evaluating a run without naming its recipe) runs only when the user named that exact file
before (:mod:`lejepa_domains.recipe_trust`, :func:`recipe_of_run`).
"""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import importlib.util
import shlex
import sys
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from . import recipe_trust
from .errors import UserError

__all__ = ["Recipe", "TrainConfig", "load_recipe", "list_recipes", "recipe_dirs", "RecipeInfo", "recipe_of_run",
           "DEFAULT_RECIPE"]

#: the recipe ``pretrain`` uses when none is named (and no run is resumed)
DEFAULT_RECIPE = "specimens"


@dataclass
class TrainConfig:
    """Training hyper-parameters. A recipe sets defaults, CLI flags / API keyword arguments override them."""

    epochs: int = 100
    batch_size: int = 256
    lr: float = 5e-4
    weight_decay: float = 5e-2
    lam: float = 0.05  # λ: weight of SIGReg; (1 − λ) weighs the invariance term
    schedule: str = "constant"  # "constant" (linear warmup, then flat) or "cosine" (linear warmup + cosine decay)
    warmup_epochs: float = 1.0
    num_slices: int = 1024
    t_max: float = 3.0
    n_points: int = 17
    probe_lr: float = 1e-3
    num_workers: int = 0  # DataLoader worker processes producing views; 0 = in the main process
    grad_clip: float = 0.0  # 0 disables clipping
    max_bad_steps: int = 20  # stop after this many consecutive non-finite steps (each one is skipped)
    checkpoint_every: int = 0  # also checkpoint every N optimisation steps inside epochs; 0 = at epoch ends only
    precision: str = "auto"  # "auto" (bf16 autocast on CUDA, fp32 on CPU), "bf16", "fp32"
    channels_last: bool = True
    compile: bool = False
    views: str = "cpu"  # "cpu": albumentations in DataLoader workers; "device": batched torch ops on the training device
    seed: int = 0
    time_budget: float = 0.0  # seconds the command may take in all (--time-budget 10m); 0 = train the epochs asked
    log_every: int = 10  # steps between progress-bar refreshes of the loss figures
    rankme_samples: int = 2048  # embeddings kept per epoch to compute the effective rank
    # ---- continued pretraining from foundation weights (`pretrain --init`); 1.0 = one learning rate for all
    backbone_lr_scale: float = 1.0  # the backbone's learning rate = lr × this (the projector keeps lr)
    layer_decay: float = 1.0  # layer-wise decay of the backbone's rate: block i of L gets × layer_decay^(L − i)
    adapt: str = "full"  # with --init/--init-from: full | lora[:RANK] | partial:N | explora[:N,RANK] (train/adapt.py)
    keep_snapshots: int = 0  # keep the backbone of this many epochs (spread evenly, last included) in snapshots/
    stream: bool | None = None  # sharded sources: None = decode once if it fits, else stream; True/False force it
    shuffle_buffer: int = 1000  # streaming: samples in each reader's seeded shuffle buffer (0/1: read order)
    # ---- ablation switches (`lejepa-domains ablate`); the defaults are LeJEPA itself
    regularizer: str = "sigreg"  # sigreg | vicreg | spectral_entropy (NOT SIGReg) | none (collapses)
    resample_slices: bool = True  # False: one fixed set of SIGReg directions drawn once from the seed
    target: str = "online"  # centre of the global views: online (LeJEPA) | stopgrad | ema (EMA teacher)
    ema_momentum: float = 0.996  # target = m · target + (1 − m) · online, after every step (target="ema")
    method: str = "multicrop"  # multicrop (LeJEPA) | masking (I-JEPA-style blocks on ViT patch tokens)
    mask_targets: int = 4  # masking: target blocks per image
    mask_target_scale: tuple[float, float] = (0.15, 0.2)  # masking: area of each target block (fraction of patches)
    mask_context_scale: tuple[float, float] = (0.85, 1.0)  # masking: area of the context block before removing targets
    predictor_depth: int = 2  # masking: transformer blocks of the predictor
    predictor_dim: int = 0  # masking: predictor width; 0 = half the backbone width

    def validate(self) -> "TrainConfig":
        checks: list[tuple[bool, str]] = [
            (self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 2, f"--batch-size must be >= 2 (SIGReg needs a batch), got {self.batch_size}"),
            (self.lr > 0, f"--lr must be > 0, got {self.lr}"),
            (self.weight_decay >= 0, f"--weight-decay must be >= 0, got {self.weight_decay}"),
            (0.0 <= self.lam <= 1.0, f"--lambda must be in [0, 1], got {self.lam}"),
            (self.schedule in ("cosine", "constant"), f"--schedule must be 'cosine' or 'constant', got {self.schedule!r}"),
            (self.warmup_epochs >= 0, f"warmup_epochs must be >= 0, got {self.warmup_epochs}"),
            (self.num_slices >= 1, f"--num-slices must be >= 1, got {self.num_slices}"),
            (self.num_workers >= 0, f"--num-workers must be >= 0, got {self.num_workers}"),
            (self.shuffle_buffer >= 0, f"--shuffle-buffer must be >= 0, got {self.shuffle_buffer}"),
            (self.checkpoint_every >= 0, f"--checkpoint-every must be >= 0, got {self.checkpoint_every}"),
            (self.time_budget >= 0, f"--time-budget must be a positive duration, got {self.time_budget}"),
            (self.keep_snapshots >= 0, f"--keep-snapshots must be >= 0, got {self.keep_snapshots}"),
            (self.precision in ("auto", "bf16", "fp32"), f"--precision must be auto, bf16 or fp32, got {self.precision!r}"),
            (self.views in ("cpu", "device"), f"--views must be 'cpu' or 'device', got {self.views!r}"),
            (self.regularizer in ("sigreg", "vicreg", "spectral_entropy", "none"),
             f"regularizer must be sigreg, vicreg, spectral_entropy or none, got {self.regularizer!r}"),
            (self.target in ("online", "stopgrad", "ema"),
             f"target must be online, stopgrad or ema, got {self.target!r}"),
            (0.0 <= self.ema_momentum < 1.0, f"ema_momentum must be in [0, 1), got {self.ema_momentum}"),
            (self.method in ("multicrop", "masking"), f"method must be multicrop or masking, got {self.method!r}"),
            (self.mask_targets >= 1, f"mask_targets must be >= 1, got {self.mask_targets}"),
            (all(0 < s <= 1 for s in (*self.mask_target_scale, *self.mask_context_scale))
             and self.mask_target_scale[0] <= self.mask_target_scale[1]
             and self.mask_context_scale[0] <= self.mask_context_scale[1],
             f"mask scales must satisfy 0 < low <= high <= 1, got {self.mask_target_scale}, {self.mask_context_scale}"),
            (self.backbone_lr_scale > 0, f"--backbone-lr-scale must be > 0, got {self.backbone_lr_scale}"),
            (0 < self.layer_decay <= 1, f"--layer-decay must be in (0, 1], got {self.layer_decay}"),
            (self.predictor_depth >= 1 and self.predictor_dim >= 0,
             f"predictor_depth must be >= 1 and predictor_dim >= 0, got {self.predictor_depth}, {self.predictor_dim}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise UserError(msg)
        return self


@dataclass
class Recipe:
    """Everything that makes a dataset trainable and evaluable.

    Attributes:
        name: registry name (``lejepa-domains pretrain NAME``).
        source: a :class:`lejepa_domains.data.sources.Source`; ``source.load(split, data=PATH|None)`` returns an
            :class:`~lejepa_domains.data.sources.ImageSet` of (N, H, W, C) images at ``image_size`` whose dtype is
            the recipe's ``dtype`` (uint8, uint16 or float32). The source takes ``image_size``, ``channels``,
            ``dtype``, ``num_classes`` and ``class_names`` from the recipe
            (:meth:`~lejepa_domains.data.sources.Source.bind`): they are stated once, here.
        splits: role → source split name, roles ``train`` (pretraining), ``val`` (probe selection) and ``test``.
        image_size: side of the stored (square) images and of the evaluation input.
        channels: image channels, any count >= 1 (the backbone is built with ``in_chans=channels``).
        dtype: value type of the stored images: ``"uint8"`` (default), ``"uint16"`` or ``"float32"``.
        scaling, pixel_max, softening: how stored values become floats before normalisation (see
            :mod:`lejepa_domains.data.pixels`): ``"linear"`` (x / pixel_max; pixel_max defaults to 255, 65535 or 1
            by dtype), ``"asinh"`` (asinh(x / softening), astronomy fluxes) or ``"none"`` (physical units as stored).
        band_names: optional names of the channels (e.g. Sentinel-2 bands), usable in ``--adapter bands:B04,B03,B02``.
        rgb_bands: optional 3 channel indices forming a natural-colour composite (view grids, DINOv2 adapter).
        mean, std: per-channel normalisation of the scaled values ([0, 1] scale for 8-bit images).
        global_size, local_size: view sides in pixels; n_global, n_local: views per image.
        global_augment, local_augment: callables returning a list of albumentations transforms applied *after* the
            random resized crop (crop, normalisation and tensor conversion are added by the framework).
        global_scale, local_scale: area ranges of the random resized crops.
        backbone: timm model name; backbone_kwargs: extra ``timm.create_model`` arguments.
        proj_hidden, proj_dim: projector MLP widths (hidden layers with BatchNorm + GELU, then a linear layer).
        train: training defaults (see :class:`TrainConfig`).
    """

    name: str
    source: Any
    num_classes: int
    image_size: int
    channels: int = 3
    class_names: Sequence[str] | None = None
    description: str = ""
    splits: dict[str, str] = field(default_factory=lambda: {"train": "train", "val": "val", "test": "test"})
    mean: Sequence[float] = (0.5, 0.5, 0.5)
    std: Sequence[float] = (0.25, 0.25, 0.25)
    dtype: str = "uint8"  # value type of the stored images: uint8 | uint16 | float32
    scaling: str = "linear"  # linear (x / pixel_max) | asinh (asinh(x / softening)) | none
    pixel_max: float | None = None  # linear scaling divisor; None = 255 (uint8), 65535 (uint16), 1 (float32)
    softening: float = 1.0  # asinh scaling: the value where the stretch turns from linear to logarithmic
    band_names: Sequence[str] | None = None
    rgb_bands: Sequence[int] | None = None
    global_size: int = 224
    local_size: int = 98
    n_global: int = 2
    n_local: int = 8
    global_scale: tuple[float, float] = (0.3, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.3)
    global_augment: Callable[[], list] | None = None
    local_augment: Callable[[], list] | None = None
    backbone: str = "resnet18"
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    proj_hidden: Sequence[int] = (2048, 2048)
    proj_dim: int = 64
    proj_norm: str = "bn"  # "bn", "ln" or "none" (see models.Projector)
    train: TrainConfig = field(default_factory=TrainConfig)
    licence: str = "unknown"
    citation: str = ""
    homepage: str = ""
    size: str = ""  # human-readable dataset size, shown by `lejepa-domains recipes`
    card: str | None = None  # data card name; defaults to ``name``
    path: str | None = None  # file the recipe was loaded from (set by load_recipe)

    def __post_init__(self) -> None:
        self.validate()
        if hasattr(self.source, "bind"):  # the source takes image size, channels, value type and classes from here
            self.source = self.source.bind(self)

    def validate(self) -> None:
        where = f"recipe {self.name!r}"
        if not self.name or not isinstance(self.name, str):
            raise UserError(f"{where}: 'name' must be a non-empty string")
        for key in ("train", "test"):
            if key not in self.splits:
                raise UserError(f"{where}: splits must name a {key!r} split, got {dict(self.splits)}")
        if self.channels < 1:
            raise UserError(f"{where}: channels must be >= 1, got {self.channels}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise UserError(f"{where}: mean/std need {self.channels} values (one per channel), "
                            f"got {len(self.mean)} and {len(self.std)}")
        if any(s <= 0 for s in self.std):
            raise UserError(f"{where}: std values must be > 0, got {tuple(self.std)}")
        from .data.pixels import validate_scaling  # lazy: `import lejepa_domains` and --help stay light

        validate_scaling(where, self.dtype, self.scaling, self.pixel_max, self.softening)
        if self.band_names is not None and len(self.band_names) != self.channels:
            raise UserError(f"{where}: {len(self.band_names)} band_names for channels={self.channels}")
        if self.rgb_bands is not None and (len(self.rgb_bands) != 3 or any(
                not 0 <= int(b) < self.channels for b in self.rgb_bands)):
            raise UserError(f"{where}: rgb_bands must be 3 channel indices in [0, {self.channels - 1}], got "
                            f"{tuple(self.rgb_bands)}")
        if self.num_classes < 1:
            raise UserError(f"{where}: num_classes must be >= 1, got {self.num_classes}")
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise UserError(f"{where}: {len(self.class_names)} class_names for num_classes={self.num_classes}")
        if self.n_global < 1 or self.n_local < 0:
            raise UserError(f"{where}: need n_global >= 1 and n_local >= 0, got {self.n_global}, {self.n_local}")
        for label, size in (("image_size", self.image_size), ("global_size", self.global_size),
                            ("local_size", self.local_size)):
            if size < 4:
                raise UserError(f"{where}: {label} must be >= 4 pixels, got {size}")
        for label, (lo, hi) in (("global_scale", self.global_scale), ("local_scale", self.local_scale)):
            if not 0 < lo <= hi <= 1:
                raise UserError(f"{where}: {label} must satisfy 0 < low <= high <= 1, got {(lo, hi)}")
        if self.proj_dim < 1:
            raise UserError(f"{where}: proj_dim must be >= 1, got {self.proj_dim}")

    @property
    def pixel_scaling(self):
        """The :class:`~lejepa_domains.data.pixels.PixelScaling` of this recipe (dtype + scaling)."""
        from .data.pixels import PixelScaling  # lazy: `import lejepa_domains` and --help stay light

        return PixelScaling.of(self)

    @property
    def is_rgb_like(self) -> bool:
        """8-bit RGB or grey images with the 8-bit scaling: colour jitter and grey conversion make sense."""
        return self.channels in (1, 3) and self.pixel_scaling.is_uint8_default

    @property
    def card_name(self) -> str:
        return self.card or self.name

    def with_train(self, **overrides: Any) -> "Recipe":
        """A copy with training defaults overridden (``None`` values are ignored)."""
        known = {f.name for f in fields(TrainConfig)}
        bad = sorted(set(overrides) - known)
        if bad:
            raise UserError(f"unknown training option(s) {bad}; expected some of {sorted(known)}")
        clean = {k: v for k, v in overrides.items() if v is not None}
        return replace(self, train=replace(self.train, **clean).validate())

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable description (written to config.json)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "train":
                out[f.name] = asdict(value)
            elif f.name == "source":
                out[f.name] = value.describe() if hasattr(value, "describe") else repr(value)
            elif callable(value):
                out[f.name] = [repr(t) for t in value()]
            elif isinstance(value, tuple):
                out[f.name] = list(value)
            else:
                out[f.name] = value
        return out


# ----------------------------------------------------------------------------------------------------------- loading

def recipe_dirs() -> list[Path]:
    """Folders holding the built-in recipes: the installed ``lejepa_domains/recipes`` or the source tree's ``recipes/``."""
    root = Path(__file__).resolve().parent
    return [p for p in (root / "recipes", root.parent / "recipes") if p.is_dir()]


def _builtin_files() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for d in reversed(recipe_dirs()):
        for f in sorted(d.glob("*.py")):
            if not f.name.startswith("_"):
                out[f.stem] = f
    return out


class _HashedSource(importlib.machinery.SourceFileLoader):
    """Imports a recipe file from the bytes that were read (and hashed) once: no second read of the file, no cached
    bytecode read or written beside it."""

    def __init__(self, fullname: str, path: str, source: bytes):
        super().__init__(fullname, path)
        self._source = source

    def get_data(self, path: str) -> bytes:
        if path == self.path:
            return self._source
        raise OSError(f"{path}: not read (recipe files are imported from their source only)")

    def set_data(self, path: str, data: bytes, *, _mode: int = 0o666) -> None:
        return None


def _import_file(path: Path, module_name: str, source: bytes | None = None):
    """Run the recipe file ``path`` as module ``module_name``; ``source``: the bytes to run (the ones whose hash was
    recorded or checked), instead of the file's."""
    loader = None if source is None else _HashedSource(module_name, str(path), source)
    spec = importlib.util.spec_from_file_location(module_name, path, loader=loader)
    if spec is None or spec.loader is None:
        raise UserError(f"cannot import recipe file {path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        sys.modules.pop(module_name, None)
        raise UserError(f"recipe file {path}: syntax error at line {e.lineno}: {e.msg}") from None
    except UserError:
        sys.modules.pop(module_name, None)
        raise
    except Exception as e:  # recipe code failed while being imported
        sys.modules.pop(module_name, None)
        raise UserError(f"recipe file {path}: failed to import ({type(e).__name__}: {e})") from None
    return module


def _recipe_of(module, path: Path) -> Recipe:
    recipe = getattr(module, "recipe", None)
    if not isinstance(recipe, Recipe):
        raise UserError(f"recipe file {path} must define `recipe = Recipe(...)` at module level")
    recipe.path = str(path)
    return recipe


def _load_file(path: Path, *, named: bool) -> Recipe:
    """Run the recipe file at ``path`` (resolved). ``named``: the user named it, so it is recorded as theirs."""
    try:
        source = path.read_bytes()
    except OSError as e:
        raise UserError(f"recipe file {path}: cannot be read ({e.strerror or e})") from None
    recipe = _recipe_of(_import_file(path, f"lejepa_user_recipe_{path.stem}", source), path)
    if named:
        recipe_trust.remember(path, recipe_trust.digest(source))
    return recipe


def _load_builtin(name: str) -> Recipe:
    files = _builtin_files()
    if name not in files:
        raise UserError(f"unknown recipe {name!r}; built-in recipes: {', '.join(sorted(files)) or 'none'} "
                        "(or pass a path to a recipe .py file)")
    return _recipe_of(_import_file(files[name], f"lejepa_domains.recipes.{name}"), files[name])


def _looks_like_path(text: str) -> bool:
    return text.endswith(".py") or "/" in text or "\\" in text


def load_recipe(name_or_path: str | Path | Recipe) -> Recipe:
    """Load a built-in recipe by name, or a recipe file by path (``./my_recipe.py``). A path is one the user names:
    it is recorded in the user's list of named recipe files (:mod:`lejepa_domains.recipe_trust`), so a run trained
    from it can later be resumed or evaluated without naming it again (:func:`recipe_of_run`)."""
    if isinstance(name_or_path, Recipe):
        return name_or_path
    text = str(name_or_path)
    if _looks_like_path(text):
        path = Path(text).expanduser()
        if not path.is_file():
            raise UserError(f"recipe file {path} does not exist (expected a .py file defining `recipe = Recipe(...)`)")
        return _load_file(path.resolve(), named=True)
    return _load_builtin(text)


def _is_builtin_path(path: str, name: str | None) -> bool:
    """Whether a run's saved recipe path is a built-in recipe: a file of this install's recipe folders, or (a run
    trained on another install) a ``recipes/NAME.py`` that is not on this machine while NAME is a built-in here."""
    p = Path(path).expanduser()
    try:
        parent = p.resolve().parent
    except (OSError, RuntimeError):
        return False
    if parent in [d.resolve() for d in recipe_dirs()]:
        return True
    return (not p.exists() and bool(name) and p.name == f"{name}.py" and p.parent.name == "recipes"
            and name in _builtin_files())


def recipe_of_run(saved: Any, named: str | Path | Recipe | None = None, *, where: str, how_to_name: str,
                  name: str | None = None) -> Recipe:
    """The recipe to resume or evaluate a run with, from its config.json ``recipe`` block ``saved``.

    ``named``: the recipe the user names now (a name, a path or a Recipe object); it is used, and its name must be
    the run's. Otherwise a built-in recipe (the saved path is in the package's recipe folder, or only a name is
    saved; ``name``: the name to use when ``saved`` has none) is loaded by name, and a user's recipe file runs only
    when that exact file — resolved path and SHA-256 of its bytes — is one the user named before (the record of
    :mod:`lejepa_domains.recipe_trust`): the run folder, possibly someone else's, chooses the path, not the user.
    Else one line that says how to name it. ``where``: the start of every error (``--resume RUN``);
    ``how_to_name``: the command that names the file, ``{path}`` standing for it
    (``lejepa-domains pretrain {path} --resume RUN``)."""
    saved = saved if isinstance(saved, dict) else {}
    run_name = saved.get("name") if isinstance(saved.get("name"), str) and saved.get("name") else name
    path = saved.get("path") if isinstance(saved.get("path"), str) and saved.get("path") else None
    if named is not None:
        rec = load_recipe(named)
        if run_name and rec.name != run_name:
            raise UserError(f"{where}: the run was trained on recipe {run_name!r}, not {rec.name!r}")
        return rec
    if path is not None and not _is_builtin_path(path, run_name):
        file = Path(path).expanduser()
        try:
            resolved = file.resolve()
            source = resolved.read_bytes() if resolved.is_file() else None
        except (OSError, RuntimeError):
            source = None
        if source is not None and recipe_trust.is_named(resolved, recipe_trust.digest(source)):
            rec = _recipe_of(_import_file(resolved, f"lejepa_user_recipe_{resolved.stem}", source), resolved)
            if run_name and rec.name != run_name:
                raise UserError(f"{where}: the run was trained on recipe {run_name!r}, but its recipe file {path} "
                                f"now defines {rec.name!r}")
            return rec
        why = ("it is not on this machine" if source is None else
               "it is not one you have named on this machine, or it changed since")
        raise UserError(f"{where}: the run was trained from recipe file {path}; recipe files are Python code and run "
                        f"only when you name them ({why}): name it to use it: "
                        f"{how_to_name.replace('{path}', shlex.quote(path))}")
    if not run_name:
        raise UserError(f"{where}: cannot tell which recipe the run was trained on (no recipe name in its "
                        "config.json); pass RECIPE explicitly")
    if _looks_like_path(run_name) or run_name not in _builtin_files():
        raise UserError(f"{where}: the run was trained on recipe {run_name!r}, which is not a built-in recipe here "
                        f"(built-in: {', '.join(sorted(_builtin_files())) or 'none'}): name its recipe file: "
                        f"{how_to_name.replace('{path}', 'RECIPE.py')}")
    return _load_builtin(run_name)


@dataclass
class RecipeInfo:
    name: str
    path: str
    fields: dict[str, Any]


def _literal_kwargs(call: ast.Call) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kw in call.keywords:
        if kw.arg is None:
            continue
        try:
            out[kw.arg] = ast.literal_eval(kw.value)
        except (ValueError, TypeError, SyntaxError, RecursionError):
            out[kw.arg] = ast.unparse(kw.value)
    return out


def list_recipes() -> list[RecipeInfo]:
    """Metadata of the built-in recipes, read from the files' source text without importing them (like timm's
    registry: listing is instant and never runs recipe code)."""
    infos = []
    for name, path in sorted(_builtin_files().items()):
        fields_: dict[str, Any] = {}
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except SyntaxError:
            fields_ = {"error": "syntax error"}
            tree = None
        if tree is not None:
            doc = ast.get_docstring(tree)
            if doc:
                fields_["summary"] = doc.strip().splitlines()[0]
            for node in tree.body:
                if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "recipe" for t in node.targets)
                        and isinstance(node.value, ast.Call)):
                    fields_.update(_literal_kwargs(node.value))
        infos.append(RecipeInfo(name=name, path=str(path), fields=fields_))
    return infos
