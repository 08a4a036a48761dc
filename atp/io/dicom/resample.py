"""Axis-aligned voxel grids and separable resampling between them (pure numpy).

Every grid here is indexed (z, y, x) with indices increasing along the world (DICOM
patient) axes; a DICOM volume whose rows or columns run the other way is flipped into
this form on reading (see `atp.io.dicom.ct`). Because the grids are axis-aligned,
trilinear interpolation, nearest-neighbour sampling and box (partial-volume) averaging
all factor into one 1D operation per axis, which keeps memory at the size of the arrays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from atp.cases.grid import Grid

Axes = tuple[np.ndarray, np.ndarray, np.ndarray]


def working_grid(grid: Grid, spacing_mm: float | Sequence[float]) -> Grid:
    """A grid of spacing ``spacing_mm`` covering the same box as ``grid``, centred on it.

    Parameters
    ----------
    grid : Grid
        The source grid (a CT's).
    spacing_mm : float or 3 floats
        The new voxel size (z, y, x).

    Returns
    -------
    Grid
        ``round(n * s / s_new)`` voxels per axis (at least 1), so a grid resampled to its
        own spacing is returned unchanged.
    """
    new = _vec3(spacing_mm)
    if min(new) <= 0:
        raise ValueError(f"spacing_mm must be > 0, got {spacing_mm!r}")
    shape, origin = [], []
    for a in range(3):
        n, s, o = grid.shape[a], grid.spacing_mm[a], grid.origin_mm[a]
        m = max(1, int(math.floor(n * s / new[a] + 0.5)))
        centre = o + 0.5 * (n - 1) * s
        shape.append(m)
        origin.append(centre - 0.5 * (m - 1) * new[a])
    return Grid(shape=tuple(shape), spacing_mm=new, origin_mm=tuple(origin))


def _vec3(v: float | Sequence[float]) -> tuple[float, float, float]:
    if isinstance(v, int | float):
        return (float(v),) * 3
    out = tuple(float(x) for x in v)
    if len(out) != 3:
        raise ValueError(f"expected a number or 3 numbers (z, y, x), got {v!r}")
    return out  # type: ignore[return-value]


def _axes(g: Grid | Sequence[np.ndarray]) -> Axes:
    if isinstance(g, Grid):
        return g.axes_mm()
    axes = tuple(np.asarray(a, dtype=np.float64) for a in g)
    if len(axes) != 3 or any(a.ndim != 1 or a.size < 1 for a in axes):
        raise ValueError("expected a Grid or three 1D coordinate arrays (z, y, x)")
    for a in axes:
        if a.size > 1 and not np.all(np.diff(a) > 0):
            raise ValueError("coordinate arrays must increase strictly")
    return axes  # type: ignore[return-value]


def _half_widths(c: np.ndarray) -> tuple[float, float]:
    """Half voxel size at the low and high end of a coordinate axis (0 for one voxel)."""
    if c.size < 2:
        return 0.0, 0.0
    return 0.5 * float(c[1] - c[0]), 0.5 * float(c[-1] - c[-2])


def _inside(src: np.ndarray, dst: np.ndarray, tol_mm: float = 1e-4) -> np.ndarray:
    lo, hi = _half_widths(src)
    return (dst >= src[0] - lo - tol_mm) & (dst <= src[-1] + hi + tol_mm)


def _linear_taps(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices (n_dst, 2), weights (n_dst, 2) and validity of linear interpolation.

    Points within half a voxel outside the first or last centre take the edge value.
    """
    valid = _inside(src, dst)
    x = np.clip(dst, src[0], src[-1])
    if src.size == 1:
        idx = np.zeros((dst.size, 2), dtype=np.intp)
        w = np.stack([np.ones(dst.size), np.zeros(dst.size)], axis=1)
    else:
        j = np.clip(np.searchsorted(src, x, side="right") - 1, 0, src.size - 2)
        t = (x - src[j]) / (src[j + 1] - src[j])
        idx = np.stack([j, j + 1], axis=1)
        w = np.stack([1.0 - t, t], axis=1)
    w[~valid] = 0.0
    return idx, w, valid


def _nearest_taps(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    valid = _inside(src, dst)
    j = np.clip(np.searchsorted(src, dst), 0, src.size - 1)
    jm = np.clip(j - 1, 0, src.size - 1)
    d_lo, d_hi = np.abs(dst - src[jm]), np.abs(src[j] - dst)
    # exact ties (grids offset by half a voxel) go to the even index, so that they do not
    # all shift the same way (like rounding half to even)
    tie = np.abs(d_lo - d_hi) <= 1e-6
    j = np.where(tie, np.where(jm % 2 == 0, jm, j), np.where(d_lo < d_hi, jm, j))
    return j[:, None], valid[:, None].astype(np.float64), valid


def nearest_indices(src_mm: np.ndarray, dst_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each ``dst_mm`` coordinate, the nearest ``src_mm`` index and whether it is inside
    (within half a voxel of the source's outer centres).

    Parameters
    ----------
    src_mm : np.ndarray
        Source voxel-centre coordinates (mm) along one axis, increasing.
    dst_mm : np.ndarray
        Destination coordinates (mm) along the same axis.

    Returns
    -------
    tuple of np.ndarray
        ``(index, inside)``: nearest source index (int) and a boolean, each (n_dst,).
    """
    idx, _w, valid = _nearest_taps(np.asarray(src_mm, dtype=np.float64),
                                   np.asarray(dst_mm, dtype=np.float64))
    return idx[:, 0], valid


def _box_taps(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fraction of each destination voxel's extent covered by each source voxel."""
    def edges(c: np.ndarray) -> np.ndarray:
        if c.size == 1:
            return np.array([c[0] - 0.5, c[0] + 0.5])
        mid = 0.5 * (c[1:] + c[:-1])
        return np.concatenate([[2 * c[0] - mid[0]], mid, [2 * c[-1] - mid[-1]]])

    se, de = edges(src), edges(dst)
    lo = np.clip(np.searchsorted(se, de[:-1], side="right") - 1, 0, src.size - 1)
    hi = np.clip(np.searchsorted(se, de[1:], side="left") - 1, 0, src.size - 1)
    n_taps = int(max(1, (hi - lo).max() + 1))
    idx = np.clip(lo[:, None] + np.arange(n_taps)[None, :], 0, src.size - 1)
    overlap = (np.minimum(se[idx + 1], de[1:, None]) - np.maximum(se[idx], de[:-1, None]))
    w = np.clip(overlap, 0.0, None) / (de[1:] - de[:-1])[:, None]
    w[lo[:, None] + np.arange(n_taps)[None, :] > hi[:, None]] = 0.0
    valid = w.sum(axis=1) > 0
    return idx, w, valid


def _apply(values: np.ndarray, taps: Sequence[tuple[np.ndarray, np.ndarray]],
           dtype: type) -> np.ndarray:
    out = np.asarray(values)
    for axis, (idx, w) in enumerate(taps):
        acc = None
        for t in range(idx.shape[1]):
            shape = [1, 1, 1]
            shape[axis] = -1
            term = np.take(out, idx[:, t], axis=axis).astype(dtype, copy=False) * w[:, t].astype(
                dtype).reshape(shape)
            acc = term if acc is None else acc + term
        out = acc
    return out


def resample_linear(values: np.ndarray, src: Grid | Sequence[np.ndarray],
                    dst: Grid | Sequence[np.ndarray], *, fill: float = 0.0) -> np.ndarray:
    """Trilinear interpolation of ``values`` (on ``src``) at the voxel centres of ``dst``.

    ``src`` and ``dst`` are grids or (z, y, x) coordinate arrays (strictly increasing,
    not necessarily uniform). Points up to half a voxel beyond the outer source centres
    take the edge value; points further out get ``fill``. Returns float32.

    Parameters
    ----------
    values : np.ndarray
        Values on ``src``, (z, y, x).
    src : Grid or sequence of 3 np.ndarray
        Source grid, or its z, y, x voxel-centre coordinates (mm).
    dst : Grid or sequence of 3 np.ndarray
        Destination grid, or its z, y, x voxel-centre coordinates (mm).
    fill : float, optional
        Value outside the source (same unit as ``values``); default 0.

    Returns
    -------
    np.ndarray
        Interpolated values (float32) on ``dst``, (z, y, x).
    """
    s_axes, d_axes = _axes(src), _axes(dst)
    values = np.asarray(values)
    if values.shape != tuple(a.size for a in s_axes):
        raise ValueError(f"values of shape {values.shape} do not match the source grid "
                         f"{tuple(a.size for a in s_axes)}")
    taps = [_linear_taps(s, d) for s, d in zip(s_axes, d_axes, strict=True)]
    out = _apply(values, [(i, w) for i, w, _ in taps], np.float32)
    invalid = ~(taps[0][2][:, None, None] & taps[1][2][None, :, None] & taps[2][2][None, None, :])
    if invalid.any():
        out[invalid] = np.float32(fill)
    return out


def inside_mask(src: Grid | Sequence[np.ndarray], dst: Grid | Sequence[np.ndarray]) -> np.ndarray:
    """Boolean (z, y, x) mask of the ``dst`` voxels whose centres lie inside ``src``.

    Parameters
    ----------
    src : Grid or sequence of 3 np.ndarray
        Source grid, or its z, y, x voxel-centre coordinates (mm).
    dst : Grid or sequence of 3 np.ndarray
        Destination grid, or its z, y, x voxel-centre coordinates (mm).

    Returns
    -------
    np.ndarray
        Boolean mask on ``dst``, (z, y, x).
    """
    s_axes, d_axes = _axes(src), _axes(dst)
    v = [_inside(s, d) for s, d in zip(s_axes, d_axes, strict=True)]
    return v[0][:, None, None] & v[1][None, :, None] & v[2][None, None, :]


def resample_mask(mask: np.ndarray, src: Grid | Sequence[np.ndarray],
                  dst: Grid | Sequence[np.ndarray], *, method: str = "nearest") -> np.ndarray:
    """Resample a boolean mask from ``src`` to ``dst``.

    ``method="nearest"`` takes the nearest source voxel of each destination centre;
    ``"fraction"`` keeps destination voxels at least half covered by the mask (partial
    volume by box overlap), which preserves volumes better when downsampling. Only the
    mask's bounding box is processed.

    Parameters
    ----------
    mask : np.ndarray
        Boolean mask on ``src``, (z, y, x).
    src : Grid or sequence of 3 np.ndarray
        Source grid, or its z, y, x voxel-centre coordinates (mm).
    dst : Grid or sequence of 3 np.ndarray
        Destination grid, or its z, y, x voxel-centre coordinates (mm).
    method : {"nearest", "fraction"}, optional
        Resampling rule; default ``"nearest"``.

    Returns
    -------
    np.ndarray
        Boolean mask on ``dst``, (z, y, x).
    """
    if method not in ("nearest", "fraction"):
        raise ValueError(f"method must be 'nearest' or 'fraction', got {method!r}")
    s_axes, d_axes = _axes(src), _axes(dst)
    mask = np.asarray(mask, dtype=bool)
    out = np.zeros(tuple(a.size for a in d_axes), dtype=bool)
    if not mask.any():
        return out
    lo, hi = [], []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        nz = np.flatnonzero(mask.any(axis=other))
        lo.append(int(nz[0]))
        hi.append(int(nz[-1]) + 1)
    # pad the crop by one voxel so that edge handling sees the empty surroundings
    lo = [max(0, v - 1) for v in lo]
    hi = [min(mask.shape[a], hi[a] + 1) for a in range(3)]
    crop = mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    c_axes = [s_axes[a][lo[a]:hi[a]] for a in range(3)]
    sel = []
    for a in range(3):
        h0, h1 = _half_widths(s_axes[a])
        first = c_axes[a][0] - (h0 if lo[a] == 0 else 0.0)
        last = c_axes[a][-1] + (h1 if hi[a] == mask.shape[a] else 0.0)
        dd = d_axes[a]
        sel.append(np.flatnonzero((dd >= first - 1e-4 - 2 * max(h0, h1))
                                  & (dd <= last + 1e-4 + 2 * max(h0, h1))))
    if any(s.size == 0 for s in sel):
        return out
    sub_axes = [d_axes[a][sel[a]] for a in range(3)]
    if method == "nearest":
        taps = [_nearest_taps(c, d) for c, d in zip(c_axes, sub_axes, strict=True)]
        idx = [t[0][:, 0] for t in taps]
        vals = crop[np.ix_(*idx)]
        vals &= taps[0][2][:, None, None] & taps[1][2][None, :, None] & taps[2][2][None, None, :]
    else:
        taps = [_box_taps(c, d) for c, d in zip(c_axes, sub_axes, strict=True)]
        vals = _apply(crop, [(i, w) for i, w, _ in taps], np.float32) >= 0.5 - 1e-6
    out[np.ix_(*sel)] = vals
    return out
