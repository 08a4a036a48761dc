"""Pencil-beam kernel model (6 MV) and its commissioning against a tabulated PDD.

Dose from beamlet ``j`` (a ``b x b`` mm square at the isocentre plane, unit weight) to a
voxel at radiological depth ``d`` (mm water-equivalent), distance ``t`` from the source
along the central axis and BEV position ``(u, v)`` (projected to the isocentre plane)::

    D = T(d) * (SAD / t)^2 * L(u - u_j, v - v_j; d, t)
    L = (1 - w_s) P(σ_p) + w_s P(σ_s),   P(σ) = ∫∫_bixel N(u', v'; σ SAD / t) du' dv'

``P`` is the integral of a normalised 2-D Gaussian over the beamlet area (a product of two
``ndtr`` differences), with widths that grow linearly with depth (``σ_p`` primary,
``σ_s`` scatter, physical mm at the depth, converted to the isocentre plane by
``SAD / t``). Entries are kept only within ``lateral_cutoff_mm`` of the beamlet centre
and above ``kernel_threshold`` times the voxel's largest possible entry (its value under
the centre of a beamlet): these two settings set the sparsity.

Commissioning: ``T(d)`` is chosen so that a 10 cm x 10 cm field built from unit-weight
beamlets, at SSD = SAD = 100 cm in water, reproduces the tabulated PDD on the central axis
with the same cutoff and threshold as the engine, and gives 0.01 Gy (1 cGy) at dmax.
The unit of beamlet weight is therefore the fluence of 1 MU of an open reference field
(see `atp.dose.mu`) and the influence matrix is in Gy per MU-equivalent weight.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.special import ndtr

from atp.dose.density import DATA_DIR, read_table_csv

DEFAULT_PDD = DATA_DIR / "pdd_6mv.csv"
REFERENCE_FIELD_MM = 100.0
REFERENCE_DOSE_GY = 0.01  # 1 cGy per MU at dmax, 10x10 cm, SSD 100 cm
DEPTH_TABLE_STEP_MM = 1.0
DEPTH_TABLE_MAX_MM = 800.0


@dataclass(frozen=True)
class PencilBeamSettings:
    """Settings of the pencil-beam engine (all lengths in mm).

    Parameters
    ----------
    bixel_mm : beamlet size at the isocentre (square).
    target_margin_mm : margin around the beam's-eye view of the targets.
    lateral_cutoff_mm : largest distance (isocentre plane) from a beamlet centre to a voxel.
    kernel_threshold : entries below this fraction of the voxel's peak entry are dropped.
    dose_grid_spacing_mm : ``None`` computes on the CT grid; a number or (z, y, x) triple
        computes on a coarser grid (see `atp.dose.grid.to_ct_grid`).
    ray_step_mm : ray-tracing step; ``None`` is half the smallest CT spacing.
    sigma_primary_mm, sigma_scatter_mm : (width at depth 0, increase per mm of depth).
    scatter_weight : (weight at depth 0, increase per mm, maximum).
    pdd_path, hu_to_red_path : tables; ``None`` uses the generic ones in ``atp/dose/data``.
    sad_mm : source-axis distance of the commissioning geometry.
    """

    bixel_mm: float = 5.0
    target_margin_mm: float = 5.0
    lateral_cutoff_mm: float = 30.0
    kernel_threshold: float = 1e-3
    dose_grid_spacing_mm: float | tuple[float, float, float] | None = None
    ray_step_mm: float | None = None
    sigma_primary_mm: tuple[float, float] = (2.2, 0.010)
    sigma_scatter_mm: tuple[float, float] = (10.0, 0.05)
    scatter_weight: tuple[float, float, float] = (0.05, 0.0005, 0.25)
    pdd_path: str | None = None
    hu_to_red_path: str | None = None
    sad_mm: float = 1000.0

    def __post_init__(self) -> None:
        for name in ("bixel_mm", "lateral_cutoff_mm", "sad_mm"):
            val = getattr(self, name)
            if not (np.isfinite(val) and val > 0):
                raise ValueError(f"PencilBeamSettings.{name} must be > 0, got {val!r}")
        if not (np.isfinite(self.target_margin_mm) and self.target_margin_mm >= 0):
            raise ValueError(f"PencilBeamSettings.target_margin_mm must be >= 0, "
                             f"got {self.target_margin_mm!r}")
        if not (0.0 <= self.kernel_threshold < 1.0):
            raise ValueError(f"PencilBeamSettings.kernel_threshold must be in [0, 1), "
                             f"got {self.kernel_threshold!r}")
        if self.ray_step_mm is not None and not self.ray_step_mm > 0:
            raise ValueError(f"PencilBeamSettings.ray_step_mm must be > 0, got {self.ray_step_mm}")
        s = self.dose_grid_spacing_mm
        if s is not None:
            arr = np.broadcast_to(np.asarray(s, dtype=np.float64), (3,))
            if not (np.all(np.isfinite(arr)) and np.all(arr > 0)):
                raise ValueError(f"PencilBeamSettings.dose_grid_spacing_mm must be > 0, got {s!r}")
        w0, w1, wmax = self.scatter_weight
        if not (0 <= w0 <= 1 and 0 <= wmax <= 1):
            raise ValueError("PencilBeamSettings.scatter_weight out of [0, 1]: "
                             f"{self.scatter_weight}")

    def to_dict(self) -> dict:
        """Settings as plain YAML/JSON-ready values (tuples become lists).

        Returns
        -------
        dict
            Field name -> value.
        """
        d = asdict(self)
        for key in ("sigma_primary_mm", "sigma_scatter_mm", "scatter_weight"):
            d[key] = list(d[key])
        if isinstance(d["dose_grid_spacing_mm"], tuple):
            d["dose_grid_spacing_mm"] = list(d["dose_grid_spacing_mm"])
        return d

    def kernel_widths(self, depth_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(σ_p, σ_s, w_s) at radiological depths ``depth_mm`` (float32, physical mm).

        Parameters
        ----------
        depth_mm : np.ndarray
            Radiological depths (mm water-equivalent); negative depths count as 0.

        Returns
        -------
        tuple of 3 np.ndarray
            Primary and scatter widths (mm, at the depth) and the scatter weight (0..1),
            float32, the shape of ``depth_mm``.
        """
        d = np.maximum(np.asarray(depth_mm, dtype=np.float32), np.float32(0.0))
        sp = np.float32(self.sigma_primary_mm[0]) + np.float32(self.sigma_primary_mm[1]) * d
        ss = np.float32(self.sigma_scatter_mm[0]) + np.float32(self.sigma_scatter_mm[1]) * d
        w0, w1, wmax = self.scatter_weight
        ws = np.minimum(np.float32(w0) + np.float32(w1) * d, np.float32(wmax))
        return sp, ss, ws


