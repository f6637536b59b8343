"""Test recipe behind the committed baseline fixtures (tests/fixtures/baseline/): a digits subset and timm's tiny
``test_resnet`` (372k parameters, BatchNorm), so a whole two-epoch run folder stays a few MB."""

import albumentations as A

from lejepa_domains import Recipe, TrainConfig
from lejepa_domains.data.sources import ImageSet, SklearnDigits


class FixtureDigits(SklearnDigits):
    LIMIT = {"train": 256, "val": 64, "test": 96}

    def describe(self):
        return {**super().describe(), "kind": "fixture-digits", "limit": self.LIMIT}

    def _load(self, split, data):
        full = super()._load(split, data)
        n = self.LIMIT.get(split, len(full))
        return ImageSet(full.images[:n], full.labels[:n], full.class_names, {})


recipe = Recipe(
    name="fixturedigits",
    source=FixtureDigits(seed=0),
    num_classes=10,
    class_names=[str(i) for i in range(10)],
    image_size=16,
    channels=1,
    mean=(0.30,),
    std=(0.38,),
    global_size=16,
    local_size=8,
    n_global=2,
    n_local=2,
    global_scale=(0.5, 1.0),
    local_scale=(0.2, 0.5),
    global_augment=lambda: [A.RandomBrightnessContrast(p=0.5)],
    local_augment=lambda: [A.RandomBrightnessContrast(p=0.5)],
    backbone="test_resnet",
    proj_hidden=(64,),
    proj_dim=16,
    train=TrainConfig(epochs=2, batch_size=32, lr=2e-3, weight_decay=5e-4, lam=0.05, num_slices=32),
)
