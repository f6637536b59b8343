"""Audit of the training step and the epoch loop for host synchronisations and blocking host → device copies
(issue 17). It fails when a new one appears.

What a step may do (and nothing else, per step):

* ``train_step``: one ``bool(tensor)`` — the finiteness check of the loss and gradient norm (skip a bad step);
* ``_probe_labels``: one ``bool(tensor)`` on the DataLoader's *host* label tensor (not a device sync);
* ``sample_blocks`` (masking ablation only): ``float``/``int`` of draws from a *CPU* generator (not a device sync);
* the progress bar's refresh (``EpochMeter.running``, one ``.tolist()``), only on refresh steps — step 1 and every
  ``log_every`` steps — and only when a bar is shown.

How: the real loop (``pretrain``) runs twice with the same seed, for ``SHORT`` and ``LONG`` steps of one epoch; every
host read made *directly by this package's code* (``Tensor.item``, ``.tolist``, ``.cpu``, ``.numpy``, ``__array__``,
``bool``/``int``/``float``/``index`` of a tensor) and every blocking device move (``Tensor.to(device)`` without
``non_blocking=True``, ``torch.tensor(..., device=...)``/``torch.as_tensor(..., device=...)``) is counted by call site;
the difference between the two runs is the per-step work (setup, the epoch end and one-off caches cancel out). Work
inside the DataLoader (the host data pipeline, which runs in worker processes when there are workers) is not counted.
On CPU every tensor is a host tensor, so reads made by torch itself on our behalf cannot be told apart from host
work; on a machine with CUDA the same runs also go under ``torch.cuda.set_sync_debug_mode("warn")``, which catches
every synchronising CUDA call, torch's own included, and are held to the same per-step budget.
"""

from __future__ import annotations

import sys
import warnings
from collections import Counter
from pathlib import Path

import pytest
import torch

import lejepa_domains
from lejepa_domains import pretrain

HERE = Path(__file__).resolve().parent
DIGITS = str(HERE / "recipes" / "tinydigits.py")  # ResNet (BatchNorm), labelled: online probe on
VIT = str(HERE / "recipes" / "tinyvit.py")  # ViT, for the EMA and masking variants


def _rgb_recipe():
    """tinydigits as RGB (the grey digit in three channels), so the device views' colour operations run too."""
    from dataclasses import replace

    from lejepa_domains import load_recipe
    from lejepa_domains.data.sources import ImageSet

    base = load_recipe(DIGITS)

    class RGBDigits(type(base.source)):
        def describe(self):
            return {**super().describe(), "kind": "tiny-digits-rgb"}

        def _load(self, split, data):
            d = super()._load(split, data)
            return ImageSet(d.images.repeat(3, axis=-1), d.labels, d.class_names, {})

    return replace(base, name="tinyrgb", source=RGBDigits(size=16, seed=0), channels=3, mean=(0.3,) * 3,
                   std=(0.38,) * 3)
PKG = str(Path(lejepa_domains.__file__).resolve().parent)
SHORT, LONG = 1, 3  # steps, both inside the first epoch (batch 16 below: ≥ 4 steps per epoch)

HOST_READS = ("item", "tolist", "cpu", "numpy", "__array__", "__bool__", "__int__", "__float__", "__index__")
# call sites allowed per step: (file relative to the package, function, what) → reason
ALLOWED = {
    ("train/step.py", "train_step", "__bool__"): "the finiteness check of loss and gradient norm",
    ("train/step.py", "_probe_labels", "__bool__"): "all labels known? — on the DataLoader's host tensor",
    ("method/variants/masking.py", "sample_blocks.<locals>.rand", "__float__"): "block shapes from a CPU generator",
    ("method/variants/masking.py", "sample_blocks.<locals>.block", "__int__"): "block positions from a CPU generator",
}
REFRESH = ("train/meters.py", "EpochMeter.running", "tolist")  # progress refresh: step 1 and every log_every steps


_RELATIVE: dict[tuple, str | None] = {}


