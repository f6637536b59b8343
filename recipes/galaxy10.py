"""Galaxy10 DECaLS: 17,736 colour (g, r, z) 256x256 galaxy cutouts in 10 Galaxy Zoo morphology classes."""

import albumentations as A
import cv2

from lejepa_domains import Recipe, TrainConfig
from lejepa_domains.data.augment import CentreKeepingCrop
from lejepa_domains.data.hub import HFSource

CLASSES = ["Disturbed", "Merging", "Round Smooth", "In-between Round Smooth", "Cigar Shaped Smooth", "Barred Spiral",
           "Unbarred Tight Spiral", "Unbarred Loose Spiral", "Edge-on without Bulge", "Edge-on with Bulge"]


def _physics() -> list:
    # The sky has no "up": any-angle rotation + flips. Colour is physics (redshift, stellar populations): no hue
    # jitter, no grayscale, only mild brightness/contrast (depth, sky level). Seeing/PSF and noise vary: blur + noise.
    return [
        A.Rotate(limit=180, border_mode=cv2.BORDER_REFLECT_101, p=1.0),
        A.HorizontalFlip(p=0.5),
        A.RandomBrightnessContrast(brightness_limit=0.1, contrast_limit=0.1, p=0.5),
        A.GaussianBlur(sigma_limit=(0.1, 1.5), p=0.5),
        A.GaussNoise(std_range=(0.01, 0.05), p=0.5),
    ]


def global_augment() -> list:
    # global_scale=(1, 1) makes the framework's crop a plain resize; the crop that varies scale keeps the centred galaxy
    return [*_physics()[:2], CentreKeepingCrop(scale=(0.35, 1.0), margin=0.25), *_physics()[2:]]


recipe = Recipe(
    name="galaxy10",
    description="Galaxy10 DECaLS morphology; val carved (stratified 10 %, seed 0) from the hub train split",
    source=HFSource("matthieulel/galaxy10_decals", revision=None,
                    carve={"val": {"from": "train", "fraction": 0.1, "seed": 0}},
                    unsplit={"fractions": {"train": 0.81, "val": 0.09, "test": 0.10}, "seed": 0}),
    num_classes=10,
    class_names=CLASSES,
    image_size=256,
    channels=3,
    mean=(0.5, 0.5, 0.5),
    std=(0.25, 0.25, 0.25),
    global_size=224,
    local_size=96,
    global_scale=(1.0, 1.0),
    local_scale=(0.05, 0.3),
    global_augment=global_augment,
    local_augment=_physics,
    backbone="resnet34",
    train=TrainConfig(epochs=200, batch_size=256, lr=5e-4, weight_decay=5e-2, lam=0.05, warmup_epochs=10,
                      num_slices=1024, num_workers=8),
    licence="none declared on the HF card (Galaxy10 code: MIT)",
    citation="Leung & Bovy, Galaxy10 DECaLS (astroNN); Walmsley et al. 2022, MNRAS 509, 3966 (Galaxy Zoo DECaLS)",
    homepage="https://huggingface.co/datasets/matthieulel/galaxy10_decals",
    size="17,736: train ~14.4k / val ~1.6k (carved) / test 1,774",
)
