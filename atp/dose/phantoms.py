"""Synthetic phantoms (water boxes, slabs, cylinders) for commissioning checks and tests.

Every phantom is a `PatientCase` centred on world (0, 0, 0) mm (the centre of the grid),
with a ``body`` ROI and, optionally, a ``ptv`` target.
"""

from __future__ import annotations

import numpy as np

from atp.cases.case import PatientCase, Roi
from atp.dose.density import red_to_hu
from atp.names import BODY


def box_case(size_mm: tuple[float, float, float], spacing_mm: tuple[float, float, float], *,
             hu: float = 0.0, patient_id: str = "water_box") -> PatientCase:
    """A homogeneous box (CT number ``hu``) filling the whole grid, size and spacing (z, y, x).

    Parameters
    ----------
    size_mm : tuple of 3 floats
        Box size (mm), (z, y, x); rounded to whole voxels (at least 1).
    spacing_mm : tuple of 3 floats
        Voxel size (mm), (z, y, x).
    hu : float
        CT number (HU) of every voxel; default 0 (water).
    patient_id : str
        Case id.

    Returns
    -------
    PatientCase
        The box, centred on world (0, 0, 0), with a ``body`` ROI covering every voxel.
    """
    n = tuple(max(1, int(round(s / d))) for s, d in zip(size_mm, spacing_mm, strict=True))
    origin = tuple(-(k - 1) * d / 2 for k, d in zip(n, spacing_mm, strict=True))
    ct = np.full(n, np.float32(hu), dtype=np.float32)
    return PatientCase(patient_id=patient_id, ct_hu=ct, spacing_mm=tuple(spacing_mm),
                       origin_mm=origin, rois={BODY: Roi(np.ones(n, dtype=bool), "external")})


def world_axes_mm(case: PatientCase) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World coordinates (mm) of the voxel centres along z, y and x.

    Parameters
    ----------
    case : PatientCase
        The phantom.

    Returns
    -------
    tuple of 3 np.ndarray
        The z, y and x coordinates (mm), 1-D each.
    """
    return case.grid.axes_mm()


def add_slab(case: PatientCase, *, y_from_mm: float, y_to_mm: float, red: float) -> PatientCase:
    """Set voxels with world ``y`` in [y_from, y_to) to relative electron density ``red``.

    Parameters
    ----------
    case : PatientCase
        The phantom; its CT is changed in place.
    y_from_mm, y_to_mm : float
        The slab's extent along world y (mm, posterior positive).
    red : float
        Relative electron density (converted to HU by `red_to_hu`).

    Returns
    -------
    PatientCase
        ``case``.
    """
    _, y, _ = world_axes_mm(case)
    sel = (y >= y_from_mm) & (y < y_to_mm)
    case.ct_hu[:, sel, :] = np.float32(red_to_hu(red))
    return case


def add_target(case: PatientCase, mask: np.ndarray, *, name: str = "ptv") -> PatientCase:
    """Add ``mask`` to ``case`` as a target ROI called ``name`` and return the case.

    Parameters
    ----------
    case : PatientCase
        The phantom; changed in place.
    mask : np.ndarray
        Boolean target mask on the case grid, (z, y, x).
    name : str
        ROI name; default ``ptv``.

    Returns
    -------
    PatientCase
        ``case``.
    """
    case.rois[name] = Roi(np.asarray(mask, dtype=bool), "target")
    return case


def cylinder_case(*, radius_mm: float, length_mm: float, spacing_mm: float,
                  target_radius_mm: float | None = None, margin_mm: float = 20.0,
                  patient_id: str = "water_cylinder") -> PatientCase:
    """A water cylinder along z (air around it) with an optional coaxial cylindrical target.

    Parameters
    ----------
    radius_mm : float
        Cylinder radius (mm).
    length_mm : float
        Cylinder length along z (mm).
    spacing_mm : float
        Isotropic voxel size (mm).
    target_radius_mm : float, optional
        Radius (mm) of a ``ptv`` target of half the length, centred; ``None``: no target.
    margin_mm : float
        Air around the cylinder in y and x (mm).
    patient_id : str
        Case id.

    Returns
    -------
    PatientCase
        The phantom; its ``body`` ROI is the cylinder.
    """
    side = 2 * (radius_mm + margin_mm)
    case = box_case((length_mm, side, side), (spacing_mm,) * 3, hu=-1000.0, patient_id=patient_id)
    _, y, x = world_axes_mm(case)
    r2 = y[:, None] ** 2 + x[None, :] ** 2
    inside = np.broadcast_to(r2 <= radius_mm**2, case.shape).copy()
    case.ct_hu[inside] = 0.0
    case.rois[BODY] = Roi(inside, "external")
    if target_radius_mm is not None:
        z, _, _ = world_axes_mm(case)
        tz = np.abs(z) <= length_mm / 4
        add_target(case, tz[:, None, None] & (r2 <= target_radius_mm**2)[None])
    return case
