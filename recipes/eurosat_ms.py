"""EuroSAT MS: the 27,000 Sentinel-2 64x64 land-cover patches with all 13 spectral bands, uint16 (remote sensing)."""

import albumentations as A

from lejepa_domains import Recipe, TrainConfig
from lejepa_domains.data.hub import HFSource
from lejepa_domains.data.multichannel import ChannelwiseBrightnessContrast, RelativeGaussNoise

# ClassLabel names of blanchon/EuroSAT_MSI (checked against the data on load)
CLASSES = ["Annual Crop", "Forest", "Herbaceous Vegetation", "Highway", "Industrial Buildings", "Pasture",
           "Permanent Crop", "Residential Buildings", "River", "SeaLake"]
# band order of the EuroSAT MS GeoTIFFs (B8A last), see the data card
BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A"]


def augment() -> list:
    # Nadir views: flips and 90-degree rotations are free and act on all 13 bands alike. The spectrum is the signal
    # (vegetation red edge, NIR, SWIR water bands): no colour jitter, no grey conversion, only a mild independent gain
    # and offset per band (calibration, haze, illumination; +-10 %), light blur and a little sensor noise.
    return [
        A.HorizontalFlip(p=0.5),
        A.VerticalFlip(p=0.5),
        A.RandomRotate90(p=1.0),
        ChannelwiseBrightnessContrast(brightness=0.1, contrast=0.1, p=0.8),
        A.GaussianBlur(sigma_limit=(0.1, 1.0), p=0.3),
        RelativeGaussNoise(std_range=(0.01, 0.03), p=0.2),
    ]


recipe = Recipe(
    name="eurosat_ms",
    description="EuroSAT MS, 13 Sentinel-2 L1C bands as uint16, official train/validation/test of blanchon/EuroSAT_MSI",
    source=HFSource("blanchon/EuroSAT_MSI", revision="41185dc00cf3c6efdfffb2ffa69d4821a1b1981b", image_column="image"),
    num_classes=10,
    class_names=CLASSES,
    splits={"train": "train", "val": "validation", "test": "test"},
    image_size=64,
    channels=13,
    dtype="uint16",
    scaling="linear",
    pixel_max=10000.0,  # Sentinel-2 L1C quantification value: digital number / 10000 = top-of-atmosphere reflectance
    band_names=BANDS,
    rgb_bands=(3, 2, 1),  # B04, B03, B02
    # per-band mean/std of the reflectance; provisional: the GFM-Bench EuroSAT card's values / 10000 (see the card)
    mean=(0.1354, 0.1118, 0.1043, 0.0948, 0.1199, 0.2000, 0.2369, 0.2297, 0.0732, 0.0012, 0.1819, 0.1119, 0.2594),
    std=(0.0246, 0.0333, 0.0395, 0.0594, 0.0566, 0.0861, 0.1087, 0.1118, 0.0405, 0.0005, 0.1003, 0.0761, 0.1232),
    global_size=64,
    local_size=32,
    global_scale=(0.3, 1.0),
    local_scale=(0.05, 0.3),
    global_augment=augment,
    local_augment=augment,
    backbone="resnet18",
    train=TrainConfig(epochs=100, batch_size=256, lr=5e-4, weight_decay=5e-2, lam=0.05, warmup_epochs=5,
                      num_slices=1024, num_workers=8),
    licence="unknown on the hub copy (blanchon/EuroSAT_MSI card); EuroSAT itself is distributed for research, cite it",
    citation="Helber et al., EuroSAT: A Novel Dataset and Deep Learning Benchmark for Land Use and Land Cover "
             "Classification, IEEE JSTARS 2019",
    homepage="https://huggingface.co/datasets/blanchon/EuroSAT_MSI",
    size="train 16,200 / val 5,400 / test 5,400",
)
