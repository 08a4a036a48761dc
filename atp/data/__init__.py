"""Data for the dose-prediction network (DL layer: torch and Lightning)."""

from atp.data.augment import build_augmentation
from atp.data.channels import ChannelLayout, mirror_permutation, postprocess_dose
from atp.data.compact import CompactCase
from atp.data.datamodule import DoseDataModule, datamodule_for_site, seed_worker
from atp.data.dataset import CaseDataset

__all__ = [
    "CaseDataset", "ChannelLayout", "CompactCase", "DoseDataModule", "build_augmentation",
    "datamodule_for_site", "mirror_permutation", "postprocess_dose", "seed_worker",
]
