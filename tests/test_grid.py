"""The one `Grid` (atp.cases.grid): coordinate helpers with known values, and its use by the
dose engine, the DICOM resampler and the synthetic anatomy."""

from __future__ import annotations

import json

import numpy as np
import pytest

from atp.cases import Grid, PatientCase
from atp.dose import Beam, PencilBeamEngine, load_influence, make_dose_grid, save_influence
from atp.dose.geometry import source_position_mm
from atp.dose.phantoms import add_target, box_case, world_axes_mm
from atp.io.dicom import resample_linear, working_grid
from atp.synth.shapes import ellipsoid

# a small anisotropic grid: voxel (i, j, k) sits at (-10 + 2 i, 5 + 3 j, 0.5 + 4 k) mm
G = Grid(shape=(4, 5, 6), spacing_mm=(2.0, 3.0, 4.0), origin_mm=(-10.0, 5.0, 0.5))


def test_construction_is_keyword_only_and_validated():
    with pytest.raises(TypeError):
        Grid((4, 5, 6), (2.0, 3.0, 4.0), (0.0, 0.0, 0.0))  # type: ignore[misc]
    g = Grid(shape=np.array([4, 5, 6]), spacing_mm=[2, 3, 4], origin_mm=(0, 0, 0))
    assert g.shape == (4, 5, 6) and type(g.shape[0]) is int
    assert g.spacing_mm == (2.0, 3.0, 4.0) and type(g.spacing_mm[0]) is float
    for bad in ({"shape": (4, 5)}, {"shape": (0, 5, 6)}, {"spacing_mm": (2.0, 0.0, 4.0)},
                {"spacing_mm": (2.0, float("nan"), 4.0)}, {"origin_mm": (0.0, float("inf"), 0)}):
        kw = {"shape": (4, 5, 6), "spacing_mm": (2.0, 3.0, 4.0), "origin_mm": (0.0,) * 3} | bad
        with pytest.raises(ValueError, match="Grid"):
            Grid(**kw)
    with pytest.raises(AttributeError):
        G.shape = (1, 1, 1)  # type: ignore[misc]  # frozen


def test_coordinate_helpers_known_values():
    # values by hand from origin + index * spacing
    assert G.size == 120
    assert G.voxel_volume_cc == pytest.approx(0.024, abs=1e-15)  # 2 x 3 x 4 mm3 = 24 mm3
    np.testing.assert_array_equal(G.axis_mm(0), [-10.0, -8.0, -6.0, -4.0])
    np.testing.assert_array_equal(G.axes_mm()[2], [0.5, 4.5, 8.5, 12.5, 16.5, 20.5])
    np.testing.assert_array_equal(G.world_mm([1, 2, 3]), [-8.0, 11.0, 12.5])
    np.testing.assert_array_equal(G.world_mm([[0, 0, 0], [0.5, 0, 1]]),
                                  [[-10.0, 5.0, 0.5], [-9.0, 5.0, 4.5]])
    # flat index 37 = (1, 1, 1) in C order of (4, 5, 6): 1*30 + 1*6 + 1
    np.testing.assert_array_equal(G.points_mm([0, 37, 119]),
                                  [[-10.0, 5.0, 0.5], [-8.0, 8.0, 4.5], [-4.0, 17.0, 20.5]])
    np.testing.assert_allclose(G.index_of_mm([[-9.0, 6.5, 2.5]]), [[0.5, 0.5, 0.5]])
    lo, hi = G.box_mm()
    np.testing.assert_array_equal(lo, [-11.0, 3.5, -1.5])
    np.testing.assert_array_equal(hi, [-3.0, 18.5, 22.5])
    assert G.nearest_index((-7.1, 100.0, -50.0)) == (1, 4, 0)  # clipped to the grid
    assert G.window((-8.5, 5.0, 4.0), (-4.0, 10.9, 9.0)) == (slice(1, 4), slice(0, 2),
                                                            slice(1, 3))
    z, y, x = G.window_axes_mm((slice(1, 4), slice(0, 2), slice(1, 3)))
    assert z.shape == (3, 1, 1) and y.shape == (1, 2, 1) and x.shape == (1, 1, 2)
    np.testing.assert_array_equal(x.ravel(), [4.5, 8.5])
    assert G.empty_mask().shape == G.shape and not G.empty_mask().any()
    # index -> world -> index is the identity
    idx = np.argwhere(np.ones(G.shape, bool))
    np.testing.assert_allclose(G.index_of_mm(G.world_mm(idx)), idx, atol=1e-12)


