"""Dose grids: the CT grid or a coarser regular grid, and the way back to the CT grid.

A coarse dose grid (``dose_grid_spacing_mm``) covers the CT's extent (voxel centres from
the first to the last CT voxel centre, centred when the extent is not a multiple of the
spacing). Its rows are the coarse voxels whose trilinear interpolation of the CT-grid mask
is > 0, i.e. every coarse voxel that takes part in interpolating a masked CT voxel.
`to_ct_grid` brings a dose on the dose grid back to the CT grid by trilinear interpolation
(``scipy.ndimage.map_coordinates``, order 1; CT voxels beyond the coarse grid's outer
voxel centres take the nearest edge value).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from atp.cases.case import PatientCase
from atp.cases.grid import Grid


def make_dose_grid(case: PatientCase, spacing_mm: float | tuple[float, float, float] | None
                   ) -> Grid:
    """The case's CT grid (``spacing_mm=None``) or a regular grid of ``spacing_mm``.

    Parameters
    ----------
    case : PatientCase
    spacing_mm : float or 3 floats, optional
        The dose grid's voxel size; None gives the CT grid.

    Returns
    -------
    Grid
        Covering the CT's voxel centres (see the module docstring).
    """
    ct = case.grid
    if spacing_mm is None:
        return ct
    s = np.broadcast_to(np.asarray(spacing_mm, dtype=np.float64), (3,))
    if not (np.all(np.isfinite(s)) and np.all(s > 0)):
        raise ValueError(f"dose_grid_spacing_mm must be > 0, got {spacing_mm!r}")
    extent = (np.asarray(ct.shape) - 1) * np.asarray(ct.spacing_mm)
    n = np.floor(extent / s + 1e-6).astype(int) + 1
    origin = np.asarray(ct.origin_mm) + (extent - (n - 1) * s) / 2
    return Grid(shape=tuple(n), spacing_mm=tuple(s), origin_mm=tuple(origin))


def _ct_coords_on(grid: Grid, src: Grid) -> np.ndarray:
    """Fractional indices in ``src`` of every voxel centre of ``grid``, shape (3, *grid.shape)."""
    axes = [(ax - so) / ss for ax, so, ss in
            zip(grid.axes_mm(), src.origin_mm, src.spacing_mm, strict=True)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=0)


def mask_on_grid(mask_ct: np.ndarray, case: PatientCase, grid: Grid) -> np.ndarray:
    """A CT-grid boolean mask on ``grid`` (see module docstring).

    Parameters
    ----------
    mask_ct : ndarray, bool, the case's shape
    case : PatientCase
    grid : Grid
        The dose grid.

    Returns
    -------
    ndarray, bool, ``grid.shape``
    """
    ct = case.grid
    if grid.same_as(ct):
        return np.asarray(mask_ct, dtype=bool)
    coords = _ct_coords_on(grid, ct)
    vals = ndimage.map_coordinates(mask_ct.astype(np.float32), coords, order=1, mode="constant",
                                   cval=0.0, prefilter=False)
    return vals > 0.0


def to_ct_grid(dose: np.ndarray, influence_or_grid, case: PatientCase) -> np.ndarray:
    """Bring a dose on the dose grid back to the CT grid (trilinear), float32.

    Parameters
    ----------
    dose : ndarray, the dose grid's shape
    influence_or_grid : DoseInfluence or Grid
        The dose grid (a `DoseInfluence`'s ``grid``).
    case : PatientCase

    Returns
    -------
    ndarray, float32, the case's shape
        Unchanged (as float32) when the dose grid is the CT grid.
    """
    grid = getattr(influence_or_grid, "grid", influence_or_grid)
    dose = np.asarray(dose, dtype=np.float32)
    if dose.shape != tuple(grid.shape):
        raise ValueError(f"dose: shape {dose.shape} does not match the dose grid {grid.shape}")
    ct = case.grid
    if grid.same_as(ct):
        return dose
    coords = _ct_coords_on(ct, grid)
    out = ndimage.map_coordinates(dose, coords, order=1, mode="nearest", prefilter=False)
    return np.maximum(out, 0.0).astype(np.float32)
