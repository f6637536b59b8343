"""Foundation models (DINOv2, DINOv3, any timm backbone with local weights): the ONE loader shared by the evaluation
baselines (``eval --baseline dinov2|dinov3…``) and by LeJEPA continued from foundation weights
(``pretrain --init dinov2…``, ``compare``).

=============================  ============================================  =======  ==========================
name (``--baseline``/``--init``) timm architecture . tag                     patch    weights licence
=============================  ============================================  =======  ==========================
``dinov2`` (``dinov2-s``)        ``vit_small_patch14_dinov2.lvd142m``         14       Apache-2.0
``dinov2-b`` / ``dinov2-l``      ``vit_{base,large}_patch14_dinov2.lvd142m``  14       Apache-2.0
``dinov3`` (``dinov3-s``)        ``vit_small_patch16_dinov3.lvd1689m``        16       DINOv3 License (Meta)
``dinov3-b`` / ``dinov3-l``      ``vit_{base,large}_patch16_dinov3.lvd1689m`` 16       DINOv3 License (Meta)
``timm:NAME``                    ``NAME`` (any timm model; needs a file)      model's  the file's
``RUN_FOLDER``                   the run's backbone (``backbone.json``)       run's    the run's
``local-dir:DIR``                an export (``lejepa-domains export``)        model's  the export's
=============================  ============================================  =======  ==========================

A backbone pretrained by this toolkit is a foundation too: a run folder (its exported backbone) or a timm folder
written by ``lejepa-domains export`` can start ``pretrain --init`` and be the ``compare`` foundation on another
recipe. Its weights are read with the architecture and kwargs it was trained with; the adaptations to the new recipe
are timm's own (the model module's ``checkpoint_filter_fn``: position embeddings interpolated, patch embedding
resampled) and the first convolution's input channels adapted as below (generalised to any source channel count:
kernels repeated cyclically and scaled by source / target channels, or summed for one target channel).

Where the weights come from, in this order: a local file (``--weights FILE``: timm ``.safetensors``/``.pth``/``.bin``
or Meta's original checkpoint — timm's own ``checkpoint_filter_fn`` converts Meta's DINOv2 keys (``mask_token``,
``w12``/``w3``) and DINOv3 keys (``storage_tokens``, ``ls1.gamma``, ``rope_embed.periods``…)), else the local
Hugging Face cache (``timm/<arch>.<tag>``), else the hub when it answers. Offline without a file or a cached copy:
one :class:`~lejepa_domains.errors.OfflineError` line saying which file to download and how to pass it.

Every load goes through ``timm.create_model(arch, pretrained=True, pretrained_cfg_overlay=dict(file=PATH), …)``
with timm's strict state-dict load, so a file of another architecture fails (one line naming the first mismatch)
instead of being half-loaded, and the adaptations timm documents are applied by timm itself (a well-kept
implementation rather than our own): position embeddings interpolated to ``img_size`` (bicubic), the patch
embedding resampled when ``patch_size`` differs from the native one (FlexiViT's pseudo-inverse resize,
``timm.layers.resample_patch_embed``), and the first convolution adapted when ``in_chans`` ≠ 3
(``timm.models.adapt_input_conv``: 1 channel = the sum of the RGB kernels, i.e. exactly the RGB model fed a grey
image replicated to R = G = B; C > 3 = the RGB kernels repeated cyclically and scaled by 3 / C).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import OfflineError, UserError
from .runs import EXPORT_CONFIG, EXPORT_WEIGHTS, RunDir, is_timm_export, read_backbone_meta, read_json

__all__ = ["FoundationSpec", "FOUNDATIONS", "resolve_foundation", "foundation_weights_source", "create_foundation",
           "file_sha256", "adaptation_notes", "DINOV3_LICENCE", "WEIGHT_SUFFIXES", "native_patch"]

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
DINOV3_LICENCE = ("DINOv3 License (Meta; https://ai.meta.com/resources/models-and-libraries/dinov3-license/): "
                  "the weights and anything derived from them are under its terms")


@dataclass(frozen=True)
class FoundationSpec:
    """One foundation model. ``arch``: timm architecture; ``tag``: timm pretrained tag (None: only a local file);
    ``patch``: native patch side; ``meta_file``: Meta's original checkpoint name (for messages)."""

    name: str
    family: str  # dinov2 | dinov3 | timm | run (a run folder) | local-dir (an export)
    arch: str
    tag: str | None
    patch: int | None
    licence: str
    meta_file: str | None = None
    # run / local-dir: the architecture's own kwargs, the weights file, its input channels, where it came from
    base_kwargs: dict[str, Any] = field(default_factory=dict)
    local_file: str | None = None
    in_chans: int = 3
    path: str | None = None

    @property
    def is_local(self) -> bool:
        """A backbone of this toolkit (run folder or export): no hub, weights beside it."""
        return self.family in ("run", "local-dir")

    @property
    def hub_repo(self) -> str | None:
        return f"timm/{self.arch}.{self.tag}" if self.tag else None

    @property
    def timm_name(self) -> str:
        return f"{self.arch}.{self.tag}" if self.tag else self.arch

    def describe(self) -> dict[str, Any]:
        out = {"name": self.name, "family": self.family, "timm_name": self.timm_name, "patch": self.patch,
               "licence": self.licence}
        if self.is_local:
            out.update(path=self.path, source_in_chans=self.in_chans)
        return out


