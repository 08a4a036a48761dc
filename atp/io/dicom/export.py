"""RTDOSE and RTSTRUCT export of `atp` results, on the original CT geometry.

A case imported from DICOM records its CT geometry, UIDs and patient identity in
``metadata["dicom"]`` (see `atp.io.dicom.importer`); exports go back onto that geometry
and reference the CT's study, Frame of Reference and, where known, the RTSTRUCT and
RTPLAN, so the files open next to the original data in a TPS, 3D Slicer (SlicerRT) or
dicompyler. A case from another source is exported on its own grid with UIDs derived
from its patient id (the same for every export of that case).
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.charset import default_encoding
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

from atp.cases.case import CaseError, PatientCase
from atp.cases.grid import Grid
from atp.io.atomic import atomic_open
from atp.io.dicom.ct import AxisAlignment
from atp.io.dicom.resample import nearest_indices, resample_linear

log = logging.getLogger(__name__)

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
RTDOSE_STORAGE = "1.2.840.10008.5.1.4.1.1.481.2"
RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
RTPLAN_STORAGE = "1.2.840.10008.5.1.4.1.1.481.5"
UINT32_MAX = 2**32 - 1
CONTOUR_DATA = 0x30060050
_ROLE_TYPES = {"target": "PTV", "organ": "ORGAN", "control": "CONTROL", "external": "EXTERNAL"}
_COLOURS = [(255, 0, 0), (0, 160, 255), (0, 200, 0), (255, 160, 0), (200, 0, 200),
            (0, 200, 200), (255, 255, 0), (128, 64, 255), (255, 100, 150), (120, 200, 80)]


def case_geometry(case: PatientCase) -> tuple[Grid, AxisAlignment, dict[str, Any]]:
    """The original CT grid, orientation and DICOM identity of a case.

    For a case that did not come from DICOM: its own grid, the standard orientation and
    UIDs derived from the patient id.

    Parameters
    ----------
    case : PatientCase
        The case.

    Returns
    -------
    tuple
        ``(grid, alignment, ident)``: the CT `Grid` (mm, (z, y, x)), its `AxisAlignment`
        and a copy of ``metadata["dicom"]`` with at least the study and Frame of
        Reference UIDs.
    """
    d = dict(case.metadata.get("dicom") or {})
    g = d.get("ct_geometry")
    if g:
        iop = g.get("orientation") or [1, 0, 0, 0, 1, 0]
        return Grid.from_dict(g), AxisAlignment(sx=int(np.sign(iop[0])), sy=int(np.sign(iop[4]))), d
    seed = [case.patient_id]
    d.setdefault("study_uid", generate_uid(entropy_srcs=seed + ["study"]))
    d.setdefault("frame_of_reference_uid", generate_uid(entropy_srcs=seed + ["frame"]))
    return case.grid, AxisAlignment(1, 1), d


def _base_dataset(case: PatientCase, ident: Mapping[str, Any], *, sop_class: str,
                  modality: str, description: str, implicit_vr: bool = False) -> Dataset:
    now = _dt.datetime.now()
    ds = Dataset()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    # implicit VR for structure sets: explicit VR limits a DS value to 64 kB (~2000 points)
    meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit_vr else ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = now.strftime("%H%M%S")
    ds.PatientName = ident.get("patient_name") or case.patient_id
    ds.PatientID = case.patient_id
    ds.PatientBirthDate = ident.get("patient_birth_date", "")
    ds.PatientSex = ident.get("patient_sex", "")
    ds.StudyInstanceUID = ident["study_uid"]
    ds.StudyDate = ds.InstanceCreationDate
    ds.StudyTime = ds.InstanceCreationTime
    ds.StudyID = ""
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.Modality = modality
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 900
    ds.SeriesDescription = description[:64]
    ds.Manufacturer = "atp"
    ds.OperatorsName = ""
    return ds


def _ref(sop_class: str, uid: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = uid
    return item


def _raw_ds(tag: int, values: np.ndarray) -> RawDataElement:
    """A decimal-string element built directly as bytes (pydicom validates DS values one by
    one, which takes seconds for the contours of a whole structure set)."""
    txt = "\\".join(f"{v:.3f}" for v in np.asarray(values, dtype=np.float64).ravel())
    raw = txt.encode("ascii")
    if len(raw) % 2:
        raw += b" "
    return RawDataElement(Tag(tag), "DS", len(raw), raw, 0, True, True)


def _write(ds: Dataset, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_open(path) as fh:
        ds.save_as(fh, enforce_file_format=True)
    return path


def _to_original_order(arr: np.ndarray, align: AxisAlignment) -> np.ndarray:
    """(z, y, x) increasing -> (frame along the normal, row, column) of the CT's IOP."""
    flips = tuple(a for a, s in ((0, align.sz), (1, align.sy), (2, align.sx)) if s < 0)
    return np.flip(arr, axis=flips) if flips else arr


