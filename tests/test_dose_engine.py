"""Pencil-beam engine: matrix format, linearity, forward, IEC orientation, grids, errors."""

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import ndimage

from atp.cases.case import CaseError, Roi
from atp.dose import (
    Beam,
    PencilBeamEngine,
    beams_from_config,
    default_isocenter_mm,
    to_ct_grid,
)
from atp.dose.geometry import beam_axes, to_beam_coords
from atp.dose.phantoms import add_target, cylinder_case, world_axes_mm


def _case():
    """Water cylinder (r = 80 mm, along z) with a 30 mm cube target off the axis."""
    case = cylinder_case(radius_mm=80.0, length_mm=100.0, spacing_mm=5.0, margin_mm=10.0)
    z, y, x = world_axes_mm(case)
    cube = ((np.abs(z)[:, None, None] <= 15) & (np.abs(y - 10)[None, :, None] <= 15)
            & (np.abs(x + 10)[None, None, :] <= 15))
    return add_target(case, cube)


@pytest.fixture(scope="module")
def case():
    return _case()


@pytest.fixture(scope="module")
def engine():
    return PencilBeamEngine()


@pytest.fixture(scope="module")
def three_fields(case, engine):
    beams = beams_from_config({"technique": "imrt", "gantry_deg": [0, 120, 240]},
                              isocenter_mm=default_isocenter_mm(case))
    return beams, engine.influence(case, beams)


def test_geometry_iec_axes():
    s, u, v = beam_axes(0.0)  # (z, y, x): source anterior, u to the patient's left
    assert np.allclose(s, [0, -1, 0]) and np.allclose(u, [0, 0, 1]) and np.allclose(v, [1, 0, 0])
    s, u, _ = beam_axes(90.0)  # source at the patient's left
    assert np.allclose(s, [0, 0, 1]) and np.allclose(u, [0, 1, 0])
    s, _, _ = beam_axes(90.0, 90.0)  # couch 90: the beam comes from the feet
    assert np.allclose(s, [-1, 0, 0])
    t, u_mm, v_mm = to_beam_coords(np.array([[10.0, 0.0, 20.0]]), gantry_deg=0.0, couch_deg=0.0,
                                   isocenter_mm=(0, 0, 0), sad_mm=1000.0)
    assert t[0] == pytest.approx(1000.0) and u_mm[0] == pytest.approx(20.0)
    assert v_mm[0] == pytest.approx(10.0)


def test_matrix_format_and_rows(case, three_fields):
    beams, infl = three_fields
    m = infl.matrix
    assert sp.issparse(m) and m.format == "csc"
    assert m.dtype == np.float32 and m.indices.dtype == np.int32 and m.indptr.dtype == np.int32
    assert m.shape == (int(case.body_mask.sum()), infl.n_beamlets)
    assert np.all(case.body_mask.ravel()[infl.voxel_index])
    assert np.all(np.diff(infl.beamlet_beam) >= 0)
    assert set(infl.beamlet_beam.tolist()) == {0, 1, 2}
    assert m.data.min() > 0 and np.all(np.isfinite(m.data))
    assert infl.matrix_mb > 0 and infl.nnz == m.nnz


def test_beamlets_cover_the_target_projection(case, three_fields):
    beams, infl = three_fields
    b = infl.bixel_mm
    tpts = np.argwhere(case.target_union()) * np.asarray(case.spacing_mm) + case.origin_mm
    for i, beam in enumerate(beams):
        _, u, v = to_beam_coords(tpts, gantry_deg=beam.gantry_deg, couch_deg=0.0,
                                 isocenter_mm=beam.isocenter_mm, sad_mm=beam.sad_mm)
        uv = infl.beamlet_uv_mm[infl.beam_columns(i)]
        open_ij = {tuple(x) for x in np.rint(uv / b - 0.5).astype(int).tolist()}
        hit = {(int(a), int(c)) for a, c in zip(np.floor(u / b), np.floor(v / b), strict=True)}
        assert hit <= open_ij
        # and no beamlet farther than margin + bixel diagonal from the projection
        reach = 5.0 + b
        assert uv[:, 0].min() >= u.min() - reach and uv[:, 0].max() <= u.max() + reach
        assert uv[:, 1].min() >= v.min() - reach and uv[:, 1].max() <= v.max() + reach


def test_linearity_and_forward(case, engine, three_fields):
    beams, infl = three_fields
    rng = np.random.default_rng(0)
    w1 = rng.uniform(0, 2, infl.n_beamlets).astype(np.float32)
    w2 = rng.uniform(0, 2, infl.n_beamlets).astype(np.float32)
    d12, d1, d2 = infl.dose_rows(w1 + w2), infl.dose_rows(w1), infl.dose_rows(w2)
    assert np.allclose(d12, d1 + d2, rtol=1e-5, atol=1e-7 * d12.max())
    fwd = engine.forward(case, beams, w1)
    assert fwd.dtype == np.float32 and fwd.shape == case.shape
    ref = infl.dose(w1)
    assert np.allclose(fwd, ref, rtol=1e-5, atol=1e-6 * ref.max())
    with pytest.raises(ValueError, match="weights"):
        infl.dose(w1[:-1])


