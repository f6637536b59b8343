"""Test recipe: a 320-image subset of scikit-learn digits, so trainer tests run whole epochs in seconds."""

import albumentations as A

from lejepa_domains import Recipe, TrainConfig
from lejepa_domains.data.sources import ImageSet, SklearnDigits


class TinyDigits(SklearnDigits):
    LIMIT = {"train": 320, "val": 96, "test": 96}

    def describe(self):
        return {**super().describe(), "kind": "tiny-digits", "limit": self.LIMIT}

    def _load(self, split, data):
        full = super()._load(split, data)
        n = self.LIMIT.get(split, len(full))
        return ImageSet(full.images[:n], full.labels[:n], full.class_names, {})


recipe = Recipe(
    name="tinydigits",
    source=TinyDigits(seed=0),
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
    backbone="resnet10t",
    proj_hidden=(128,),
    proj_dim=16,
    train=TrainConfig(epochs=2, batch_size=32, lr=2e-3, weight_decay=5e-4, lam=0.05, num_slices=32),
)
