"""Acceptance: a synthetic DICOM RT set imports to the expected `PatientCase`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from dicom_factory import (
    IMRT_GANTRY,
    ISO_XYZ,
    ORIGIN,
    RESCALE,
    SHAPE,
    SPACING,
    ct_hu_canonical,
    dose_fn,
    write_phantom,
)

from atp.cases import load_case, save_case
from atp.dose.beams import Beam, beams_from_config
from atp.io.dicom import import_patient, read_rtplan, scan_dicom_folder

NPC_CFG = {"reference_rx_gy": 70.0,
           "prescriptions": [{"levels_gy": [70.0, 66.0, 60.0, 54.0], "n_fractions": 33}]}


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    return write_phantom(tmp_path_factory.mktemp("dicom") / "p1")


@pytest.fixture(scope="module")
def native(phantom):
    """Imported on the CT's own grid."""
    (patient,) = scan_dicom_folder(phantom.folder)
    return import_patient(patient, site="npc", spacing_mm=None)


@pytest.fixture(scope="module")
def working(phantom):
    """Imported on the 3 mm working grid."""
    (patient,) = scan_dicom_folder(phantom.folder)
    return import_patient(patient, site="npc", spacing_mm=3.0, site_cfg=NPC_CFG)


def _world_centroid_xyz(case, name):
    idx = np.argwhere(case.mask(name)).mean(axis=0)
    zyx = np.asarray(case.origin_mm) + idx * np.asarray(case.spacing_mm)
    return zyx[::-1]


def _dose_error(case):
    axes = [case.origin_mm[a] + case.spacing_mm[a] * np.arange(case.shape[a]) for a in range(3)]
    zz, yy, xx = np.meshgrid(*axes, indexing="ij")
    ref = dose_fn(xx, yy, zz)
    return float(np.abs(case.dose_gy - ref).max() / ref.max())


def test_scan_groups_one_patient_with_its_files(phantom):
    (p,) = scan_dicom_folder(phantom.folder)
    assert p.patient_id == "PHANTOM1"
    assert list(p.ct_series) == [phantom.uids["ct_series"]]
    assert len(p.ct_series[phantom.uids["ct_series"]].files) == SHAPE[0]
    assert [len(p.rtstructs), len(p.rtplans), len(p.rtdoses)] == [1, 1, 1]
    assert p.rtdoses[0].referenced_plan_uid == phantom.uids["rtplan"]


def test_grid_spacing_origin_and_hounsfield_units(native, working):
    assert native.shape == SHAPE
    assert native.spacing_mm == SPACING and native.origin_mm == ORIGIN
    np.testing.assert_array_equal(native.ct_hu, ct_hu_canonical())  # slope 2, intercept -1024
    assert RESCALE[0] != 1.0
    assert working.spacing_mm == (3.0, 3.0, 3.0) and working.shape == (30, 53, 64)
    assert working.metadata["dicom"]["ct_geometry"]["shape"] == list(SHAPE)
    assert working.metadata["dicom"]["ct_geometry"]["orientation"] == [1, 0, 0, 0, 1, 0]


@pytest.mark.parametrize("which", ["native", "working"])
def test_patient_left_is_plus_x_in_the_array(which, request):
    case = request.getfixturevalue(which)
    left, right = _world_centroid_xyz(case, "parotid_l"), _world_centroid_xyz(case, "parotid_r")
    assert left[0] == pytest.approx(50.0, abs=1.0) and right[0] == pytest.approx(-50.0, abs=1.0)
    # array x index of the left parotid is larger; the cord (y = +45) is posterior
    assert np.argwhere(case.mask("parotid_l"))[:, 2].mean() > case.shape[2] / 2
    assert _world_centroid_xyz(case, "spinal_cord")[1] == pytest.approx(45.0, abs=1.0)
    assert _world_centroid_xyz(case, "ptv_7000") == pytest.approx(ISO_XYZ, abs=1.0)


def test_names_roles_and_reports(native, phantom):
    meta = native.metadata["dicom"]
    assert meta["roi_names"] == {"External": "body", "PTV70": "ptv_7000", "PTV 56Gy": "ptv_5600",
                                 "Parotid_L": "parotid_l", "R Parotid": "parotid_r",
                                 "Cord": "spinal_cord", "Mandible": "mandible",
                                 "zHelper": "zHelper"}
    assert meta["unmapped"] == ["zHelper"] and meta["empty_rois"] == ["Empty_ROI"]
    roles = {n: r.role for n, r in native.rois.items()}
    assert roles["body"] == "external" and roles["zHelper"] == "control"
    assert roles["ptv_7000"] == roles["ptv_5600"] == "target" and roles["parotid_l"] == "organ"
    assert meta["rtstruct_uid"] == phantom.uids["rtstruct"]
    assert meta["rtplan_uid"] == phantom.uids["rtplan"]
    assert meta["frame_of_reference_uid"] == phantom.uids["frame"]
    assert len(meta["ct_slice_uids"]) == SHAPE[0]


def test_mask_volumes_match_analytic(native, working, phantom):
    """CT grid: every ROI within 2 %. 3 mm grid: the same, except the 20 mm rod (cord),
    whose cross-section holds only ~35 voxels of 9 mm^2: lattice noise, within 10 %."""
    for case in (native, working):
        names = case.metadata["dicom"]["roi_names"]
        for orig, vol in phantom.volumes_cc().items():
            got = case.mask(names[orig]).sum(dtype=np.float64) * case.voxel_volume_cc
            limit = 0.10 if (case is working and orig == "Cord") else 0.02
            assert abs(got / vol - 1.0) <= limit, (case.spacing_mm, orig, got, vol)


