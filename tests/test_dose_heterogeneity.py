"""Heterogeneity: a lung-density slab (relative electron density 0.25) in water.

A pencil beam scales depth by density: behind a slab of thickness ``s`` the radiological
(water-equivalent) depth is the geometric depth minus ``(1 - 0.25) s``, so the dose there
is higher than in water by about PDD(d_rad) / PDD(d) corrected for the unchanged
geometric inverse square (the equivalent-path-length correction).
"""

import numpy as np
import pytest

from atp.dose import Beam, PencilBeamEngine
from atp.dose.kernel import load_pdd, pdd_at
from atp.dose.phantoms import add_slab, box_case, world_axes_mm

SLAB_FROM, SLAB_TO = 50.0, 150.0  # depth (mm) of the lung slab


def _case(with_slab: bool):
    case = box_case((200.0, 300.0, 200.0), (5.0, 5.0, 5.0))
    _, y, _ = world_axes_mm(case)
    surface = y[0] - 2.5
    if with_slab:
        add_slab(case, y_from_mm=surface + SLAB_FROM, y_to_mm=surface + SLAB_TO, red=0.25)
    return case, surface


@pytest.fixture(scope="module")
def doses():
    engine = PencilBeamEngine()
    out = {}
    for with_slab in (False, True):
        case, surface = _case(with_slab)
        z, y, x = world_axes_mm(case)
        sel = np.ix_(np.abs(z) < 3.0, np.ones(y.size, bool), np.abs(x) < 3.0)
        mask = np.zeros(case.shape, dtype=bool)
        mask[sel] = True
        beam = Beam(0.0, isocenter_mm=(0.0, surface, 0.0), aperture_mm=(-50, 50, -50, 50))
        infl = engine.influence(case, [beam], mask=mask)
        dose = infl.dose(np.ones(infl.n_beamlets))
        cax = dose[sel].mean(axis=(0, 2))
        pts = np.stack([np.zeros_like(y), y, np.zeros_like(y)], axis=1)
        out[with_slab] = (y - surface, cax, engine.radiological_depth_mm(case, beam, pts))
    return out


def test_radiological_depth_is_shortened_by_the_slab(doses):
    depth, _, rad_water = doses[False]
    _, _, rad_lung = doses[True]
    assert np.allclose(rad_water, depth, atol=0.5)
    behind = depth > SLAB_TO + 5
    expected = depth[behind] - (1 - 0.25) * (SLAB_TO - SLAB_FROM)
    assert np.allclose(rad_lung[behind], expected, atol=1.5)
    before = depth < SLAB_FROM - 5
    assert np.allclose(rad_lung[before], rad_water[before], atol=0.1)


def test_dose_behind_the_slab_is_higher_by_the_equivalent_path_ratio(doses):
    depth, d_water, _ = doses[False]
    _, d_lung, _ = doses[True]
    pdd = load_pdd()
    before = (depth > 20) & (depth < SLAB_FROM - 5)
    assert np.allclose(d_lung[before], d_water[before], rtol=0.005)
    for d in (175.0, 200.0, 250.0):
        k = int(np.argmin(np.abs(depth - d)))
        g, r = depth[k], depth[k] - 75.0
        expected = (pdd_at(np.array([r]), pdd)[0] * (1000 + r) ** 2) / (
            pdd_at(np.array([g]), pdd)[0] * (1000 + g) ** 2)
        ratio = d_lung[k] / d_water[k]
        assert ratio > 1.3  # higher behind the slab, by ~40 %
        assert ratio == pytest.approx(expected, rel=0.03), (d, ratio, expected)
