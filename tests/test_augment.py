"""Augmentation: joint transforms, binary masks, seeded, dose kept under translation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atp.data import build_augmentation, mirror_permutation


def _sample(shape=(24, 40, 40)):
    zz, yy, xx = np.indices(shape)
    body = ((yy - 20) ** 2 + (xx - 20) ** 2 < 15 ** 2) & (zz > 2) & (zz < 21)
    organ = ((yy - 20) ** 2 + (xx - 28) ** 2 < 4 ** 2) & (zz > 6) & (zz < 16)
    dose = np.where(body, 10.0 + 0.5 * xx, 0.0).astype(np.float32)
    image = np.stack([organ, body.astype(float) * 0.7]).astype(np.float32)
    return {"image": torch.from_numpy(image), "dose": torch.from_numpy(dose[None]),
            "rois": torch.from_numpy(np.stack([organ, body])),
            "body": torch.from_numpy(body[None]), "patient_id": "x"}


@pytest.mark.parametrize("kind", ["monai", "torchio", "none"])
def test_masks_stay_binary_and_keys_move_together(kind):
    torch.manual_seed(0)  # TorchIO draws from torch's global generator
    t = build_augmentation(kind, patch_size=(24, 32, 32), seed=3)
    out = t(_sample())
    for key in ("rois", "body"):
        assert out[key].dtype == torch.bool
    assert out["image"].shape == (2, 24, 32, 32) and out["dose"].shape == (1, 24, 32, 32)
    assert out["patient_id"] == "x"
    # the organ channel of the image (linear) and the organ ROI (nearest) moved together
    a = out["image"][0] > 0.5
    b = out["rois"][0]
    if b.sum() > 20:
        iou = (a & b).sum().item() / max((a | b).sum().item(), 1)
        assert iou > 0.7
    # the dose is zero where the body mask is not (both moved the same way): beyond a
    # one-voxel rim (linear vs nearest interpolation at the edge) no dose is left outside
    from scipy import ndimage

    rim = ndimage.binary_dilation(out["body"][0].numpy(), iterations=1)
    outside = ~rim & (out["dose"][0].numpy() > 1.0)
    assert outside.mean() < 0.002


def test_monai_pipeline_is_reproducible_for_a_seed():
    a = build_augmentation("monai", patch_size=(24, 32, 32), seed=2020)
    b = build_augmentation("monai", patch_size=(24, 32, 32), seed=2020)
    c = build_augmentation("monai", patch_size=(24, 32, 32), seed=7)
    s = _sample()
    ra, rb, rc = a(dict(s)), b(dict(s)), c(dict(s))
    assert torch.equal(ra["dose"], rb["dose"]) and torch.equal(ra["rois"], rb["rois"])
    assert not torch.equal(ra["dose"], rc["dose"])


def test_pure_translation_keeps_the_dose():
    # no rotation or scaling, a translation small enough that the body stays in the patch
    t = build_augmentation("monai", patch_size=(24, 40, 40), rotate_deg=0.0, scale=0.0,
                           translate_fraction=0.05, seed=1)
    s = _sample()
    out = t(dict(s))
    before, after = float(s["dose"].sum()), float(out["dose"].sum())
    assert after == pytest.approx(before, rel=0.02)


def test_bad_kind_is_a_clear_error():
    with pytest.raises(ValueError, match="augmentation kind 'elastic'"):
        build_augmentation("elastic", patch_size=(8, 8, 8))


def test_mirroring_swaps_left_and_right_organs():
    organs = ["lung_l", "lung_r", "heart", "breast_l", "breast_r"]
    perm = mirror_permutation(organs)
    assert [organs[i] for i in perm] == ["lung_r", "lung_l", "heart", "breast_r", "breast_l"]
