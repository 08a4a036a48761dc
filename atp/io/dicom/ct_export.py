"""CT series export for cases that did not come from DICOM (synthetic, OpenKBP).

A plan set (RTPLAN, RTDOSE, RTSTRUCT) only opens on its own in a planning system or in
3D Slicer when the CT it refers to is there too. This writes the case's CT as an axial
series on the case grid (head first supine, standard orientation, one file per slice,
HU stored as unsigned counts with RescaleIntercept -1024) under the study and Frame of
Reference UIDs of `atp.io.dicom.export.case_geometry`, and returns the identity that the
RTSTRUCT and RTDOSE writers then reference.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.uid import generate_uid

from atp.cases.case import PatientCase
from atp.io.dicom.export import CT_STORAGE, _base_dataset, _write, case_geometry

HU_OFFSET = 1024.0


def export_ct_series(case: PatientCase, folder: str | os.PathLike, *,
                     description: str = "atp CT") -> dict[str, Any]:
    """Write the case's CT as one file per slice into ``folder`` (each atomically).

    Returns the DICOM identity (study, Frame of Reference, series and slice UIDs) in the
    form of ``PatientCase.metadata["dicom"]``.

    Parameters
    ----------
    case : PatientCase
        A case that did not come from DICOM.
    folder : str or os.PathLike
        Output folder (``CT_0001.dcm``, ... in ascending z).
    description : str, optional
        SeriesDescription; default ``"atp CT"``.

    Returns
    -------
    dict
        ``study_uid``, ``frame_of_reference_uid``, ``ct_series_uid`` and
        ``ct_slice_uids`` (in ascending z).
    """
    folder = Path(folder)
    _grid, _align, ident = case_geometry(case)
    if ident.get("ct_geometry"):
        raise ValueError(f"patient {case.patient_id}: the case came from DICOM; its own CT "
                         "series is the one to reference")
    series_uid = generate_uid()
    (dz, dy, dx), (oz, oy, ox) = case.spacing_mm, case.origin_mm
    counts = np.clip(np.rint(np.asarray(case.ct_hu, dtype=np.float64) + HU_OFFSET), 0,
                     65535).astype("<u2")
    slice_uids = []
    for k in range(case.shape[0]):
        ds = _base_dataset(case, ident, sop_class=CT_STORAGE, modality="CT",
                           description=description)
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = 901
        ds.FrameOfReferenceUID = ident["frame_of_reference_uid"]
        ds.PositionReferenceIndicator = ""
        ds.PatientPosition = "HFS"
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        ds.InstanceNumber = k + 1
        z = oz + k * dz
        ds.ImagePositionPatient = [round(ox, 4), round(oy, 4), round(z, 4)]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.SliceLocation = round(z, 4)
        ds.SliceThickness = round(dz, 6)
        ds.PixelSpacing = [round(dy, 6), round(dx, 6)]
        ds.Rows, ds.Columns = case.shape[1], case.shape[2]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = -HU_OFFSET
        ds.RescaleSlope = 1.0
        ds.RescaleType = "HU"
        ds.KVP = ""
        ds.PixelData = np.ascontiguousarray(counts[k]).tobytes()
        _write(ds, folder / f"CT_{k + 1:04d}.dcm")
        slice_uids.append(str(ds.SOPInstanceUID))
    return {"study_uid": ident["study_uid"],
            "frame_of_reference_uid": ident["frame_of_reference_uid"],
            "ct_series_uid": series_uid, "ct_slice_uids": slice_uids}


def with_dicom_identity(case: PatientCase, ident: dict[str, Any]) -> PatientCase:
    """A shallow copy of ``case`` whose ``metadata["dicom"]`` holds ``ident`` (so the
    RTSTRUCT and RTDOSE writers reference the series written by `export_ct_series`).

    Parameters
    ----------
    case : PatientCase
        Case to copy; it is not modified.
    ident : dict
        DICOM identity, as returned by `export_ct_series`; merged over any existing one.

    Returns
    -------
    PatientCase
        The copy, arrays shared with ``case``.
    """
    meta = dict(case.metadata)
    meta["dicom"] = {**dict(meta.get("dicom") or {}), **ident}
    return dataclasses.replace(case, metadata=meta)
