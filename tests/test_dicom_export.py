"""RTDOSE / RTSTRUCT export: attributes, and import -> export -> import round trips."""

from __future__ import annotations

import copy
import shutil

import numpy as np
import pydicom
import pytest
from dicom_factory import SHAPE, write_phantom
from scipy import ndimage

from atp.cases import CaseError, Grid, PatientCase, Roi
from atp.io.dicom import (
    export_rtdose,
    export_rtstruct,
    import_patient,
    resample_linear,
    scan_dicom_folder,
)
from atp.io.dicom.export import UINT32_MAX


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    return write_phantom(tmp_path_factory.mktemp("dicom") / "p1")


@pytest.fixture(scope="module")
def case(phantom):
    (patient,) = scan_dicom_folder(phantom.folder)
    return import_patient(patient, site="npc", spacing_mm=3.0)


def _with_ct(phantom, folder):
    folder.mkdir()
    for f in phantom.ct_files:
        shutil.copy(f, folder / f.name)
    return folder


def _reimport(folder, **kw):
    (patient,) = scan_dicom_folder(folder)
    return import_patient(patient, site="npc", **{"spacing_mm": 3.0, **kw})


def _dice(a, b):
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_rtdose_attributes(case, phantom, tmp_path):
    path = export_rtdose(case.dose_gy, case, tmp_path / "RD.dcm", description="ATP plan")
    ds = pydicom.dcmread(path)  # has a preamble and file meta: no force needed
    ct = pydicom.dcmread(phantom.ct_files[0])
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.481.2" and ds.Modality == "RTDOSE"
    assert (ds.DoseUnits, ds.DoseType, ds.DoseSummationType) == ("GY", "PHYSICAL", "PLAN")
    assert ds.FrameOfReferenceUID == phantom.uids["frame"]
    assert ds.StudyInstanceUID == phantom.uids["study"]
    assert ds.PatientID == ct.PatientID and ds.PatientName == ct.PatientName
    assert ds.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID == phantom.uids["rtplan"]
    assert ds.ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID == phantom.uids[
        "rtstruct"]
    assert (ds.NumberOfFrames, ds.Rows, ds.Columns) == SHAPE  # the original CT geometry
    assert [float(v) for v in ds.ImagePositionPatient] == [float(v) for v in
                                                           ct.ImagePositionPatient]
    assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert [float(v) for v in ds.PixelSpacing] == [2.0, 2.0]
    assert float(ds.GridFrameOffsetVector[1]) == 2.5
    assert ds.FrameIncrementPointer == 0x3004000C
    assert (ds.BitsAllocated, ds.BitsStored, ds.PixelRepresentation) == (32, 32, 0)
    px = ds.pixel_array
    assert px.dtype == np.uint32 and px.max() >= 0.999 * UINT32_MAX  # uses the uint32 range
    on_ct = resample_linear(case.dose_gy, case.grid,
                            Grid.from_dict(case.metadata["dicom"]["ct_geometry"]))
    assert float(ds.DoseGridScaling) == pytest.approx(float(on_ct.max()) / UINT32_MAX, rel=1e-7)
    np.testing.assert_allclose(px * float(ds.DoseGridScaling), on_ct, atol=1e-5)


def test_import_export_import_round_trip(case, phantom, tmp_path):
    folder = _with_ct(phantom, tmp_path / "rt")
    export_rtdose(case.dose_gy, case, folder / "RD.dcm")
    export_rtstruct(case, folder / "RS.dcm")
    back = _reimport(folder)
    err = np.abs(back.dose_gy - case.dose_gy).max() / case.dose_gy.max()
    assert err <= 0.005
    assert set(back.rois) == set(case.rois)
    for name, roi in case.rois.items():
        assert back.rois[name].role == roi.role
        if roi.mask.sum() * case.voxel_volume_cc >= 3.0:
            assert _dice(roi.mask, back.mask(name)) >= 0.98, name
    # with nearest resampling and a CT finer than the case grid the masks come back exact
    assert all(np.array_equal(r.mask, back.mask(n)) for n, r in case.rois.items())


def test_export_on_the_case_grid_round_trips_exactly(case, phantom, tmp_path):
    folder = _with_ct(phantom, tmp_path / "rt")
    path = export_rtdose(case.dose_gy, case, folder / "RD.dcm", on="case", rtplan_uid="")
    ds = pydicom.dcmread(path)
    assert (ds.NumberOfFrames, ds.Rows, ds.Columns) == case.shape
    assert "ReferencedRTPlanSequence" not in ds
    export_rtstruct(case, folder / "RS.dcm", roi_names=["ptv_7000"])
    back = _reimport(folder)
    assert np.abs(back.dose_gy - case.dose_gy).max() <= 1e-6 * case.dose_gy.max() + 1e-6
    assert list(back.rois) == ["ptv_7000"]


