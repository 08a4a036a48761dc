"""RTDOSE reading: a multi-frame dose grid in Gy, flipped into (z, y, x) index order."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom

from atp.cases.case import CaseError
from atp.io.dicom.ct import axis_alignment, decode_pixels, read_floats
from atp.io.dicom.dataset import read_dicom
from atp.io.dicom.resample import Axes, inside_mask, resample_linear

log = logging.getLogger(__name__)


@dataclass
class DoseVolume:
    """An RTDOSE grid: dose (Gy, float32, (z, y, x)) and the world coordinates of its axes.

    The z axis may be non-uniform (GridFrameOffsetVector allows it).
    """

    dose_gy: np.ndarray
    axes_mm: Axes
    frame_of_reference_uid: str
    summation_type: str
    sop_uid: str
    referenced_plan_uid: str
    path: str


def read_rtdose(path: str | os.PathLike) -> DoseVolume:
    """Read an RTDOSE file (DoseUnits GY) applying DoseGridScaling.

    Raises `CaseError` naming the file and the field for relative doses, missing
    geometry, oblique grids or a frame count that does not match the offsets.

    Parameters
    ----------
    path : str or os.PathLike
        RTDOSE file.

    Returns
    -------
    DoseVolume
        Dose (Gy, float32), (z, y, x) flipped to increasing world coordinates, with its
        axes (mm) and UIDs.
    """
    path = Path(path)
    src = str(path)
    ds = read_dicom(path, modality="RTDOSE")
    units = str(ds.get("DoseUnits", "")).upper()
    if units != "GY":
        raise CaseError(src, "DoseUnits", f"is {units or 'missing'!r}; only absolute dose "
                        "(GY) can be imported")
    try:
        scaling = float(ds.get("DoseGridScaling", 1.0))
    except (TypeError, ValueError):
        raise CaseError(src, "DoseGridScaling", f"not a number: {ds.DoseGridScaling!r}") from None
    if not (np.isfinite(scaling) and scaling > 0):
        raise CaseError(src, "DoseGridScaling", f"must be > 0, got {scaling}")
    align = axis_alignment(read_floats(ds, "ImageOrientationPatient", 6, src), source=src)
    ipp = read_floats(ds, "ImagePositionPatient", 3, src)
    dy, dx = (float(v) for v in read_floats(ds, "PixelSpacing", 2, src))
    arr = decode_pixels(ds, src)
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.shape[0] != n_frames:
        raise CaseError(src, "NumberOfFrames", f"{n_frames} frames but the pixel data holds "
                        f"{arr.shape[0]}")
    offsets = _frame_offsets(ds, n_frames, ipp, align.sz, src)
    dose = arr.astype(np.float64) * scaling
    if dose.size and float(dose.min()) < 0:
        raise CaseError(src, "PixelData", "negative dose values")
    # world coordinates along each original axis, then flip to increasing order
    xs = ipp[0] + align.sx * dx * np.arange(arr.shape[2])
    ys = ipp[1] + align.sy * dy * np.arange(arr.shape[1])
    zs = ipp[2] + align.sz * offsets
    dose = dose.astype(np.float32)
    axes = []
    for axis, coords in enumerate((zs, ys, xs)):
        if coords.size > 1 and coords[1] < coords[0]:
            dose = np.flip(dose, axis=axis)
            coords = coords[::-1]
        if coords.size > 1 and not np.all(np.diff(coords) > 0):
            raise CaseError(src, "GridFrameOffsetVector" if axis == 0 else "PixelSpacing",
                            "positions do not increase monotonically")
        axes.append(np.ascontiguousarray(coords))
    plan_uid = ""
    ref = ds.get("ReferencedRTPlanSequence")
    if ref:
        plan_uid = str(ref[0].get("ReferencedSOPInstanceUID", ""))
    return DoseVolume(
        dose_gy=np.ascontiguousarray(dose), axes_mm=tuple(axes),  # type: ignore[arg-type]
        frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "")),
        summation_type=str(ds.get("DoseSummationType", "")).upper(),
        sop_uid=str(ds.get("SOPInstanceUID", "")), referenced_plan_uid=plan_uid, path=src)


def _frame_offsets(ds: pydicom.Dataset, n_frames: int, ipp: np.ndarray, sz: int,
                   src: str) -> np.ndarray:
    """Frame offsets along the slice normal relative to the first frame (mm)."""
    gfov = ds.get("GridFrameOffsetVector")
    if gfov is None:
        if n_frames == 1:
            return np.zeros(1)
        raise CaseError(src, "GridFrameOffsetVector", "missing for a multi-frame dose")
    try:
        off = np.asarray([float(v) for v in (gfov if isinstance(gfov, Sequence) and not
                                              isinstance(gfov, str) else [gfov])])
    except (TypeError, ValueError):
        raise CaseError(src, "GridFrameOffsetVector", f"not numeric: {gfov!r}") from None
    if off.size != n_frames:
        raise CaseError(src, "GridFrameOffsetVector", f"{off.size} offsets for {n_frames} "
                        "frames")
    if abs(off[0]) > 1e-6:
        if abs(off[0] - ipp[2]) < 1e-3:
            # DICOM's absolute form: the offsets are the frames' z coordinates
            return sz * (off - ipp[2])
        log.warning("%s: GridFrameOffsetVector starts at %.3f, neither 0 nor the z of "
                    "ImagePositionPatient; read relative to the first frame", src, off[0])
        return off - off[0]
    return off


def dose_on_grid(volumes: Sequence[DoseVolume], dst_axes: Axes) -> tuple[np.ndarray, np.ndarray]:
    """Sum the doses of ``volumes`` resampled (trilinear) onto ``dst_axes``.

    Returns (dose in Gy float32, boolean mask of the voxels covered by every grid);
    voxels outside a dose grid get 0 Gy from it.

    Parameters
    ----------
    volumes : sequence of DoseVolume
        Doses to sum (e.g. one per beam).
    dst_axes : tuple of 3 np.ndarray
        Voxel-centre coordinates (mm) of the destination along z, y, x.

    Returns
    -------
    tuple of np.ndarray
        ``(dose_gy, covered)``: summed dose (Gy, float32) and the boolean mask of voxels
        inside every dose grid, each (z, y, x) on ``dst_axes``.
    """
    total = np.zeros(tuple(a.size for a in dst_axes), dtype=np.float64)
    covered = np.ones(total.shape, dtype=bool)
    for v in volumes:
        total += resample_linear(v.dose_gy, v.axes_mm, dst_axes, fill=0.0)
        covered &= inside_mask(v.axes_mm, dst_axes)
    return total.astype(np.float32), covered
