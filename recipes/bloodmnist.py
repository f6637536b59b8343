"""BloodMNIST (MedMNIST v2): 17,092 peripheral-blood-smear cell images, 8 cell types, 28x28 RGB."""

import albumentations as A
import cv2

from lejepa_domains import Recipe, TrainConfig
from lejepa_domains.data.hub import MedMNISTSource

CLASSES = ["basophil", "eosinophil", "erythroblast", "immature granulocytes", "lymphocyte", "monocyte", "neutrophil",
           "platelet"]


def augment() -> list:
    # One centred cell on a smear, no orientation: any-angle rotation + flips. Staining and illumination vary between
    # smears: mild colour jitter and gamma, tiny hue (granule colour separates eosinophils from basophils); focus blur.
    return [
        A.Rotate(limit=180, border_mode=cv2.BORDER_REFLECT_101, p=1.0),
        A.HorizontalFlip(p=0.5),
        A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.15, hue=0.02, p=0.8),
        A.RandomGamma(gamma_limit=(85, 115), p=0.3),
        A.GaussianBlur(sigma_limit=(0.1, 0.8), p=0.2),
    ]


recipe = Recipe(
    name="bloodmnist",
    description="BloodMNIST 28 px, official MedMNIST train/val/test",
    source=MedMNISTSource("bloodmnist", size=28),
    num_classes=8,
    class_names=CLASSES,
    image_size=28,
    channels=3,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
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
    citation="Yang et al., MedMNIST v2, Scientific Data 10:41 (2023); Acevedo et al., Data in Brief 30:105474 (2020)",
    homepage="https://medmnist.com/",
    size="train 11,959 / val 1,712 / test 3,421",
)