def _dinov2(name: str, size: str, meta: str) -> FoundationSpec:
    return FoundationSpec(name, "dinov2", f"vit_{size}_patch14_dinov2", "lvd142m", 14, "Apache-2.0", meta)


def _dinov3(name: str, size: str, meta: str) -> FoundationSpec:
    return FoundationSpec(name, "dinov3", f"vit_{size}_patch16_dinov3", "lvd1689m", 16, DINOV3_LICENCE, meta)


FOUNDATIONS: dict[str, FoundationSpec] = {
    "dinov2": _dinov2("dinov2", "small", "dinov2_vits14_pretrain.pth"),
    "dinov2-b": _dinov2("dinov2-b", "base", "dinov2_vitb14_pretrain.pth"),
    "dinov2-l": _dinov2("dinov2-l", "large", "dinov2_vitl14_pretrain.pth"),
    "dinov3": _dinov3("dinov3", "small", "dinov3_vits16_pretrain_lvd1689m-08c60483.pth"),
    "dinov3-b": _dinov3("dinov3-b", "base", "dinov3_vitb16_pretrain_lvd1689m-73cec8be.pth"),
    "dinov3-l": _dinov3("dinov3-l", "large", "dinov3_vitl16_pretrain_lvd1689m-8aa4cbdd.pth"),
}
ALIASES = {"dinov2-s": "dinov2", "dinov3-s": "dinov3"}


def native_patch(arch: str) -> int | None:
    """Patch side of a timm ViT-like architecture (built on the meta device: no weights, no memory), None for
    models without a patch embedding (CNNs)."""
    import timm
    import torch

    try:
        with torch.device("meta"):
            m = timm.create_model(arch, pretrained=False, num_classes=0)
    except Exception:
        return None
    pe = getattr(m, "patch_embed", None)
    ps = getattr(pe, "patch_size", None)
    if ps is None:
        return None
    return int(ps[0] if isinstance(ps, (tuple, list)) else ps)


def _patch_of(arch: str, kwargs: dict[str, Any]) -> int | None:
    """Patch side of ``arch`` built with ``kwargs`` (meta device), None without a patch embedding."""
    import timm
    import torch

    try:
        with torch.device("meta"):
            m = timm.create_model(arch, pretrained=False, **{**kwargs, "num_classes": 0})
    except Exception:
        return native_patch(arch)
    ps = getattr(getattr(m, "patch_embed", None), "patch_size", None)
    if ps is None:
        return None
    return int(ps[0] if isinstance(ps, (tuple, list)) else ps)


