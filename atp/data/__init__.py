"""Data for the dose-prediction network (DL layer: torch and Lightning)."""

from atp.data.augment import build_augmentation
from atp.data.channels import case_arrays, input_channels, postprocess_dose
from atp.data.datamodule import (
    BreastDataModule,
    DoseDataModule,
    datamodule_for_site,
)
from atp.data.dataset import CaseDataset, mirror_permutation, unmirror

__all__ = [
    "BreastDataModule", "CaseDataset", "DoseDataModule", "build_augmentation",
    "case_arrays", "datamodule_for_site", "input_channels", "mirror_permutation",
    "postprocess_dose", "unmirror",
]
