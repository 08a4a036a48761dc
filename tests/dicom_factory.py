"""Synthetic DICOM RT sets for the tests: a CT phantom, RTSTRUCT, RTDOSE and RTPLAN.

World coordinates are DICOM patient coordinates (x left, y posterior, z superior, mm).
The phantom (a water ellipse with a bone rod) carries structures with known volumes:
spheres, a rod, and an ROI whose slices hold an annulus (outer contour and hole), an
island inside the hole and a separate disk. The dose is an analytic Gaussian plus a
constant, sampled on its own (offset) grid.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.charset import default_encoding
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
RTDOSE_STORAGE = "1.2.840.10008.5.1.4.1.1.481.2"
RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
RTPLAN_STORAGE = "1.2.840.10008.5.1.4.1.1.481.5"
SIGNS = {"HFS": (1, 1), "HFP": (-1, -1), "FFS": (-1, 1), "FFP": (1, -1)}
IMRT_GANTRY = [0.0, 51.0, 103.0, 154.0, 206.0, 257.0, 309.0]
ISO_XYZ = (10.0, -5.0, 5.0)

# CT grid (canonical): 36 slices of 2.5 mm, 80 rows x 96 columns of 2 mm
SHAPE = (36, 80, 96)
SPACING = (2.5, 2.0, 2.0)
ORIGIN = (-40.0, -79.0, -95.0)  # (z, y, x) of voxel (0, 0, 0)
RESCALE = (2.0, -1024.0)  # slope, intercept


def dose_fn(x, y, z):
    """Analytic dose (Gy): 5 + 65 exp(-r^2 / (2 * 35^2)) around the isocentre."""
    r2 = (x - ISO_XYZ[0]) ** 2 + (y - ISO_XYZ[1]) ** 2 + (z - ISO_XYZ[2]) ** 2
    return 5.0 + 65.0 * np.exp(-r2 / (2 * 35.0 ** 2))


def circle(cx: float, cy: float, r: float, n: int = 128) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.column_stack([cx + r * np.cos(t), cy + r * np.sin(t)])


@dataclass
class RoiSpec:
    """An ROI: a function giving the polygons (x, y) of a slice at z, its analytic volume."""

    name: str
    kind: str
    polygons: Callable[[float], list[np.ndarray]]
    volume_cc: float | None = None
    z_mm: list[float] | None = None  # contour planes; None: the CT slices


def sphere(name: str, centre: tuple[float, float, float], r: float, kind: str = "ORGAN"
           ) -> RoiSpec:
    def polys(z: float) -> list[np.ndarray]:
        dz = z - centre[2]
        return [circle(centre[0], centre[1], math.sqrt(r * r - dz * dz))] if abs(dz) < r else []
    return RoiSpec(name, kind, polys, 4.0 / 3.0 * math.pi * r ** 3 / 1000.0)


def z_axis() -> np.ndarray:
    return ORIGIN[0] + SPACING[0] * np.arange(SHAPE[0])


def default_rois() -> list[RoiSpec]:
    zs = z_axis()
    length = SHAPE[0] * SPACING[0]
    z_lo, z_hi = zs[12], zs[23]  # 12 slices: a 30 mm slab whose faces are on both grids

    def multi(z: float) -> list[np.ndarray]:
        if not (z_lo - 1e-6 <= z <= z_hi + 1e-6):
            return []
        return [circle(-25, -32, 20), circle(-25, -32, 12), circle(-25, -32, 6),
                circle(25, -40, 9)]

    area_multi = math.pi * (20 ** 2 - 12 ** 2 + 6 ** 2 + 9 ** 2)
    return [
        RoiSpec("External", "EXTERNAL", lambda z: [circle(0, 0, 1, 256) * [85, 65]],
                math.pi * 85 * 65 * length / 1000),
        sphere("PTV70", ISO_XYZ, 20.0, "PTV"),
        sphere("PTV 56Gy", ISO_XYZ, 28.0, "PTV"),
        sphere("Parotid_L", (50.0, 15.0, 0.0), 12.0),
        sphere("R Parotid", (-50.0, 15.0, 0.0), 12.0),
        RoiSpec("Cord", "ORGAN", lambda z: [circle(0.7, 44.3, 10)], math.pi * 100 * length / 1000),
        RoiSpec("Mandible", "ORGAN", multi, area_multi * 12 * SPACING[0] / 1000),
        RoiSpec("zHelper", "CONTROL", lambda z: [circle(60, -20, 5)] if abs(z) < 10 else []),
        RoiSpec("Empty_ROI", "ORGAN", lambda z: []),
    ]


@dataclass
class PhantomSet:
    folder: Path
    patient_id: str
    uids: dict[str, str]
    rois: list[RoiSpec]
    ct_files: list[Path] = field(default_factory=list)
    rtstruct: Path | None = None
    rtplan: Path | None = None
    rtdose: Path | None = None
    slice_uids: dict[int, str] = field(default_factory=dict)

    def volumes_cc(self) -> dict[str, float]:
        return {r.name: r.volume_cc for r in self.rois if r.volume_cc is not None}


def _base(sop_class: str, modality: str, uids: dict[str, str], patient_id: str,
          series_uid: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.PatientName = f"Phantom^{patient_id}"
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyInstanceUID = uids["study"]
    ds.SeriesInstanceUID = series_uid
    ds.StudyDate = "20240101"
    ds.SeriesDate = "20240101"
    return ds


def _ds_bytes(tag: int, values: np.ndarray) -> RawDataElement:
    """A DS element as raw bytes (pydicom's per-value validation is slow for contours)."""
    raw = "\\".join(f"{v:.4f}" for v in np.ravel(values)).encode("ascii")
    raw += b" " * (len(raw) % 2)
    return RawDataElement(Tag(tag), "DS", len(raw), raw, 0, False, True)


def _ref(sop_class: str, uid: str) -> Dataset:
    d = Dataset()
    d.ReferencedSOPClassUID = sop_class
    d.ReferencedSOPInstanceUID = uid
    return d


def ct_hu_canonical() -> np.ndarray:
    """The phantom's HU on the canonical CT grid (z, y, x): air, water ellipse, bone rod."""
    z, y, x = (ORIGIN[a] + SPACING[a] * np.arange(SHAPE[a]) for a in range(3))
    yy, xx = np.meshgrid(y, x, indexing="ij")
    img = np.where((xx / 85.0) ** 2 + (yy / 65.0) ** 2 <= 1.0, 0.0, -1000.0)
    img[(xx ** 2 + (yy - 45) ** 2) <= 8.0 ** 2] = 1000.0
    return np.repeat(img[None], SHAPE[0], axis=0)


def write_phantom(folder: Path, *, patient_id: str = "PHANTOM1", orientation: str = "HFS",
                  technique: str | None = "imrt", with_dose: bool = True,
                  dose_region: str = "full", shuffle: bool = False,
                  drop_slice: int | None = None, tilt_deg: float = 0.0, tilt_tag: bool = True,
                  oblique: bool = False, rois: list[RoiSpec] | None = None,
                  struct_series_uid: str | None = None,
                  target_doses: dict[str, float] | None = None, seed: int = 0) -> PhantomSet:
    """Write a complete synthetic RT set to ``folder`` and describe it."""
    folder.mkdir(parents=True, exist_ok=True)
    uids = {k: generate_uid() for k in ("study", "frame", "ct_series", "rs_series",
                                        "plan_series", "dose_series")}
    out = PhantomSet(folder=folder, patient_id=patient_id, uids=uids,
                     rois=default_rois() if rois is None else rois)
    sx, sy = SIGNS[orientation]
    iop = [float(sx), 0.0, 0.0, 0.0, float(sy), 0.0]
    if oblique:
        c, s = math.cos(math.radians(15)), math.sin(math.radians(15))
        iop = [1.0, 0.0, 0.0, 0.0, c, s]
    hu = ct_hu_canonical()
    rng = random.Random(seed)
    order = list(range(SHAPE[0]))
    if shuffle:
        rng.shuffle(order)
    slice_uids = {}
    y_last = ORIGIN[1] + (SHAPE[1] - 1) * SPACING[1]
    x_last = ORIGIN[2] + (SHAPE[2] - 1) * SPACING[2]
    for k in order:
        if k == drop_slice:
            continue
        ds = _base(CT_STORAGE, "CT", uids, patient_id, uids["ct_series"])
        z = ORIGIN[0] + k * SPACING[0]
        shift = k * SPACING[0] * math.tan(math.radians(tilt_deg))
        ds.FrameOfReferenceUID = uids["frame"]
        ds.PositionReferenceIndicator = ""
        ds.PatientPosition = orientation
        ds.ImagePositionPatient = [ORIGIN[2] if sx > 0 else x_last,
                                   (ORIGIN[1] if sy > 0 else y_last) + shift, z]
        ds.ImageOrientationPatient = iop
        if tilt_deg and tilt_tag:
            ds.GantryDetectorTilt = tilt_deg
        ds.PixelSpacing = [SPACING[1], SPACING[2]]
        ds.SliceThickness = SPACING[0]
        ds.InstanceNumber = k + 1
        img = hu[k][:: sy, :: sx]
        stored = np.rint((img - RESCALE[1]) / RESCALE[0]).astype(np.int16)
        ds.Rows, ds.Columns = stored.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = RESCALE
        ds.PixelData = stored.tobytes()
        name = f"{rng.getrandbits(40):010x}.dcm" if shuffle else f"CT_{k:03d}.dcm"
        path = folder / name
        ds.save_as(path, enforce_file_format=True)
        out.ct_files.append(path)
        slice_uids[k] = ds.SOPInstanceUID
    out.slice_uids = slice_uids
    out.rtstruct = add_rtstruct(out, series_uid=struct_series_uid)
    if technique:
        doses = {"PTV70": 70.0, "PTV 56Gy": 56.0} if target_doses is None else target_doses
        out.rtplan = _write_rtplan(folder, out, technique, doses)
    if with_dose:
        out.rtdose = _write_rtdose(folder, out, orientation, dose_region)
    return out


def add_rtstruct(ph: PhantomSet, *, series_uid: str | None = None,
                 rois: list[RoiSpec] | None = None, filename: str = "RS_phantom.dcm") -> Path:
    """Write a structure set on the phantom's CT (or naming ``series_uid`` instead)."""
    uids, slice_uids = ph.uids, ph.slice_uids
    ds = _base(RTSTRUCT_STORAGE, "RTSTRUCT", uids, ph.patient_id, uids["rs_series"])
    ds.StructureSetLabel = "phantom"
    series = Dataset()
    series.SeriesInstanceUID = series_uid or uids["ct_series"]
    series.ContourImageSequence = Sequence([_ref(CT_STORAGE, u) for u in slice_uids.values()])
    study = Dataset()
    study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    study.ReferencedSOPInstanceUID = uids["study"]
    study.RTReferencedSeriesSequence = Sequence([series])
    frame = Dataset()
    frame.FrameOfReferenceUID = uids["frame"]
    frame.RTReferencedStudySequence = Sequence([study])
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame])
    ss, rc, obs = [], [], []
    for number, roi in enumerate(ph.rois if rois is None else rois, start=1):
        item = Dataset()
        item.ROINumber = number
        item.ReferencedFrameOfReferenceUID = uids["frame"]
        item.ROIName = roi.name
        item.ROIGenerationAlgorithm = "MANUAL"
        ss.append(item)
        contours = []
        planes = [(ORIGIN[0] + k * SPACING[0], uid) for k, uid in slice_uids.items()]
        if roi.z_mm is not None:
            planes = [(z, None) for z in roi.z_mm]
        for z, uid in planes:
            for poly in roi.polygons(z):
                c = Dataset()
                if uid:
                    c.ContourImageSequence = Sequence([_ref(CT_STORAGE, uid)])
                c.ContourGeometricType = "CLOSED_PLANAR"
                c.NumberOfContourPoints = len(poly)
                xyz = np.column_stack([poly, np.full(len(poly), z)])
                c[0x30060050] = _ds_bytes(0x30060050, xyz)
                c.set_original_encoding(False, True, default_encoding)
                contours.append(c)
        r = Dataset()
        r.ReferencedROINumber = number
        r.ROIDisplayColor = [255, 0, 0]
        r.ContourSequence = Sequence(contours)
        rc.append(r)
        o = Dataset()
        o.ObservationNumber = number
        o.ReferencedROINumber = number
        o.RTROIInterpretedType = roi.kind
        o.ROIInterpreter = ""
        obs.append(o)
    ds.StructureSetROISequence = Sequence(ss)
    ds.ROIContourSequence = Sequence(rc)
    ds.RTROIObservationsSequence = Sequence(obs)
    path = ph.folder / filename
    ds.save_as(path, enforce_file_format=True)
    ph.uids.setdefault("rtstruct", ds.SOPInstanceUID)
    return path


