"""CT series reading and the axis-aligned image geometry shared with RTDOSE.

A DICOM image plane is placed by ImagePositionPatient (IPP, the centre of the first
pixel), ImageOrientationPatient (IOP, the row and column direction cosines) and
PixelSpacing (row spacing = between rows = along the column direction, then column
spacing). `atp` supports axial planes whose rows run along +-x and columns along +-y
(HFS, HFP, FFS, FFP); the volume is flipped so that array indices increase with the
patient coordinates (x left, y posterior, z superior), and the original orientation is
recorded so that exports can go back to it. Oblique planes and gantry tilt are refused.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from atp.cases.case import CaseError
from atp.cases.grid import Grid

log = logging.getLogger(__name__)

#: Direction cosines closer than this to +-1 / 0 count as axis-aligned.
ORIENTATION_TOL = 1e-3
#: Slice gaps may differ from the median gap by this fraction before a series is refused.
SPACING_TOL_FRACTION = 0.01
SPACING_TOL_MM = 0.01


@dataclass(frozen=True)
class AxisAlignment:
    """Signs of an axial IOP: row direction = sx * x, column direction = sy * y."""

    sx: int
    sy: int

    @property
    def sz(self) -> int:
        """Sign of the slice normal (row x column) along z."""
        return self.sx * self.sy

    @property
    def iop(self) -> list[float]:
        """ImageOrientationPatient of this alignment (six direction cosines)."""
        return [float(self.sx), 0.0, 0.0, 0.0, float(self.sy), 0.0]


def axis_alignment(iop: Sequence[float], *, source: str, field_name: str = "ImageOrientationPatient"
                   ) -> AxisAlignment:
    """Check that ``iop`` is an axial, axis-aligned orientation and return its signs.

    Raises `CaseError` naming ``source`` for oblique, sagittal or coronal planes.

    Parameters
    ----------
    iop : sequence of 6 float
        ImageOrientationPatient: row then column direction cosines.
    source : str
        File named in errors.
    field_name : str, optional
        Field named in errors; default ``"ImageOrientationPatient"``.

    Returns
    -------
    AxisAlignment
        Signs of the row (x) and column (y) directions.
    """
    try:
        v = np.asarray([float(c) for c in iop], dtype=np.float64)
    except (TypeError, ValueError):
        raise CaseError(source, field_name, f"not 6 numbers: {iop!r}") from None
    if v.shape != (6,):
        raise CaseError(source, field_name, f"expected 6 direction cosines, got {len(v)}")
    row, col = v[:3], v[3:]
    if abs(abs(row[0]) - 1) < ORIENTATION_TOL and abs(abs(col[1]) - 1) < ORIENTATION_TOL \
            and max(abs(row[1]), abs(row[2]), abs(col[0]), abs(col[2])) < ORIENTATION_TOL:
        return AxisAlignment(sx=int(np.sign(row[0])), sy=int(np.sign(col[1])))
    normal = np.cross(row, col)
    a = np.abs(v)
    if np.all((a < ORIENTATION_TOL) | (np.abs(a - 1) < ORIENTATION_TOL)):
        kind = "sagittal, coronal or transposed (not axial)"
    elif abs(abs(normal[2]) - 1) < ORIENTATION_TOL:
        kind = "rotated in the axial plane"
    else:
        kind = "oblique"
    raise CaseError(source, field_name,
                    f"{kind} orientation {np.round(v, 4).tolist()}: atp reads axial images "
                    "with rows along x and columns along y only; reformat the series to "
                    "axial in the planning system (the data would otherwise be mis-placed)")


@dataclass
class CtVolume:
    """A CT series on its own grid, flipped into (z, y, x) index order.

    ``slice_uids`` are the SOPInstanceUIDs of the slices in ascending world z.
    """

    ct_hu: np.ndarray
    grid: Grid
    alignment: AxisAlignment
    frame_of_reference_uid: str
    study_uid: str
    series_uid: str
    slice_uids: list[str]
    patient_position: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def geometry_dict(self) -> dict[str, Any]:
        """JSON form of the original geometry (for `PatientCase.metadata`).

        Returns
        -------
        dict
            `Grid.to_dict` of the CT grid (mm, (z, y, x)) plus ``orientation`` (the IOP)
            and ``patient_position``.
        """
        return {**self.grid.to_dict(), "orientation": self.alignment.iop,
                "patient_position": self.patient_position}


def read_floats(ds: pydicom.Dataset, keyword: str, n: int, source: str) -> np.ndarray:
    """``n`` finite numbers of element ``keyword``; `CaseError` naming ``source`` otherwise.

    Parameters
    ----------
    ds : pydicom.Dataset
        Dataset to read from.
    keyword : str
        DICOM keyword, e.g. ``"PixelSpacing"``.
    n : int
        Expected number of values.
    source : str
        File named in errors.

    Returns
    -------
    np.ndarray
        The ``n`` values (float64), in the element's units.
    """
    val = ds.get(keyword)
    if val is None:
        raise CaseError(source, keyword, "missing")
    try:
        arr = np.asarray([float(v) for v in val], dtype=np.float64)
    except (TypeError, ValueError):
        raise CaseError(source, keyword, f"not numeric: {val!r}") from None
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise CaseError(source, keyword, f"expected {n} finite numbers, got {val!r}")
    return arr


def decode_pixels(ds: pydicom.Dataset, source: str) -> np.ndarray:
    """The stored pixel values; `CaseError` when the transfer syntax cannot be decoded.

    Parameters
    ----------
    ds : pydicom.Dataset
        Image dataset.
    source : str
        File named in errors.

    Returns
    -------
    np.ndarray
        Stored values (before rescale), (rows, columns) for a single-frame image.
    """
    try:
        return ds.pixel_array
    except Exception as exc:  # pydicom raises several types for undecodable data
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown")
        raise CaseError(source, "PixelData", f"cannot be decoded (transfer syntax {ts}): "
                        f"{exc}") from None


def read_ct_series(paths: Sequence[str | os.PathLike], *, source: str | None = None) -> CtVolume:
    """Read the slices of one CT series (any order) into a `CtVolume` in HU.

    Slices are sorted by their position along the slice normal, checked for a common
    orientation and size, uniform spacing (a missing slice is refused) and gantry tilt.

    Parameters
    ----------
    paths : sequence of str or os.PathLike
        The series' slice files.
    source : str, optional
        Named in errors; default the folder of the first file.

    Returns
    -------
    CtVolume
        CT (HU, float32), (z, y, x) with indices increasing with world coordinates, and
        its grid (mm) and DICOM identity.
    """
    paths = [Path(p) for p in paths]
    src = source or (str(paths[0].parent) if paths else "CT series")
    if not paths:
        raise CaseError(src, "files", "the CT series has no slices")
    ref: dict[str, Any] = {}
    positions, hu, uids = [], [], []
    for p in paths:  # one slice at a time: only the HU arrays are kept
        s = str(p)
        try:
            ds = pydicom.dcmread(p)
        except Exception as exc:
            raise CaseError(s, "file", f"unreadable DICOM ({exc})") from None
        iop = read_floats(ds, "ImageOrientationPatient", 6, s)
        spacing = read_floats(ds, "PixelSpacing", 2, s)
        if not ref:
            ref = {"iop": iop, "align": axis_alignment(iop, source=s), "spacing": spacing,
                   "shape": (int(ds.Rows), int(ds.Columns)), "ds": ds}
            if np.any(spacing <= 0):
                raise CaseError(s, "PixelSpacing", f"must be > 0, got {spacing.tolist()}")
        if np.max(np.abs(iop - ref["iop"])) > ORIENTATION_TOL:
            raise CaseError(s, "ImageOrientationPatient", "differs from the other slices")
        if np.max(np.abs(spacing - ref["spacing"])) > 1e-4:
            raise CaseError(s, "PixelSpacing", "differs from the other slices")
        if (int(ds.Rows), int(ds.Columns)) != ref["shape"]:
            raise CaseError(s, "Rows/Columns", f"{ds.Rows}x{ds.Columns} differs from the "
                            f"other slices ({ref['shape'][0]}x{ref['shape'][1]})")
        tilt = float(ds.get("GantryDetectorTilt", 0.0) or 0.0)
        if abs(tilt) > 0.01:
            raise CaseError(s, "GantryDetectorTilt", f"gantry tilt of {tilt} degrees is not "
                            "supported; resample the CT to untilted axial slices first")
        positions.append(read_floats(ds, "ImagePositionPatient", 3, s))
        arr = decode_pixels(ds, s)
        if arr.shape != ref["shape"]:
            raise CaseError(s, "PixelData", f"shape {arr.shape}, expected {ref['shape']}")
        slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
        intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
        vals = arr.astype(np.float64) * slope + intercept
        pad = ds.get("PixelPaddingValue")
        if isinstance(pad, int):
            vals[arr == pad] = -1024.0
        hu.append(vals.astype(np.float32))
        uids.append(str(ds.get("SOPInstanceUID", "")))
    align: AxisAlignment = ref["align"]
    ds0 = ref["ds"]
    spacing0 = ref["spacing"]
    normal = np.array([0.0, 0.0, float(align.sz)])
    pos = np.asarray(positions)
    dist = pos @ normal
    order = np.argsort(dist, kind="stable")
    pos, dist = pos[order], dist[order]
    files = [paths[i] for i in order]
    if len(files) > 1:
        _check_slice_positions(pos, dist, normal, files, src)
    dz = float(np.median(np.diff(dist))) if len(files) > 1 else float(
        ds0.get("SliceThickness", 0.0) or 0.0) or 1.0
    vol = np.stack([hu[i] for i in order])  # (slice along normal, row, column)
    dy, dx = float(spacing0[0]), float(spacing0[1])
    # flip into increasing world coordinates: rows follow sy, columns sx, slices sz
    flips = tuple(a for a, s in ((0, align.sz), (1, align.sy), (2, align.sx)) if s < 0)
    if flips:
        vol = np.flip(vol, axis=flips)
    first = pos[0]
    n = vol.shape
    origin_x = first[0] if align.sx > 0 else first[0] - (n[2] - 1) * dx
    origin_y = first[1] if align.sy > 0 else first[1] - (n[1] - 1) * dy
    origin_z = float(np.min(pos[:, 2]))
    grid = Grid(shape=n, spacing_mm=(dz, dy, dx), origin_mm=(origin_z, origin_y, origin_x))
    uids = [uids[i] for i in order]
    if align.sz < 0:
        uids = uids[::-1]
    return CtVolume(
        ct_hu=np.ascontiguousarray(vol), grid=grid, alignment=align,
        frame_of_reference_uid=str(ds0.get("FrameOfReferenceUID", "")),
        study_uid=str(ds0.get("StudyInstanceUID", "")),
        series_uid=str(ds0.get("SeriesInstanceUID", "")),
        slice_uids=uids, patient_position=str(ds0.get("PatientPosition", "") or ""),
        info={"files": [str(f) for f in files], "patient_id": str(ds0.get("PatientID", "")),
              "patient_name": str(ds0.get("PatientName", "")),
              "patient_birth_date": str(ds0.get("PatientBirthDate", "")),
              "patient_sex": str(ds0.get("PatientSex", ""))},
    )


def _check_slice_positions(pos: np.ndarray, dist: np.ndarray, normal: np.ndarray,
                           files: list[Path], src: str) -> None:
    gaps = np.diff(dist)
    k = int(np.argmin(gaps))
    if gaps[k] < SPACING_TOL_MM:
        raise CaseError(src, "ImagePositionPatient",
                        f"two slices at the same position ({files[k].name} and "
                        f"{files[k + 1].name}): duplicate slices or two series mixed")
    # displacement perpendicular to the normal: a tilted gantry or a sheared stack
    lateral = (pos - pos[0]) - np.outer(dist - dist[0], normal)
    shift = float(np.max(np.linalg.norm(lateral, axis=1)))
    if shift > 0.01:
        raise CaseError(src, "ImagePositionPatient",
                        f"slice positions drift by up to {shift:.2f} mm across the plane "
                        "(gantry tilt or sheared acquisition); not supported: resample the "
                        "CT to untilted axial slices first")
    median = float(np.median(gaps))
    dev = np.abs(gaps - median)
    k = int(np.argmax(dev))
    if dev[k] > max(SPACING_TOL_MM, SPACING_TOL_FRACTION * median):
        raise CaseError(src, "ImagePositionPatient",
                        f"non-uniform slice spacing: a gap of {gaps[k]:.3f} mm between "
                        f"{files[k].name} and {files[k + 1].name} where the series has "
                        f"{median:.3f} mm (missing slice?)")