def _first_voxel_xyz(grid: Grid, align: AxisAlignment) -> list[float]:
    (oz, oy, ox), (dz, dy, dx), (nz, ny, nx) = grid.origin_mm, grid.spacing_mm, grid.shape
    return [ox if align.sx > 0 else ox + (nx - 1) * dx,
            oy if align.sy > 0 else oy + (ny - 1) * dy,
            oz if align.sz > 0 else oz + (nz - 1) * dz]


def export_rtdose(dose_gy: np.ndarray, case: PatientCase, path: str | os.PathLike, *,
                  on: str = "ct", description: str = "atp dose",
                  rtplan_uid: str | None = None, rtstruct_uid: str | None = None) -> Path:
    """Write ``dose_gy`` (on the case grid) as an RTDOSE file, atomically.

    The dose is stored as uint32 with ``DoseGridScaling = max / (2**32 - 1)``,
    DoseUnits GY, DoseType PHYSICAL, DoseSummationType PLAN.

    Parameters
    ----------
    dose_gy : ndarray (z, y, x)
        The dose (Gy) on the case grid (an ATP plan, a prediction, the MNL plan ...),
        finite and >= 0.
    case : PatientCase
        The case the dose belongs to (grid, DICOM identity).
    path : str or os.PathLike
        Destination file.
    on : {"ct", "case"}
        ``"ct"`` resamples (trilinear) onto the original CT geometry; ``"case"`` writes
        the case grid itself (smaller; viewers interpolate).
    description : str, optional
        SeriesDescription and DoseComment (cut to 64 characters); default ``"atp dose"``.
    rtplan_uid, rtstruct_uid : str, optional
        SOPInstanceUIDs to reference; None uses the ones recorded at import, "" omits.

    Returns
    -------
    Path
        The written file.
    """
    dose = np.asarray(dose_gy, dtype=np.float64)
    src = str(path)
    if dose.shape != case.shape:
        raise CaseError(src, "dose_gy", f"shape {dose.shape} is not the case grid {case.shape}")
    if not np.all(np.isfinite(dose)) or (dose.size and dose.min() < 0):
        raise CaseError(src, "dose_gy", "must be finite and >= 0")
    ct_grid, align, ident = case_geometry(case)
    case_grid = case.grid
    if on == "ct":
        grid = ct_grid
        if grid != case_grid:
            dose = resample_linear(dose, case_grid, grid, fill=0.0).astype(np.float64)
    elif on == "case":
        grid, align = case_grid, AxisAlignment(1, 1)
    else:
        raise ValueError(f"on must be 'ct' or 'case', got {on!r}")
    pixels = _to_original_order(dose, align)
    d_max = float(pixels.max()) if pixels.size else 0.0
    scaling_txt = f"{max(d_max, 1e-6) / UINT32_MAX:.8e}"
    scaling = float(scaling_txt)
    counts = np.clip(np.rint(pixels / scaling), 0, UINT32_MAX).astype("<u4")

    ds = _base_dataset(case, ident, sop_class=RTDOSE_STORAGE, modality="RTDOSE",
                       description=description)
    ds.FrameOfReferenceUID = ident["frame_of_reference_uid"]
    ds.PositionReferenceIndicator = ""
    ds.ImagePositionPatient = [round(v, 4) for v in _first_voxel_xyz(grid, align)]
    ds.ImageOrientationPatient = align.iop
    dz, dy, dx = grid.spacing_mm
    ds.PixelSpacing = [round(dy, 6), round(dx, 6)]
    ds.SliceThickness = round(dz, 6)
    ds.NumberOfFrames = grid.shape[0]
    ds.FrameIncrementPointer = Tag(0x3004, 0x000C)
    ds.GridFrameOffsetVector = [round(k * dz, 4) for k in range(grid.shape[0])]
    ds.Rows, ds.Columns = grid.shape[1], grid.shape[2]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 32
    ds.BitsStored = 32
    ds.HighBit = 31
    ds.PixelRepresentation = 0
    ds.DoseUnits = "GY"
    ds.DoseType = "PHYSICAL"
    ds.DoseSummationType = "PLAN"
    ds.DoseComment = description[:64]
    ds.DoseGridScaling = scaling_txt
    plan_uid = ident.get("rtplan_uid") if rtplan_uid is None else rtplan_uid
    struct_uid = ident.get("rtstruct_uid") if rtstruct_uid is None else rtstruct_uid
    if plan_uid:
        ds.ReferencedRTPlanSequence = DicomSequence([_ref(RTPLAN_STORAGE, plan_uid)])
    if struct_uid:
        ds.ReferencedStructureSetSequence = DicomSequence([_ref(RTSTRUCT_STORAGE, struct_uid)])
    ds.PixelData = np.ascontiguousarray(counts).tobytes()
    out = _write(ds, path)
    log.info("wrote RTDOSE %s (%d x %d x %d, max %.3f Gy)", out, *grid.shape, d_max)
    return out


