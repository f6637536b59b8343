"""I-JEPA-style masked prediction for ViT backbones, with SIGReg and *without* an EMA teacher (the ``masking`` ablation).

I-JEPA (Assran et al., CVPR 2023) predicts the representations of a few target blocks of an image from one context
block, with a small transformer predictor and an EMA target encoder. LeJEPA argues that SIGReg makes the teacher
unnecessary; this variant tests that on masked prediction. Per global view ``x`` (B, C, H, W) of each step:

    patch grid gh × gw (H / patch, W / patch); sample M target blocks (each ``mask_target_scale`` of the patches,
    aspect ratio in [0.75, 1.5]) and one context block (``mask_context_scale``) with the target patches removed —
    one set of blocks per step, shared by the batch (seeded by a step counter that is checkpointed, so resume is exact)
    full    = encoder(all patch tokens)          → patch tokens T (B, N, D), pooled embedding e_full (B, F)
    context = encoder(context patch tokens only) → tokens (B, Nc, D),       pooled embedding e_ctx (B, F)
    pred_m  = predictor(context tokens, positions of target block m)  → (B, N_m, D)
    prediction = mean_m mean((pred_m − T[:, block m])²)            (same network, no EMA, no stop-gradient)
    loss = (1 − λ) · prediction + λ · SIGReg(projector([e_full; e_ctx]))

The encoder is the recipe's timm ``VisionTransformer`` used through its own pieces (``patch_embed``, ``_pos_embed``,
``norm_pre``, ``blocks``, ``norm``, ``forward_head``), so the exported backbone is the plain timm model and the
pooled embedding is exactly what ``backbone(x)`` returns at evaluation. The predictor (``predictor_depth`` timm
transformer blocks of width ``predictor_dim``, learnable positional embeddings on the patch grid) is trained with the
model and discarded at export.
"""

from __future__ import annotations

import math

import torch
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

from ...errors import UserError
from ..counters import HostCounters
from ..model import LeJEPAModel, Projector, create_backbone
from .base import Variant

__all__ = ["MaskedPrediction", "sample_blocks", "MaskPredictor", "MaskedLeJEPAModel", "build_masked_model", "check_masking_backbone",
           "vit_tokens"]


def _is_vit(backbone: nn.Module) -> bool:
    return isinstance(backbone, VisionTransformer)


def check_masking_backbone(recipe) -> None:
    """Raise a :class:`UserError` unless the recipe's backbone is a timm ``VisionTransformer``."""
    try:
        with torch.device("meta"):
            bb = create_backbone(recipe.backbone, in_chans=recipe.channels, **dict(recipe.backbone_kwargs))
    except UserError:
        raise
    except Exception:  # some models cannot be built on the meta device
        bb = create_backbone(recipe.backbone, in_chans=recipe.channels, **dict(recipe.backbone_kwargs))
    if not _is_vit(bb):
        raise UserError(f"the masking variant needs a ViT backbone (timm VisionTransformer, patch tokens); recipe "
                        f"{recipe.name!r} uses {recipe.backbone!r} ({type(bb).__name__}) — use a ViT recipe")