def _local_foundation(text: str, flag: str) -> FoundationSpec | None:
    """A run folder (``backbone.json`` + ``backbone.safetensors``) or a ``local-dir:`` export as a foundation;
    None when ``text`` names neither (then it is a foundation name)."""
    explicit = text.lower().startswith("local-dir:")
    path = Path(text[len("local-dir:"):] if explicit else text).expanduser()
    if not explicit and not path.is_dir():
        return None
    if not explicit and RunDir(path).has_backbone():
        meta = read_backbone_meta(path, flag)
        arch, kwargs = str(meta["timm_name"]), dict(meta.get("timm_kwargs") or {})
        weights = RunDir(path).backbone_path
        if not weights.is_file():
            raise UserError(f"{flag} {text}: the run folder has backbone.json but not its weights {weights.name}")
        fnd = meta.get("foundation") if isinstance(meta.get("foundation"), dict) else {}
        licence = fnd.get("licence") or "the run's (pretrained with lejepa-domains; see its data's licence)"
        family, chans = "run", int(meta.get("channels") or kwargs.get("in_chans", 3))
    elif is_timm_export(path):
        cfg = read_json(path / EXPORT_CONFIG) or {}
        sec = cfg.get("lejepa_domains") if isinstance(cfg.get("lejepa_domains"), dict) else {}
        bb = sec.get("backbone") if isinstance(sec.get("backbone"), dict) else {}
        arch = str(bb.get("timm_name") or cfg["architecture"]).split(".")[0]
        kwargs = dict(bb.get("timm_kwargs") or cfg.get("model_args") or {})
        weights = path / EXPORT_WEIGHTS
        pcfg = cfg.get("pretrained_cfg") or {}
        chans = int(kwargs.get("in_chans") or (pcfg.get("input_size") or [3])[0])
        licence = str(cfg.get("license") or pcfg.get("license") or "as stated by the export's model card")
        family = "local-dir"
    else:
        raise UserError(f"{flag} {text}: neither a run folder (no backbone.json there) nor a timm folder written by "
                        "`lejepa-domains export` (config.json with architecture + model.safetensors)")
    import timm

    if not timm.is_model(arch):
        raise UserError(f"{flag} {text}: its backbone {arch!r} is not a timm model here (another timm version?)")
    base = {k: v for k, v in kwargs.items() if k not in ("num_classes", "in_chans", "pretrained_cfg")}
    name = f"local-dir:{path}" if family == "local-dir" else str(path)
    return FoundationSpec(name, family, arch, None, _patch_of(arch, base), licence, base_kwargs=base,
                          local_file=str(weights), in_chans=chans, path=str(path.resolve()))


def resolve_foundation(spec: str, flag: str = "--init") -> FoundationSpec:
    """``dinov2``, ``dinov3-b``…, ``timm:NAME``, a run folder or ``local-dir:DIR`` → :class:`FoundationSpec`
    (unknown names: one error line)."""
    text = str(spec).strip()
    named = text.lower().startswith("timm:") or ALIASES.get(text.lower(), text.lower()) in FOUNDATIONS
    local = None if named else _local_foundation(text, flag)  # a name wins over a folder called like it
    if local is not None:
        return local
    if text.lower().startswith("timm:"):
        import timm

        arch = text[5:].strip()
        base = arch.split(".")[0]
        if not arch or not timm.is_model(base):
            raise UserError(f"{flag} {spec}: unknown timm model {arch!r} (see timm.list_models())")
        tag = arch.split(".", 1)[1] if "." in arch else None
        return FoundationSpec(f"timm:{arch}", "timm", base, tag, native_patch(base), "as stated by the weights' source")
    key = ALIASES.get(text.lower(), text.lower())
    if key not in FOUNDATIONS:
        raise UserError(f"{flag} {spec}: unknown foundation model; expected one of "
                        f"{', '.join(list(FOUNDATIONS) + list(ALIASES))} or timm:MODEL_NAME (with --weights FILE)")
    return FOUNDATIONS[key]


# ------------------------------------------------------------------------------------------------ where the weights are

