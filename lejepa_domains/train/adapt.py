"""How much of a started backbone trains (``pretrain --init … --adapt full|lora[:RANK]|partial:N|explora[:N,RANK]``).

=================  =====================================================================================================
mode               what trains (the LeJEPA projector always trains)
=================  =====================================================================================================
``full``           every backbone weight (at ``lr × backbone_lr_scale``; 0.1 with ``--init``) — the default
``lora[:RANK]``    low-rank adapters (LoRA, rank 8 by default) on every ``Linear`` and ``Conv2d`` (groups 1) of the
                   backbone except a ViT's patch embedding — i.e. the attention and MLP projections (``qkv``,
                   ``proj``, ``fc1``, ``fc2``) of ViT blocks, every convolution of a CNN; the backbone's own weights
                   are frozen
``partial:N``      the last N blocks (ViT blocks, CNN stages: timm's coarse ``group_matcher``) and the final norm;
                   the stem (patch embedding, position embedding, CLS / register tokens) and earlier blocks frozen
``explora[:N,R]``  ExPLoRA (arXiv 2406.10973): the last N blocks unfrozen (default 1) and LoRA of rank R (default 8)
                   on the projections of the other blocks
=================  =====================================================================================================

Frozen means ``requires_grad=False`` and left out of the optimiser (no AdamW state). Adapters come from **peft**
(``inject_adapter_in_model``: the LoRA layers are put inside the timm model itself, so the backbone keeps its
attributes and the variants that read them — masking's ``patch_embed`` — still work): a well-kept implementation of
LoRA for ``Linear`` and ``Conv2d`` rather than our own. peft initialises B = 0, so the adapted backbone computes
exactly the foundation's features at step 0. Adapter parameters learn at the projector's rate (``lr``): they start at
zero and are small; the foundation's own unfrozen weights at ``lr × backbone_lr_scale``
(:func:`lejepa_domains.train.schedule.scaled_param_groups`).

The checkpoint keeps the unmerged state (base weights and adapters as separate tensors), so ``--resume`` is exact;
the exported backbone (:func:`plain_backbone`) has the adapters merged into the weights (W + B·A·α/r) and is a plain
timm model that ``eval``, ``embed`` and ``timm.create_model`` load unchanged.

BatchNorm running statistics of a CNN are buffers, not weights: in every mode they keep following the training data
(as they do in ``full``); the frozen *parameters* stay bit-identical.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from timm.models import group_parameters
from torch import nn

from ..errors import UserError

__all__ = ["AdaptSpec", "parse_adapt", "apply_adapt", "plain_backbone", "has_adapters", "trainable_summary",
           "block_groups", "lora_targets", "ADAPT_MODES", "DEFAULT_RANK", "DEFAULT_EXPLORA_BLOCKS"]

ADAPT_MODES = ("full", "lora", "partial", "explora")
DEFAULT_RANK = 8
DEFAULT_EXPLORA_BLOCKS = 1
_USAGE = "expected full, lora[:RANK], partial:N or explora[:N,RANK] (e.g. lora, lora:16, partial:2, explora:1,8)"


@dataclass(frozen=True)
class AdaptSpec:
    """A parsed ``--adapt`` value: ``mode`` with its LoRA ``rank`` and unfrozen ``blocks`` (0 where unused)."""

    mode: str
    rank: int = 0
    blocks: int = 0

    def __str__(self) -> str:
        if self.mode == "lora":
            return f"lora:{self.rank}"
        if self.mode == "partial":
            return f"partial:{self.blocks}"
        if self.mode == "explora":
            return f"explora:{self.blocks},{self.rank}"
        return self.mode

    @property
    def uses_lora(self) -> bool:
        return self.mode in ("lora", "explora")


def _positive(text: str, what: str, value: str) -> int:
    if not re.fullmatch(r"\d+", text.strip()):
        raise UserError(f"--adapt {value}: {what} must be a positive whole number, got {text.strip()!r}; {_USAGE}")
    n = int(text)
    if n < 1:
        raise UserError(f"--adapt {value}: {what} must be >= 1, got {n}; {_USAGE}")
    return n


def parse_adapt(value: str | AdaptSpec | None) -> AdaptSpec:
    """``full`` | ``lora[:RANK]`` | ``partial:N`` | ``explora[:N,RANK]`` → :class:`AdaptSpec` (None: ``full``);
    anything else is one :class:`~lejepa_domains.errors.UserError` line."""
    if isinstance(value, AdaptSpec):
        return value
    if value is None:
        return AdaptSpec("full")
    text = str(value).strip()
    mode, sep, arg = text.partition(":")
    mode = mode.strip().lower()
    if mode not in ADAPT_MODES:
        raise UserError(f"--adapt {text!r}: unknown mode {mode!r}; {_USAGE}")
    if mode == "full":
        if sep:
            raise UserError(f"--adapt {text}: full takes no argument; {_USAGE}")
        return AdaptSpec("full")
    if mode == "lora":
        return AdaptSpec("lora", rank=_positive(arg, "the LoRA rank", text) if sep else DEFAULT_RANK)
    if mode == "partial":
        if not sep:
            raise UserError(f"--adapt {text}: partial needs the number of trainable blocks (partial:N); {_USAGE}")
        return AdaptSpec("partial", blocks=_positive(arg, "the number of blocks", text))
    if not sep:
        return AdaptSpec("explora", rank=DEFAULT_RANK, blocks=DEFAULT_EXPLORA_BLOCKS)
    parts = arg.split(",")
    if len(parts) != 2:
        raise UserError(f"--adapt {text}: explora takes N,RANK (unfrozen blocks, LoRA rank); {_USAGE}")
    return AdaptSpec("explora", blocks=_positive(parts[0], "the number of blocks", text),
                     rank=_positive(parts[1], "the LoRA rank", text))


# ------------------------------------------------------------------------------------------------ the backbone's parts

def block_groups(backbone: nn.Module, name: str = "the backbone") -> tuple[list[str], list[list[str]]]:
    """``(stem parameter names, [parameter names of each block])`` from timm's coarse ``group_matcher`` (ViT:
    ``blocks.i``; ResNet: ``layer1…4``; ConvNeXt / EfficientNet: their stages). A group holding only 1-D
    parameters after the first block (a final norm) belongs to the block before it."""
    if not hasattr(backbone, "group_matcher"):
        raise UserError(f"--adapt partial/explora: {name} ({type(backbone).__name__}) has no timm group_matcher, so "
                        "its blocks are unknown; use --adapt full or lora")
    groups = list(group_parameters(backbone, backbone.group_matcher(coarse=True)).values())
    params = dict(backbone.named_parameters())
    stem, blocks = list(groups[0]), []
    for g in groups[1:]:
        if blocks and not any(params[n].ndim > 1 for n in g if n in params):
            blocks[-1].extend(g)
        else:
            blocks.append(list(g))
    return stem, blocks


def lora_targets(backbone: nn.Module, exclude: set[str] = frozenset()) -> list[str]:
    """Module names LoRA goes on: every ``nn.Linear`` and ``nn.Conv2d`` with ``groups == 1`` (a depthwise
    convolution has no low-rank structure to add), except a ViT's patch embedding and modules whose weight is in
    ``exclude`` (parameter names of unfrozen blocks)."""
    out = []
    for name, m in backbone.named_modules():
        if name.startswith("patch_embed"):
            continue
        if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1):
            if f"{name}.weight" not in exclude:
                out.append(name)
    return out


def has_adapters(backbone: nn.Module) -> bool:
    """Whether peft adapter layers sit in ``backbone`` (without importing peft when none do)."""
    return any(type(m).__module__.startswith("peft.") for m in backbone.modules())


def _inject_lora(backbone: nn.Module, targets: list[str], rank: int, name: str) -> None:
    if not targets:
        raise UserError(f"--adapt: {name} has no Linear or Conv2d layer to put LoRA adapters on; use --adapt full "
                        "or partial:N")
    try:  # optional dependency (the `adapt` extra); imported only when adapters are asked for
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError:
        raise UserError("--adapt lora/explora needs peft: pip install 'lejepa-domains[adapt]'") from None
    config = LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0, bias="none", target_modules=list(targets))
    inject_adapter_in_model(config, backbone)


def apply_adapt(backbone: nn.Module, spec: AdaptSpec | str | None, name: str = "the backbone") -> dict[str, Any]:
    """Freeze / add adapters to ``backbone`` in place as ``spec`` says; returns the record written to config.json
    (mode, blocks unfrozen, LoRA targets). ``full`` changes nothing."""
    spec = parse_adapt(spec)
    record: dict[str, Any] = {"adapt": str(spec), "mode": spec.mode}
    if spec.mode == "full":
        return record
    unfrozen: set[str] = set()
    if spec.mode in ("partial", "explora"):
        _, blocks = block_groups(backbone, name)
        if spec.blocks > len(blocks):
            raise UserError(f"--adapt {spec}: {name} has {len(blocks)} blocks, fewer than the {spec.blocks} asked to "
                            "train; use --adapt full to train all of it")
        unfrozen = {n for g in blocks[len(blocks) - spec.blocks:] for n in g}
        record.update(blocks_total=len(blocks), blocks_trained=spec.blocks)
    if spec.uses_lora:
        targets = lora_targets(backbone, unfrozen)
        if spec.mode == "explora" and not targets:  # every block unfrozen: plain partial training
            raise UserError(f"--adapt {spec}: no block is left for LoRA ({name} has {record['blocks_total']} "
                            "blocks); use --adapt partial:N or full")
        _inject_lora(backbone, targets, spec.rank, name)  # peft freezes every non-adapter parameter
        record.update(lora_rank=spec.rank, lora_alpha=spec.rank, lora_targets=len(targets),
                      lora_target_names=sorted({t.split(".")[-1] for t in targets}))
    else:
        backbone.requires_grad_(False)
    for n, p in backbone.named_parameters():
        if n in unfrozen:
            p.requires_grad_(True)
    return record


def plain_backbone(backbone: nn.Module) -> nn.Module:
    """``backbone`` itself when it has no adapters; else a copy with every adapter merged into its weights and the
    peft layers replaced by the plain timm modules (what the export writes: a state dict timm loads unchanged)."""
    if not has_adapters(backbone):
        return backbone
    from peft.tuners.tuners_utils import BaseTunerLayer  # present: the backbone holds its layers

    out = copy.deepcopy(backbone)
    for name, module in list(out.named_modules()):
        if isinstance(module, BaseTunerLayer) and name:
            module.merge()
            parent_name, _, leaf = name.rpartition(".")
            parent = out.get_submodule(parent_name) if parent_name else out
            setattr(parent, leaf, module.get_base_layer())
    return out


def trainable_summary(model: nn.Module) -> dict[str, Any]:
    """Parameters in all and trained (whole model, backbone, adapters), and the AdamW state they need (two moments
    per trained parameter, in the parameter's dtype)."""
    backbone = getattr(model, "backbone", model)
    bb = {id(p) for p in backbone.parameters()}
    total = trainable = bb_total = bb_train = adapters = state = 0
    for n, p in model.named_parameters():
        k = p.numel()
        total += k
        if id(p) in bb:
            bb_total += k
        if p.requires_grad:
            trainable += k
            state += 2 * k * p.element_size()
            if id(p) in bb:
                bb_train += k
                if "lora_" in n:
                    adapters += k
    full_state = sum(2 * p.numel() * p.element_size() for p in model.parameters())
    return {"parameters": total, "trainable": trainable, "backbone_parameters": bb_total,
            "backbone_trainable": bb_train, "adapter_parameters": adapters, "optimizer_state_bytes": state,
            "optimizer_state_bytes_full": full_state}