def sample_blocks(gh: int, gw: int, n_targets: int, target_scale: tuple[float, float],
                  context_scale: tuple[float, float], generator: torch.Generator,
                  aspect: tuple[float, float] = (0.75, 1.5)) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Context and target blocks on a ``gh × gw`` patch grid (row-major patch indices).

    Returns ``(context (Nc,), [target_m (N_m,) for m])``, all int64, sorted. Targets are rectangles of
    ``target_scale`` of the grid area; the context is a rectangle of ``context_scale`` of the area minus every target
    patch. The context is never empty: if the targets cover it, the last targets are dropped (at least one is kept
    as long as a patch remains outside it; on a 1-patch grid the context is that patch and there are no targets).
    """
    n = gh * gw

    def rand(lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=generator))

    def block(scale: tuple[float, float], ar_range: tuple[float, float]) -> torch.Tensor:
        area = rand(*scale) * n
        ar = math.exp(rand(math.log(ar_range[0]), math.log(ar_range[1])))
        h = max(1, min(gh, int(round(math.sqrt(area * ar)))))
        w = max(1, min(gw, int(round(math.sqrt(area / ar)))))
        top = int(torch.randint(0, gh - h + 1, (), generator=generator))
        left = int(torch.randint(0, gw - w + 1, (), generator=generator))
        rows = torch.arange(top, top + h)
        cols = torch.arange(left, left + w)
        return (rows[:, None] * gw + cols[None, :]).reshape(-1)

    targets = [block(target_scale, aspect) for _ in range(n_targets)]
    ctx_block = block(context_scale, (1.0, 1.0))
    while True:
        covered = torch.zeros(n, dtype=torch.bool)
        for t in targets:
            covered[t] = True
        keep = torch.zeros(n, dtype=torch.bool)
        keep[ctx_block] = True
        context = torch.nonzero(keep & ~covered).reshape(-1)
        if len(context) > 0 or not targets:
            break
        targets = targets[:-1]
    if len(context) == 0:  # no targets left and an empty context block cannot happen (h, w ≥ 1)
        context = ctx_block
    return context.sort().values, [t.sort().values for t in targets]


def vit_tokens(vit: nn.Module, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """All output tokens (B, P + N', D) of a timm ViT for images ``x`` (B, C, H, W), keeping only the patch tokens
    at indices ``keep`` (N',) (positional embeddings are added before the selection); P = prefix (class/register)
    tokens."""
    t = vit._pos_embed(vit.patch_embed(x))  # (B, P + N, D)
    if keep is not None:
        p = vit.num_prefix_tokens
        t = torch.cat([t[:, :p], t[:, p + keep.to(t.device, non_blocking=True)]], dim=1)
    t = vit.norm_pre(t)
    t = vit.blocks(t)
    return vit.norm(t)


class MaskPredictor(nn.Module):
    """``forward(context (B, Nc, D), context_idx (Nc,), target_idx (Nt,))`` → predicted target tokens (B, Nt, D).

    A narrow transformer: context tokens are embedded to ``width`` and given the positional embedding of their patch;
    one learnable mask token per target patch carries the target's positional embedding; ``depth`` timm ``Block``s;
    LayerNorm; linear back to D. Only the target positions' outputs are returned.
    """

    def __init__(self, dim: int, num_patches: int, width: int = 0, depth: int = 2, num_heads: int = 0):
        super().__init__()
        width = width or max(16, dim // 2)
        heads = num_heads or max(1, width // 64)
        while width % heads:
            heads -= 1
        self.embed = nn.Linear(dim, width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos = nn.Parameter(torch.randn(1, num_patches, width) * 0.02)
        self.blocks = nn.Sequential(*[Block(width, heads, mlp_ratio=4.0, qkv_bias=True) for _ in range(depth)])
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, dim)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def forward(self, context: torch.Tensor, context_idx: torch.Tensor, target_idx: torch.Tensor) -> torch.Tensor:
        b = context.shape[0]
        ctx = self.embed(context) + self.pos[:, context_idx]
        qry = (self.mask_token + self.pos[:, target_idx]).expand(b, -1, -1)
        z = self.norm(self.blocks(torch.cat([ctx, qry], dim=1)))
        return self.out(z[:, ctx.shape[1]:])


class MaskedLeJEPAModel(HostCounters, LeJEPAModel):
    """A :class:`LeJEPAModel` (ViT backbone + projector) with a mask predictor.

    ``forward(globals_, locals_)`` is the ordinary multi-crop forward; ``forward(globals_ (G, B, C, H, W), None,
    masked=True)`` returns ``(emb (2G, B, F), proj (2G, B, K), prediction loss (scalar))`` with the G full views
    first and the G context views after them.

    ``mask_step`` (the step counter seeding the blocks) is a host integer, saved in the state dict as ``"mask_step"``
    (the key of the buffer it was before; such checkpoints load), so drawing the blocks reads nothing back from the
    device.
    """

    host_counters = ("mask_step",)
    mask_step: int

    def __init__(self, backbone: nn.Module, projector: Projector, predictor: MaskPredictor, *, n_targets: int = 4,
                 target_scale=(0.15, 0.2), context_scale=(0.85, 1.0), seed: int = 0):
        super().__init__(backbone, projector)
        if not _is_vit(backbone):
            raise UserError(f"the masking variant needs a timm VisionTransformer backbone, got "
                            f"{type(backbone).__name__}")
        self.predictor = predictor
        self.n_targets = int(n_targets)
        self.target_scale = tuple(target_scale)
        self.context_scale = tuple(context_scale)
        self.seed = int(seed)
        self.mask_step = 0

    def grid(self, h: int, w: int) -> tuple[int, int]:
        ph, pw = self.backbone.patch_embed.patch_size
        return h // ph, w // pw

    @torch.compiler.disable  # host-side draws and a Python counter: outside any compiled graph
    def next_blocks(self, gh: int, gw: int, device: torch.device) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """This step's context and target blocks (:func:`sample_blocks`, drawn on the CPU from a generator seeded by
        (seed, mask_step)), copied to ``device`` without blocking; advances ``mask_step``."""
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.mask_step)
        context_idx, targets = sample_blocks(gh, gw, self.n_targets, self.target_scale, self.context_scale, gen)
        self.mask_step += 1
        return (context_idx.to(device, non_blocking=True), [t.to(device, non_blocking=True) for t in targets])

    def forward(self, globals_: torch.Tensor, locals_: torch.Tensor | None = None, masked: bool = False):
        if not masked:
            return super().forward(globals_, locals_)
        g, b = globals_.shape[:2]
        x = globals_.flatten(0, 1)  # (G·B, C, H, W)
        gh, gw = self.grid(x.shape[-2], x.shape[-1])
        context_idx, targets = self.next_blocks(gh, gw, x.device)
        vit = self.backbone
        p = vit.num_prefix_tokens
        full = vit_tokens(vit, x)  # (G·B, P + N, D)
        ctx = vit_tokens(vit, x, keep=context_idx)  # (G·B, P + Nc, D)
        losses = []
        for t in targets:
            pred = self.predictor(ctx[:, p:], context_idx, t)  # (G·B, Nt, D)
            losses.append((pred.float() - full[:, p + t].float()).square().mean())
        prediction = torch.stack(losses).mean() if losses else full.sum() * 0.0
        emb = torch.cat([vit.forward_head(full), vit.forward_head(ctx)], dim=0)  # (2·G·B, F)
        proj = self.projector(emb)
        return emb.reshape(2 * g, b, -1), proj.reshape(2 * g, b, -1), prediction


def build_masked_model(recipe, cfg) -> MaskedLeJEPAModel:
    """Backbone + projector of the recipe plus a predictor sized from ``cfg`` (a TrainConfig)."""
    if cfg.target != "online":
        raise UserError("the masking variant uses the same network for context and targets (no EMA, no "
                        f"stop-gradient); target={cfg.target!r} is not supported with method='masking'")
    check_masking_backbone(recipe)
    backbone = create_backbone(recipe.backbone, in_chans=recipe.channels, **dict(recipe.backbone_kwargs))
    ph, pw = backbone.patch_embed.patch_size
    gh, gw = recipe.global_size // ph, recipe.global_size // pw
    if gh * gw < 2:
        raise UserError(f"the masking variant needs at least 2 patches per global view; {recipe.global_size} px "
                        f"with {ph}×{pw} patches gives {gh}×{gw}")
    dim = backbone.embed_dim
    predictor = MaskPredictor(dim, gh * gw, width=cfg.predictor_dim, depth=cfg.predictor_depth)
    projector = Projector(backbone.num_features, tuple(recipe.proj_hidden), recipe.proj_dim, recipe.proj_norm)
    return MaskedLeJEPAModel(backbone, projector, predictor, n_targets=cfg.mask_targets,
                             target_scale=cfg.mask_target_scale, context_scale=cfg.mask_context_scale, seed=cfg.seed)


class MaskedPrediction(Variant):
    """The ``masking`` variant as a training-step variant: the model is a :class:`MaskedLeJEPAModel`, the global
    views go through it masked (no local views), and its predictive loss takes the invariance term's place."""

    name = "masking"

    def build_model(self, recipe, cfg) -> MaskedLeJEPAModel:
        return build_masked_model(recipe, cfg)

    def forward(self, model: nn.Module, globals_: torch.Tensor, locals_: torch.Tensor, n_global: int):
        emb, proj, prediction = model(globals_, None, masked=True)  # (2G, B, F), (2G, B, K), scalar
        return emb, proj, prediction
