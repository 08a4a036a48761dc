"""Shared pieces of the site builders: the canvas (CT + ROIs), CT numbers, spine, targets."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from atp.cases.grid import Grid
from atp.names import BODY, ptv_name
from atp.synth.shapes import Vec3, ellipsoid, ensure_nonempty, tube

#: CT numbers (HU) of the synthetic tissues.
HU = MappingProxyType({
    "air": -1000.0, "gas": -900.0, "lung": -820.0, "fat": -100.0, "breast": -55.0,
    "water": 5.0, "csf": 10.0, "urine": 10.0, "gland": 25.0, "brain": 35.0,
    "tumour": 35.0, "soft": 40.0, "muscle": 45.0, "blood": 45.0, "cartilage": 150.0,
    "marrow": 250.0, "bone": 700.0, "cortical": 1100.0,
})

#: The target volume search handed to the site builders: ``fit(build, target_cc)`` with
#: ``build(scale) -> (union_mask, payload)``, returning (scale, mask, payload, volume_cc)
#: (`atp.synth.shapes.fit_scale` bound to the grid's voxel volume).
Fit = Callable[[Callable[[float], tuple[np.ndarray, Any]], float],
               tuple[float, np.ndarray, Any, float]]

#: Distance (mm) by which targets are kept inside the skin.
SKIN_CROP_MM = 4.0


@dataclass
class Canvas:
    """The CT being painted and the ROIs being collected for one synthetic patient."""

    grid: Grid
    rng: np.random.Generator
    ct: np.ndarray = field(init=False)
    rois: dict[str, tuple[np.ndarray, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ct = np.full(self.grid.shape, np.float32(HU["air"]), dtype=np.float32)

    def paint(self, mask: np.ndarray, tissue: str | float) -> None:
        """Set the CT inside ``mask`` to a tissue's HU (a name from ``HU``) or a number.

        Parameters
        ----------
        mask : np.ndarray
            Boolean mask on the canvas grid, (z, y, x).
        tissue : str or float
            A key of ``HU`` or a CT number (HU).
        """
        hu = HU[tissue] if isinstance(tissue, str) else float(tissue)
        self.ct[mask] = np.float32(hu)

    def add_roi(self, name: str, mask: np.ndarray, role: str, *,
                anchors: Sequence[Vec3] = ()) -> np.ndarray:
        """Store an ROI; a mask left empty by a coarse grid falls back to its anchors.

        Parameters
        ----------
        name : str
            ROI name (replaces an ROI of that name).
        mask : np.ndarray
            Mask on the canvas grid, (z, y, x); cast to bool.
        role : str
            ROI role: ``"external"``, ``"organ"`` or ``"target"``.
        anchors : sequence of (z, y, x), optional
            Points in world mm whose voxels are used when the mask is empty.

        Returns
        -------
        np.ndarray
            The stored boolean mask.
        """
        mask = ensure_nonempty(np.asarray(mask, dtype=bool), self.grid, anchors)
        self.rois[name] = (mask, role)
        return mask

    def mask(self, name: str) -> np.ndarray:
        """Mask of the ROI ``name`` painted so far.

        Parameters
        ----------
        name : str
            A stored ROI name (KeyError otherwise).

        Returns
        -------
        np.ndarray
            Its boolean mask, (z, y, x) (not a copy).
        """
        return self.rois[name][0]

    def finish(self, *, noise_hu: float) -> None:
        """Add seeded Gaussian noise inside the body and clip to the CT range.

        Parameters
        ----------
        noise_hu : float
            Standard deviation of the noise (HU); the CT is then clipped to -1024..3000 HU.
        """
        body = self.mask(BODY)
        n = int(np.count_nonzero(body))
        self.ct[body] += self.rng.normal(0.0, noise_hu, n).astype(np.float32)
        np.clip(self.ct, -1024.0, 3000.0, out=self.ct)


def uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """One uniform draw in [lo, hi).

    Parameters
    ----------
    rng : np.random.Generator
        Random source.
    lo, hi : float
        Bounds of the draw.

    Returns
    -------
    float
        The draw.
    """
    return float(rng.uniform(lo, hi))


def log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """One draw uniform in log space between lo and hi (both > 0).

    Parameters
    ----------
    rng : np.random.Generator
        Random source.
    lo, hi : float
        Bounds of the draw, both > 0.

    Returns
    -------
    float
        The draw.
    """
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def spine(canvas: Canvas, *, canal: Sequence[Vec3], z_range: tuple[float, float],
          body_offset_mm: float, body_radii: Vec3, level_mm: float, canal_r_mm: float,
          spinous_mm: float) -> None:
    """Paint vertebrae (body, disc, arch, spinous process) along a spinal canal polyline.

    ``canal`` points are (z, y, x), ordered by increasing z; the vertebral body lies
    ``body_offset_mm`` anterior to the canal.

    Parameters
    ----------
    canvas : Canvas
        The canvas painted (bone, cartilage, CSF); no ROI is added.
    canal : sequence of (z, y, x)
        Spinal canal polyline in world mm.
    z_range : tuple of float
        (low, high) z extent of the vertebrae (mm).
    body_offset_mm : float
        Distance of the vertebral bodies anterior to the canal (mm).
    body_radii : sequence of float
        Semi-axes (z, y, x) of a vertebral body (mm).
    level_mm : float
        Height of one vertebra (mm).
    canal_r_mm : float
        Radius of the spinal canal (mm).
    spinous_mm : float
        Posterior reach of the spinous process from the canal centre (mm).
    """
    g = canvas.grid
    pts = np.asarray(canal, np.float64)
    order = np.argsort(pts[:, 0])
    zs, ys, xs = pts[order, 0], pts[order, 1], pts[order, 2]
    z0, z1 = z_range
    rz, ry, rx = body_radii
    for zc in np.arange(z0 + level_mm / 2, z1 + level_mm, level_mm):
        yc, xc = float(np.interp(zc, zs, ys)), float(np.interp(zc, zs, xs))
        c_body = (zc, yc - body_offset_mm, xc)
        canvas.paint(ellipsoid(g, c_body, (rz, ry, rx), power=3.0), "bone")
        canvas.paint(ellipsoid(g, (zc + level_mm / 2, yc - body_offset_mm, xc),
                               (level_mm * 0.12, ry * 0.95, rx * 0.95), power=3.0), "cartilage")
        arch = ellipsoid(g, (zc, yc + 2.0, xc),
                         (rz * 0.8, canal_r_mm + 6.0, canal_r_mm + 7.0), power=3.0)
        arch &= ~ellipsoid(g, (zc, yc, xc), (rz * 2.0, canal_r_mm, canal_r_mm + 1.0))
        canvas.paint(arch, "bone")
        canvas.paint(tube(g, [(zc, yc + canal_r_mm + 4.0, xc),
                              (zc - level_mm * 0.35, yc + canal_r_mm + spinous_mm, xc)], 4.0),
                     "bone")
    canvas.paint(tube(g, [tuple(p) for p in pts[order]], canal_r_mm), "csf")


def assign_levels(levels_gy: Sequence[float], groups: Sequence[np.ndarray],
                  inner: np.ndarray, *, exclude: np.ndarray | None = None
                  ) -> dict[str, np.ndarray]:
    """Disjoint target masks, highest dose first: level i = group i minus the higher ones.

    ``groups`` are the regions of each level (already merged to ``len(levels_gy)``);
    every target is cropped to ``inner`` (the body inside the skin) and off ``exclude``.

    Parameters
    ----------
    levels_gy : sequence of float
        Dose levels (Gy), any order (sorted highest first).
    groups : sequence of np.ndarray
        Boolean region of each level, highest first, (z, y, x).
    inner : np.ndarray
        Boolean mask the targets must stay in, (z, y, x).
    exclude : np.ndarray, optional
        Boolean mask the targets must stay off (e.g. a cord PRV); default none.

    Returns
    -------
    dict of str to np.ndarray
        ``ptv_<cGy>`` name to its disjoint boolean mask, highest level first.
    """
    levels = sorted((float(v) for v in levels_gy), reverse=True)
    if len(groups) != len(levels):
        raise ValueError(f"{len(levels)} dose levels but {len(groups)} target regions")
    taken = np.zeros(inner.shape, dtype=bool)
    out: dict[str, np.ndarray] = {}
    allowed = inner if exclude is None else inner & ~exclude
    for level, region in zip(levels, groups, strict=True):
        m = region & allowed & ~taken
        out[ptv_name(level)] = m
        taken |= m
    return out


def merge_components(components: Sequence[np.ndarray], n_levels: int) -> list[np.ndarray]:
    """Merge ordered target components (highest risk first) into ``n_levels`` groups.

    With fewer levels than components the middle components join their neighbours:
    4 components and 3 levels give [c0], [c1 | c2], [c3]; 2 levels give [c0 | c1], [c2 | c3].

    Parameters
    ----------
    components : sequence of np.ndarray
        Boolean masks, highest risk first, all of one shape.
    n_levels : int
        Number of groups, 1 to ``len(components)``.

    Returns
    -------
    list of np.ndarray
        ``n_levels`` boolean masks, highest risk first.
    """
    k = len(components)
    if not 1 <= n_levels <= k:
        raise ValueError(f"cannot spread {k} target components over {n_levels} dose levels")
    if n_levels == 1:
        bounds = [0, k]
    elif n_levels == 2:
        bounds = [0, k // 2, k]
    else:
        bounds = [0, *(int(round(b)) for b in np.linspace(1, k - 1, n_levels - 1)), k]
    out = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        m = np.zeros_like(components[0])
        for c in components[a:b]:
            m |= c
        out.append(m)
    return out


def union(masks: Sequence[np.ndarray]) -> np.ndarray:
    """Voxelwise OR of equally shaped masks.

    Parameters
    ----------
    masks : sequence of np.ndarray
        At least one boolean mask, all of one shape.

    Returns
    -------
    np.ndarray
        A new boolean mask of that shape.
    """
    out = np.zeros_like(masks[0])
    for m in masks:
        out |= m
    return out


def gtv_core(targets: Sequence[np.ndarray], grid: Grid, *, margin_mm: float) -> np.ndarray:
    """Voxels deeper than ``margin_mm`` inside the union of ``targets`` (the gross tumour).

    Parameters
    ----------
    targets : sequence of np.ndarray
        Boolean target masks, (z, y, x).
    grid : Grid
        Their grid (its spacing sets the depth in mm).
    margin_mm : float
        Depth below the target surface (mm).

    Returns
    -------
    np.ndarray
        Boolean mask, (z, y, x); the deepest voxels when none is deeper than the margin,
        empty when the targets are.
    """
    from scipy import ndimage

    u = union(targets)
    if not u.any():
        return u
    idx = np.argwhere(u)
    lo, hi = idx.min(0), idx.max(0) + 1
    win = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    sub = np.pad(u[win], 1)
    depth = ndimage.distance_transform_edt(sub, sampling=grid.spacing_mm)[1:-1, 1:-1, 1:-1]
    out = np.zeros_like(u)
    out[win] = depth > margin_mm
    if not out.any():
        out[win] = depth >= depth.max()
    return out