def _hub_offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _hub_cached_file(repo_id: str) -> str | None:
    """Path of the weights in the local Hugging Face cache, without touching the network."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for fname in ("model.safetensors", "pytorch_model.bin"):
        try:
            p = try_to_load_from_cache(repo_id, fname)
        except Exception:
            p = None
        if isinstance(p, str) and os.path.isfile(p):
            return p
    return None


def _offline_message(spec: FoundationSpec, role: str, why: str) -> str:
    what = "DINOv2" if spec.family == "dinov2" else "DINOv3" if spec.family == "dinov3" else spec.arch
    meta = f" (or Meta's {spec.meta_file})" if spec.meta_file else ""
    return (f"{role} needs the {what} weights {spec.hub_repo} and they could not be fetched from the Hugging Face "
            f"hub ({why}); download model.safetensors from https://huggingface.co/{spec.hub_repo}{meta} on a "
            f"connected machine and pass it with --weights FILE")


def foundation_weights_source(spec: FoundationSpec, weights: str | Path | None, role: str | None = None
                              ) -> tuple[Path | None, str]:
    """Where the weights will come from: ``(file or None for the hub, description)``.

    Checks everything that can be checked without loading (file exists and has a known type; offline without a file
    or a cached copy → :class:`OfflineError`), so a command fails before spending time on anything else.
    ``role`` names the user's request in messages (``baseline 'dinov2'``, ``--init dinov3``).
    """
    role = role or f"{spec.name!r}"
    if spec.is_local:
        if weights is not None:
            kind = "run folder" if spec.family == "run" else "timm export"
            raise UserError(f"--weights {weights}: {role} is a {kind} whose weights are beside it; leave --weights "
                            "out")
        return Path(spec.local_file), str(spec.local_file)
    if weights is not None:
        wpath = Path(weights).expanduser()
        if not wpath.is_file():
            raise UserError(f"--weights {wpath}: file not found (expected {spec.arch} weights: .safetensors, .pth or "
                            "Meta's original checkpoint)")
        if wpath.suffix.lower() not in WEIGHT_SUFFIXES:
            raise UserError(f"--weights {wpath}: unsupported file type {wpath.suffix!r} "
                            f"(expected one of {', '.join(WEIGHT_SUFFIXES)})")
        return wpath, str(wpath)
    if spec.hub_repo is None:
        raise UserError(f"{role}: timm model {spec.arch!r} has no pretrained tag here; pass its weights with "
                        "--weights FILE (or name a tag: timm:ARCH.TAG)")
    cached = _hub_cached_file(spec.hub_repo)
    if cached is not None:
        return Path(cached), f"hf-cache:{cached}"
    from .data.hub import hub_reachable

    if not hub_reachable():  # one brief probe; unreachable → offline for the process
        why = "HF_HUB_OFFLINE is set" if _hub_offline() else "the hub did not answer"
        raise OfflineError(_offline_message(spec, role, f"{why} and they are not in the local cache"))
    if _hub_offline():
        raise OfflineError(_offline_message(spec, role, "HF_HUB_OFFLINE is set and they are not in the local cache"))
    return None, f"hf-hub:{spec.hub_repo}"


def _download(spec: FoundationSpec, role: str) -> Path:
    """The hub's weights file, downloaded into the Hugging Face cache (errors → one OfflineError line)."""
    from .evaluate.encoders.common import one_line

    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(spec.hub_repo, "model.safetensors"))
    except Exception as e:
        raise OfflineError(_offline_message(spec, role, f"{type(e).__name__}: {one_line(e, 120)}")) from None