def _write_rtplan(folder: Path, ph: PhantomSet, technique: str,
                  target_doses: dict[str, float]) -> Path:
    uids = ph.uids
    ds = _base(RTPLAN_STORAGE, "RTPLAN", uids, ph.patient_id, uids["plan_series"])
    ds.FrameOfReferenceUID = uids["frame"]
    ds.RTPlanLabel = f"phantom {technique}"
    ds.ReferencedStructureSetSequence = Sequence([_ref(RTSTRUCT_STORAGE, uids["rtstruct"])])
    refs = []
    for roi_name, dose in target_doses.items():
        names = [r.name for r in ph.rois]
        if roi_name not in names:
            continue
        d = Dataset()
        d.DoseReferenceNumber = len(refs) + 1
        d.DoseReferenceStructureType = "VOLUME"
        d.ReferencedROINumber = names.index(roi_name) + 1
        d.DoseReferenceType = "TARGET"
        d.TargetPrescriptionDose = dose
        refs.append(d)
    ds.DoseReferenceSequence = Sequence(refs)
    beams = []
    if technique == "imrt":
        specs = [(f"F{i + 1}", g, None) for i, g in enumerate(IMRT_GANTRY)]
    else:
        specs = [("Arc1", 181.0, "CW")]
    for i, (name, gantry, rotation) in enumerate(specs):
        b = Dataset()
        b.BeamNumber = i + 1
        b.BeamName = name
        b.BeamType = "DYNAMIC" if rotation else "STATIC"
        b.RadiationType = "PHOTON"
        b.TreatmentDeliveryType = "TREATMENT"
        b.SourceAxisDistance = 1000.0
        angles = [gantry, gantry] if rotation is None else [
            (181.0 + 358.0 * k / 89) % 360.0 for k in range(90)]
        cps = []
        for j, a in enumerate(angles):
            cp = Dataset()
            cp.ControlPointIndex = j
            cp.CumulativeMetersetWeight = j / (len(angles) - 1)
            if j == 0 or rotation:
                cp.GantryAngle = round(a, 4)
            if j == 0:
                cp.GantryRotationDirection = rotation or "NONE"
                cp.PatientSupportAngle = 0.0
                cp.IsocenterPosition = list(ISO_XYZ)
            cps.append(cp)
        b.NumberOfControlPoints = len(cps)
        b.ControlPointSequence = Sequence(cps)
        beams.append(b)
    setup = Dataset()
    setup.BeamNumber = 99
    setup.BeamName = "Setup AP"
    setup.TreatmentDeliveryType = "SETUP"
    beams.append(setup)
    ds.BeamSequence = Sequence(beams)
    fg = Dataset()
    fg.FractionGroupNumber = 1
    fg.NumberOfFractionsPlanned = 35
    fg.NumberOfBeams = len(specs)
    rbs = []
    for i in range(len(specs)):
        rb = Dataset()
        rb.ReferencedBeamNumber = i + 1
        rb.BeamMeterset = 100.0
        rbs.append(rb)
    fg.ReferencedBeamSequence = Sequence(rbs)
    ds.FractionGroupSequence = Sequence([fg])
    path = folder / "RP_phantom.dcm"
    ds.save_as(path, enforce_file_format=True)
    ph.uids["rtplan"] = ds.SOPInstanceUID
    return path


