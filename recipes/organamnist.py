"""OrganAMNIST (MedMNIST v2): 58,830 axial abdominal CT slices, 11 organs, 28x28 grey (1 channel)."""

import albumentations as A
import cv2

from lejepa_domains import Recipe, TrainConfig
from lejepa_domains.data.hub import MedMNISTSource

CLASSES = ["bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right", "liver", "lung-left",
           "lung-right", "pancreas", "spleen"]


def augment() -> list:
    # Left and right are classes here (femur/kidney/lung left vs right): NO horizontal flip, which would swap labels.
    # Small rotations, shifts and zooms (patient position, crop of the organ box); CT grey levels come from a fixed
    # abdominal window, so only mild brightness/contrast/gamma (window and scanner differences) and a little noise.
    return [
        A.Affine(rotate=(-10, 10), translate_percent=(-0.06, 0.06), scale=(0.9, 1.1),
                 border_mode=cv2.BORDER_CONSTANT, fill=0, p=0.8),
        A.RandomBrightnessContrast(brightness_limit=0.15, contrast_limit=0.15, p=0.8),
        A.RandomGamma(gamma_limit=(85, 118), p=0.4),
        A.GaussianBlur(sigma_limit=(0.1, 0.7), p=0.2),
        A.GaussNoise(std_range=(0.01, 0.03), p=0.3),
    ]


recipe = Recipe(
    name="organamnist",
    description="OrganAMNIST 28 px grey CT, official MedMNIST train/val/test; no horizontal flips (left/right classes)",
    source=MedMNISTSource("organamnist", size=28),
    num_classes=11,
    class_names=CLASSES,
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
    train=TrainConfig(epochs=100, batch_size=256, lr=5e-4, weight_decay=5e-2, lam=0.05, warmup_epochs=5,
                      num_slices=1024, num_workers=8),
    licence="CC BY 4.0",
    citation="Yang et al., MedMNIST v2, Scientific Data 10:41 (2023); Bilic et al., The Liver Tumor Segmentation "
             "Benchmark (LiTS), Medical Image Analysis 84:102680 (2023)",
    homepage="https://medmnist.com/",
    size="train 34,561 / val 6,491 / test 17,778",
)