@pytest.mark.parametrize(("gantry", "couch", "axis", "side"), [
    (0.0, 0.0, 1, -1),   # anterior beam: more dose anteriorly (low y)
    (90.0, 0.0, 2, +1),  # gantry 90: more dose on the patient's left (+x)
    (270.0, 0.0, 2, -1),  # gantry 270: patient's right
    (90.0, 90.0, 0, -1),  # couch 90 + gantry 90: from the feet (inferior, low z)
])
def test_iec_orientation(gantry, couch, axis, side):
    case = cylinder_case(radius_mm=60.0, length_mm=120.0, spacing_mm=6.0, margin_mm=6.0)
    case.rois["body"] = Roi(np.ones(case.shape, dtype=bool), "external")
    case.ct_hu[:] = 0.0  # a water box, so that every direction sees water
    beam = Beam(gantry, couch_deg=couch, aperture_mm=(-20, 20, -20, 20))
    infl = PencilBeamEngine().influence(case, [beam])
    dose = infl.dose(np.ones(infl.n_beamlets))
    coord = world_axes_mm(case)[axis]
    shape = [1, 1, 1]
    shape[axis] = -1
    c = np.broadcast_to(coord.reshape(shape), case.shape)
    assert side * (dose[c > 10].sum() - dose[c < -10].sum()) > 0.05 * dose.sum()


def test_coarse_dose_grid(case):
    fine = PencilBeamEngine()
    coarse = PencilBeamEngine(dose_grid_spacing_mm=10.0)
    beams = [Beam(g, aperture_mm=(-40, 40, -40, 40)) for g in (0.0, 180.0)]
    inf_f, inf_c = fine.influence(case, beams), coarse.influence(case, beams)
    assert inf_c.grid.spacing_mm == (10.0, 10.0, 10.0) and inf_c.n_rows < inf_f.n_rows / 4
    assert inf_c.n_beamlets == inf_f.n_beamlets
    w = np.ones(inf_f.n_beamlets, dtype=np.float32)
    d_f = inf_f.dose(w)
    d_c = to_ct_grid(inf_c.dose(w), inf_c, case)
    assert d_c.shape == case.shape
    # away from the build-up region (20 mm inside the skin) and the penumbrae (15 mm
    # inside the field edges) a 10 mm grid is within 1 % of the 5 mm CT grid
    deep = ndimage.binary_erosion(case.body_mask, iterations=4)
    z, _, x = world_axes_mm(case)
    inner = (np.abs(z)[:, None, None] <= 25) & (np.abs(x)[None, None, :] <= 25)
    hi = (d_f > 0.5 * d_f.max()) & deep & inner
    err = np.abs(d_c[hi] / d_f[hi] - 1)
    assert hi.sum() > 1000 and err.max() < 0.01
    assert np.allclose(coarse.forward(case, beams, w), d_c, rtol=1e-5, atol=1e-6 * d_c.max())
    assert np.array_equal(to_ct_grid(d_f, inf_f, case), d_f)


# ---------------------------------------------------------------------- bad input
def test_empty_target_is_an_error(engine):
    case = _case()
    case.rois["ptv"].mask[:] = False
    with pytest.raises(CaseError, match="empty target"):
        default_isocenter_mm(case)
    with pytest.raises(CaseError, match="empty target"):
        engine.influence(case, [Beam(0.0)])


def test_isocenter_outside_ct_is_an_error(engine, case):
    with pytest.raises(ValueError, match=r"beams\[0\]\.isocenter_mm .* outside the CT"):
        engine.influence(case, [Beam(0.0, isocenter_mm=(0.0, 0.0, 500.0))])


@pytest.mark.parametrize("spacing", [(5.0, 0.0, 5.0), (5.0, 5.0, -5.0)])
def test_bad_spacing_is_an_error(engine, spacing):
    case = dataclasses.replace(_case(), spacing_mm=spacing)
    with pytest.raises(CaseError, match="spacing_mm"):
        engine.influence(case, [Beam(0.0)])


def test_nan_in_ct_is_an_error(engine):
    case = _case()
    case.ct_hu[3, 4, 5] = np.nan
    with pytest.raises(CaseError, match="ct_hu.*NaN"):
        engine.influence(case, [Beam(0.0)])


def test_beam_missing_the_body_is_an_error(engine, case):
    # a field 150-200 mm off axis, beyond the cylinder (r = 80 mm) but inside the CT
    with pytest.raises(ValueError, match=r"beams\[1\].*misses the body"):
        engine.influence(case, [Beam(0.0, aperture_mm=(-20, 20, -20, 20)),
                                Beam(0.0, aperture_mm=(150, 200, -20, 20))])


def test_bad_settings_and_beams_are_errors():
    with pytest.raises(ValueError, match="bixel_mm"):
        PencilBeamEngine(bixel_mm=0.0)
    with pytest.raises(ValueError, match="dose_grid_spacing_mm"):
        PencilBeamEngine(dose_grid_spacing_mm=-1.0)
    with pytest.raises(ValueError, match="sad_mm"):
        Beam(0.0, sad_mm=-1.0)
    with pytest.raises(ValueError, match="aperture_mm"):
        Beam(0.0, aperture_mm=(10, -10, 0, 5))