def _site(frame, roots: tuple[str, ...] = (PKG,)) -> tuple[str, str] | None:
    """(file relative to its root, qualified function name) of ``frame`` when it is code under ``roots`` (the
    package), else None."""
    code = frame.f_code
    key = (code.co_filename, roots)
    if key not in _RELATIVE:
        path = str(Path(code.co_filename).resolve())
        _RELATIVE[key] = next((path[len(r) + 1:] for r in roots if path.startswith(r + "/")), None)
    rel = _RELATIVE[key]
    return None if rel is None else (rel, code.co_qualname)


def _in_data_loader(frame) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.endswith(_LOADER):
            return True
        frame = frame.f_back
    return False


_LOADER = str(Path("torch", "utils", "data", "dataloader.py"))


def _innermost_site(frame, roots: tuple[str, ...]) -> tuple[str, str] | None:
    while frame is not None:
        s = _site(frame, roots)
        if s is not None:
            return s
        frame = frame.f_back
    return None


class Recorder:
    """Counts host reads and blocking device moves by call site while installed (see the module docstring)."""

    def __init__(self, roots: tuple[str, ...] = (PKG,)):
        self.roots = roots
        self.counts: Counter = Counter()
        self.cuda_syncs: Counter = Counter()

    def _record(self, what: str, frame) -> None:
        site = _site(frame, self.roots)
        if site is not None and not _in_data_loader(frame):
            self.counts[(*site, what)] += 1

    def install(self, mp: pytest.MonkeyPatch) -> None:
        for name in HOST_READS:
            real = getattr(torch.Tensor, name)

            def read(t, *a, _real=real, _name=name, **k):
                self._record(_name, sys._getframe(1))
                return _real(t, *a, **k)

            mp.setattr(torch.Tensor, name, read)

        real_to = torch.Tensor.to

        def to(t, *a, **k):
            moves = "device" in k or any(isinstance(x, (torch.device, str, torch.Tensor)) for x in a)
            blocking = not (k.get("non_blocking") or any(x is True for x in a))
            if moves and blocking:
                self._record("blocking .to(device)", sys._getframe(1))
            return real_to(t, *a, **k)

        mp.setattr(torch.Tensor, "to", to)
        for fname in ("tensor", "as_tensor"):
            real_fn = getattr(torch, fname)

            def make(*a, _real=real_fn, _name=fname, **k):
                if k.get("device") is not None:
                    self._record(f"torch.{_name}(..., device=)", sys._getframe(1))
                return _real(*a, **k)

            mp.setattr(torch, fname, make)

    def cuda_warning(self, message, category, filename, lineno, file=None, line=None):
        if "synchronizing CUDA operation" in str(message):
            frame = sys._getframe(1)
            if not _in_data_loader(frame):
                site = _innermost_site(frame, self.roots)
                self.cuda_syncs[(*(site or ("<outside the package>", "?")), "CUDA sync")] += 1


def _run(tmp_path, name: str, recipe: str, steps: int, device: str, progress: bool, roots=(PKG,),
         **opts) -> Recorder:
    rec = Recorder(roots)
    mp = pytest.MonkeyPatch()
    cuda = device == "cuda"
    try:
        rec.install(mp)
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            if cuda:
                warnings.showwarning = rec.cuda_warning
                torch.cuda.set_sync_debug_mode("warn")
            pretrain(recipe, out=tmp_path / f"{name}-{steps}", device=device, progress=progress, max_steps=steps,
                     epochs=1, batch_size=16, seed=0, **opts)
    finally:
        if cuda:
            torch.cuda.set_sync_debug_mode(0)
        mp.undo()
    return rec


def _per_step(short: Counter, long: Counter) -> dict:
    diff = Counter(long)
    diff.subtract(short)
    return {k: v / (LONG - SHORT) for k, v in diff.items() if v > 0}  # < 0: one-off work (a cache) in the first run