def test_from_bounds_dict_round_trip_and_same_as():
    g = Grid.from_bounds((-30.0, -20.0, -20.0), (30.0, 20.0, 20.0), spacing_mm=6.0)
    assert g.shape == (10, 7, 7)  # round(60 / 6), round(40 / 6)
    np.testing.assert_allclose([np.mean(a) for a in g.axes_mm()], 0.0, atol=1e-12)  # centred
    d = G.to_dict()
    assert d == {"shape": [4, 5, 6], "spacing_mm": [2.0, 3.0, 4.0], "origin_mm": [-10.0, 5.0, 0.5]}
    assert Grid.from_dict(json.loads(json.dumps(d))) == G
    # a DICOM case's ct_geometry holds more keys than the grid's
    assert Grid.from_dict({**d, "orientation": [1, 0, 0, 0, 1, 0]}) == G
    with pytest.raises(ValueError, match="origin_mm"):
        Grid.from_dict({"shape": [1, 1, 1], "spacing_mm": [1, 1, 1]})
    near = Grid(shape=G.shape, spacing_mm=G.spacing_mm, origin_mm=(-10.0, 5.0, 0.5 + 1e-9))
    assert near.same_as(G) and near != G
    assert not Grid(shape=G.shape, spacing_mm=G.spacing_mm, origin_mm=(-10.0, 5.0, 1.5)).same_as(G)


def test_patient_case_grid():
    case = PatientCase("p", np.zeros((4, 5, 6), np.float32), spacing_mm=(2.0, 3.0, 4.0),
                       origin_mm=(-10.0, 5.0, 0.5))
    assert case.grid == G
    assert case.voxel_volume_cc == G.voxel_volume_cc
    assert all(np.array_equal(a, b) for a, b in zip(world_axes_mm(case), G.axes_mm(),
                                                    strict=True))


def test_source_position_known_values():
    # IEC 61217, head-first supine (atp.dose.geometry): gantry 0 puts the source anterior
    # (world y = iso - SAD), gantry 90 at the patient's left (+x); couch 90 + gantry 90:
    # from the feet (-z)
    iso = (10.0, 20.0, 30.0)
    np.testing.assert_allclose(source_position_mm(0.0, 0.0, iso, 1000.0),
                               [10.0, -980.0, 30.0], atol=1e-9)
    np.testing.assert_allclose(source_position_mm(90.0, 0.0, iso, 1000.0),
                               [10.0, 20.0, 1030.0], atol=1e-9)
    np.testing.assert_allclose(source_position_mm(90.0, 90.0, iso, 1000.0),
                               [-990.0, 20.0, 30.0], atol=1e-9)


def test_one_grid_for_engine_resampler_and_synthetic_anatomy(tmp_path):
    """The dose engine's grids, the DICOM resampler's grids and the synthetic anatomy's
    canvas are one class: a grid from any of them works with the others."""
    # synthetic anatomy: a sphere of radius 20 mm drawn on a Grid
    grid = Grid.from_bounds((-60.0, -60.0, -60.0), (60.0, 60.0, 60.0), spacing_mm=5.0)
    ball = ellipsoid(grid, (0.0, 0.0, 0.0), (20.0, 20.0, 20.0))
    vol_cc = ball.sum() * grid.voxel_volume_cc
    assert vol_cc == pytest.approx(4 / 3 * np.pi * 20.0**3 / 1000, rel=0.1)  # 33.5 cc
    case = add_target(box_case((120.0, 120.0, 120.0), grid.spacing_mm), ball)
    assert case.grid.same_as(grid)
    # dose engine: its CT grid and a coarse dose grid are `Grid`s, and so is the cached one
    engine = PencilBeamEngine(dose_grid_spacing_mm=10.0)
    infl = engine.influence(case, [Beam(0.0), Beam(180.0)])
    assert type(infl.grid) is Grid and infl.grid == make_dose_grid(case, 10.0)
    assert infl.grid.spacing_mm == (10.0, 10.0, 10.0)
    back = load_influence(save_influence(infl, tmp_path / "m.npz"))
    assert back.grid == infl.grid
    # the DICOM resampler takes the engine's dose grid and the case grid directly
    w = np.ones(infl.n_beamlets)
    coarse = infl.dose(w)
    on_ct = resample_linear(coarse, infl.grid, case.grid)
    assert on_ct.shape == case.shape
    # trilinear on a linear field is exact: resampling the world z coordinate gives it back
    z_coarse = np.broadcast_to(infl.grid.axis_mm(0)[:, None, None], infl.grid.shape)
    z_ct = resample_linear(z_coarse, infl.grid, case.grid)
    inside = (case.grid.axis_mm(0) >= infl.grid.axis_mm(0)[0]) & (
        case.grid.axis_mm(0) <= infl.grid.axis_mm(0)[-1])
    np.testing.assert_allclose(z_ct[inside, 3, 3], case.grid.axis_mm(0)[inside], atol=1e-4)
    # the importer's working grid of the case grid is a Grid the resampler reads too
    wg = working_grid(case.grid, 10.0)
    assert type(wg) is Grid and resample_linear(on_ct, case.grid, wg).shape == wg.shape
