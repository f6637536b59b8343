"""Smoke-test recipe: scikit-learn's 1,797 8x8 handwritten digits (upsampled to 16x16, 1 channel)."""

import albumentations as A

from lejepa_domains import Recipe, TrainConfig
from lejepa_domains.data.sources import SklearnDigits


def augment() -> list:
    # Digits have an orientation (6 vs 9): no flips or rotations beyond a few degrees.
    return [
        A.Affine(rotate=(-10, 10), translate_percent=(-0.05, 0.05), p=0.5),
        A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.5),
    ]


recipe = Recipe(
    name="digits",
    description="sklearn load_digits, 10 classes; too easy to show anything (raw-pixel kNN ~98 %)",
    source=SklearnDigits(seed=0),
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
    global_augment=augment,
    local_augment=augment,
    backbone="resnet10t",
    proj_hidden=(256,),
    proj_dim=32,
    train=TrainConfig(epochs=2, batch_size=64, lr=2e-3, weight_decay=5e-4, lam=0.05, num_slices=128),
    licence="BSD-3-Clause (scikit-learn); original UCI Optical Recognition of Handwritten Digits, CC BY 4.0",
    citation="Alpaydin & Kaynak, UCI Optical Recognition of Handwritten Digits, 1998",
    homepage="https://scikit-learn.org/stable/datasets/toy_dataset.html#digits-dataset",
    size="train 1,258 / val 180 / test 359",
)
