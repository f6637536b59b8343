"""Published numbers, kept beside ours and never mixed with them.

Users compare against paper tables, but probe protocols move numbers by several points (the same DINO ViT-B/16
scores 91.7 and 95.0 on OrganAMNIST under two probes). ``eval`` prints the rows whose ``dataset`` is the evaluated
recipe beside our results, always labelled **published, other protocol**; they live in ``report["published"]``,
outside ``report["models"]``, so no interval, ★ or paired difference is ever computed from them (tested).

Every row names its source and its protocol (tested). Facts come from ``/work/shared/reference`` of this project,
which quotes the papers and benchmark READMEs named in ``source``; a year is given where the source dates itself
(arXiv identifiers carry it), else None.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["ReferenceRow", "REFERENCE_ROWS", "reference_rows", "LABEL"]

LABEL = "published, other protocol"


@dataclass(frozen=True)
class ReferenceRow:
    """One published number. ``value`` in % (top-1 accuracy unless ``metric`` says otherwise); ``dataset``: the
    recipe name it belongs to; ``split`` and ``protocol``: how it was measured, in the source's words;
    ``note``: what makes it incomparable or suspect (contamination, another split)."""

    value: float
    model: str
    dataset: str
    split: str
    protocol: str
    source: str
    year: int | None
    metric: str = "top-1 %"
    note: str = ""

    def as_dict(self) -> dict:
        return {**asdict(self), "label": LABEL}


_LEJEPA = "Balestriero & LeCun, LeJEPA, arXiv 2511.08544 (v1), Galaxy10 table"
_LEJEPA_SCRATCH = "Balestriero & LeCun, LeJEPA, arXiv 2511.08544 (v1), in-domain from-scratch table"
_G10_SPLIT = "Galaxy10 DECaLS, the paper's split (≈11k train images)"
_G10_FROZEN = "frozen backbone, linear probe, all labels; 400 epochs, mean of 3 seeds"
_G10_1SHOT = "frozen backbone, linear probe, 1 label per class; 400 epochs, mean of 3 seeds"
_MEDPLUS = "MedMNIST+ benchmark (Doerrich et al., arXiv 2404.15786; BENCHMARK.md of " \
           "sdoerrich97/rethinking-model-prototyping-MedMNISTPlus)"
_MEDPLUS_PROTO = "frozen DINO ViT-B/16, linear probe, images at 224 px; mean of 3 seeds"
_MEDV2 = "Yang et al., MedMNIST v2, Scientific Data 2023, Table 3"
_MEDV2_PROTO = "supervised end-to-end training at 28 px (not a frozen probe)"

REFERENCE_ROWS: tuple[ReferenceRow, ...] = (
    ReferenceRow(78.17, "LeJEPA ResNet-34 (in-domain)", "galaxy10", _G10_SPLIT, _G10_FROZEN, _LEJEPA, 2025),
    ReferenceRow(76.52, "LeJEPA ConvNeXt-V2 Nano (in-domain)", "galaxy10", _G10_SPLIT, _G10_FROZEN, _LEJEPA, 2025),
    ReferenceRow(75.95, "LeJEPA ResNet-18 (in-domain)", "galaxy10", _G10_SPLIT, _G10_FROZEN, _LEJEPA, 2025),
    ReferenceRow(67.62, "DINOv2 ViT-S (transfer)", "galaxy10", _G10_SPLIT, _G10_FROZEN, _LEJEPA, 2025),
    ReferenceRow(71.38, "DINOv3 ViT-S/16 (transfer)", "galaxy10", _G10_SPLIT, _G10_FROZEN, _LEJEPA, 2025),
    ReferenceRow(31.08, "LeJEPA ResNet-34 (in-domain)", "galaxy10", _G10_SPLIT, _G10_1SHOT, _LEJEPA, 2025),
    ReferenceRow(27.68, "DINOv2 ViT-S (transfer)", "galaxy10", _G10_SPLIT, _G10_1SHOT, _LEJEPA, 2025),
    ReferenceRow(30.17, "DINOv3 ViT-S/16 (transfer)", "galaxy10", _G10_SPLIT, _G10_1SHOT, _LEJEPA, 2025),
    ReferenceRow(76.72, "DINOv2 ViT-L/14", "galaxy10", "HF matthieulel/galaxy10_decals, train 15,962 / test 1,774",
                 "frozen backbone, linear probe (VISReg README protocol)", "VISReg README (arXiv 2606.02572)", 2026),
    ReferenceRow(72.77, "DINO ViT-B/16", "galaxy10", "HF matthieulel/galaxy10_decals, train 15,962 / test 1,774",
                 "frozen backbone, linear probe (VISReg README protocol)", "VISReg README (arXiv 2606.02572)", 2026),
    ReferenceRow(73.57, "LeJEPA ResNet-18 (in-domain, from scratch)", "food101", "Food-101 official split",
                 "frozen backbone, linear probe", _LEJEPA_SCRATCH, 2025),
    *(ReferenceRow(v, f"DINOv2 {m}", "food101", "Food-101 official split", "frozen backbone, linear probe",
                   "Oquab et al., DINOv2, arXiv 2304.07193, Table 8", 2023,
                   note="contaminated: LVD-142M was retrieved with Food-101 train images as queries (Table 15)")
      for v, m in ((89.1, "ViT-S/14"), (92.8, "ViT-B/14"), (94.3, "ViT-L/14"), (94.7, "ViT-g/14"))),
    *(ReferenceRow(v, "DINO ViT-B/16 (transfer)", d, "official MedMNIST split", _MEDPLUS_PROTO, _MEDPLUS, 2024,
                   note="224 px images, our recipes use 28 px")
      for v, d in ((96.14, "pathmnist"), (84.42, "dermamnist"), (98.70, "bloodmnist"), (91.56, "pneumoniamnist"),
                   (94.96, "organamnist"))),
    ReferenceRow(90.7, "ResNet-18 (28 px, supervised)", "pathmnist", "official MedMNIST split", _MEDV2_PROTO,
                 _MEDV2, 2023),
    ReferenceRow(73.5, "ResNet-18 (28 px, supervised)", "dermamnist", "official MedMNIST split", _MEDV2_PROTO,
                 _MEDV2, 2023),
    ReferenceRow(95.6, "DINOv3 ViT-L/16 (transfer)", "eurosat", "longitude split (not the split of our recipe)",
                 "frozen backbone, logistic regression with C chosen on val (torchgeo-bench); 95% CI 95.1–96.2",
                 "torchgeo-bench (best normalisation variant)", None),
    ReferenceRow(93.2, "DINOv3 ViT-L/16 (transfer)", "eurosat", "longitude split (not the split of our recipe)",
                 "frozen backbone, kNN with k = 5 (torchgeo-bench)", "torchgeo-bench (best normalisation variant)",
                 None),
)


def reference_rows(recipe_name: str) -> list[dict]:
    """The published rows of a recipe (by its name), as report dicts labelled :data:`LABEL`."""
    return [r.as_dict() for r in REFERENCE_ROWS if r.dataset == recipe_name]