def test_generated_control_structures_export(case, phantom, tmp_path):
    work = copy.copy(case)
    work.rois = dict(case.rois)
    dist = ndimage.distance_transform_edt(~case.mask("ptv_7000"), sampling=case.spacing_mm)
    work.rois["ring_0_10"] = Roi(mask=(dist > 0) & (dist <= 10.0), role="control")
    work.rois["patch_hotspot"] = Roi(mask=(dist > 12.0) & (dist <= 18.0) & case.body_mask,
                                     role="control")
    folder = _with_ct(phantom, tmp_path / "rings")
    path = export_rtstruct(work, folder / "RS.dcm", roi_names=["ring_0_10", "patch_hotspot"])
    ds = pydicom.dcmread(path)
    assert [r.ROIName for r in ds.StructureSetROISequence] == ["ring_0_10", "patch_hotspot"]
    assert {o.RTROIInterpretedType for o in ds.RTROIObservationsSequence} == {"CONTROL"}
    ref = ds.ReferencedFrameOfReferenceSequence[0]
    assert ref.FrameOfReferenceUID == phantom.uids["frame"]
    series = ref.RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == phantom.uids["ct_series"]
    assert len(series.ContourImageSequence) == SHAPE[0]
    contour = ds.ROIContourSequence[0].ContourSequence[0]
    assert contour.ContourGeometricType == "CLOSED_PLANAR"
    assert len(contour.ContourData) == 3 * contour.NumberOfContourPoints
    assert contour.ContourImageSequence[0].ReferencedSOPInstanceUID in phantom.slice_uids.values()
    back = _reimport(folder)
    for name in ("ring_0_10", "patch_hotspot"):
        assert back.rois[name].role == "control"
        np.testing.assert_array_equal(back.mask(name), work.mask(name))


def test_flipped_ct_exports_in_its_own_orientation(tmp_path):
    ph = write_phantom(tmp_path / "hfp", orientation="HFP", technique=None)
    (patient,) = scan_dicom_folder(ph.folder)
    case = import_patient(patient, site="npc", spacing_mm=3.0)
    folder = _with_ct(ph, tmp_path / "rt")
    ds = pydicom.dcmread(export_rtdose(case.dose_gy, case, folder / "RD.dcm"))
    assert [float(v) for v in ds.ImageOrientationPatient] == [-1, 0, 0, 0, -1, 0]
    export_rtstruct(case, folder / "RS.dcm", roi_names=["parotid_l", "body"])
    back = _reimport(folder)
    assert np.abs(back.dose_gy - case.dose_gy).max() / case.dose_gy.max() <= 0.005
    np.testing.assert_array_equal(back.mask("parotid_l"), case.mask("parotid_l"))


def test_case_from_another_source_and_bad_input(tmp_path):
    shape = (6, 20, 24)
    mask = np.zeros(shape, dtype=bool)
    mask[2:4, 5:12, 6:15] = True
    syn = PatientCase(patient_id="syn7", ct_hu=np.zeros(shape, np.float32),
                      spacing_mm=(3.0, 3.0, 3.0), origin_mm=(-9.0, -30.0, -36.0),
                      rois={"ptv_6000": Roi(mask=mask, role="target")},
                      dose_gy=np.ones(shape, np.float32) * 60.0)
    rd = pydicom.dcmread(export_rtdose(syn.dose_gy, syn, tmp_path / "RD.dcm"))
    rs = pydicom.dcmread(export_rtstruct(syn, tmp_path / "RS.dcm"))
    assert rd.FrameOfReferenceUID == rs.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID
    assert rd.StudyInstanceUID == rs.StudyInstanceUID and rd.PatientID == "syn7"
    assert (rd.NumberOfFrames, rd.Rows, rd.Columns) == shape
    assert [float(v) for v in rd.ImagePositionPatient] == [-36.0, -30.0, -9.0]
    assert "ReferencedRTPlanSequence" not in rd
    with pytest.raises(CaseError, match="dose_gy.*shape"):
        export_rtdose(np.zeros((2, 2, 2)), syn, tmp_path / "bad.dcm")
    with pytest.raises(CaseError, match="dose_gy.*>= 0"):
        export_rtdose(-syn.dose_gy, syn, tmp_path / "bad.dcm")
    with pytest.raises(KeyError, match="no ROI 'ring_0_10'"):
        export_rtstruct(syn, tmp_path / "bad.dcm", roi_names=["ring_0_10"])
    assert not (tmp_path / "bad.dcm").exists()


def test_dicompyler_core_reads_the_export(case, tmp_path):
    dvhcalc = pytest.importorskip("dicompylercore.dvhcalc")
    rd = export_rtdose(case.dose_gy, case, tmp_path / "RD.dcm")
    rs = export_rtstruct(case, tmp_path / "RS.dcm", roi_names=["ptv_7000"])
    dvh = dvhcalc.get_dvh(str(rs), str(rd), 1)
    assert dvh.max == pytest.approx(float(case.dose_gy[case.mask("ptv_7000")].max()), rel=0.05)
