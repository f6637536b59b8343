"""EuroSAT RGB: 27,000 Sentinel-2 64x64 land-cover patches in 10 classes (remote sensing)."""

import albumentations as A

from lejepa_domains import Recipe, TrainConfig
from lejepa_domains.data.hub import HFSource

CLASSES = ["AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture", "PermanentCrop",
           "Residential", "River", "SeaLake"]


def augment() -> list:
    # Nadir views have no "up": flips and 90-degree rotations are free. Colour is the spectral signature (vegetation,
    # water, soil): no hue jitter or grayscale, only illumination/haze-like brightness, contrast and gamma; slight blur.
    return [
        A.HorizontalFlip(p=0.5),
        A.VerticalFlip(p=0.5),
        A.RandomRotate90(p=1.0),
        A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.8),
        A.RandomGamma(gamma_limit=(80, 125), p=0.5),
        A.GaussianBlur(sigma_limit=(0.1, 1.0), p=0.3),
    ]


recipe = Recipe(
    name="eurosat",
    description="EuroSAT RGB with the official train/validation/test split of timm/eurosat-rgb",
    source=HFSource("timm/eurosat-rgb", revision="b4e28552cd5f3932b6abc37eb20d3e84901ad728"),
    num_classes=10,
    class_names=CLASSES,
    splits={"train": "train", "val": "validation", "test": "test"},
    image_size=64,
    channels=3,
    mean=(0.5, 0.5, 0.5),
    std=(0.25, 0.25, 0.25),
    global_size=64,
    local_size=32,
    global_scale=(0.3, 1.0),
    local_scale=(0.05, 0.3),
    global_augment=augment,
    local_augment=augment,
    backbone="resnet18",
    train=TrainConfig(epochs=100, batch_size=256, lr=5e-4, weight_decay=5e-2, lam=0.05, warmup_epochs=5,
                      num_slices=1024, num_workers=8),
    licence="MIT (timm/eurosat-rgb card)",
    citation="Helber et al., EuroSAT: A Novel Dataset and Deep Learning Benchmark for Land Use and Land Cover "
             "Classification, IEEE JSTARS 2019",
    homepage="https://huggingface.co/datasets/timm/eurosat-rgb",
    size="train 16,200 / val 5,400 / test 5,400",
)