def test_hole_and_two_islands_on_one_slice(native):
    m = native.mask("mandible")
    k = 18  # a slice inside the slab of slices 12..23
    def at(x, y):
        return m[k, int(round((y - ORIGIN[1]) / 2.0)), int(round((x - ORIGIN[2]) / 2.0))]
    assert at(-25 + 16, -32)  # the annulus
    assert not at(-25 + 9, -32)  # the hole
    assert at(-25, -32)  # the island inside the hole
    assert at(25, -39)  # the separate disk
    assert not m[11].any() and m[12].any() and m[23].any() and not m[24].any()


def test_dose_matches_analytic_after_resampling(native, working):
    assert _dose_error(native) <= 0.005
    assert _dose_error(working) <= 0.005
    assert working.metadata["dicom"]["dose"]["body_outside_dose_grid_fraction"] == 0.0


def test_prescription_and_beams_from_rtplan(working, phantom):
    rx = {p.target: (p.dose_gy, p.n_fractions) for p in working.prescriptions}
    assert rx == {"ptv_7000": (70.0, 35), "ptv_5600": (56.0, 35)}  # RTPLAN beats the config
    beams = [Beam.from_dict(b) for b in working.metadata["beams"]]
    assert [b.gantry_deg for b in beams] == IMRT_GANTRY  # the setup field is left out
    iso_zyx = (ISO_XYZ[2], ISO_XYZ[1], ISO_XYZ[0])
    assert all(b.isocenter_mm == iso_zyx and b.couch_deg == 0.0 for b in beams)
    cfg = working.metadata["beam_config"]
    assert cfg["technique"] == "imrt"
    rebuilt = beams_from_config(cfg, isocenter_mm=iso_zyx)
    assert [b.gantry_deg for b in rebuilt] == IMRT_GANTRY
    # the clinical MU: the beams' BeamMeterset (100 MU each in the factory's fraction
    # group), over the RTPLAN's 35 fractions
    from atp.evaluation.comparator import clinical_mu

    assert working.metadata["dicom"]["plan"]["mu_per_fraction"] == 100.0 * len(IMRT_GANTRY)
    assert clinical_mu(working) == 100.0 * len(IMRT_GANTRY) * 35


def test_vmat_arc_is_read(tmp_path):
    ph = write_phantom(tmp_path / "vmat", technique="vmat", with_dose=False)
    plan = read_rtplan(ph.rtplan)
    assert plan.technique == "vmat" and plan.n_fractions == 35
    (arc,) = plan.fields
    assert arc["arc"] and arc["direction"] == "cw" and arc["n_control_points"] == 90
    assert arc["gantry_start_deg"] == 181.0 and arc["gantry_stop_deg"] == pytest.approx(179.0)
    assert plan.beam_config["arcs"][0]["start_deg"] == 181.0
    angles = [b["gantry_deg"] for b in plan.beams]
    assert len(angles) == 90 and angles[0] == pytest.approx(183.0, abs=0.1)


def test_case_file_round_trip(working, tmp_path):
    json.dumps(working.metadata)
    back = load_case(save_case(working, tmp_path / "p.npz"))
    assert back.metadata["dicom"]["ct_geometry"] == working.metadata["dicom"]["ct_geometry"]
    np.testing.assert_array_equal(back.mask("mandible"), working.mask("mandible"))


@pytest.mark.parametrize("orientation", ["HFP", "FFS"])
def test_flipped_orientations_give_the_same_arrays(orientation, native, tmp_path):
    ph = write_phantom(tmp_path / orientation, orientation=orientation, technique=None)
    (patient,) = scan_dicom_folder(ph.folder)
    case = import_patient(patient, site="npc", spacing_mm=None)
    assert case.origin_mm == native.origin_mm and case.spacing_mm == native.spacing_mm
    np.testing.assert_array_equal(case.ct_hu, native.ct_hu)
    for name in ("parotid_l", "parotid_r", "mandible", "ptv_7000"):
        np.testing.assert_array_equal(case.mask(name), native.mask(name))
    assert _dose_error(case) <= 0.005
    geo = case.metadata["dicom"]["ct_geometry"]
    assert geo["patient_position"] == orientation and geo["orientation"][0] == -1


def test_case_beams_prefers_the_patients_own_rtplan(working):
    """``beams=patient``: the imported plan's beams (the study kept each patient's beam
    configuration); ``template`` or a case without an RTPLAN: the institution's."""
    from atp.planning.setup import case_beams
    from atp.sites import load_institution_config, load_site_config

    site, inst = load_site_config("npc"), load_institution_config("A")
    beams, origin = case_beams(working, site, inst)
    assert origin == "patient RTPLAN" and [b.gantry_deg for b in beams] == IMRT_GANTRY
    assert beams[0].isocenter_mm == (ISO_XYZ[2], ISO_XYZ[1], ISO_XYZ[0])
    beams, origin = case_beams(working, site, inst, source="template")
    assert origin == "institution template"
    assert [b.gantry_deg for b in beams] == [0, 40, 80, 120, 160, 200, 240, 280, 320]
    import dataclasses

    no_plan = dataclasses.replace(working, metadata={k: v for k, v in working.metadata.items()
                                                     if k != "beams"})
    assert case_beams(no_plan, site, inst)[1] == "institution template"
    with pytest.raises(ValueError, match="beams='rtplan'"):
        case_beams(working, site, inst, source="rtplan")