CASES = {  # name → (recipe, options): the step's branches that run per step
    "multicrop-cpu-views": (DIGITS, {}),
    "device-views-rgb": ("rgb", {"views": "device"}),
    "clip-vicreg": (VIT, {"grad_clip": 1.0, "regularizer": "vicreg"}),
    "ema-teacher": (VIT, {"target": "ema"}),
    "masking": (VIT, {"method": "masking"}),
}


def _measure(tmp_path, name: str, device: str, roots=(PKG,)) -> tuple[dict, dict]:
    """(host reads and blocking copies, CUDA syncs) per step of case ``name``, by call site."""
    recipe, opts = CASES[name]
    recipe = _rgb_recipe() if recipe == "rgb" else recipe
    short = _run(tmp_path, name, recipe, SHORT, device, False, roots, log_every=10**6, **opts)
    long = _run(tmp_path, name, recipe, LONG, device, False, roots, log_every=10**6, **opts)
    return _per_step(short.counts, long.counts), _per_step(short.cuda_syncs, long.cuda_syncs)


def _unexpected(per_step: dict) -> dict:
    return {k: v for k, v in per_step.items() if k[:3] not in ALLOWED}


def _audit(tmp_path, name: str, device: str) -> None:
    per_step, syncs = _measure(tmp_path, name, device)
    unexpected = _unexpected(per_step)
    assert not unexpected, f"new host reads / blocking copies per step (site: count per step): {unexpected}"
    assert per_step.get(("train/step.py", "train_step", "__bool__")) == 1.0, per_step
    # the allowed ones are host-side; the step's one device sync is the finiteness check
    if device == "cuda":
        assert syncs == {("train/step.py", "train_step", "CUDA sync"): 1.0}, syncs


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_step_and_the_loop_have_no_hidden_host_sync(tmp_path, name):
    _audit(tmp_path, name, "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (set_sync_debug_mode)")
@pytest.mark.parametrize("name", sorted(CASES))
def test_the_step_and_the_loop_have_no_hidden_cuda_sync(tmp_path, name):
    _audit(tmp_path, name, "cuda")


def test_progress_refresh_is_the_only_other_sync_and_only_on_refresh_steps(tmp_path):
    """With the bar on, ``.tolist()`` of the running means happens at step 1 and every ``log_every`` steps (here
    3 steps, log_every 2: steps 1 and 2); with the bar off (also every rank but 0) never."""
    on = _run(tmp_path, "bar", DIGITS, LONG, "cpu", True, log_every=2)
    off = _run(tmp_path, "nobar", DIGITS, LONG, "cpu", False, log_every=2)
    assert on.counts[REFRESH] == 2
    assert off.counts[REFRESH] == 0
    diff = Counter(on.counts)
    diff.subtract(off.counts)
    assert {k: v for k, v in diff.items() if v} == {REFRESH: 2}


def _legacy_directions(self, dim, device=None):
    """SIGReg.directions as it was before issue 17: the step read back with ``.item()``, CPU draw, blocking copy."""
    step = int(torch.tensor(self.step).item())
    g = torch.Generator(device="cpu")
    g.manual_seed(self.seed * 1_000_003 + step)
    a = torch.randn(dim, self.num_slices, generator=g, dtype=torch.float32)
    a = a / a.norm(dim=0, keepdim=True)
    return a.to(device) if device is not None else a


def test_the_audit_has_teeth(tmp_path, monkeypatch):
    """The pre-issue-17 SIGReg directions (a ``.item()`` and a blocking copy per step) are caught."""
    import lejepa_domains.method.sigreg as S

    monkeypatch.setattr(S.SIGReg, "directions", _legacy_directions)
    per_step, _ = _measure(tmp_path, "multicrop-cpu-views", "cpu", roots=(PKG, str(HERE)))
    assert _unexpected(per_step) == {("test_sync_audit.py", "_legacy_directions", "item"): 1.0,
                                     ("test_sync_audit.py", "_legacy_directions", "blocking .to(device)"): 1.0}
