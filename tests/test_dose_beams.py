"""Beam configurations: IMRT field lists, VMAT arc sampling and a 360-degree arc's symmetry."""

import numpy as np
import pytest
from scipy import ndimage

from atp.dose import (
    Beam,
    PencilBeamEngine,
    arc_gantry_angles_deg,
    beams_from_config,
    default_isocenter_mm,
)
from atp.dose.phantoms import cylinder_case, world_axes_mm

ISO = (0.0, 0.0, 0.0)


def test_imrt_config():
    beams = beams_from_config({"technique": "imrt", "gantry_deg": list(range(0, 360, 40))},
                              isocenter_mm=ISO)
    assert [b.gantry_deg for b in beams] == [0, 40, 80, 120, 160, 200, 240, 280, 320]
    assert all(b.sad_mm == 1000.0 and b.couch_deg == 0.0 and b.isocenter_mm == ISO
               for b in beams)


@pytest.mark.parametrize(("arcs", "spacing", "expected"), [
    ([{"start_deg": 180, "stop_deg": 180, "direction": "cw"}], 5, 72),  # full arc
    ([{"start_deg": 181, "stop_deg": 179, "direction": "cw"}], 4, 90),  # 358 deg / 4
    ([{"start_deg": 181, "stop_deg": 179, "direction": "cw"},
      {"start_deg": 179, "stop_deg": 181, "direction": "ccw"}], 10, 72),  # 2 x 36
    ([{"start_deg": 330, "stop_deg": 30, "direction": "cw"}], 6, 10),  # through 0
])
def test_vmat_number_of_directions(arcs, spacing, expected):
    beams = beams_from_config({"technique": "vmat", "arcs": arcs, "spacing_deg": spacing},
                              isocenter_mm=ISO)
    assert len(beams) == expected


def test_arc_directions_are_segment_centres():
    assert arc_gantry_angles_deg(330, 30, direction="cw", spacing_deg=20) == [340, 0, 20]
    ccw = arc_gantry_angles_deg(30, 330, direction="ccw", spacing_deg=20)
    assert np.allclose(ccw, [20, 0, 340])
    full = arc_gantry_angles_deg(0, 0, spacing_deg=5)
    assert len(full) == 72 and np.allclose(np.diff(full), 5)


@pytest.mark.parametrize("cfg", [
    {"technique": "tomo"},
    {"technique": "imrt", "gantry_deg": []},
    {"technique": "imrt", "gantry_deg": [0, 90], "couch_deg": [0]},
    {"technique": "vmat", "arcs": [{"start_deg": 0}]},
    {"technique": "vmat", "arcs": [{"start_deg": 0, "stop_deg": 10, "direction": "up"}]},
])
def test_bad_configs_are_errors(cfg):
    with pytest.raises(ValueError):
        beams_from_config(cfg, isocenter_mm=ISO)


def test_beam_roundtrip():
    b = Beam(370.0, couch_deg=10.0, isocenter_mm=(1, 2, 3), aperture_mm=(-5, 5, -10, 10))
    assert b.gantry_deg == 10.0
    assert Beam.from_dict(b.to_dict()) == b


def test_full_arc_around_a_cylinder_is_rotationally_symmetric():
    case = cylinder_case(radius_mm=100.0, length_mm=80.0, spacing_mm=5.0, target_radius_mm=30.0)
    z, y, x = world_axes_mm(case)
    mask = np.zeros(case.shape, dtype=bool)
    kz = int(np.argmin(np.abs(z)))
    mask[kz] = case.body_mask[kz]  # rows: one axial slice
    iso = default_isocenter_mm(case)
    beams = beams_from_config({"technique": "vmat", "spacing_deg": 5,
                               "arcs": [{"start_deg": 180, "stop_deg": 180}]}, isocenter_mm=iso)
    assert len(beams) == 72
    infl = PencilBeamEngine().influence(case, beams, mask=mask)
    dose = infl.dose(np.ones(infl.n_beamlets))[kz]
    angles = np.deg2rad(np.arange(0, 360, 10))
    for r in (0.0, 20.0, 50.0, 80.0):
        py = (iso[1] + r * np.sin(angles) - y[0]) / 5.0
        px = (iso[2] + r * np.cos(angles) - x[0]) / 5.0
        ring = ndimage.map_coordinates(dose, [py, px], order=1)
        assert ring.min() > 0
        assert (ring.max() - ring.min()) / ring.mean() < 0.03, (r, ring)


def test_beams_written_for_one_side_are_mirrored_for_the_other():
    from atp.dose import beams_from_config

    cfg = {"technique": "imrt", "side": "left", "gantry_deg": [300, 40, 120]}
    iso = (0.0, 0.0, 0.0)
    left = beams_from_config(cfg, isocenter_mm=iso, laterality="left")
    right = beams_from_config(cfg, isocenter_mm=iso, laterality="right")
    assert [b.gantry_deg for b in left] == [300, 40, 120]
    assert [b.gantry_deg for b in right] == [60, 320, 240]  # 360 - g
    arc = {"technique": "vmat", "side": "left", "spacing_deg": 10,
           "arcs": [{"start_deg": 300, "stop_deg": 60, "direction": "cw"}]}
    l_angles = sorted(b.gantry_deg for b in beams_from_config(arc, isocenter_mm=iso,
                                                              laterality="left"))
    r_angles = sorted(b.gantry_deg for b in beams_from_config(arc, isocenter_mm=iso,
                                                              laterality="right"))
    assert r_angles == sorted((360 - g) % 360 for g in l_angles)