def bixel_integral(delta_mm: np.ndarray, half_mm: float, sigma_mm: np.ndarray) -> np.ndarray:
    """1-D integral of a unit Gaussian (width ``sigma_mm``) centred ``delta_mm`` from a
    beamlet centre, over the beamlet ``[-half, +half]``.

    Parameters
    ----------
    delta_mm : np.ndarray
        Distance (mm) of the point from the beamlet centre along one axis.
    half_mm : float
        Half the beamlet width (mm).
    sigma_mm : np.ndarray
        Gaussian width (mm), broadcastable with ``delta_mm``.

    Returns
    -------
    np.ndarray
        The integral (0..1), the broadcast shape.
    """
    h = np.float32(half_mm)
    return ndtr((delta_mm + h) / sigma_mm) - ndtr((delta_mm - h) / sigma_mm)


def file_digest(path: str | Path) -> str:
    """Short SHA-256 of a file's bytes (for cache keys).

    Parameters
    ----------
    path : str or Path
        The file.

    Returns
    -------
    str
        The first 16 hexadecimal characters of the digest.
    """
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def load_pdd(path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(depth_mm, pdd normalised to 1 at its maximum), checked.

    Parameters
    ----------
    path : str or Path, optional
        CSV with the header ``depth_mm,pdd_percent``; ``None`` reads the generic 6 MV table.

    Returns
    -------
    tuple of 2 np.ndarray
        Depths (mm, increasing, >= 0) and the PDD (1 at its maximum), float64.
    """
    depth, pdd = read_table_csv(path or DEFAULT_PDD, columns=("depth_mm", "pdd_percent"))
    if not (np.all(np.diff(depth) > 0) and depth[0] >= 0):
        raise ValueError(f"{path or DEFAULT_PDD}: depth_mm must be increasing and >= 0")
    if not np.all(pdd > 0):
        raise ValueError(f"{path or DEFAULT_PDD}: pdd_percent must be > 0")
    return depth, pdd / pdd.max()


def pdd_at(depth_mm: np.ndarray, table: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Tabulated PDD (1 at dmax) at ``depth_mm``: linear inside the table, exponential
    (log-linear in the last two points) beyond its deepest point.

    Parameters
    ----------
    depth_mm : np.ndarray
        Depths (mm water-equivalent), 1-D or more.
    table : tuple of 2 np.ndarray
        ``(depth_mm, pdd)`` as from `load_pdd`.

    Returns
    -------
    np.ndarray
        PDD (1 at dmax), float64, the shape of ``depth_mm``.
    """
    depth, pdd = table
    d = np.asarray(depth_mm, dtype=np.float64)
    out = np.interp(d, depth, pdd)
    mu = np.log(pdd[-2] / pdd[-1]) / (depth[-1] - depth[-2])
    deep = d > depth[-1]
    out[deep] = pdd[-1] * np.exp(-mu * (d[deep] - depth[-1]))
    return out


def central_axis_lateral_factor(settings: PencilBeamSettings, depth_mm: np.ndarray, *,
                                field_mm: float = REFERENCE_FIELD_MM,
                                ssd_mm: float | None = None) -> np.ndarray:
    """Sum of lateral factors ``L`` (with the engine's cutoff and threshold) on the
    central axis of a square field of unit-weight beamlets, isocentre at the surface
    (or at ``ssd_mm``).

    Parameters
    ----------
    settings : PencilBeamSettings
        Kernel widths, beamlet size, cutoff, threshold and SAD.
    depth_mm : np.ndarray
        Depths in water (mm) on the central axis.
    field_mm : float
        Side of the square field at the isocentre plane (mm); default 100.
    ssd_mm : float, optional
        Source-surface distance (mm); ``None`` is the SAD.

    Returns
    -------
    np.ndarray
        The summed lateral factor at each depth, float64 (n_depths,).
    """
    sad = settings.sad_mm
    ssd = sad if ssd_mm is None else float(ssd_mm)
    b = settings.bixel_mm
    d = np.atleast_1d(np.asarray(depth_mm, dtype=np.float64))
    scale = np.float32(sad / (ssd + d))[:, None]
    sp, ss, ws = settings.kernel_widths(d)
    sp, ss, ws = sp[:, None] * scale, ss[:, None] * scale, ws[:, None]
    n_half = int(round(field_mm / 2 / b))
    centres = ((np.arange(-n_half, n_half) + 0.5) * b).astype(np.float32)
    cu, cv = np.meshgrid(centres, centres, indexing="ij")
    cu, cv = cu.ravel()[None, :], cv.ravel()[None, :]
    h = b / 2
    val = ((1 - ws) * bixel_integral(cu, h, sp) * bixel_integral(cv, h, sp)
           + ws * bixel_integral(cu, h, ss) * bixel_integral(cv, h, ss))
    peak = (1 - ws) * bixel_integral(np.float32(0), h, sp) ** 2 + ws * bixel_integral(
        np.float32(0), h, ss) ** 2
    keep = (cu ** 2 + cv ** 2 <= np.float32(settings.lateral_cutoff_mm) ** 2) & (
        val >= np.float32(settings.kernel_threshold) * peak)
    return np.where(keep, val, 0.0).sum(axis=1, dtype=np.float64)


@dataclass(frozen=True)
class DepthDoseTable:
    """``T(d)`` on a uniform depth grid (Gy per unit weight before inverse square and
    lateral factor); ``__call__`` interpolates linearly (float32)."""

    step_mm: float
    values: np.ndarray

    def __call__(self, depth_mm: np.ndarray) -> np.ndarray:
        x = np.clip(np.asarray(depth_mm, dtype=np.float32) / np.float32(self.step_mm),
                    0, self.values.size - 1.001)
        i = x.astype(np.int32)
        f = x - i
        return (self.values[i] * (1 - f) + self.values[i + 1] * f).astype(np.float32)


def commission_depth_dose(settings: PencilBeamSettings,
                          pdd_table: tuple[np.ndarray, np.ndarray]) -> DepthDoseTable:
    """``T(d)`` such that the reference field reproduces the PDD (see module docstring).

    Parameters
    ----------
    settings : PencilBeamSettings
        The engine settings (kernel, cutoff, threshold, SAD).
    pdd_table : tuple of 2 np.ndarray
        ``(depth_mm, pdd)`` as from `load_pdd`.

    Returns
    -------
    DepthDoseTable
        ``T(d)`` (Gy per unit weight) every 1 mm from 0 to 800 mm depth.
    """
    depth = np.arange(0.0, DEPTH_TABLE_MAX_MM + DEPTH_TABLE_STEP_MM, DEPTH_TABLE_STEP_MM)
    sad = settings.sad_mm
    isq = (sad / (sad + depth)) ** 2
    lateral = central_axis_lateral_factor(settings, depth)
    t_values = REFERENCE_DOSE_GY * pdd_at(depth, pdd_table) / (isq * lateral)
    return DepthDoseTable(step_mm=DEPTH_TABLE_STEP_MM, values=t_values.astype(np.float32))
