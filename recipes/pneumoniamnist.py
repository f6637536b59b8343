"""PneumoniaMNIST (MedMNIST v2): 5,856 paediatric chest X-rays, normal vs pneumonia, 28x28 grey (1 channel)."""

import albumentations as A
import cv2

from lejepa_domains import Recipe, TrainConfig
from lejepa_domains.data.hub import MedMNISTSource


def augment() -> list:
    # Chest X-rays have an anatomy with a side (heart on the left): NO horizontal flip, only small rotations, shifts
    # and zooms (patient positioning). Exposure varies: brightness, contrast, gamma; detector noise and blur.
    return [
        A.Affine(rotate=(-10, 10), translate_percent=(-0.06, 0.06), scale=(0.9, 1.1),
                 border_mode=cv2.BORDER_REPLICATE, p=0.8),
        A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.8),
        A.RandomGamma(gamma_limit=(80, 125), p=0.5),
        A.GaussianBlur(sigma_limit=(0.1, 0.8), p=0.2),
        A.GaussNoise(std_range=(0.01, 0.04), p=0.3),
    ]


recipe = Recipe(
    name="pneumoniamnist",
    description="PneumoniaMNIST 28 px grey, official MedMNIST train/val/test; no horizontal flips",
    source=MedMNISTSource("pneumoniamnist", size=28),
    num_classes=2,
    class_names=["normal", "pneumonia"],
    image_size=28,
    channels=1,
    mean=(0.5,),
    std=(0.5,),
    global_size=28,
    local_size=14,
    global_scale=(0.5, 1.0),
    local_scale=(0.1, 0.4),
    global_augment=augment,
    local_augment=augment,
    backbone="resnet18",
    train=TrainConfig(epochs=200, batch_size=256, lr=5e-4, weight_decay=5e-2, lam=0.05, warmup_epochs=10,
                      num_slices=1024, num_workers=8),
    licence="CC BY 4.0",
    citation="Yang et al., MedMNIST v2, Scientific Data 10:41 (2023); Kermany et al., Cell 172(5):1122 (2018)",
    homepage="https://medmnist.com/",
    size="train 4,708 / val 524 / test 624",
)
