"""Offline sources and multi-crop views."""

import numpy as np
import pytest
import torch

from lejepa_domains import Recipe, load_recipe
from lejepa_domains.data.sources import SkimageSpecimens, acquisition_shift, stratified_split
from lejepa_domains.data.views import EvalDataset, MultiCropDataset, collate_views
from lejepa_domains.errors import UserError


@pytest.fixture(scope="module")
def specimens():
    r = load_recipe("specimens")
    return r, {s: r.source.load(s) for s in ("train", "val", "test")}


def test_specimens_splits_share_no_pixel(specimens):
    recipe, sets = specimens
    p = recipe.source.patch
    masks: dict[tuple[str, str], np.ndarray] = {}
    for split, d in sets.items():
        for name, y, x in d.meta["origin"]:
            m = masks.setdefault((split, name), np.zeros((1024, 1024), bool))
            m[y:y + p, x:x + p] = True
    names = {n for (_, n) in masks}
    for n in names:
        for a, b in (("train", "test"), ("train", "val"), ("val", "test")):
            if (a, n) in masks and (b, n) in masks:
                assert not (masks[(a, n)] & masks[(b, n)]).any(), f"{n}: {a} and {b} share pixels"


def test_specimens_classes_and_shapes(specimens):
    recipe, sets = specimens
    for split, d in sets.items():
        assert d.images.dtype == np.uint8 and d.images.shape[1:] == (32, 32, 3)
        counts = np.bincount(d.labels, minlength=recipe.num_classes)
        assert (counts > 0).all(), f"{split} misses a class"
    assert len(sets["train"]) > 4 * len(sets["test"]) / 2


def test_specimens_deterministic():
    a = SkimageSpecimens(seed=0)._load("test", None)
    b = SkimageSpecimens(seed=0)._load("test", None)
    c = SkimageSpecimens(seed=1)._load("test", None)
    assert np.array_equal(a.images, b.images)
    assert not np.array_equal(a.images, c.images) or a.meta["origin"] != c.meta["origin"]


def test_acquisition_shift_changes_photometry_not_structure():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (64, 8, 8, 3), dtype=np.uint8)
    y = acquisition_shift(x, 1.0, seed=0)
    assert y.shape == x.shape and y.dtype == np.uint8
    assert np.abs(y.astype(float).mean((1, 2, 3)) - x.astype(float).mean((1, 2, 3))).mean() > 5
    # monotone per image and channel: the ranking of pixel values is preserved (up to ties from clipping)
    for i in range(4):
        a, b = x[i, ..., 0].ravel().astype(float), y[i, ..., 0].ravel().astype(float)
        order = np.argsort(a, kind="stable")
        assert (np.diff(b[order]) >= 0).all()
    assert np.array_equal(acquisition_shift(x, 0.0, seed=0), x)


def test_stratified_split_partitions():
    labels = np.repeat(np.arange(5), 20)
    parts = stratified_split(labels, {"a": 0.7, "b": 0.1, "c": 0.2}, seed=0)
    allidx = np.concatenate(list(parts.values()))
    assert sorted(allidx.tolist()) == list(range(100))
    assert (np.bincount(labels[parts["a"]]) == 14).all()


def test_multicrop_views_shapes_and_reproducibility(specimens):
    recipe, sets = specimens
    ds = MultiCropDataset(sets["train"], recipe, seed=0)
    g, loc, y = ds[7]
    assert g.shape == (recipe.n_global, 3, recipe.global_size, recipe.global_size)
    assert loc.shape == (recipe.n_local, 3, recipe.local_size, recipe.local_size)
    assert g.dtype == torch.float32 and y == int(sets["train"].labels[7])
    g2, loc2, _ = ds[7]
    assert torch.equal(g, g2) and torch.equal(loc, loc2), "same (seed, epoch, index) must give the same views"
    assert not torch.equal(g[0], g[1]), "the two global views must differ"
    ds.set_epoch(1)
    g3, _, _ = ds[7]
    assert not torch.equal(g, g3), "a new epoch must give new views"
    batch = collate_views([ds[i] for i in range(4)])
    assert batch[0].shape[:2] == (recipe.n_global, 4) and batch[1].shape[:2] == (recipe.n_local, 4)


def test_eval_dataset_normalises(specimens):
    recipe, sets = specimens
    ds = EvalDataset(sets["train"], recipe)
    x = torch.stack([ds[i][0] for i in range(0, len(ds), 7)])
    assert x.shape[1:] == (3, 32, 32)
    assert abs(float(x.mean())) < 0.3 and 0.7 < float(x.std()) < 1.3


def test_digits_one_channel():
    r = load_recipe("digits")
    d = r.source.load("train")
    assert d.images.shape[1:] == (16, 16, 1)
    g, loc, _ = MultiCropDataset(d, r)[0]
    assert g.shape == (2, 1, 16, 16) and loc.shape == (2, 1, 8, 8)


def test_grey_views_say_nothing_about_an_image_already_grey():
    """ToGray is a no-op on grey images; albumentations' warning about it is not shown to users (a fresh process,
    as users run it: pytest resets warning filters set at import)."""
    import subprocess
    import sys

    code = """
import dataclasses, warnings
warnings.simplefilter("always", append=True)  # every warning shown, below the filters the package sets
from lejepa_domains import load_recipe
from lejepa_domains.data.views import MultiCropDataset
r = load_recipe("digits")
r = dataclasses.replace(r, global_augment=None, local_augment=None)  # the default augmentations, ToGray in them
ds = MultiCropDataset(r.source.load("train"), r)
for i in range(40):  # ToGray has p = 0.2 per view: 40 images x 4 views draw it many times
    ds[i]
print("drawn")
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={**__import__("os").environ, "NO_ALBUMENTATIONS_UPDATE": "1"})
    assert p.returncode == 0 and "drawn" in p.stdout, p.stderr[-2000:]
    assert "already gray" not in p.stderr, p.stderr[-2000:]


def test_recipe_validation_errors():
    base = dict(name="x", source=None, num_classes=2, image_size=16)
    with pytest.raises(UserError, match="mean/std need 1 values"):
        Recipe(**base, channels=1)
    with pytest.raises(UserError, match="class_names"):
        Recipe(**base, class_names=["a"])
    with pytest.raises(UserError, match="local_scale"):
        Recipe(**base, local_scale=(0.5, 0.2))
    with pytest.raises(UserError, match="unknown training option"):
        load_recipe("digits").with_train(nonsense=1)