def _write_rtdose(folder: Path, ph: PhantomSet, orientation: str, region: str) -> Path:
    uids = ph.uids
    ds = _base(RTDOSE_STORAGE, "RTDOSE", uids, ph.patient_id, uids["dose_series"])
    sx, sy = SIGNS[orientation]
    sz = sx * sy
    if region == "full":  # covers the CT box, 2.5 mm, offset from the CT grid
        xs = -97.5 + 2.5 * np.arange(79)
        ys = -82.5 + 2.5 * np.arange(67)
        zs = -42.9 + 2.5 * np.arange(38)
    else:  # a box around the isocentre only
        xs = -30.0 + 2.5 * np.arange(33)
        ys = -40.0 + 2.5 * np.arange(29)
        zs = -20.0 + 2.5 * np.arange(17)
    zz, yy, xx = np.meshgrid(zs, ys, xs, indexing="ij")
    dose = dose_fn(xx, yy, zz)
    scaling = float(f"{dose.max() / 65000:.6e}")
    counts = np.rint(dose / scaling).astype(np.uint16)[:: sz, :: sy, :: sx]
    ds.FrameOfReferenceUID = uids["frame"]
    ds.ImagePositionPatient = [float(xs[0] if sx > 0 else xs[-1]),
                               float(ys[0] if sy > 0 else ys[-1]),
                               float(zs[0] if sz > 0 else zs[-1])]
    ds.ImageOrientationPatient = [float(sx), 0.0, 0.0, 0.0, float(sy), 0.0]
    ds.PixelSpacing = [2.5, 2.5]
    ds.NumberOfFrames = counts.shape[0]
    ds.FrameIncrementPointer = Tag(0x3004, 0x000C)
    ds.GridFrameOffsetVector = [2.5 * k for k in range(counts.shape[0])]
    ds.Rows, ds.Columns = counts.shape[1:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.DoseUnits, ds.DoseType, ds.DoseSummationType = "GY", "PHYSICAL", "PLAN"
    ds.DoseGridScaling = f"{scaling:.6e}"
    if "rtplan" in uids:
        ds.ReferencedRTPlanSequence = Sequence([_ref(RTPLAN_STORAGE, uids["rtplan"])])
    ds.PixelData = np.ascontiguousarray(counts).tobytes()
    path = folder / "RD_phantom.dcm"
    ds.save_as(path, enforce_file_format=True)
    ph.uids["rtdose"] = ds.SOPInstanceUID
    return path
