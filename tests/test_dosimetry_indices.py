"""Known-value tests of atp.dosimetry.indices (hand-counted voxel geometries)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from atp.dosimetry import gradient_index, homogeneity_index_icru83, paddick_ci, rtog_ci

SHAPE = (12, 12, 12)


def _lattice_sphere(center: tuple[int, int, int]) -> np.ndarray:
    """Radius-1 voxel sphere: the centre voxel and its 6 face neighbours (7 voxels)."""
    z, y, x = np.indices(SHAPE)
    cz, cy, cx = center
    return (z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 <= 1


def _box(x0: int) -> np.ndarray:
    m = np.zeros(SHAPE, dtype=bool)
    m[4:8, 4:8, x0 : x0 + 4] = True
    return m


def test_paddick_sphere_shifted_dose_sphere():
    # Target: 7-voxel sphere at (5,5,5); 60 Gy dose sphere at (5,5,6), shifted 1 voxel
    # along x. Hand count: TV = 7, PIV = 7, TV_PIV = {(5,5,5), (5,5,6)} = 2.
    # Paddick CI = 2^2 / (7 * 7) = 4/49; RTOG CI = 7/7 = 1.
    target = _lattice_sphere((5, 5, 5))
    dose = np.where(_lattice_sphere((5, 5, 6)), 60.0, 20.0)
    assert target.sum() == 7
    assert paddick_ci(dose, target, prescription_gy=60.0) == pytest.approx(4 / 49)
    assert rtog_ci(dose, target, prescription_gy=60.0) == pytest.approx(1.0)
    # Unshifted dose sphere: perfect conformity, 7^2 / (7 * 7) = 1.
    dose_on = np.where(target, 60.0, 20.0)
    assert paddick_ci(dose_on, target, prescription_gy=60.0) == pytest.approx(1.0)


def test_paddick_box_shift_and_body_mask():
    # 4x4x4 target box (64 voxels), 4x4x4 dose box shifted 1 voxel in x: overlap 4x4x3 = 48.
    # Paddick = 48^2 / (64 * 64) = 0.5625; RTOG = 64 / 64 = 1.
    target = _box(4)
    dose = np.where(_box(5), 70.0, 10.0)
    assert paddick_ci(dose, target, prescription_gy=70.0) == pytest.approx(0.5625)
    assert rtog_ci(dose, target, prescription_gy=70.0) == pytest.approx(1.0)
    # A body mask that excludes the slab x >= 8 leaves PIV = 48:
    # Paddick = 48^2 / (64 * 48) = 0.75; RTOG = 48 / 64 = 0.75.
    body = np.ones(SHAPE, dtype=bool)
    body[:, :, 8:] = False
    assert paddick_ci(dose, target, prescription_gy=70.0, body_mask=body) == pytest.approx(0.75)
    assert rtog_ci(dose, target, prescription_gy=70.0, body_mask=body) == pytest.approx(0.75)


def test_gradient_index_nested_boxes():
    # 60 Gy in a 4^3 box (64 voxels) inside a 6^3 box (216 voxels) at 40 Gy >= 30 Gy
    # (50 % of Rx), 0 elsewhere: GI = 216 / 64 = 3.375.
    dose = np.zeros(SHAPE)
    dose[3:9, 3:9, 3:9] = 40.0
    dose[4:8, 4:8, 4:8] = 60.0
    assert gradient_index(dose, prescription_gy=60.0) == pytest.approx(3.375)
    # Body mask cutting off slice z = 3 (6x6 = 36 voxels, all at 40 Gy): (216 - 36) / 64.
    body = np.ones(SHAPE, dtype=bool)
    body[3] = False
    assert gradient_index(dose, prescription_gy=60.0, body_mask=body) == pytest.approx(180 / 64)


def test_homogeneity_index_known_distribution():
    # Target doses 0..99 Gy (one per voxel). Linear percentiles at index q/100 * 99:
    # D2 = P98 = 97.02, D98 = P2 = 1.98, D50 = P50 = 49.5 -> HI = 95.04 / 49.5 = 1.92.
    dose = np.arange(100, dtype=np.float64).reshape(100, 1, 1)
    target = np.ones(dose.shape, dtype=bool)
    assert homogeneity_index_icru83(dose, target) == pytest.approx(1.92, abs=1e-12)
    # Uniform dose -> D2 = D98 -> HI = 0.
    assert homogeneity_index_icru83(np.full(dose.shape, 70.0), target) == 0.0


def test_zero_denominators_give_nan():
    target = _box(4)
    dose = np.where(target, 50.0, 0.0)
    empty = np.zeros(SHAPE, dtype=bool)
    # No voxel reaches 60 Gy -> PIV = 0.
    assert math.isnan(paddick_ci(dose, target, prescription_gy=60.0))
    assert math.isnan(gradient_index(dose, prescription_gy=60.0))
    # Empty target -> TV = 0.
    assert math.isnan(paddick_ci(dose, empty, prescription_gy=50.0))
    assert math.isnan(rtog_ci(dose, empty, prescription_gy=50.0))
    assert math.isnan(homogeneity_index_icru83(dose, empty))
    # D50 = 0 Gy.
    assert math.isnan(homogeneity_index_icru83(np.zeros(SHAPE), target))


def test_bad_input_raises():
    target = _box(4)
    dose = np.where(target, 60.0, 0.0)
    with pytest.raises(ValueError, match="prescription_gy"):
        paddick_ci(dose, target, prescription_gy=0.0)
    with pytest.raises(ValueError, match="target_mask"):
        rtog_ci(dose, target[:-1], prescription_gy=60.0)
    with pytest.raises(ValueError, match="body_mask"):
        gradient_index(dose, prescription_gy=60.0, body_mask=np.ones((2, 2, 2), dtype=bool))
