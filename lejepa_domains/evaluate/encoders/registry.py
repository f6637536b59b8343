"""The encoder registry: one name → one factory that builds an :class:`~lejepa_domains.evaluate.features.Encoder`.

A factory is registered once, by the module that implements the backbone::

    @register_encoder("dinov3", takes_weights=True, check=..., describe=...)
    def build(ctx: EncoderContext) -> Encoder:
        ...

and :func:`~lejepa_domains.evaluate.run.evaluate` needs nothing else to offer it as ``--baseline dinov3``. A factory
builds from one :class:`EncoderContext` (recipe, run folder, options, train images) and knows its own up-front
checks: :attr:`EncoderFactory.check` runs on the options alone, before the run, the recipe or any data is looked at
(a missing DINOv2 weights file fails there); :attr:`EncoderFactory.check_recipe` runs once the recipe is known, before
any data is loaded (a bad ``--adapter`` fails there).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from ...errors import UserError
from ..features import Encoder

__all__ = ["EncoderOptions", "EncoderContext", "EncoderFactory", "ENCODERS", "register_encoder", "list_encoders",
           "canonical_name", "resolve_baselines", "weights_by_encoder", "check_options", "check_recipe",
           "describe_options"]

POOLS = ("cls", "cls+mean")


def _silent(msg: str) -> None:
    return None


@dataclass(frozen=True)
class EncoderOptions:
    """The user's encoder options, fixed for a whole evaluation.

    Attributes:
        weights: encoder name → weights file (``--weights``; see :func:`weights_by_encoder`).
        dinov2_size: DINOv2 input side (a multiple of its 14-pixel patch; checked when a DINOv2 is requested).
        dinov2_pool: ``cls`` or ``cls+mean`` (checked here, whether or not a DINOv2 is requested).
        adapter: ``--adapter`` spec for RGB models fed other data (:mod:`lejepa_domains.evaluate.adapter`).
        pixels_size: largest side of the raw-pixel baseline.
        seed: seeds the random init, the PCA adapter's pixel sample.
    """

    weights: Mapping[str, str] = field(default_factory=dict)
    dinov2_size: int = 224
    dinov2_pool: str = "cls"
    adapter: str | None = None
    pixels_size: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dinov2_pool not in POOLS:
            raise UserError(f"--dinov2-pool must be 'cls' or 'cls+mean', got {self.dinov2_pool!r}")


@dataclass(frozen=True)
class EncoderContext:
    """Everything a factory builds from. ``run_dir``: the evaluated run folder (None: baselines only);
    ``train_images``: the train split as stored, (N, H, W, C) (None while only the recipe is known)."""

    recipe: Any
    options: EncoderOptions
    run_dir: Path | None = None
    train_images: np.ndarray | None = None
    log: Callable[[str], None] = _silent
    run_ref: str | None = None  # how the run was named when it is a model reference (hf-hub:ORG/NAME, local-dir:DIR)


@dataclass(frozen=True)
class EncoderFactory:
    """One registry entry. ``baseline``: selectable with ``--baseline`` (the run's own encoder is not);
    ``takes_weights``: ``--weights`` applies to it; ``uses_adapter``: ``--adapter`` applies to it; ``describe``: its
    sections of ``report["protocol"]`` (written whether or not it is requested; shared sections are written once)."""

    name: str
    build: Callable[[EncoderContext], Encoder]
    check: Callable[[EncoderOptions], None] | None = None
    check_recipe: Callable[[EncoderContext], None] | None = None
    describe: Callable[[EncoderOptions], dict[str, Any]] | None = None
    baseline: bool = True
    takes_weights: bool = False
    uses_adapter: bool = False
    aliases: tuple[str, ...] = ()


ENCODERS: dict[str, EncoderFactory] = {}
_ALIASES: dict[str, str] = {}


def register_encoder(name: str, **spec: Any) -> Callable[[Callable[[EncoderContext], Encoder]],
                                                        Callable[[EncoderContext], Encoder]]:
    """Decorator registering ``build`` under ``name`` (and ``aliases``); ``spec``: the other
    :class:`EncoderFactory` fields. Registration order is the order of ``--baseline`` choices in messages."""

    def deco(build: Callable[[EncoderContext], Encoder]) -> Callable[[EncoderContext], Encoder]:
        factory = EncoderFactory(name=name, build=build, **spec)
        taken = [n for n in (name, *factory.aliases) if n in ENCODERS or n in _ALIASES]
        if taken:
            raise ValueError(f"encoder name(s) {taken} already registered")
        ENCODERS[name] = factory
        _ALIASES.update({a: name for a in factory.aliases})
        return build

    return deco


def list_encoders(baselines_only: bool = False) -> list[str]:
    """Registered encoder names, in registration order (``baselines_only``: those ``--baseline`` accepts)."""
    return [n for n, f in ENCODERS.items() if f.baseline or not baselines_only]


def canonical_name(name: str) -> str:
    """``name`` with an alias resolved (``dinov2-s`` → ``dinov2``); unknown names come back unchanged."""
    return _ALIASES.get(name, name)


def resolve_baselines(baselines: Iterable[str] | None) -> list[str]:
    """``--baseline`` values → registered baseline names (lower-cased, aliases resolved, duplicates dropped)."""
    choices = list_encoders(baselines_only=True)
    out: list[str] = []
    for b in baselines or ():
        name = canonical_name(str(b).strip().lower())
        if name not in choices:
            raise UserError(f"unknown baseline {b!r}; expected some of {', '.join(choices)}")
        if name not in out:
            out.append(name)
    return out


def weights_by_encoder(weights: Any, names: list[str]) -> dict[str, str]:
    """``--weights`` values → {requested encoder: file}. ``FILE`` applies to the one requested encoder that takes
    weights; ``NAME=FILE`` names it (needed when several are requested); a mapping is taken as {NAME: FILE}."""
    if weights is None:
        return {}
    takers = [n for n in names if ENCODERS[n].takes_weights]
    known = {n for n, f in ENCODERS.items() if f.takes_weights} | {a for a, n in _ALIASES.items()
                                                                     if ENCODERS[n].takes_weights}
    if isinstance(weights, Mapping):
        items = [(str(k), str(v)) for k, v in weights.items()]
    else:
        items = []
        for v in [weights] if isinstance(weights, (str, Path)) else list(weights):
            head, sep, tail = str(v).partition("=")
            key = head.strip().lower()
            items.append((key, tail) if sep and key in known else ("", str(v)))
    out: dict[str, str] = {}
    for k, v in items:
        k = canonical_name(k)
        if not k:
            if len(takers) != 1:
                why = "no DINOv2 baseline was requested" if not takers else "several DINOv2 baselines were requested"
                raise UserError(f"--weights {v}: {why}; add --baseline dinov2 (or name the baseline: "
                                "--weights dinov2-b=FILE)")
            k = takers[0]
        if k not in takers:
            raise UserError(f"--weights {k}={v}: baseline {k!r} was not requested (add --baseline {k})")
        out[k] = v
    return out


def check_options(names: list[str], options: EncoderOptions) -> None:
    """The requested encoders' checks of the options alone (before the run, the recipe or any data)."""
    for name in names:
        if ENCODERS[name].check is not None:
            ENCODERS[name].check(options)


def check_recipe(names: list[str], ctx: EncoderContext) -> None:
    """Once the recipe is known, before any data is loaded: ``--adapter`` needs an encoder it applies to, and each
    requested encoder checks itself against the recipe."""
    if ctx.options.adapter is not None and not any(ENCODERS[n].uses_adapter for n in names):
        raise UserError(f"--adapter {ctx.options.adapter!r} only applies to a DINOv2 baseline (add --baseline "
                        f"dinov2), got baselines {names}")
    for name in names:
        if ENCODERS[name].check_recipe is not None:
            ENCODERS[name].check_recipe(ctx)


def describe_options(options: EncoderOptions) -> dict[str, Any]:
    """Every registered encoder's sections of ``report["protocol"]`` (e.g. ``dinov2``, ``pixels``)."""
    out: dict[str, Any] = {}
    for factory in ENCODERS.values():
        if factory.describe is not None:
            for key, value in factory.describe(options).items():
                out.setdefault(key, value)
    return out
