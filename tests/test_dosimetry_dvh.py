"""Known-value tests of atp.dosimetry.dvh (box, sphere and ramp phantoms)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from atp.dosimetry import (
    cumulative_dvh,
    dose_at_volume_cc,
    dose_at_volume_percent,
    max_dose,
    mean_dose,
    min_dose,
    near_max_dose,
    roi_volume_cc,
    volume_at_dose,
    voxel_volume_cc,
)

SPACING_234 = (2.0, 3.0, 4.0)


def _box_phantom():
    """20^3 grid at 10 Gy with a 10^3-voxel box at 50 Gy."""
    dose = np.full((20, 20, 20), 10.0)
    box = np.zeros(dose.shape, dtype=bool)
    box[5:15, 5:15, 5:15] = True
    dose[box] = 50.0
    return dose, box


def _ramp():
    """100 slices along z with dose 0, 1, ..., 99 Gy; one voxel per slice."""
    dose = np.arange(100, dtype=np.float64).reshape(100, 1, 1)
    return dose, np.ones(dose.shape, dtype=bool)


def test_voxel_volume_cc():
    # 2 mm * 3 mm * 4 mm = 24 mm^3 = 0.024 cc (1 cc = 1000 mm^3).
    assert voxel_volume_cc(SPACING_234) == pytest.approx(0.024, abs=1e-15)


def test_box_phantom_volumes():
    # Analytic: 10 * 10 * 10 voxels * 0.024 cc = 24 cc; the grid is 20^3 = 8000 voxels.
    dose, box = _box_phantom()
    everything = np.ones(dose.shape, dtype=bool)
    assert roi_volume_cc(box, spacing_mm=SPACING_234) == pytest.approx(24.0, abs=1e-9)
    assert volume_at_dose(
        dose, box, threshold_gy=50.0, spacing_mm=SPACING_234, unit="cc"
    ) == pytest.approx(24.0, abs=1e-9)
    # Whole grid: 1000 of 8000 voxels >= 50 Gy -> 12.5 %, 24 cc.
    assert volume_at_dose(dose, everything, threshold_gy=50.0) == pytest.approx(12.5)
    assert volume_at_dose(
        dose, everything, threshold_gy=50.0, spacing_mm=SPACING_234, unit="cc"
    ) == pytest.approx(24.0, abs=1e-9)
    # Threshold above every dose -> 0.
    assert volume_at_dose(dose, everything, threshold_gy=50.01) == 0.0


def test_box_phantom_dvh():
    # Edges 0..51 Gy (bin 1 Gy); whole grid: 100 % at <= 10 Gy, 1000/8000 = 12.5 % at
    # 11..50 Gy, 0 above 50 Gy; absolute volume 0.125 * 8000 * 0.024 = 24 cc.
    dose, box = _box_phantom()
    everything = np.ones(dose.shape, dtype=bool)
    dvh = cumulative_dvh(dose, everything, spacing_mm=SPACING_234, bin_width_gy=1.0)
    np.testing.assert_allclose(dvh.dose_gy, np.arange(52.0))
    assert dvh.total_cc == pytest.approx(8000 * 0.024)
    assert dvh.volume_fraction[10] == 1.0
    assert dvh.volume_fraction[11] == pytest.approx(0.125)
    assert dvh.volume_fraction[50] == pytest.approx(0.125)
    assert dvh.volume_fraction[51] == 0.0
    assert dvh.volume_cc[11] == pytest.approx(24.0)
    box_dvh = cumulative_dvh(dose, box, spacing_mm=SPACING_234, bin_width_gy=1.0)
    assert box_dvh.total_cc == pytest.approx(24.0)
    assert box_dvh.volume_fraction[50] == 1.0 and box_dvh.volume_fraction[51] == 0.0


def test_sphere_phantom_volume():
    # Analytic: a sphere of radius 12 mm holds 4/3 pi 12^3 mm^3 = 7.238 cc. Voxel centres
    # inside it on a 2 x 1 x 1 mm grid; voxelisation error stays well below 2 %.
    spacing = (2.0, 1.0, 1.0)
    z, y, x = np.meshgrid(
        (np.arange(15) - 7) * spacing[0],
        (np.arange(29) - 14) * spacing[1],
        (np.arange(29) - 14) * spacing[2],
        indexing="ij",
    )
    sphere = z**2 + y**2 + x**2 <= 12.0**2
    analytic_cc = 4.0 / 3.0 * math.pi * 12.0**3 / 1000.0
    assert roi_volume_cc(sphere, spacing_mm=spacing) == pytest.approx(analytic_cc, rel=0.02)
    dose = np.where(sphere, 60.0, 0.0)
    dvh = cumulative_dvh(dose, sphere, spacing_mm=spacing, bin_width_gy=1.0)
    assert dvh.total_cc == pytest.approx(analytic_cc, rel=0.02)


def test_ramp_dx_vx():
    # 100 doses 0..99 Gy; numpy linear percentile q sits at index q/100 * 99:
    # D95 = P5 -> 4.95 Gy; D50 = P50 -> 49.5 Gy; D2 = P98 -> 97.02 Gy; D100 = P0 = 0.
    dose, roi = _ramp()
    assert dose_at_volume_percent(dose, roi, percent=95) == pytest.approx(4.95, abs=1e-12)
    assert dose_at_volume_percent(dose, roi, percent=50) == pytest.approx(49.5, abs=1e-12)
    assert dose_at_volume_percent(dose, roi, percent=2) == pytest.approx(97.02, abs=1e-12)
    assert dose_at_volume_percent(dose, roi, percent=100) == 0.0
    # V50Gy: slices 50..99 -> 50 of 100 voxels = 50 %.
    assert volume_at_dose(dose, roi, threshold_gy=50.0) == pytest.approx(50.0)
    # V49.5Gy: same 50 voxels; V0 = 100 %.
    assert volume_at_dose(dose, roi, threshold_gy=49.5) == pytest.approx(50.0)
    assert volume_at_dose(dose, roi, threshold_gy=0.0) == pytest.approx(100.0)
    # Mean of 0..99 = 49.5; point max 99, min 0.
    assert mean_dose(dose, roi) == pytest.approx(49.5)
    assert max_dose(dose, roi) == 99.0
    assert min_dose(dose, roi) == 0.0


def test_ramp_dose_at_volume_cc():
    # 1 mm^3 voxels = 0.001 cc, n = 100. 0.005 cc = 5 voxels -> P(100 - 5) = 0.95 * 99.
    dose, roi = _ramp()
    sp = (1.0, 1.0, 1.0)
    assert dose_at_volume_cc(dose, roi, volume_cc=0.005, spacing_mm=sp) == pytest.approx(94.05)
    # D0.03cc = 30 voxels -> P70 = 0.70 * 99 = 69.3 Gy.
    assert near_max_dose(dose, roi, spacing_mm=sp) == pytest.approx(69.3)
    # D0.1cc over a 0.1 cc ROI -> P0 = min; larger volumes clip to P0; 0 cc -> max.
    assert near_max_dose(dose, roi, spacing_mm=sp, volume_cc=0.1) == pytest.approx(0.0)
    assert dose_at_volume_cc(dose, roi, volume_cc=5.0, spacing_mm=sp) == 0.0
    assert dose_at_volume_cc(dose, roi, volume_cc=0.0, spacing_mm=sp) == 99.0


def test_ramp_dvh_matches_vx():
    # Edges 0, 10, ..., 100 (first edge above the 99 Gy max); fraction >= 50 Gy = 0.5.
    dose, roi = _ramp()
    dvh = cumulative_dvh(dose, roi, spacing_mm=(1.0, 1.0, 1.0), bin_width_gy=10.0)
    np.testing.assert_allclose(dvh.dose_gy, np.arange(0.0, 101.0, 10.0))
    assert dvh.volume_fraction[5] == pytest.approx(0.5)
    assert dvh.volume_fraction[0] == 1.0 and dvh.volume_fraction[-1] == 0.0
    assert np.all(np.diff(dvh.volume_fraction) <= 0)
    for edge, frac in zip(dvh.dose_gy, dvh.volume_fraction, strict=True):
        assert frac * 100 == pytest.approx(volume_at_dose(dose, roi, threshold_gy=edge))
    with pytest.raises(ValueError):
        dvh.volume_fraction[0] = 0.5  # read-only
    longer = cumulative_dvh(dose, roi, spacing_mm=(1, 1, 1), bin_width_gy=10.0, max_dose_gy=200)
    assert longer.dose_gy[-1] == pytest.approx(210.0)


def test_empty_mask_returns_nan_quietly():
    dose, _ = _ramp()
    empty = np.zeros(dose.shape, dtype=bool)
    sp = (1.0, 1.0, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = [
            dose_at_volume_percent(dose, empty, percent=95),
            dose_at_volume_cc(dose, empty, volume_cc=0.1, spacing_mm=sp),
            volume_at_dose(dose, empty, threshold_gy=10.0),
            volume_at_dose(dose, empty, threshold_gy=10.0, spacing_mm=sp, unit="cc"),
            mean_dose(dose, empty),
            max_dose(dose, empty),
            min_dose(dose, empty),
            near_max_dose(dose, empty, spacing_mm=sp),
        ]
        dvh = cumulative_dvh(dose, empty, spacing_mm=sp)
    assert all(math.isnan(v) for v in values)
    assert dvh.total_cc == 0.0 and np.isnan(dvh.volume_fraction).all()
    assert roi_volume_cc(empty, spacing_mm=sp) == 0.0


def test_one_voxel_mask():
    # Every dose metric of a single voxel is that voxel's dose (7.5 Gy).
    dose = np.zeros((3, 3, 3))
    dose[1, 2, 0] = 7.5
    one = np.zeros(dose.shape, dtype=bool)
    one[1, 2, 0] = True
    sp = (2.0, 2.0, 2.0)
    assert dose_at_volume_percent(dose, one, percent=95) == 7.5
    assert dose_at_volume_cc(dose, one, volume_cc=0.1, spacing_mm=sp) == 7.5
    assert near_max_dose(dose, one, spacing_mm=sp) == 7.5
    assert mean_dose(dose, one) == max_dose(dose, one) == min_dose(dose, one) == 7.5
    assert volume_at_dose(dose, one, threshold_gy=7.0) == 100.0
    assert volume_at_dose(dose, one, threshold_gy=8.0) == 0.0
    # One 8 mm^3 voxel = 0.008 cc.
    assert volume_at_dose(dose, one, threshold_gy=7.0, spacing_mm=sp, unit="cc") == 0.008
    dvh = cumulative_dvh(dose, one, spacing_mm=sp, bin_width_gy=0.5)
    assert dvh.volume_fraction[15] == 1.0 and dvh.volume_fraction[16] == 0.0


def test_mean_dose_float64_accumulation():
    # 10^6 float32 voxels of 0.1 Gy: a float32 running sum drifts; float64 gives 0.1
    # to float32 representation precision (0.1f = 0.100000001490116).
    dose = np.full((100, 100, 100), 0.1, dtype=np.float32)
    roi = np.ones(dose.shape, dtype=bool)
    assert mean_dose(dose, roi) == pytest.approx(float(np.float32(0.1)), rel=1e-12)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda d, m: dose_at_volume_percent(d, m, percent=120), "percent"),
        (lambda d, m: dose_at_volume_percent(d, m, percent=-1), "percent"),
        (lambda d, m: dose_at_volume_percent(d, m[:-1], percent=50), "mask shape"),
        (lambda d, m: mean_dose(d, m.astype(int)), "boolean"),
        (lambda d, m: dose_at_volume_cc(d, m, volume_cc=-1, spacing_mm=(1, 1, 1)), "volume_cc"),
        (lambda d, m: near_max_dose(d, m, spacing_mm=(1, 1)), "spacing_mm"),
        (lambda d, m: near_max_dose(d, m, spacing_mm=(1, 0, 1)), "spacing_mm"),
        (lambda d, m: volume_at_dose(d, m, threshold_gy=1, unit="litre"), "unit"),
        (lambda d, m: volume_at_dose(d, m, threshold_gy=1, unit="cc"), "spacing_mm"),
        (lambda d, m: volume_at_dose(d, m, threshold_gy=math.nan), "threshold_gy"),
        (lambda d, m: cumulative_dvh(d, m, spacing_mm=(1, 1, 1), bin_width_gy=0), "bin_width_gy"),
    ],
)
def test_bad_input_raises(call, match):
    dose, roi = _ramp()
    with pytest.raises(ValueError, match=match):
        call(dose, roi)
