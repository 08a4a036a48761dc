"""Geometric primitives on a voxel grid: superellipsoids, tubes and extruded sections.

Every position, radius and axis is in world millimetres in (z, y, x) order, the order of
the case arrays; world axes are the DICOM patient axes (x to the patient's left,
y posterior, z superior). A primitive returns a boolean mask on the whole grid and only
evaluates the voxels of its bounding box.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from atp.cases.grid import Grid

Vec3 = Sequence[float]


@dataclass(frozen=True)
class Frame:
    """Per-axis scaling of a standard anatomy (body habitus): ``p`` for points, ``r`` for radii."""

    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def p(self, z: float, y: float, x: float) -> tuple[float, float, float]:
        """A point (z, y, x) in the frame's scaled coordinates (mm).

        Parameters
        ----------
        z, y, x : float
            The point in the standard anatomy (mm).

        Returns
        -------
        tuple of float
            The point (z, y, x) scaled per axis (mm).
        """
        sz, sy, sx = self.scale
        return (z * sz, y * sy, x * sx)

    def r(self, z: float, y: float, x: float) -> tuple[float, float, float]:
        """A radius triple (z, y, x) scaled like :meth:`p` (mm).

        Parameters
        ----------
        z, y, x : float
            Radii in the standard anatomy (mm).

        Returns
        -------
        tuple of float
            The radii (z, y, x) scaled per axis (mm).
        """
        return self.p(z, y, x)


def unit(v: Vec3) -> np.ndarray:
    """``v`` divided by its Euclidean norm.

    Parameters
    ----------
    v : sequence of float
        A non-zero 3-vector.

    Returns
    -------
    np.ndarray
        The unit vector, float64, shape (3,).
    """
    a = np.asarray(v, np.float64)
    return a / np.linalg.norm(a)


def axes_from(long_axis: Vec3, hint: Vec3 = (0.0, 1.0, 0.0)) -> np.ndarray:
    """Orthonormal rows (long axis, second, third); the second as close to ``hint`` as can be.

    Parameters
    ----------
    long_axis : sequence of float
        Direction of the first axis, (z, y, x) components.
    hint : sequence of float, optional
        Preferred direction of the second axis; default y (posterior). When parallel to
        ``long_axis``, x is used instead.

    Returns
    -------
    np.ndarray
        (3, 3) float64, rows the unit axes in world (z, y, x) components; the third is
        the cross product of the first two.
    """
    u = unit(long_axis)
    h = np.asarray(hint, np.float64)
    v = h - u * float(u @ h)
    if np.linalg.norm(v) < 1e-6:  # hint parallel to the long axis
        v = np.array([1.0, 0.0, 0.0]) - u * u[0]
    v = unit(v)
    return np.stack([u, v, np.cross(u, v)])


def ellipsoid(grid: Grid, center: Vec3, radii: Vec3, *, power: float = 2.0,
              axes: np.ndarray | None = None) -> np.ndarray:
    """Superellipsoid ``sum |u_i / r_i|^power <= 1``.

    Parameters
    ----------
    grid : Grid
        The voxel grid of the mask.
    center : sequence of float
        Centre (z, y, x) in world mm.
    radii : sequence of float
        Semi-axes (mm), along world (z, y, x), or along the rows of ``axes`` when given.
    power : float, optional
        Exponent: 2 gives an ellipsoid, larger values a rounded box.
    axes : np.ndarray, optional
        (3, 3) orthonormal rows, the body axes in world (z, y, x) components; default
        the world axes.

    Returns
    -------
    np.ndarray
        Boolean mask on the whole grid, (z, y, x); the voxel nearest the centre is set
        when it lies inside the grid.
    """
    c = np.asarray(center, np.float64)
    r = np.maximum(np.asarray(radii, np.float64), 1e-6)
    out = grid.empty_mask()
    if axes is None:
        reach = r * (3 ** 0.5 if power > 2 else 1.0)
    else:
        reach = np.full(3, r.max() * (3 ** 0.5 if power > 2 else 1.0))
    win = grid.window(c - reach, c + reach)
    if any(s.stop <= s.start for s in win):
        return out
    z, y, x = grid.window_axes_mm(win)
    d = (z - c[0], y - c[1], x - c[2])
    if axes is not None:
        a = np.asarray(axes, np.float64)
        d = tuple(a[i, 0] * d[0] + a[i, 1] * d[1] + a[i, 2] * d[2] for i in range(3))
    acc = sum(np.abs(di / ri) ** power for di, ri in zip(d, r, strict=True))
    out[win] = acc <= 1.0
    _mark(out, grid, c[None, :])
    return out


def _mark(mask: np.ndarray, grid: Grid, points: np.ndarray) -> None:
    """Set the voxels nearest to ``points`` lying inside the grid: thin or small shapes stay
    connected and non-empty on coarse grids."""
    idx = np.round(grid.index_of_mm(points)).astype(np.int64)
    ok = np.all((idx >= 0) & (idx < np.asarray(grid.shape)), axis=1)
    if ok.any():
        i = idx[ok]
        mask[i[:, 0], i[:, 1], i[:, 2]] = True


def tube(grid: Grid, points: Sequence[Vec3], radius_mm: float | Sequence[float]) -> np.ndarray:
    """Union of capsules along a polyline; the radius may vary linearly between points.

    Parameters
    ----------
    grid : Grid
        The voxel grid of the mask.
    points : sequence of (z, y, x)
        Polyline vertices in world mm; a single point gives a sphere.
    radius_mm : float or sequence of float
        Radius (mm), one for all points or one per point.

    Returns
    -------
    np.ndarray
        Boolean mask on the whole grid, (z, y, x); the voxels nearest the polyline are
        set so that thin tubes stay connected on coarse grids.
    """
    pts = np.asarray(points, np.float64).reshape(-1, 3)
    rad = np.broadcast_to(np.asarray(radius_mm, np.float64), (len(pts),))
    out = grid.empty_mask()
    if len(pts) == 1:
        return ellipsoid(grid, pts[0], (float(rad[0]),) * 3)
    for a, b, ra, rb in zip(pts[:-1], pts[1:], rad[:-1], rad[1:], strict=True):
        rmax = max(ra, rb)
        win = grid.window(np.minimum(a, b) - rmax, np.maximum(a, b) + rmax)
        if any(s.stop <= s.start for s in win):
            continue
        z, y, x = grid.window_axes_mm(win)
        ab = b - a
        len2 = float(ab @ ab) or 1e-12
        dz, dy, dx = z - a[0], y - a[1], x - a[2]
        t = np.clip((dz * ab[0] + dy * ab[1] + dx * ab[2]) / len2, 0.0, 1.0)
        d2 = (dz - t * ab[0]) ** 2 + (dy - t * ab[1]) ** 2 + (dx - t * ab[2]) ** 2
        out[win] |= d2 <= (ra + t * (rb - ra)) ** 2
    step = 0.5 * min(grid.spacing_mm)
    for a, b in zip(pts[:-1], pts[1:], strict=True):
        n = max(2, int(np.ceil(np.linalg.norm(b - a) / step)) + 1)
        _mark(out, grid, a + np.linspace(0.0, 1.0, n)[:, None] * (b - a))
    return out


@dataclass(frozen=True)
class Section:
    """A body outline: superellipse sections whose centre and semi-axes vary along z.

    ``z_mm`` are knots (increasing); ``cy_mm, cx_mm, ay_mm, ax_mm`` the centre and semi-axes
    at the knots, interpolated linearly in between and held beyond the ends.
    """

    z_mm: tuple[float, ...]
    cy_mm: tuple[float, ...]
    cx_mm: tuple[float, ...]
    ay_mm: tuple[float, ...]
    ax_mm: tuple[float, ...]
    power: float = 2.0

    def at(self, z_mm: np.ndarray | float) -> tuple[np.ndarray, ...]:
        """Centre (y, x) and semi-axes (y, x) of the section at ``z_mm``, interpolated.

        Parameters
        ----------
        z_mm : np.ndarray or float
            Axial position(s) (mm).

        Returns
        -------
        tuple of np.ndarray
            (cy_mm, cx_mm, ay_mm, ax_mm), each shaped like ``z_mm`` (mm).
        """
        return tuple(np.interp(z_mm, self.z_mm, v) for v in
                     (self.cy_mm, self.cx_mm, self.ay_mm, self.ax_mm))

    def shrunk(self, d_mm: float) -> Section:
        """The section moved inwards by ``d_mm`` along both semi-axes.

        Parameters
        ----------
        d_mm : float
            Inward shift (mm); no semi-axis gets below 1 mm.

        Returns
        -------
        Section
            A new section with the same knots, centres and power.
        """
        return Section(self.z_mm, self.cy_mm, self.cx_mm,
                       tuple(max(a - d_mm, 1.0) for a in self.ay_mm),
                       tuple(max(a - d_mm, 1.0) for a in self.ax_mm), self.power)

    def rho(self, grid: Grid) -> np.ndarray:
        """Normalised superellipse radius of every voxel (<= 1 inside), float32.

        Parameters
        ----------
        grid : Grid
            The voxel grid.

        Returns
        -------
        np.ndarray
            float32 on the grid, (z, y, x); dimensionless.
        """
        z, y, x = grid.axes_mm()
        cy, cx, ay, ax = self.at(z)
        u = np.abs((y[None, :, None] - cy[:, None, None]) / ay[:, None, None])
        v = np.abs((x[None, None, :] - cx[:, None, None]) / ax[:, None, None])
        p = self.power
        return ((u ** p + v ** p) ** (1.0 / p)).astype(np.float32)

    def mask(self, grid: Grid) -> np.ndarray:
        """Voxels of ``grid`` inside the outline.

        Parameters
        ----------
        grid : Grid
            The voxel grid.

        Returns
        -------
        np.ndarray
            Boolean mask on the grid, (z, y, x).
        """
        return self.rho(grid) <= 1.0

    def polar(self, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
        """Per voxel: depth outside the outline along the ray from the section centre (mm,
        negative inside) and the ray angle (degrees, 0 anterior, +90 the patient's left).

        Parameters
        ----------
        grid : Grid
            The voxel grid.

        Returns
        -------
        excess_mm : np.ndarray
            Depth outside the outline (mm), float32, (z, y, x).
        angle_deg : np.ndarray
            Ray angle (degrees, -180 to 180), float32, (z, y, x).
        """
        z, y, x = grid.axes_mm()
        cy, cx = self.at(z)[:2]
        dy = y[None, :, None] - cy[:, None, None]
        dx = x[None, None, :] - cx[:, None, None]
        r = np.hypot(dy, dx)
        rho = self.rho(grid).astype(np.float64)
        excess = r * (1.0 - 1.0 / np.maximum(rho, 1e-9))
        return excess.astype(np.float32), np.degrees(np.arctan2(dx, -dy)).astype(np.float32)


def ensure_nonempty(mask: np.ndarray, grid: Grid, anchors: Sequence[Vec3]) -> np.ndarray:
    """``mask``, or the voxels nearest to ``anchors`` when the mask is empty (coarse grids).

    Parameters
    ----------
    mask : np.ndarray
        Boolean mask on the grid, (z, y, x).
    grid : Grid
        The voxel grid.
    anchors : sequence of (z, y, x)
        Fallback points in world mm.

    Returns
    -------
    np.ndarray
        ``mask`` itself when non-empty (or no anchors), else a copy with the anchors' voxels set.
    """
    if mask.any() or not len(anchors):
        return mask
    out = mask.copy()
    for p in anchors:
        out[grid.nearest_index(p)] = True
    return out


def fit_scale(build: Callable[[float], tuple[np.ndarray, Any]], target_cc: float, *,
              voxel_cc: float, s0: float = 1.0, rel_tol: float = 0.02,
              max_iter: int = 12) -> tuple[float, np.ndarray, Any, float]:
    """Find the scale ``s`` whose mask ``build(s)[0]`` has a volume near ``target_cc``.

    ``build(s)`` returns (mask, payload) and should grow with ``s``. Secant steps on
    log(volume) vs log(s), bracketed by bisection; the best try is returned as
    (s, mask, payload, volume_cc).

    Parameters
    ----------
    build : callable
        ``build(s) -> (mask, payload)``; the mask volume should grow with ``s``.
    target_cc : float
        Wanted volume (cc).
    voxel_cc : float
        Volume of one voxel (cc).
    s0 : float, optional
        First scale tried.
    rel_tol : float, optional
        Stop when the volume is within this relative error of ``target_cc`` (0.02 = 2 %).
    max_iter : int, optional
        Most calls of ``build``.

    Returns
    -------
    tuple
        (s, mask, payload, volume_cc) of the try closest to ``target_cc``.
    """
    s, lo, hi, prev = float(s0), None, None, None
    best: tuple[float, float, np.ndarray, Any, float] | None = None
    for _ in range(max_iter):
        mask, payload = build(s)
        vol = float(np.count_nonzero(mask)) * voxel_cc
        err = abs(vol / target_cc - 1.0)
        if best is None or err < best[0]:
            best = (err, s, mask, payload, vol)
        if err <= rel_tol:
            break
        if vol < target_cc:
            lo = s
        else:
            hi = s
        k = 3.0
        if prev is not None and vol > 0 and prev[1] > 0 and prev[0] != s:
            k = math.log(vol / prev[1]) / math.log(s / prev[0])
            k = min(4.0, max(0.7, k)) if math.isfinite(k) else 3.0
        nxt = s * 2.0 if vol == 0 else s * (target_cc / vol) ** (1.0 / k)
        if lo is not None and hi is not None and not lo < nxt < hi:
            nxt = math.sqrt(lo * hi)
        prev = (s, vol)
        if abs(nxt / s - 1.0) < 1e-4:
            break
        s = nxt
    assert best is not None
    return best[1], best[2], best[3], best[4]
