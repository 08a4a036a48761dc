"""Edge cases of DICOM import: slice order, gaps, tilt, references, names, dose grids."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from dicom_factory import (
    ISO_XYZ,
    SHAPE,
    add_rtstruct,
    ct_hu_canonical,
    default_rois,
    dose_fn,
    sphere,
    write_phantom,
)
from pydicom.uid import generate_uid

from atp.cases import CaseError
from atp.io.dicom import import_patient, scan_dicom_folder, select_patient_files

NPC_CFG = {"reference_rx_gy": 70.0,
           "prescriptions": [{"levels_gy": [66.0, 60.0], "n_fractions": 30},
                             {"levels_gy": [70.0, 66.0, 60.0, 54.0], "n_fractions": 33}]}


def _import(ph, **kw):
    (patient,) = scan_dicom_folder(ph.folder)
    return import_patient(patient, site="npc", **{"spacing_mm": None, **kw})


def test_shuffled_slice_files_are_sorted_by_position(tmp_path):
    ph = write_phantom(tmp_path / "shuffled", shuffle=True, technique=None, with_dose=False)
    assert sorted(p.name for p in ph.ct_files) != [p.name for p in ph.ct_files]
    (tmp_path / "shuffled" / "notes.txt").write_text("not DICOM")
    case = _import(ph)
    np.testing.assert_array_equal(case.ct_hu, ct_hu_canonical())
    assert case.metadata["dicom"]["ct_slice_uids"] == [ph.slice_uids[k] for k in range(SHAPE[0])]


def test_missing_slice_is_a_clear_error(tmp_path):
    ph = write_phantom(tmp_path / "gap", drop_slice=10, technique=None, with_dose=False)
    with pytest.raises(CaseError, match=r"non-uniform slice spacing: a gap of 5\.000 mm "
                                        r"between CT_009\.dcm and CT_011\.dcm.*missing slice"):
        _import(ph)


@pytest.mark.parametrize("tag,match", [(True, "GantryDetectorTilt.*gantry tilt of 15"),
                                       (False, "drift.*gantry tilt")])
def test_gantry_tilt_is_refused(tmp_path, tag, match):
    ph = write_phantom(tmp_path / "tilt", tilt_deg=15.0, tilt_tag=tag, technique=None,
                       with_dose=False)
    with pytest.raises(CaseError, match=match):
        _import(ph)


def test_oblique_orientation_is_refused(tmp_path):
    ph = write_phantom(tmp_path / "oblique", oblique=True, technique=None, with_dose=False)
    with pytest.raises(CaseError, match="ImageOrientationPatient.*oblique orientation"):
        _import(ph)


def test_rtstruct_on_another_series_is_skipped_with_a_message(tmp_path):
    ph = write_phantom(tmp_path / "refs", technique=None, with_dose=False)
    other = generate_uid()
    add_rtstruct(ph, series_uid=other, filename="RS_other.dcm")
    (patient,) = scan_dicom_folder(ph.folder)
    sel = select_patient_files(patient)
    assert sel.rtstruct.path.name == "RS_phantom.dcm"
    assert any("RS_other.dcm skipped" in n and other in n for n in sel.notes)
    case = import_patient(sel, site="npc", spacing_mm=None)
    assert any("RS_other.dcm skipped" in n for n in case.metadata["dicom"]["notes"])
    # with only the foreign structure set, the patient is skipped and the reason given
    ph.rtstruct.unlink()
    (patient,) = scan_dicom_folder(ph.folder)
    with pytest.raises(CaseError, match="RS_other.dcm skipped: it references CT series"):
        select_patient_files(patient)


def test_duplicate_names_empty_and_off_grid_rois(tmp_path, caplog):
    far = sphere("Far_ROI", (0.0, 0.0, 300.0), 10.0)
    far.z_mm = [296.0, 298.0, 300.0, 302.0]  # contours, but above the CT
    rois = default_rois() + [sphere("Parotid_L", (50.0, 15.0, 30.0), 8.0),
                             sphere("L Parotid", (45.0, 10.0, -20.0), 8.0), far]
    ph = write_phantom(tmp_path / "dup", rois=rois, technique=None, with_dose=False)
    with caplog.at_level(logging.WARNING, logger="atp.io.dicom"):
        case = _import(ph)
    meta = case.metadata["dicom"]
    assert meta["duplicates"] == ["Parotid_L#10", "L Parotid#11"]
    assert meta["roi_names"]["Parotid_L"] == "parotid_l"
    assert meta["roi_names"]["Parotid_L#10"] == "Parotid_L#10"
    assert case.rois["Parotid_L#10"].role == "control" and case.rois["parotid_l"].role == "organ"
    # the first ROI of that name keeps it: the parotid at z = 0
    assert np.argwhere(case.mask("parotid_l"))[:, 0].mean() == pytest.approx(16.0, abs=0.5)
    assert meta["empty_rois"] == ["Empty_ROI", "Far_ROI"]
    text = caplog.text
    assert "'Empty_ROI' has no voxel" in text and "'Far_ROI' has no voxel" in text
    assert "outside the CT slices" in text and "duplicates" in text


def test_dose_grid_smaller_than_the_ct_is_zero_padded_and_reported(tmp_path, caplog):
    ph = write_phantom(tmp_path / "small", dose_region="small")
    with caplog.at_level(logging.WARNING, logger="atp.io.dicom"):
        case = _import(ph)
    info = case.metadata["dicom"]["dose"]
    assert info["zero_padded"] and 0.5 < info["body_outside_dose_grid_fraction"] < 1.0
    assert "dose grid smaller than the CT" in caplog.text
    axes = [case.origin_mm[a] + case.spacing_mm[a] * np.arange(case.shape[a]) for a in range(3)]
    zz, yy, xx = np.meshgrid(*axes, indexing="ij")
    inside = (np.abs(xx - 10) < 18) & (np.abs(yy + 5) < 30) & (np.abs(zz) < 18)
    ref = dose_fn(xx, yy, zz)
    assert np.abs(case.dose_gy[inside] - ref[inside]).max() / ref.max() <= 0.005
    far = (np.abs(xx - 10) > 45) | (np.abs(zz) > 25)
    assert np.all(case.dose_gy[far] == 0.0)


def test_prescription_without_rtplan_from_names_and_config(tmp_path):
    ph = write_phantom(tmp_path / "noplan", technique=None, with_dose=False)
    case = _import(ph, site_cfg=NPC_CFG)
    assert {(p.target, p.dose_gy, p.n_fractions) for p in case.prescriptions} == {
        ("ptv_7000", 70.0, 33), ("ptv_5600", 56.0, 33)}
    assert case.metadata["dicom"]["prescription_source"] == "fractions from the site config"
    bare = _import(ph)
    assert bare.n_fractions == 35  # 70 Gy at 2 Gy per fraction, and the note says so
    assert any("2 Gy per fraction" in n for n in bare.metadata["dicom"]["notes"])


def test_ptv_without_dose_in_its_name(tmp_path):
    ptv = [sphere("External", (0, 0, 0), 60.0, "EXTERNAL"),
           sphere("PTV_high", ISO_XYZ, 20.0, "PTV")]
    # from the RTPLAN's DoseReferenceSequence (ReferencedROINumber)
    ph = write_phantom(tmp_path / "plan", rois=ptv, target_doses={"PTV_high": 66.0},
                       with_dose=False)
    case = _import(ph)
    assert case.metadata["dicom"]["roi_names"]["PTV_high"] == "ptv_6600"
    assert [(p.target, p.n_fractions) for p in case.prescriptions] == [("ptv_6600", 35)]
    # no plan: the site's reference prescription, else an unknown target
    ph2 = write_phantom(tmp_path / "cfg", rois=ptv, technique=None, with_dose=False)
    assert "ptv_7000" in _import(ph2, site_cfg=NPC_CFG).rois
    unknown = _import(ph2)
    assert unknown.rois["PTV_high"].role == "target" and not unknown.prescriptions
    assert unknown.metadata["dicom"]["unknown_targets"] == ["PTV_high"]
