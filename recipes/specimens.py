"""Offline default: patches of scientific images shipped inside scikit-image, classified by specimen (8 classes)."""

import albumentations as A

from lejepa_domains import Recipe, TrainConfig
from lejepa_domains.data.sources import SPECIMENS, SkimageSpecimens


def augment() -> list:
    # Specimen patches (microscopy, astronomy, textures) have no preferred orientation: a horizontal flip and a 90°
    # rotation (together all 8 symmetries of the square) are free. Mild colour jitter and blur; no grayscale (colour carries stain/physics information).
    # Acquisition varies in exposure and stain/white balance, so views vary gamma, brightness, contrast and
    # per-channel gain: the representation should not care.
    return [
        A.HorizontalFlip(p=0.5),
        A.RandomRotate90(p=1.0),
        A.RandomGamma(gamma_limit=(60, 160), p=0.8),
        A.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.3, hue=0.02, p=0.8),
        A.MultiplicativeNoise(multiplier=(0.7, 1.3), per_channel=True, elementwise=False, p=0.8),
        A.GaussianBlur(sigma_limit=(0.1, 1.0), p=0.3),
    ]


recipe = Recipe(
    name="specimens",
    description="32x32 patches of 8 scikit-image specimens; train/val/test from disjoint image blocks",
    source=SkimageSpecimens(block=64, stride=16, max_side=512, seed=0),
    num_classes=8,
    class_names=list(SPECIMENS),
    image_size=32,
    channels=3,
    mean=(0.437, 0.388, 0.374),
    std=(0.280, 0.259, 0.259),
    global_size=32,
    local_size=16,
    n_global=2,
    n_local=8,
    global_scale=(0.3, 1.0),
    local_scale=(0.05, 0.3),
    global_augment=augment,
    local_augment=augment,
    backbone="resnet10t",
    proj_hidden=(512, 512),
    proj_dim=64,
    train=TrainConfig(epochs=10, batch_size=64, lr=2e-3, weight_decay=5e-4, lam=0.05, schedule="constant",
                      warmup_epochs=1, num_slices=256, num_workers=0),
    licence="BSD-3-Clause (scikit-image data; see the data card for each image's origin)",
    citation="van der Walt et al., scikit-image: image processing in Python, PeerJ 2014",
    homepage="https://scikit-image.org/docs/stable/api/skimage.data.html",
    size="train 3,330 / val 468 / test 954 patches",
)
