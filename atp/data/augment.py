"""Augmentation pipelines (MONAI dictionary transforms or TorchIO), applied jointly.

Every pipeline maps a sample dict with ``image`` (C, z, y, x), ``dose`` (1, ...), ``rois``
(R, ...) and ``body`` (1, ...) to one of spatial size ``patch_size``: a random affine
(rotation about each axis, isotropic scaling, translation in the axial plane) with linear
interpolation for image and dose and nearest for the masks, then a crop/pad to the patch.
The study translated by up to +-64 voxels axially on a 128 grid: ``translate_fraction``
(0.5) scales that to the patch in use.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

KEYS = ("image", "dose", "rois", "body")
MODES = ("bilinear", "bilinear", "nearest", "nearest")


def _binarize(sample: dict) -> dict:
    for key in ("rois", "body"):
        if key in sample:
            sample[key] = torch.as_tensor(sample[key]) > 0.5
    return sample


def build_augmentation(kind: str = "monai", *, patch_size: Sequence[int],
                       rotate_deg: float = 10.0, scale: float = 0.1,
                       translate_fraction: float = 0.5, prob: float = 1.0,
                       seed: int = 2020) -> Callable[[dict], dict]:
    """The training transform: ``kind`` is ``monai``, ``torchio`` or ``none``."""
    patch = tuple(int(p) for p in patch_size)
    shift = tuple([0.0] + [translate_fraction * p for p in patch[1:]])
    if kind == "monai":
        return _monai(patch, rotate_deg, scale, shift, prob, seed)
    if kind == "torchio":
        return _torchio(patch, rotate_deg, scale, shift, prob)
    if kind == "none":
        return _crop_only(patch, seed)
    raise ValueError(f"augmentation kind '{kind}' is not monai, torchio or none")


def _monai(patch, rotate_deg, scale, shift, prob, seed):
    from monai.transforms import (
        Compose,
        RandAffined,
        RandSpatialCropd,
        SpatialPadd,
    )

    rad = math.radians(rotate_deg)
    t = Compose([
        RandAffined(keys=KEYS, mode=MODES, prob=prob, rotate_range=(rad, rad, rad),
                    scale_range=(scale, scale, scale), translate_range=shift,
                    padding_mode="zeros", allow_missing_keys=True),
        SpatialPadd(keys=KEYS, spatial_size=patch, allow_missing_keys=True),
        RandSpatialCropd(keys=KEYS, roi_size=patch, random_size=False,
                         allow_missing_keys=True),
    ])
    t.set_random_state(seed=seed)

    def apply(sample: dict) -> dict:
        out = t({k: v for k, v in sample.items() if k in KEYS})
        out = {k: torch.as_tensor(np.asarray(v)) if not torch.is_tensor(v) else v.as_tensor()
               if hasattr(v, "as_tensor") else v for k, v in out.items()}
        return _binarize({**sample, **out})

    apply.transform = t  # for set_random_state by worker init
    return apply


def _torchio(patch, rotate_deg, scale, shift, prob):
    import torchio as tio

    # TorchIO images are (C, W, H, D); our (C, z, y, x) arrays are passed as they are and
    # the patch/translation tuples follow the same axis order.
    t = tio.Compose([
        tio.RandomAffine(scales=scale, degrees=rotate_deg, translation=shift,
                         image_interpolation="linear", label_interpolation="nearest",
                         p=prob),
        tio.CropOrPad(patch),
    ])

    def apply(sample: dict) -> dict:
        subject = tio.Subject(
            image=tio.ScalarImage(tensor=torch.as_tensor(sample["image"])),
            dose=tio.ScalarImage(tensor=torch.as_tensor(sample["dose"])),
            rois=tio.LabelMap(tensor=torch.as_tensor(sample["rois"]).to(torch.uint8)),
            body=tio.LabelMap(tensor=torch.as_tensor(sample["body"]).to(torch.uint8)))
        out = t(subject)
        return _binarize({**sample, **{k: out[k].data for k in KEYS}})

    return apply


def _crop_only(patch, seed):
    from monai.transforms import Compose, RandSpatialCropd, SpatialPadd

    t = Compose([SpatialPadd(keys=KEYS, spatial_size=patch, allow_missing_keys=True),
                 RandSpatialCropd(keys=KEYS, roi_size=patch, random_size=False,
                                  allow_missing_keys=True)])
    t.set_random_state(seed=seed)

    def apply(sample: dict) -> dict:
        out = t({k: v for k, v in sample.items() if k in KEYS})
        out = {k: v.as_tensor() if hasattr(v, "as_tensor") else torch.as_tensor(v)
               for k, v in out.items()}
        return _binarize({**sample, **out})

    apply.transform = t
    return apply
