"""DermaMNIST (MedMNIST v2): 10,015 dermatoscopic images (HAM10000), 7 diagnoses, 28x28 RGB. Non-commercial."""

import albumentations as A
import cv2

from lejepa_domains import Recipe, TrainConfig
from lejepa_domains.data.hub import MedMNISTSource

CLASSES = ["actinic keratoses and intraepithelial carcinoma", "basal cell carcinoma", "benign keratosis-like lesions",
           "dermatofibroma", "melanoma", "melanocytic nevi", "vascular lesions"]


def augment() -> list:
    # A lesion seen through a dermatoscope has no orientation: any-angle rotation + flips. Colour is diagnostic
    # (pigment network, blue-white veil): only mild brightness/contrast/saturation, tiny hue, no grayscale.
    return [
        A.Rotate(limit=180, border_mode=cv2.BORDER_REFLECT_101, p=1.0),
        A.HorizontalFlip(p=0.5),
        A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.1, hue=0.02, p=0.8),
        A.GaussianBlur(sigma_limit=(0.1, 0.8), p=0.2),
    ]


recipe = Recipe(
    name="dermamnist",
    description="DermaMNIST 28 px, official MedMNIST splits; licence CC BY-NC 4.0 (non-commercial) since v3",
    source=MedMNISTSource("dermamnist", size=28),
    num_classes=7,
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
    train=TrainConfig(epochs=200, batch_size=256, lr=5e-4, weight_decay=5e-2, lam=0.05, warmup_epochs=10,
                      num_slices=1024, num_workers=8),
    licence="CC BY-NC 4.0 (non-commercial, since MedMNIST v3)",
    citation="Yang et al., MedMNIST v2, Scientific Data 10:41 (2023); Tschandl et al., HAM10000, Sci. Data 5:180161 "
             "(2018)",
    homepage="https://medmnist.com/",
    size="train 7,007 / val 1,003 / test 2,005",
)
