"""Multi-crop views made on the training device with batched torch ops (``--views device``).

The CPU path (:mod:`lejepa_domains.data.views`) runs albumentations per image and per view in DataLoader workers: ten
views per image make it the usual bottleneck of SSL training on a GPU. Here the DataLoader only hands over the cached
images of a batch, ``(B, H, W, C)``, and :class:`DeviceMultiCrop` turns them into ``G`` global and ``L`` local views on
the device the batch lives on (CUDA, CPU or MPS):

1. random resized crop (area fraction from the recipe's ``global_scale`` / ``local_scale``, aspect ratio in
   [3/4, 4/3], ten attempts then a centred fallback, as torchvision and albumentations do) and horizontal flip, as one
   ``torch.nn.functional.grid_sample`` call per view size for all crops of the batch (bilinear; like albumentations'
   ``cv2.resize(INTER_LINEAR)``, no antialiasing when shrinking);
2. colour jitter (p 0.8): brightness × U[0.6, 1.4], contrast × U[0.6, 1.4] around the image's mean grey, saturation
   × U[0.8, 1.2] and a hue rotation of U[−0.1, 0.1] turn; saturation and hue are one per-view 3 × 3 matrix in YIQ
   space (saturation scales I and Q, exactly torchvision's blend with the 0.299/0.587/0.114 grey; the hue is a rotation
   of the I–Q plane, an approximation of the HSV hue shift); the four are applied in this fixed order (torchvision and
   albumentations draw a random order per view); values are clipped to [0, 1] after each;
3. grayscale (p 0.2), Gaussian blur (p 0.5, σ ∈ U[0.1, 2] output pixels, separable, reflect padding, radius 3σ_max),
   solarize (p 0.2, threshold 0.5), then normalisation by the recipe's mean and std.

These are the probabilities and ranges of :func:`lejepa_domains.data.views.default_augment` (the DINO/LeJEPA set).
**The device path always applies this built-in set**: a recipe's own albumentations lists (``global_augment`` /
``local_augment``: rotations, centre-keeping crops, …) cannot run batched on the device, so they are *not* applied
(the trainer prints a warning naming them; use ``--views cpu`` to keep them). With a channel count other than 3 the
colour operations (saturation, hue, grayscale) are skipped; brightness, contrast, blur and solarize act on every channel.
Recipes whose data is not 8-bit RGB/grey (``recipe.is_rgb_like`` false: uint16, float, asinh-scaled, multispectral)
get :meth:`DeviceAugment.multichannel` (flip, brightness/contrast ± 0.2, blur; no colour, no solarize, no clipping),
the counterpart of the CPU path's multichannel default (which also adds a little noise; the device path does not).

Input may be uint8, uint16 or floating point. The recipe's pixel scaling (``recipe.pixel_scaling``: x / pixel_max,
asinh, …) is applied when the data has the recipe's value type; otherwise uint8 is scaled by 1/255, uint16 by
1/65535 and floating point is taken as already on the [0, 1] scale. All
random parameters are drawn on the CPU from a ``torch.Generator`` seeded by ``(seed, epoch, step, rank)``, then moved
to the device: the views of a batch are reproducible, the same whatever the device (to float rounding), and a resumed
run (which knows its epoch and step) sees the same views as an uninterrupted one.

Per batch only those parameters cross to the device — a few numbers per view (crop box, flip, jitter factors, blur
kernel, 3 × 3 colour matrix), copied without blocking; the sampling grids are built on the device and the constants
(mean, std, grey weights) are kept there. Nothing is read back, so making the views never waits for the device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

__all__ = ["DeviceAugment", "DeviceMultiCrop", "ImageBatchDataset", "collate_images", "pixel_scale"]

# RGB → YIQ (NTSC); the Y row is the 0.299/0.587/0.114 grey torchvision and albumentations use.
_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114],
                         [0.595716, -0.274453, -0.321263],
                         [0.211456, -0.522591, 0.311135]], dtype=torch.float64)
_YIQ2RGB = torch.linalg.inv(_RGB2YIQ)


@dataclass(frozen=True)
class DeviceAugment:
    """Probabilities and ranges of the device-side augmentations (defaults: ``views.default_augment``)."""

    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4  # factor ∈ [1 − b, 1 + b]
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1  # rotation ∈ [−h, h] of a full turn
    gray_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)  # in output pixels
    solarize_p: float = 0.2
    solarize_threshold: float = 0.5  # on the [0, 1] scale
    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # aspect ratio range of the random resized crops
    attempts: int = 10
    clamp: bool = True  # clip to [0, 1] after each photometric step (8-bit data); False for physical values

    @classmethod
    def multichannel(cls) -> "DeviceAugment":
        """Preset for data that is not 8-bit RGB/grey (the device counterpart of
        ``multichannel.default_augment_multichannel``): flip, brightness/contrast ± 0.2 (p 0.8), blur σ 0.1–1.5
        (p 0.3); no colour operations, no solarisation, no clipping (values are not on a [0, 1] scale)."""
        return cls(brightness=0.2, contrast=0.2, saturation=0.0, hue=0.0, gray_p=0.0, blur_p=0.3,
                   blur_sigma=(0.1, 1.5), solarize_p=0.0, clamp=False)


def pixel_scale(dtype: torch.dtype) -> float:
    """Divisor that maps stored pixel values to [0, 1]: 255 for uint8, 65535 for uint16, 1 for floating point."""
    if dtype == torch.uint8:
        return 255.0
    if dtype == getattr(torch, "uint16", None):
        return 65535.0
    if dtype.is_floating_point:
        return 1.0
    raise TypeError(f"images must be uint8, uint16 or floating point, got {dtype}")


class DeviceMultiCrop:
    """``images (B, H, W, C)`` (or ``(B, H, W)``) on any device → ``(globals (G, B, C, Sg, Sg), locals (L, B, C, Sl,
    Sl))`` float32 on the same device, normalised with the recipe's mean and std.

    ``recipe`` supplies ``n_global``, ``n_local``, ``global_size``, ``local_size``, ``global_scale``, ``local_scale``,
    ``mean`` and ``std``. ``seed`` is the run's seed; call with the epoch, the batch's index in the epoch and the
    process rank.
    """

    def __init__(self, recipe, seed: int = 0, augment: DeviceAugment | None = None):
        self.n_global, self.n_local = int(recipe.n_global), int(recipe.n_local)
        self.global_size, self.local_size = int(recipe.global_size), int(recipe.local_size)
        self.global_scale = tuple(float(s) for s in recipe.global_scale)
        self.local_scale = tuple(float(s) for s in recipe.local_scale)
        self.mean = torch.tensor([float(m) for m in recipe.mean], dtype=torch.float32)
        self.std = torch.tensor([float(s) for s in recipe.std], dtype=torch.float32)
        self._on_device: dict[tuple, torch.Tensor] = {}  # constants already copied to a device
        self.seed = int(seed)
        self.scaling = getattr(recipe, "pixel_scaling", None)  # dtype-aware scaling of the recipe, when it has one
        c = len(self.mean)
        rgb_like = bool(getattr(recipe, "is_rgb_like", c in (1, 3)))
        self.aug = augment or (DeviceAugment() if rgb_like else DeviceAugment.multichannel())

    def generator(self, epoch: int, step: int, rank: int = 0) -> torch.Generator:
        """The CPU generator all random parameters of batch ``step`` of ``epoch`` on ``rank`` are drawn from."""
        s = int(np.random.SeedSequence([self.seed, int(epoch), int(step), int(rank), 0xD5]).generate_state(1)[0])
        return torch.Generator().manual_seed(s)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, *, epoch: int = 0, step: int = 0,
                 rank: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        if images.dim() == 3:
            images = images.unsqueeze(-1)
        if images.dim() != 4:
            raise ValueError(f"expected images (B, H, W, C), got shape {tuple(images.shape)}")
        b, _, _, c = images.shape
        if c != len(self.mean):
            raise ValueError(f"images have {c} channel(s) but the recipe's mean/std have {len(self.mean)}")
        gen = self.generator(epoch, step, rank)
        x = images.permute(0, 3, 1, 2).contiguous()  # (B, C, H, W) as stored
        stored = str(images.dtype).replace("torch.", "")
        if self.scaling is not None and getattr(self.scaling, "dtype", None) == stored:
            x = self.scaling.torch(x)  # the recipe's scaling of its stored value type (x / pixel_max, asinh, none)
        else:  # data of another type than the recipe declares (tests, benchmarks): scale by the value type
            x = x.to(torch.float32) * (1.0 / pixel_scale(images.dtype))  # a new tensor: the caller's stays intact
        out = []
        for n_views, size, area in ((self.n_global, self.global_size, self.global_scale),
                                    (self.n_local, self.local_size, self.local_scale)):
            if n_views == 0:
                out.append(x.new_zeros(0, b, c, size, size))
                continue
            v = self._crops(x, n_views, size, area, gen)  # (V·B, C, S, S), view-major
            v = self._photometric(v, gen)
            m, s = self._const("mean", self.mean, v), self._const("std", self.std, v)
            out.append(v.sub_(m.view(1, c, 1, 1)).div_(s.view(1, c, 1, 1)).view(n_views, b, c, size, size))
        return out[0], out[1]

    def _const(self, name: str, value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``value`` on ``like``'s device and dtype, copied there once and kept."""
        key = (name, str(like.device), like.dtype)
        hit = self._on_device.get(key)
        if hit is None:
            hit = self._on_device[key] = value.to(like.device, like.dtype)
        return hit

    # ------------------------------------------------------------------------------------------------ geometry

    def crop_boxes(self, n: int, height: int, width: int, area: tuple[float, float],
                   gen: torch.Generator) -> torch.Tensor:
        """``n`` random resized crop boxes ``(x0, y0, w, h)`` as fractions of the image's width and height (N, 4)."""
        a = self.aug
        k = a.attempts
        target = torch.empty(n, k, dtype=torch.float64).uniform_(area[0], area[1], generator=gen) * (height * width)
        log_r = torch.empty(n, k, dtype=torch.float64).uniform_(math.log(a.ratio[0]), math.log(a.ratio[1]),
                                                                generator=gen)
        r = log_r.exp()
        w = (target * r).sqrt()
        h = (target / r).sqrt()
        ok = (w <= width) & (h <= height) & (w > 0) & (h > 0)
        first = ok.to(torch.int8).argmax(dim=1)  # index of the first valid attempt (0 when none)
        pick = torch.arange(n)
        w, h = w[pick, first], h[pick, first]
        found = ok.any(dim=1)
        # fallback (no valid attempt): the largest centred crop whose aspect ratio lies in the range
        in_ratio = width / height
        if in_ratio < a.ratio[0]:
            fw, fh = float(width), width / a.ratio[0]
        elif in_ratio > a.ratio[1]:
            fw, fh = height * a.ratio[1], float(height)
        else:
            fw, fh = float(width), float(height)
        w = torch.where(found, w, torch.full_like(w, fw))
        h = torch.where(found, h, torch.full_like(h, fh))
        u = torch.rand(n, 2, dtype=torch.float64, generator=gen)
        x0 = torch.where(found, u[:, 0] * (width - w), (width - w) / 2)
        y0 = torch.where(found, u[:, 1] * (height - h), (height - h) / 2)
        return torch.stack([x0 / width, y0 / height, w / width, h / height], dim=1).float()

    def _crops(self, x: torch.Tensor, n_views: int, size: int, area: tuple[float, float],
               gen: torch.Generator) -> torch.Tensor:
        """All ``n_views`` crops of every image of ``x`` (B, C, H, W), resized to ``size`` and randomly flipped, by
        one ``grid_sample`` call: the grid of image b stacks its views vertically, (B, V·S, S, 2). → (V·B, C, S, S)."""
        b, c, height, width = x.shape
        n = n_views * b
        box = self.crop_boxes(n, height, width, area, gen)  # (N, 4), view-major
        flip = torch.rand(n, generator=gen) < self.aug.flip_p
        dev = x.device  # the (N, 4) boxes and (N,) flips cross over; the (B, V·S, S, 2) grid is built there
        box, flip = box.to(dev, non_blocking=True), flip.to(dev, non_blocking=True)
        t = (torch.arange(size, dtype=torch.float32, device=dev) + 0.5) / size  # pixel centres, fraction of the crop
        tx = torch.where(flip[:, None], 1.0 - t[None], t[None])  # (N, S)
        gx = (box[:, 0:1] + tx * box[:, 2:3]) * 2 - 1  # grid_sample coordinates, align_corners=False
        gy = (box[:, 1:2] + t[None] * box[:, 3:4]) * 2 - 1
        grid = torch.stack([gx[:, None, :].expand(n, size, size), gy[:, :, None].expand(n, size, size)], dim=-1)
        grid = grid.view(n_views, b, size, size, 2).permute(1, 0, 2, 3, 4).reshape(b, n_views * size, size, 2)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border",
                            align_corners=False)  # (B, C, V·S, S)
        return out.view(b, c, n_views, size, size).permute(2, 0, 1, 3, 4).reshape(n, c, size, size)

    # ------------------------------------------------------------------------------------------- photometric

    def _photometric(self, v: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Colour jitter, grayscale, blur and solarize on views (N, C, S, S) in [0, 1]."""
        a = self.aug
        n, c = v.shape[:2]
        dev = v.device
        jitter = torch.rand(n, generator=gen) < a.jitter_p

        def factor(strength: float) -> torch.Tensor:
            f = torch.empty(n).uniform_(max(0.0, 1 - strength), 1 + strength, generator=gen)
            return torch.where(jitter, f, torch.ones_like(f))

        bright, contrast, sat = factor(a.brightness), factor(a.contrast), factor(a.saturation)
        hue = torch.where(jitter, torch.empty(n).uniform_(-a.hue, a.hue, generator=gen), torch.zeros(n))
        gray = torch.rand(n, generator=gen) < a.gray_p
        blur = torch.rand(n, generator=gen) < a.blur_p
        sigma = torch.empty(n).uniform_(a.blur_sigma[0], a.blur_sigma[1], generator=gen)
        solar = torch.rand(n, generator=gen) < a.solarize_p

        clip = (lambda t: t.clamp_(0, 1)) if a.clamp else (lambda t: t)
        bc = torch.stack([bright, contrast]).to(dev, non_blocking=True)  # one copy for both factors
        v = clip(v.mul_(bc[0].view(n, 1, 1, 1)))  # in place: `v` is this call's own tensor
        grey_mean = self._grey(v.mean(dim=(2, 3), keepdim=True))  # (N, 1, 1, 1): grey is linear, mean first
        v = clip(v.sub_(grey_mean).mul_(bc[1].view(n, 1, 1, 1)).add_(grey_mean))
        if c == 3 and (a.saturation > 0 or a.hue > 0):
            colour = self._colour_matrix(sat, hue).to(dev, non_blocking=True)
            v = clip(torch.einsum("nij,njhw->nihw", colour, v))
        if c == 3 and a.gray_p > 0:
            v = self._on_subset(v, gray, lambda u, idx: self._grey(u).expand(-1, 3, -1, -1))
        v = self._on_subset(v, blur, lambda u, idx: self._blur(u, sigma[idx]))
        thr = a.solarize_threshold
        return self._on_subset(v, solar, lambda u, idx: torch.where(u >= thr, 1.0 - u, u))

    @staticmethod
    def _on_subset(v: torch.Tensor, mask: torch.Tensor, fn) -> torch.Tensor:
        """Apply ``fn(views, cpu_indices)`` to the views selected by the CPU bool ``mask`` (N,) only."""
        idx = mask.nonzero().flatten()
        if len(idx) == 0:
            return v
        idx_d = idx.to(v.device, non_blocking=True)
        return v.index_copy_(0, idx_d, fn(v.index_select(0, idx_d), idx).contiguous())

    @staticmethod
    def _grey(v: torch.Tensor) -> torch.Tensor:
        """(N, C, S, S) → (N, 1, S, S): the 0.299/0.587/0.114 grey for 3 channels, else the channel mean."""
        if v.shape[1] == 3:
            return (v * _grey_weights(v.device, v.dtype)).sum(dim=1, keepdim=True)
        return v.mean(dim=1, keepdim=True)

    @staticmethod
    def _colour_matrix(sat: torch.Tensor, hue: torch.Tensor) -> torch.Tensor:
        """Per-view RGB → RGB matrices (N, 3, 3): scale the YIQ chroma by ``sat`` and rotate it by ``hue`` turns."""
        n = sat.shape[0]
        theta = hue.double() * 2 * math.pi
        cos, sin = theta.cos() * sat.double(), theta.sin() * sat.double()
        m = torch.zeros(n, 3, 3, dtype=torch.float64)
        m[:, 0, 0] = 1.0
        m[:, 1, 1], m[:, 1, 2], m[:, 2, 1], m[:, 2, 2] = cos, -sin, sin, cos
        return (_YIQ2RGB @ m @ _RGB2YIQ).float()

    def _blur(self, v: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Separable Gaussian blur of views (M, C, S, S) with one σ per view (M,), reflect padding."""
        m, c, h, w = v.shape
        radius = min(int(math.ceil(3 * self.aug.blur_sigma[1])), h - 1, w - 1)
        if radius < 1:
            return v
        offs = torch.arange(-radius, radius + 1, dtype=torch.float32)
        k = torch.exp(-0.5 * (offs[None] / sigma[:, None]) ** 2)
        k = (k / k.sum(dim=1, keepdim=True)).to(v.device, non_blocking=True)  # (M, 2r+1)
        p = F.pad(v, (radius, radius, radius, radius), mode="reflect").reshape(1, m * c, h + 2 * radius, w + 2 * radius)
        kk = k.repeat_interleave(c, dim=0)  # (M·C, 2r+1): one depthwise kernel per view and channel
        size = 2 * radius + 1
        y = F.conv2d(p, kk.view(m * c, 1, size, 1), groups=m * c)  # vertical pass
        y = F.conv2d(y, kk.view(m * c, 1, 1, size), groups=m * c)  # horizontal pass
        return y.view(m, c, h, w)


_GREY: dict[tuple, torch.Tensor] = {}


def _grey_weights(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The 0.299/0.587/0.114 grey weights (1, 3, 1, 1) on ``device``, copied there once (not per call)."""
    key = (str(device), dtype, torch.is_inference_mode_enabled())
    hit = _GREY.get(key)
    if hit is None:
        hit = _GREY[key] = torch.tensor([0.299, 0.587, 0.114], dtype=dtype).view(1, 3, 1, 1).to(device)
    return hit


# ------------------------------------------------------------------------------------------------- data loading

class ImageBatchDataset(Dataset):
    """Map-style dataset over an :class:`~lejepa_domains.data.sources.ImageSet` that hands out whole batches of the
    cached images: ``__getitems__(indices)`` → ``(images (B, H, W, C) as stored, labels (B,) int64, −1 if
    unlabelled)``, one fancy-indexing read of the (memory-mapped) array per batch, no per-view work."""

    def __init__(self, data):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        return self.__getitems__([i])

    def __getitems__(self, indices):
        idx = np.asarray(indices, dtype=np.int64)
        order = np.argsort(idx, kind="stable")  # sorted reads are kinder to a memory-mapped file
        imgs = np.empty((len(idx),) + tuple(self.data.images.shape[1:]), dtype=self.data.images.dtype)
        imgs[order] = self.data.images[idx[order]]
        if imgs.ndim == 3:
            imgs = imgs[..., None]
        labels = (np.asarray(self.data.labels)[idx].astype(np.int64) if self.data.labels is not None
                  else np.full(len(idx), -1, dtype=np.int64))
        return torch.from_numpy(imgs), torch.from_numpy(labels)


def collate_images(batch):
    """The DataLoader's collate for :class:`ImageBatchDataset`: the batch is already assembled."""
    if isinstance(batch, tuple):
        return batch
    imgs, labels = zip(*batch)  # a list of single-item batches (a DataLoader without __getitems__ support)
    return torch.cat(imgs), torch.cat(labels)
