"""Patch samplers: crop first, joint transforms, binary masks, seeded, isotropic scale,
one random stream per DataLoader worker."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch

from atp.cases import PatientCase, Prescription, Roi
from atp.data import ChannelLayout, build_augmentation, mirror_permutation, seed_worker


def _case(shape=(24, 40, 40)) -> PatientCase:
    zz, yy, xx = np.indices(shape)
    body = ((yy - 20) ** 2 + (xx - 20) ** 2 < 15 ** 2) & (zz > 2) & (zz < 21)
    organ = ((yy - 20) ** 2 + (xx - 28) ** 2 < 4 ** 2) & (zz > 6) & (zz < 16)
    ptv = ((yy - 18) ** 2 + (xx - 14) ** 2 < 4 ** 2) & (zz > 8) & (zz < 14)
    dose = np.where(body, 10.0 + 0.5 * xx, 0.0).astype(np.float32)
    return PatientCase(patient_id="x", ct_hu=np.where(body, 0.0, -1000.0).astype(np.float32),
                       spacing_mm=(3.0, 3.0, 3.0),
                       rois={"body": Roi(body, "external"), "heart": Roi(organ, "organ"),
                             "ptv_6000": Roi(ptv, "target")},
                       prescriptions=(Prescription("ptv_6000", 60.0, 30),), dose_gy=dose)


LAYOUT = ChannelLayout(organs=("heart",), reference_rx_gy=60.0)


def _run(sampler, case=None):
    cc = LAYOUT.compact(case or _case())
    return sampler(cc.shape, partial(LAYOUT.region, cc))


@pytest.mark.parametrize("kind", ["affine", "torchio", "none"])
def test_masks_stay_binary_and_keys_move_together(kind):
    torch.manual_seed(0)  # TorchIO draws from torch's global generator
    out = _run(build_augmentation(kind, patch_size=(24, 32, 32), seed=3))
    for key in ("rois", "body"):
        assert out[key].dtype == torch.bool
    assert out["image"].shape == (3, 24, 32, 32) and out["dose"].shape == (1, 24, 32, 32)
    assert out["rois"].shape == (2, 24, 32, 32)
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
    outside = ~rim & (out["dose"][0].numpy() > 1.0 / 60.0)
    assert outside.mean() < 0.002


def test_affine_is_reproducible_for_a_seed():
    a, b, c = (build_augmentation("affine", patch_size=(24, 32, 32), seed=s)
               for s in (2020, 2020, 7))
    ra, rb, rc = _run(a), _run(b), _run(c)
    assert torch.equal(ra["dose"], rb["dose"]) and torch.equal(ra["rois"], rb["rois"])
    assert not torch.equal(ra["dose"], rc["dose"])


def test_pure_translation_keeps_the_dose():
    # no rotation or scaling, a translation small enough that the body stays in the patch
    t = build_augmentation("affine", patch_size=(24, 40, 40), rotate_deg=0.0, scale=0.0,
                           translate_fraction=0.05, seed=1)
    case = _case()
    out = _run(t, case)
    before = float(case.dose_gy.sum(dtype=np.float64)) / 60.0
    assert float(out["dose"].sum()) == pytest.approx(before, rel=0.02)


def _coordinate_reader(lo, hi):
    """A case whose three image channels hold each voxel's own (z, y, x) coordinates."""
    grid = np.stack(np.meshgrid(*[np.arange(a, b, dtype=np.float32) for a, b in
                                  zip(lo, hi, strict=True)], indexing="ij"))
    shape = grid.shape[1:]
    return {"image": grid, "dose": np.zeros((1, *shape), np.float32),
            "rois": np.ones((1, *shape), bool), "body": np.ones((1, *shape), bool)}


def test_one_isotropic_scale_factor_per_sample():
    """The three axes get the same scale (issue 17: "uniformly across all axes"): fit the
    affine map from the output voxels to the input coordinates they were read from."""
    patch = (12, 16, 16)
    sampler = build_augmentation("affine", patch_size=patch, seed=11)
    u = np.stack(np.meshgrid(*[np.arange(n) for n in patch], indexing="ij")).reshape(3, -1)
    design = np.vstack([u, np.ones(u.shape[1])]).T
    scales = []
    for _ in range(6):
        out = sampler((60, 80, 80), _coordinate_reader)
        x = out["image"].numpy().reshape(3, -1)
        a = np.linalg.lstsq(design, x.T, rcond=None)[0][:3].T  # x = A u + c
        s = np.linalg.svd(a, compute_uv=False)
        assert s.max() / s.min() == pytest.approx(1.0, abs=1e-4)  # the same factor
        params = out["augment"].numpy()
        assert s.mean() == pytest.approx(params[3], abs=1e-4)  # the recorded one
        assert np.all(np.abs(params[:3]) <= 10.0) and 0.9 <= params[3] <= 1.1
        assert params[4] == 0.0  # no translation along z
        scales.append(params[3])
    assert np.ptp(scales) > 0.01  # drawn per sample


def test_only_the_patch_region_is_built():
    boxes = []

    def reader(lo, hi):
        boxes.append(np.asarray(hi) - np.asarray(lo))
        return _coordinate_reader(lo, hi)

    sampler = build_augmentation("affine", patch_size=(16, 16, 16), seed=5)
    for _ in range(5):
        sampler((128, 128, 128), reader)
    # a 16^3 patch rotated by <= 10 degrees about each axis and scaled by <= 1.1 fits in
    # 16 * 1.1 * 1.33 + 2 voxels per axis: never the whole 128^3 volume
    assert max(int(b.max()) for b in boxes) <= 26


class _Draws(torch.utils.data.Dataset):
    def __init__(self, sampler):
        self.transform = sampler

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return self.transform((40, 40, 40), _coordinate_reader)["augment"]


@pytest.mark.parametrize("init", [seed_worker, None])
def test_two_workers_draw_differently(init):
    sampler = build_augmentation("affine", patch_size=(8, 8, 8), seed=2020)
    loader = torch.utils.data.DataLoader(_Draws(sampler), batch_size=1, num_workers=2,
                                         worker_init_fn=init)
    draws = [tuple(b[0].tolist()) for b in loader]
    if init is None:  # without it, both workers copy the same generator state
        assert len(set(draws)) < len(draws)
    else:
        assert len(set(draws)) == len(draws)


def test_bad_kind_is_a_clear_error():
    with pytest.raises(ValueError, match="augmentation kind 'elastic'"):
        build_augmentation("elastic", patch_size=(8, 8, 8))


def test_mirroring_swaps_left_and_right_organs():
    organs = ["lung_l", "lung_r", "heart", "breast_l", "breast_r"]
    perm = mirror_permutation(organs)
    assert [organs[i] for i in perm] == ["lung_r", "lung_l", "heart", "breast_r", "breast_l"]
