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

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from atp.cases.case import PatientCase


@dataclass(frozen=True)
class DoseGrid:
    """A regular (z, y, x) grid: shape, spacing and world position of voxel (0, 0, 0)."""

    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]

    @classmethod
    def of_case(cls, case: PatientCase) -> DoseGrid:
        return cls(tuple(int(n) for n in case.shape),  # type: ignore[arg-type]
                   tuple(float(s) for s in case.spacing_mm),  # type: ignore[arg-type]
                   tuple(float(o) for o in case.origin_mm))  # type: ignore[arg-type]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def points_mm(self, flat_index: np.ndarray) -> np.ndarray:
        """World (z, y, x) positions (n, 3) float64 of flat voxel indices."""
        idx = np.stack(np.unravel_index(np.asarray(flat_index), self.shape), axis=1)
        return idx * np.asarray(self.spacing_mm) + np.asarray(self.origin_mm)

    def index_of_mm(self, points_mm: np.ndarray) -> np.ndarray:
        """Fractional (z, y, x) voxel indices (n, 3) of world points."""
        return (np.asarray(points_mm, dtype=np.float64) - np.asarray(self.origin_mm)) / np.asarray(
            self.spacing_mm)

    def same_as(self, other: DoseGrid) -> bool:
        return (self.shape == other.shape
                and np.allclose(self.spacing_mm, other.spacing_mm, atol=1e-6)
                and np.allclose(self.origin_mm, other.origin_mm, atol=1e-6))

    def to_dict(self) -> dict:
        return {"shape": list(self.shape), "spacing_mm": list(self.spacing_mm),
                "origin_mm": list(self.origin_mm)}


def make_dose_grid(case: PatientCase, spacing_mm: float | tuple[float, float, float] | None
                   ) -> DoseGrid:
    """The case's CT grid (``spacing_mm=None``) or a regular grid of ``spacing_mm``."""
    ct = DoseGrid.of_case(case)
    if spacing_mm is None:
        return ct
    s = np.broadcast_to(np.asarray(spacing_mm, dtype=np.float64), (3,))
    if not (np.all(np.isfinite(s)) and np.all(s > 0)):
        raise ValueError(f"dose_grid_spacing_mm must be > 0, got {spacing_mm!r}")
    extent = (np.asarray(ct.shape) - 1) * np.asarray(ct.spacing_mm)
    n = np.floor(extent / s + 1e-6).astype(int) + 1
    origin = np.asarray(ct.origin_mm) + (extent - (n - 1) * s) / 2
    return DoseGrid(tuple(int(k) for k in n), tuple(float(v) for v in s),  # type: ignore[arg-type]
                    tuple(float(v) for v in origin))  # type: ignore[arg-type]


def _ct_coords_on(grid: DoseGrid, src: DoseGrid) -> np.ndarray:
    """Fractional indices in ``src`` of every voxel centre of ``grid``, shape (3, *grid.shape)."""
    axes = [(np.arange(n) * sp + o - so) / ss for n, sp, o, so, ss in
            zip(grid.shape, grid.spacing_mm, grid.origin_mm, src.origin_mm, src.spacing_mm,
                strict=True)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=0)


def mask_on_grid(mask_ct: np.ndarray, case: PatientCase, grid: DoseGrid) -> np.ndarray:
    """A CT-grid boolean mask on ``grid`` (see module docstring)."""
    ct = DoseGrid.of_case(case)
    if grid.same_as(ct):
        return np.asarray(mask_ct, dtype=bool)
    coords = _ct_coords_on(grid, ct)
    vals = ndimage.map_coordinates(mask_ct.astype(np.float32), coords, order=1, mode="constant",
                                   cval=0.0, prefilter=False)
    return vals > 0.0


def to_ct_grid(dose: np.ndarray, influence_or_grid, case: PatientCase) -> np.ndarray:
    """Bring a dose on the dose grid back to the CT grid (trilinear), float32.

    ``influence_or_grid`` is a `DoseInfluence` (its ``grid``) or a `DoseGrid`. When the
    dose grid is the CT grid the dose is returned unchanged (as float32).
    """
    grid = getattr(influence_or_grid, "grid", influence_or_grid)
    dose = np.asarray(dose, dtype=np.float32)
    if dose.shape != tuple(grid.shape):
        raise ValueError(f"dose: shape {dose.shape} does not match the dose grid {grid.shape}")
    ct = DoseGrid.of_case(case)
    if grid.same_as(ct):
        return dose
    coords = _ct_coords_on(ct, grid)
    out = ndimage.map_coordinates(dose, coords, order=1, mode="nearest", prefilter=False)
    return np.maximum(out, 0.0).astype(np.float32)