def mask_contours_mm(mask2d: np.ndarray, xs_mm: np.ndarray, ys_mm: np.ndarray
                     ) -> list[np.ndarray]:
    """Closed polygons (n, 2) in world (x, y) mm around a 2D (y, x) mask.

    The 0.5 iso-line of the zero-padded mask (marching squares, matplotlib's contour
    generator ``contourpy``): boundaries pass half-way between inside and outside pixel
    centres, so even-odd filling at the same pixel centres gives the mask back.

    Parameters
    ----------
    mask2d : np.ndarray
        Boolean mask of one slice, (y, x).
    xs_mm : np.ndarray
        World x (mm) of the pixel columns, (nx,), increasing.
    ys_mm : np.ndarray
        World y (mm) of the pixel rows, (ny,), increasing.

    Returns
    -------
    list of np.ndarray
        Polygons, each (n, 2) float64 world (x, y) in mm, n >= 3, not repeating the
        first point.
    """
    import contourpy

    m = np.pad(np.asarray(mask2d, dtype=np.float64), 1)
    xs = np.concatenate([[xs_mm[0] - (xs_mm[1] - xs_mm[0] if xs_mm.size > 1 else 1.0)], xs_mm,
                         [xs_mm[-1] + (xs_mm[-1] - xs_mm[-2] if xs_mm.size > 1 else 1.0)]])
    ys = np.concatenate([[ys_mm[0] - (ys_mm[1] - ys_mm[0] if ys_mm.size > 1 else 1.0)], ys_mm,
                         [ys_mm[-1] + (ys_mm[-1] - ys_mm[-2] if ys_mm.size > 1 else 1.0)]])
    gen = contourpy.contour_generator(xs, ys, m, line_type="Separate", corner_mask=False)
    out = []
    for line in gen.lines(0.5):
        pts = np.asarray(line, dtype=np.float64)
        if pts.shape[0] > 1 and np.allclose(pts[0], pts[-1]):
            pts = pts[:-1]
        if pts.shape[0] >= 3:
            out.append(pts)
    return out


