"""Test recipe for DDP exactness: a BatchNorm-free ViT (LayerNorm only) on a digits subset, so one process on the
global batch and K processes on shards compute exactly the same step."""

from lejepa_domains import Recipe, TrainConfig
from lejepa_domains.data.sources import ImageSet, SklearnDigits


class TinyDigits(SklearnDigits):
    def describe(self):
        return {**super().describe(), "kind": "tiny-digits-vit"}

    def _load(self, split, data):
        full = super()._load(split, data)
        n = {"train": 128, "val": 32, "test": 32}.get(split, len(full))
        return ImageSet(full.images[:n], full.labels[:n], full.class_names, {})


recipe = Recipe(
    name="tinyvit",
    source=TinyDigits(seed=0),
    num_classes=10,
    image_size=16,
    channels=1,
    mean=(0.30,),
    std=(0.38,),
    global_size=16,
    local_size=8,
    n_global=2,
    n_local=2,
    global_augment=lambda: [],
    local_augment=lambda: [],
    backbone="vit_tiny_patch16_224",
    backbone_kwargs={"img_size": 16, "patch_size": 4, "depth": 2, "dynamic_img_size": True},
    proj_hidden=(64,),
    proj_dim=16,
    proj_norm="ln",
    train=TrainConfig(epochs=1, batch_size=32, lr=1e-3, weight_decay=0.0, lam=0.5, num_slices=32, warmup_epochs=0),
)