def file_sha256(path: str | Path) -> str:
    """Full SHA-256 (hex) of a file's bytes, read in 8 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 23), b""):
            h.update(block)
    return h.hexdigest()


def adaptation_notes(spec: FoundationSpec, in_chans: int, patch: int | None, img_size: int | None) -> list[str]:
    """What timm changes in the foundation weights for these settings, said in words (log, backbone.json)."""
    notes = []
    if spec.in_chans != 3:  # a run of this toolkit trained on other than 3 channels
        if in_chans != spec.in_chans:
            notes.append(f"first convolution adapted from {spec.in_chans} to {in_chans} input channel(s): "
                         + ("its kernels summed" if in_chans == 1 else "kernels repeated cyclically and scaled by "
                            f"{spec.in_chans}/{in_chans}"))
    elif in_chans == 1:
        notes.append("patch embedding adapted to 1 input channel: its RGB kernels summed (= the RGB model fed the "
                     "grey channel replicated to R=G=B)")
    elif in_chans == 2:
        notes.append("patch embedding adapted to 2 input channels: RGB kernels repeated cyclically (R, G) and "
                     "scaled by 3/2 (timm adapt_input_conv)")
    elif in_chans > 3:
        notes.append(f"patch embedding adapted to {in_chans} input channels: RGB kernels repeated cyclically "
                     f"(R, G, B, R, …) and scaled by 3/{in_chans} (timm adapt_input_conv)")
    if patch is not None and spec.patch is not None and patch != spec.patch:
        notes.append(f"patch embedding resampled from {spec.patch}×{spec.patch} to {patch}×{patch} pixels "
                     "(FlexiViT pseudo-inverse resize, timm resample_patch_embed)")
    if img_size is not None and spec.family == "dinov2":
        p = patch or spec.patch
        notes.append(f"position embeddings interpolated (bicubic) to a {img_size // p}×{img_size // p} grid "
                     f"({img_size} px at patch {p}); other view sizes interpolate them on the fly")
    if spec.family == "dinov3":
        notes.append("rotary position embeddings (RoPE): any patch-multiple size, nothing to interpolate")
    if spec.is_local:
        notes.append(f"weights of {spec.path} (architecture {spec.arch}); this recipe's normalisation and pixel "
                     "scaling replace the source run's")
        if img_size is not None:
            notes.append(f"absolute position embeddings, if any, interpolated to {img_size} px (timm "
                         "checkpoint_filter_fn); other view sizes interpolate them on the fly")
    return notes


def create_foundation(spec: FoundationSpec, weights: str | Path | None = None, *, role: str | None = None,
                      **timm_kwargs: Any):
    """The foundation model with its weights loaded through timm (see the module docstring).

    ``timm_kwargs`` go to ``timm.create_model`` (``img_size``, ``in_chans``, ``patch_size``, ``dynamic_img_size``,
    ``global_pool``…; ``num_classes=0`` is always set). Returns ``(model, info)`` with ``info`` = {"source":
    where the weights came from, "file": the file loaded, "file_sha256": its SHA-256}. Never lets a hub error or a
    raw load error through: offline → :class:`OfflineError`; a file of another architecture → :class:`UserError`.
    """
    import timm

    from .evaluate.encoders.common import load_error, one_line

    role = role or f"{spec.name!r}"
    wpath, source = foundation_weights_source(spec, weights, role)
    if spec.is_local:
        return _create_local(spec, role, timm_kwargs), {"source": source, "file": str(wpath),
                                                         "file_sha256": file_sha256(wpath)}
    if wpath is None:
        wpath = _download(spec, role)
    kwargs = {"num_classes": 0, **timm_kwargs}
    name = spec.arch if spec.family != "timm" or spec.tag is None else spec.timm_name
    try:
        model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(wpath)), **kwargs)
    except (UserError, OfflineError):
        raise
    except Exception as e:
        text = load_error(e)
        if not text or text.startswith(type(e).__name__):
            text = f"{type(e).__name__}: {one_line(e, 160)}"
        raise UserError(f"--weights {wpath} does not fit {spec.arch} ({role}): {text}") from None
    return model, {"source": source, "file": str(wpath), "file_sha256": file_sha256(wpath)}


def _adapt_first_conv(w, in_chans: int):
    """A first-layer kernel (O, I, …) for ``in_chans`` inputs: timm's ``adapt_input_conv`` for an RGB source;
    otherwise its rule generalised (one channel: the kernels summed; C: repeated cyclically, × I / C)."""
    import torch
    from timm.models import adapt_input_conv

    src = int(w.shape[1])
    if src == in_chans:
        return w
    if src == 3:
        return adapt_input_conv(in_chans, w)
    if in_chans == 1:
        return w.sum(dim=1, keepdim=True)
    idx = torch.arange(in_chans) % src
    return w[:, idx] * (src / in_chans)


def _create_local(spec: FoundationSpec, role: str, timm_kwargs: dict[str, Any]):
    """A run folder's / export's backbone in the architecture ``timm_kwargs`` ask for (image size, patch, input
    channels): the state dict goes through the timm model module's own ``checkpoint_filter_fn`` (position
    embeddings, patch embedding), the first convolution through :func:`_adapt_first_conv`, then a strict load."""
    import sys

    import timm
    from safetensors.torch import load_file

    from .evaluate.encoders.common import one_line

    kwargs = {**spec.base_kwargs, "num_classes": 0, **timm_kwargs}
    try:
        model = timm.create_model(spec.arch, pretrained=False, **kwargs)
        sd = load_file(spec.local_file)
        filt = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
        if filt is not None:
            try:
                sd = filt(sd, model)
            except TypeError:
                sd = filt(sd)
        own = model.state_dict()
        first = (getattr(model, "pretrained_cfg", None) or {}).get("first_conv") or ()
        for name in ([first] if isinstance(first, str) else list(first)):
            k = f"{name}.weight"
            if k in sd and k in own and sd[k].shape[1] != own[k].shape[1]:
                sd[k] = _adapt_first_conv(sd[k], int(own[k].shape[1])).to(own[k].dtype)
        model.load_state_dict(sd, strict=True)
    except (UserError, OfflineError):
        raise
    except Exception as e:
        raise UserError(f"{role}: the backbone of {spec.path} does not load into {spec.arch} for this recipe "
                        f"({type(e).__name__}: {one_line(e, 160)})") from None
    return model