def export_rtstruct(case: PatientCase, path: str | os.PathLike, *,
                    roi_names: Sequence[str] | None = None,
                    label: str = "atp structures") -> Path:
    """Write ROIs of ``case`` (default: all) as an RTSTRUCT on the original CT slices.

    Every CT pixel takes the value of the nearest case voxel (CT slices further than half
    a case voxel from the case grid get no contour) and the result is traced per CT
    slice, so importing the file again (nearest resampling) gives the same masks when
    the CT is at least as fine as the case grid. The structure set
    references the CT series, its slices and its Frame of Reference; ROI types follow
    the roles (target PTV, organ ORGAN, control CONTROL, external EXTERNAL).

    Parameters
    ----------
    case : PatientCase
        The case.
    path : str or os.PathLike
        Destination file.
    roi_names : sequence of str, optional
        ROIs to write; default all, in the case's order.
    label : str, optional
        StructureSetLabel (cut to 16 characters) and name; default ``"atp structures"``.

    Returns
    -------
    Path
        The written file.
    """
    names = list(case.rois) if roi_names is None else list(roi_names)
    for n in names:
        case.mask(n)  # KeyError naming the case's ROIs
    ct_grid, _align, ident = case_geometry(case)
    case_grid = case.grid
    slice_uids = list(ident.get("ct_slice_uids") or [])
    series_uid = ident.get("ct_series_uid")
    # nearest case voxel of every CT voxel: the contours trace the case mask as sampled on
    # the CT pixels, so re-importing them (nearest) gives the same mask back
    z_ct = ct_grid.axis_mm(0)
    k_case, on_case = nearest_indices(case_grid.axis_mm(0), z_ct)
    iy, vy = nearest_indices(case_grid.axis_mm(1), ct_grid.axis_mm(1))
    ix, vx = nearest_indices(case_grid.axis_mm(2), ct_grid.axis_mm(2))
    inside = vy[:, None] & vx[None, :]
    ys, xs = ct_grid.axis_mm(1), ct_grid.axis_mm(2)

    ds = _base_dataset(case, ident, sop_class=RTSTRUCT_STORAGE, modality="RTSTRUCT",
                       description=label, implicit_vr=True)
    ds.StructureSetLabel = label[:16]
    ds.StructureSetName = label[:64]
    ds.StructureSetDate = ds.InstanceCreationDate
    ds.StructureSetTime = ds.InstanceCreationTime
    frame = Dataset()
    frame.FrameOfReferenceUID = ident["frame_of_reference_uid"]
    if series_uid:
        series = Dataset()
        series.SeriesInstanceUID = series_uid
        series.ContourImageSequence = DicomSequence([_ref(CT_STORAGE, u) for u in slice_uids])
        study = Dataset()
        study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
        study.ReferencedSOPInstanceUID = ident["study_uid"]
        study.RTReferencedSeriesSequence = DicomSequence([series])
        frame.RTReferencedStudySequence = DicomSequence([study])
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([frame])
    ssroi, contours, observations = [], [], []
    for number, name in enumerate(names, start=1):
        mask = case.mask(name)
        item = Dataset()
        item.ROINumber = number
        item.ReferencedFrameOfReferenceUID = ident["frame_of_reference_uid"]
        item.ROIName = name
        item.ROIGenerationAlgorithm = "AUTOMATIC"
        ssroi.append(item)
        cache: dict[int, list[np.ndarray]] = {}
        seq = []
        for k_ct in np.flatnonzero(on_case):
            kc = int(k_case[k_ct])
            if kc not in cache:
                plane = mask[kc][np.ix_(iy, ix)] & inside
                cache[kc] = mask_contours_mm(plane, xs, ys) if plane.any() else []
            for poly in cache[kc]:
                c = Dataset()
                if len(slice_uids) == z_ct.size:
                    c.ContourImageSequence = DicomSequence([_ref(CT_STORAGE, slice_uids[k_ct])])
                c.ContourGeometricType = "CLOSED_PLANAR"
                c.NumberOfContourPoints = poly.shape[0]
                xyz = np.column_stack([poly, np.full(poly.shape[0], z_ct[k_ct])])
                c[CONTOUR_DATA] = _raw_ds(CONTOUR_DATA, xyz)
                # lets pydicom write the raw bytes as they are (documented use)
                c.set_original_encoding(True, True, default_encoding)
                seq.append(c)
        rc = Dataset()
        rc.ReferencedROINumber = number
        rc.ROIDisplayColor = list(_COLOURS[(number - 1) % len(_COLOURS)])
        rc.ContourSequence = DicomSequence(seq)
        contours.append(rc)
        obs = Dataset()
        obs.ObservationNumber = number
        obs.ReferencedROINumber = number
        obs.RTROIInterpretedType = _ROLE_TYPES.get(case.rois[name].role, "")
        obs.ROIInterpreter = ""
        observations.append(obs)
        if not seq:
            log.warning("%s: ROI '%s' has no voxel on the CT slices: written without contours",
                        path, name)
    ds.StructureSetROISequence = DicomSequence(ssroi)
    ds.ROIContourSequence = DicomSequence(contours)
    ds.RTROIObservationsSequence = DicomSequence(observations)
    out = _write(ds, path)
    log.info("wrote RTSTRUCT %s (%d ROIs)", out, len(names))
    return out
