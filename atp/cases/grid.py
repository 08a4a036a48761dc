"""`Grid`: the one regular voxel grid of `atp` (shape, spacing, origin) and its geometry.

Every field is in (z, y, x) order, the order of the case arrays. ``origin_mm`` is the
world position of the centre of voxel (0, 0, 0), in DICOM patient coordinates (x to the
patient's left, y posterior, z superior); voxel ``(i, j, k)`` lies at
``origin_mm + (i, j, k) * spacing_mm``. The dose engine's grids, the DICOM importer's CT
and working grids, the synthetic anatomy's canvas and `PatientCase.grid` are all this class.
Construction is keyword-only (``Grid(shape=..., spacing_mm=..., origin_mm=...)``) so that
the three fields can never be passed in the wrong order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Vec3 = Sequence[float]


@dataclass(frozen=True, kw_only=True)
class Grid:
    """A regular axis-aligned (z, y, x) voxel grid.

    Parameters
    ----------
    shape : 3 ints >= 1
        Number of voxels along z, y, x.
    spacing_mm : 3 floats > 0
        Voxel size (mm).
    origin_mm : 3 floats
        World position (mm) of the centre of voxel (0, 0, 0).
    """

    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]

    def __post_init__(self) -> None:
        try:
            shape = tuple(int(v) for v in self.shape)
            spacing = tuple(float(v) for v in self.spacing_mm)
            origin = tuple(float(v) for v in self.origin_mm)
        except (TypeError, ValueError):
            raise ValueError(f"Grid needs 3 numbers per field, got shape={self.shape!r}, "
                             f"spacing_mm={self.spacing_mm!r}, origin_mm={self.origin_mm!r}"
                             ) from None
        if len(shape) != 3 or len(spacing) != 3 or len(origin) != 3:
            raise ValueError(f"Grid needs 3 values (z, y, x) per field, got shape={shape}, "
                             f"spacing_mm={spacing}, origin_mm={origin}")
        if min(shape) < 1:
            raise ValueError(f"Grid shape must be >= 1 along every axis, got {shape}")
        if not all(math.isfinite(s) and s > 0 for s in spacing):
            raise ValueError(f"Grid spacing_mm must be finite and > 0, got {spacing}")
        if not all(math.isfinite(o) for o in origin):
            raise ValueError(f"Grid origin_mm must be finite, got {origin}")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "spacing_mm", spacing)
        object.__setattr__(self, "origin_mm", origin)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_bounds(cls, lo_mm: Vec3, hi_mm: Vec3, *, spacing_mm: float | Vec3) -> Grid:
        """The grid covering the world box [lo, hi] (z, y, x), centred on the box centre.

        Parameters
        ----------
        lo_mm, hi_mm : 3 floats
            Corners of the box (mm).
        spacing_mm : float or 3 floats
            Voxel size; the number of voxels per axis is ``round((hi - lo) / spacing)``
            (at least 1).

        Returns
        -------
        Grid
        """
        sp = np.broadcast_to(np.asarray(spacing_mm, dtype=np.float64), (3,)).copy()
        if not np.all(sp > 0):
            raise ValueError(f"spacing_mm must be > 0, got {spacing_mm!r}")
        lo, hi = np.asarray(lo_mm, np.float64), np.asarray(hi_mm, np.float64)
        n = np.maximum(1, np.round((hi - lo) / sp).astype(int))
        origin = (lo + hi) / 2 - (n - 1) * sp / 2
        return cls(shape=tuple(n), spacing_mm=tuple(sp), origin_mm=tuple(origin))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Grid:
        """The grid of a `to_dict` mapping (other keys are ignored).

        Parameters
        ----------
        d : mapping
            With ``shape``, ``spacing_mm`` and ``origin_mm``.

        Returns
        -------
        Grid
        """
        missing = [k for k in ("shape", "spacing_mm", "origin_mm") if k not in d]
        if missing:
            raise ValueError(f"grid mapping lacks {missing} (has {sorted(d)})")
        return cls(shape=d["shape"], spacing_mm=d["spacing_mm"], origin_mm=d["origin_mm"])

    def to_dict(self) -> dict[str, list]:
        """JSON-able ``{"shape", "spacing_mm", "origin_mm"}`` (lists of ints / floats).

        Returns
        -------
        dict
            ``shape`` (voxels), ``spacing_mm`` and ``origin_mm`` (mm), each (z, y, x).
        """
        return {"shape": list(self.shape), "spacing_mm": list(self.spacing_mm),
                "origin_mm": list(self.origin_mm)}

    # ------------------------------------------------------------------ sizes
    @property
    def size(self) -> int:
        """Number of voxels."""
        return int(np.prod(self.shape))

    @property
    def voxel_volume_cc(self) -> float:
        """Volume of one voxel in cc (product in float64)."""
        return float(np.prod(np.asarray(self.spacing_mm, dtype=np.float64))) / 1000.0

    def box_mm(self) -> tuple[np.ndarray, np.ndarray]:
        """World box (low, high corner, (z, y, x) mm) covered by the voxels (their outer
        faces, half a voxel beyond the outer centres).

        Returns
        -------
        tuple of np.ndarray
            ``(lo_mm, hi_mm)``, each of 3 floats (z, y, x), in mm.
        """
        sp, o = np.asarray(self.spacing_mm), np.asarray(self.origin_mm)
        return o - sp / 2, o + (np.asarray(self.shape) - 0.5) * sp

    def empty_mask(self) -> np.ndarray:
        """An all-False boolean array of the grid's shape.

        Returns
        -------
        np.ndarray
            Boolean zeros of shape ``shape`` (z, y, x).
        """
        return np.zeros(self.shape, dtype=bool)

    # ------------------------------------------------------------------ coordinates
    def axis_mm(self, axis: int) -> np.ndarray:
        """World coordinates (mm, float64) of the voxel centres along ``axis`` (0 = z).

        Parameters
        ----------
        axis : int
            Axis: 0 = z, 1 = y, 2 = x.

        Returns
        -------
        np.ndarray
            Coordinates (mm, float64), shape ``(shape[axis],)``.
        """
        return self.origin_mm[axis] + self.spacing_mm[axis] * np.arange(
            self.shape[axis], dtype=np.float64)

    def axes_mm(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World coordinates of the voxel centres along z, y and x.

        Returns
        -------
        tuple of 3 np.ndarray
            Coordinates (mm, float64) along z, y and x, as `axis_mm`.
        """
        return (self.axis_mm(0), self.axis_mm(1), self.axis_mm(2))

    def world_mm(self, index_zyx) -> np.ndarray:
        """World positions (mm, float64) of (possibly fractional) voxel indices.

        Parameters
        ----------
        index_zyx : array (..., 3)
            (z, y, x) voxel indices.

        Returns
        -------
        ndarray (..., 3), float64
            ``origin_mm + index * spacing_mm``.
        """
        return (np.asarray(index_zyx, dtype=np.float64) * np.asarray(self.spacing_mm)
                + np.asarray(self.origin_mm))

    def points_mm(self, flat_index) -> np.ndarray:
        """World (z, y, x) positions (n, 3), float64, of flat (C-order) voxel indices.

        Parameters
        ----------
        flat_index : int or array of int (n,)
            Flat C-order indices into the grid.

        Returns
        -------
        np.ndarray
            World positions (mm, float64), shape (..., 3), (z, y, x).
        """
        idx = np.stack(np.unravel_index(np.asarray(flat_index), self.shape), axis=-1)
        return self.world_mm(idx)

    def index_of_mm(self, points_mm) -> np.ndarray:
        """Fractional (z, y, x) voxel indices (..., 3), float64, of world points (..., 3).

        Parameters
        ----------
        points_mm : array (..., 3)
            World points (mm), (z, y, x).

        Returns
        -------
        np.ndarray
            Fractional voxel indices (float64), shape (..., 3); not clipped to the grid.
        """
        return (np.asarray(points_mm, dtype=np.float64) - np.asarray(self.origin_mm)) \
            / np.asarray(self.spacing_mm)

    def nearest_index(self, point_mm: Vec3) -> tuple[int, int, int]:
        """Index of the voxel nearest to a world point, clipped to the grid.

        Parameters
        ----------
        point_mm : 3 floats
            World point (mm), (z, y, x).

        Returns
        -------
        tuple of 3 int
            Voxel index (z, y, x).
        """
        return tuple(int(min(n - 1, max(0, round((p - o) / d)))) for p, o, d, n in  # type: ignore
                     zip(point_mm, self.origin_mm, self.spacing_mm, self.shape, strict=True))

    def window(self, lo_mm: Vec3, hi_mm: Vec3) -> tuple[slice, slice, slice]:
        """Index slices of the voxels whose centres lie in the world box [lo, hi].

        Parameters
        ----------
        lo_mm, hi_mm : 3 floats
            Corners of the box (mm), (z, y, x); both bounds inclusive.

        Returns
        -------
        tuple of 3 slice
            Slices along z, y, x; empty where the box misses the grid.
        """
        out = []
        for o, d, n, a, b in zip(self.origin_mm, self.spacing_mm, self.shape, lo_mm, hi_mm,
                                 strict=True):
            i0 = max(0, math.ceil((a - o) / d - 1e-9))
            i1 = min(n, math.floor((b - o) / d + 1e-9) + 1)
            out.append(slice(i0, max(i0, i1)))
        return tuple(out)  # type: ignore[return-value]

    def window_axes_mm(self, win: tuple[slice, slice, slice]
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable world coordinates (z, y, x) of the voxels of ``win``:
        shapes (nz, 1, 1), (1, ny, 1), (1, 1, nx).

        Parameters
        ----------
        win : tuple of 3 slice
            Index window (z, y, x), e.g. from `window`.

        Returns
        -------
        tuple of 3 np.ndarray
            Coordinates (mm, float64) along z, y and x, shaped to broadcast.
        """
        z, y, x = (ax[s] for ax, s in zip(self.axes_mm(), win, strict=True))
        return z[:, None, None], y[None, :, None], x[None, None, :]

    # ------------------------------------------------------------------ comparison
    def same_as(self, other: Grid, *, atol_mm: float = 1e-6) -> bool:
        """Same shape, and spacing and origin equal as `numpy.allclose` with ``atol_mm``
        (and its default relative tolerance, 1e-5).

        Parameters
        ----------
        other : Grid
            Grid to compare with.
        atol_mm : float, optional
            Absolute tolerance (mm); default 1e-6.

        Returns
        -------
        bool
            True when the grids match.
        """
        return (self.shape == other.shape
                and np.allclose(self.spacing_mm, other.spacing_mm, atol=atol_mm)
                and np.allclose(self.origin_mm, other.origin_mm, atol=atol_mm))
