"""PathMNIST (MedMNIST v2): 107,180 colorectal-cancer H&E histology patches, 9 tissue classes, 28x28 RGB."""

import albumentations as A

from lejepa_domains import Recipe, TrainConfig
from lejepa_domains.data.hub import MedMNISTSource

CLASSES = ["adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle", "normal colon mucosa",
           "cancer-associated stroma", "colorectal adenocarcinoma epithelium"]


def augment() -> list:
    # Tissue on a slide has no orientation: flips + 90-degree rotations. Stain (H&E) varies between labs and scanners:
    # HED-space stain jitter plus mild brightness/contrast; slight blur for focus. No grayscale: stain colour matters.
    return [
        A.HorizontalFlip(p=0.5),
        A.VerticalFlip(p=0.5),
        A.RandomRotate90(p=1.0),
        A.HEStain(method="random_preset", intensity_scale_range=(0.8, 1.2), intensity_shift_range=(-0.1, 0.1), p=0.8),
        A.RandomBrightnessContrast(brightness_limit=0.15, contrast_limit=0.15, p=0.5),
        A.GaussianBlur(sigma_limit=(0.1, 0.8), p=0.2),
    ]


recipe = Recipe(
    name="pathmnist",
    description="PathMNIST 28 px, official MedMNIST train/val/test (test = CRC-VAL-HE-7K, another centre)",
    source=MedMNISTSource("pathmnist", size=28),
    num_classes=9,
    class_names=CLASSES,
    image_size=28,
    channels=3,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    global_size=28,
    local_size=14,
    global_scale=(0.4, 1.0),
    local_scale=(0.1, 0.4),
    global_augment=augment,
    local_augment=augment,
    backbone="resnet18",
    train=TrainConfig(epochs=100, batch_size=256, lr=5e-4, weight_decay=5e-2, lam=0.05, warmup_epochs=2,
                      num_slices=1024, num_workers=8),
    licence="CC BY 4.0",
    citation="Yang et al., MedMNIST v2, Scientific Data 10:41 (2023); Kather et al., PLOS Medicine 16:e1002730 (2019)",
    homepage="https://medmnist.com/",
    size="train 89,996 / val 10,004 / test 7,180",
)
