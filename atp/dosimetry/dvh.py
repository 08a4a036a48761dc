"""Dose-volume histograms and DVH endpoints (pure numpy).

Conventions
-----------
- Arrays are indexed (z, y, x); ``spacing_mm`` is the voxel size (z, y, x) in mm.
- Masks are boolean arrays with the dose grid's shape; anything else raises
  ``ValueError`` naming the argument.
- A voxel counts wholly in or out of an ROI (no partial-volume weighting); every
  volume is a voxel count times the voxel volume.
- Dx% and Dcc use numpy's default (linear) percentile of the ROI's voxel doses, the
  OpenKBP convention: D95% is the 5th percentile.
- Sums and means are taken in float64.

Empty-mask policy
-----------------
Every dose or volume metric of an empty mask (no True voxel) returns ``float('nan')``,
without an exception or a warning; `cumulative_dvh` then returns a one-bin DVH whose
volume fraction is NaN. `roi_volume_cc` is the exception: an empty ROI has 0 cc.
A one-voxel mask is valid: every dose metric equals that voxel's dose.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_UNITS = ("percent", "cc")


@dataclass(frozen=True, eq=False)
class DVH:
    """Cumulative DVH of one ROI.

    Attributes
    ----------
    dose_gy : ndarray
        Bin edges (Gy), ascending from 0.
    volume_fraction : ndarray
        Fraction of the ROI (0..1) receiving a dose >= each edge.
    volume_cc : ndarray
        The same as an absolute volume (cc).
    total_cc : float
        ROI volume (cc).
    """

    dose_gy: np.ndarray
    volume_fraction: np.ndarray
    volume_cc: np.ndarray
    total_cc: float


def _check_spacing(spacing_mm) -> tuple[float, float, float]:
    """Validate a (z, y, x) spacing in mm; return it as three floats."""
    if spacing_mm is None:
        raise ValueError("spacing_mm is required: a (z, y, x) voxel size in mm")
    try:
        vals = tuple(float(s) for s in spacing_mm)
    except (TypeError, ValueError):
        raise ValueError(f"spacing_mm must be 3 positive numbers, got {spacing_mm!r}") from None
    if len(vals) != 3 or not all(math.isfinite(v) and v > 0 for v in vals):
        raise ValueError(f"spacing_mm must be 3 positive numbers (z, y, x), got {spacing_mm!r}")
    return vals  # type: ignore[return-value]


def _check_real(value, name: str, *, lo: float = -math.inf, hi: float = math.inf) -> float:
    """Return ``value`` as a finite float within [lo, hi], else raise ValueError."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < lo or v > hi:
        raise ValueError(f"{name} must be a finite number in [{lo:g}, {hi:g}], got {value!r}")
    return v


def _check_mask(mask, shape: tuple[int, ...], name: str = "mask") -> np.ndarray:
    """Validate a boolean mask of the given shape; return it as an ndarray."""
    m = np.asarray(mask)
    if m.dtype != np.bool_:
        raise ValueError(f"{name} must be a boolean array, got dtype {m.dtype}")
    if m.shape != tuple(shape):
        raise ValueError(f"{name} shape {m.shape} does not match dose_gy shape {tuple(shape)}")
    return m


def _roi_doses(dose_gy, mask, name: str = "mask") -> np.ndarray:
    """The ROI's voxel doses as a 1-D float64 array (empty for an empty mask)."""
    dose = np.asarray(dose_gy)
    m = _check_mask(mask, dose.shape, name)
    return dose[m].astype(np.float64)


def voxel_volume_cc(spacing_mm) -> float:
    """Volume of one voxel (cc) from a (z, y, x) spacing in mm.

    Parameters
    ----------
    spacing_mm : sequence of 3 floats
        Voxel size (mm), (z, y, x).

    Returns
    -------
    float
        Voxel volume (cc).
    """
    sz, sy, sx = _check_spacing(spacing_mm)
    return sz * sy * sx / 1000.0


def roi_volume_cc(mask, *, spacing_mm) -> float:
    """ROI volume (cc): number of True voxels times the voxel volume (0 if empty).

    Parameters
    ----------
    mask : np.ndarray
        Boolean ROI mask, (z, y, x).
    spacing_mm : sequence of 3 floats
        Voxel size (mm), (z, y, x).

    Returns
    -------
    float
        ROI volume (cc).
    """
    m = np.asarray(mask)
    if m.dtype != np.bool_:
        raise ValueError(f"mask must be a boolean array, got dtype {m.dtype}")
    return int(np.count_nonzero(m)) * voxel_volume_cc(spacing_mm)


def cumulative_dvh(
    dose_gy,
    mask,
    *,
    spacing_mm,
    bin_width_gy: float = 0.01,
    max_dose_gy: float | None = None,
) -> DVH:
    """Cumulative DVH of the ROI ``mask``.

    Edges run ``0, w, 2w, ...`` (w = ``bin_width_gy``) up to the first edge above
    ``max_dose_gy`` (default: the ROI's maximum dose), where the curve reaches 0.

    Parameters
    ----------
    dose_gy : np.ndarray
        Dose (Gy), (z, y, x).
    mask : np.ndarray
        Boolean ROI mask, the shape of ``dose_gy``.
    spacing_mm : sequence of 3 floats
        Voxel size (mm), (z, y, x).
    bin_width_gy : float
        Bin width (Gy), > 0.
    max_dose_gy : float, optional
        Highest dose (Gy) to cover; ``None`` is the ROI's maximum.

    Returns
    -------
    DVH
        Edges (Gy), volume fractions and volumes (cc), read-only; one NaN bin if empty.
    """
    w = _check_real(bin_width_gy, "bin_width_gy", lo=0.0)
    if w == 0.0:
        raise ValueError("bin_width_gy must be > 0, got 0")
    voxel_cc = voxel_volume_cc(spacing_mm)
    doses = np.sort(_roi_doses(dose_gy, mask))
    n = doses.size
    if max_dose_gy is None:
        top = float(doses[-1]) if n else 0.0
    else:
        top = _check_real(max_dose_gy, "max_dose_gy", lo=0.0)
    if n == 0:
        edges = np.zeros(1)
        fraction = np.full(1, np.nan)
        counts = np.zeros(1)
    else:
        n_edges = int(math.floor(max(top, 0.0) / w)) + 2
        edges = np.arange(n_edges, dtype=np.float64) * w
        counts = (n - np.searchsorted(doses, edges, side="left")).astype(np.float64)
        fraction = counts / n
    volume = counts * voxel_cc
    for a in (edges, fraction, volume):
        a.setflags(write=False)
    return DVH(dose_gy=edges, volume_fraction=fraction, volume_cc=volume, total_cc=n * voxel_cc)


def dose_at_volume_percent(dose_gy, mask, *, percent: float) -> float:
    """Dx%: dose (Gy) received by at least the hottest ``percent`` % of the ROI.

    The linear percentile ``100 - percent`` of the ROI's voxel doses (D95 = 5th
    percentile, D2 = 98th); NaN for an empty mask.

    Parameters
    ----------
    dose_gy : np.ndarray
        Dose (Gy), (z, y, x).
    mask : np.ndarray
        Boolean ROI mask, the shape of ``dose_gy``.
    percent : float
        Volume (% of the ROI), in [0, 100].

    Returns
    -------
    float
        Dose (Gy).
    """
    p = _check_real(percent, "percent", lo=0.0, hi=100.0)
    doses = _roi_doses(dose_gy, mask)
    if doses.size == 0:
        return math.nan
    return float(np.percentile(doses, 100.0 - p))


def dose_at_volume_cc(dose_gy, mask, *, volume_cc: float, spacing_mm) -> float:
    """Dcc: dose (Gy) received by at least the hottest ``volume_cc`` of the ROI.

    The linear percentile ``100 - (volume_cc / voxel_cc) / n * 100`` of the ROI's
    ``n`` voxel doses, clipped to [0, 100]: 0 cc gives the maximum, a volume at or above
    the ROI volume gives the minimum. NaN for an empty mask.

    Parameters
    ----------
    dose_gy : np.ndarray
        Dose (Gy), (z, y, x).
    mask : np.ndarray
        Boolean ROI mask, the shape of ``dose_gy``.
    volume_cc : float
        Volume (cc), >= 0.
    spacing_mm : sequence of 3 floats
        Voxel size (mm), (z, y, x).

    Returns
    -------
    float
        Dose (Gy).
    """
    v = _check_real(volume_cc, "volume_cc", lo=0.0)
    voxel_cc = voxel_volume_cc(spacing_mm)
    doses = _roi_doses(dose_gy, mask)
    n = doses.size
    if n == 0:
        return math.nan
    q = min(max(100.0 - (v / voxel_cc) / n * 100.0, 0.0), 100.0)
    return float(np.percentile(doses, q))


def volume_at_dose(
    dose_gy, mask, *, threshold_gy: float, spacing_mm=None, unit: str = "percent"
) -> float:
    """Vx: share of the ROI receiving a dose >= ``threshold_gy``.

    ``unit="percent"`` gives % of the ROI's voxels; ``unit="cc"`` gives cc and needs
    ``spacing_mm``. NaN for an empty mask.

    Parameters
    ----------
    dose_gy : np.ndarray
        Dose (Gy), (z, y, x).
    mask : np.ndarray
        Boolean ROI mask, the shape of ``dose_gy``.
    threshold_gy : float
        Dose threshold (Gy).
    spacing_mm : sequence of 3 floats, optional
        Voxel size (mm), (z, y, x); needed only for ``unit="cc"``.
    unit : {"percent", "cc"}
        Unit of the result.

    Returns
    -------
    float
        Volume (% of the ROI or cc).
    """
    if unit not in _UNITS:
        raise ValueError(f"unit must be one of {_UNITS}, got {unit!r}")
    t = _check_real(threshold_gy, "threshold_gy")
    voxel_cc = voxel_volume_cc(spacing_mm) if unit == "cc" else math.nan
    doses = _roi_doses(dose_gy, mask)
    if doses.size == 0:
        return math.nan
    count = int(np.count_nonzero(doses >= t))
    if unit == "cc":
        return count * voxel_cc
    return 100.0 * count / doses.size


def mean_dose(dose_gy, mask) -> float:
    """Mean ROI dose (Gy), in float64; NaN for an empty mask.

    Parameters
    ----------
    dose_gy : np.ndarray
        Dose (Gy), (z, y, x).
    mask : np.ndarray
        Boolean ROI mask, the shape of ``dose_gy``.

    Returns
    -------
    float
        Mean dose (Gy).
    """
    doses = _roi_doses(dose_gy, mask)
    return float(doses.mean(dtype=np.float64)) if doses.size else math.nan


def max_dose(dose_gy, mask) -> float:
    """Point (single-voxel) maximum ROI dose (Gy); NaN for an empty mask.

    Parameters
    ----------
    dose_gy : np.ndarray
        Dose (Gy), (z, y, x).
    mask : np.ndarray
        Boolean ROI mask, the shape of ``dose_gy``.

    Returns
    -------
    float
        Maximum dose (Gy).
    """
    doses = _roi_doses(dose_gy, mask)
    return float(doses.max()) if doses.size else math.nan


def min_dose(dose_gy, mask) -> float:
    """Point (single-voxel) minimum ROI dose (Gy); NaN for an empty mask.

    Parameters
    ----------
    dose_gy : np.ndarray
        Dose (Gy), (z, y, x).
    mask : np.ndarray
        Boolean ROI mask, the shape of ``dose_gy``.

    Returns
    -------
    float
        Minimum dose (Gy).
    """
    doses = _roi_doses(dose_gy, mask)
    return float(doses.min()) if doses.size else math.nan


def near_max_dose(dose_gy, mask, *, spacing_mm, volume_cc: float = 0.03) -> float:
    """Near-maximum dose D``volume_cc`` (default D0.03cc) via `dose_at_volume_cc`.

    Parameters
    ----------
    dose_gy : np.ndarray
        Dose (Gy), (z, y, x).
    mask : np.ndarray
        Boolean ROI mask, the shape of ``dose_gy``.
    spacing_mm : sequence of 3 floats
        Voxel size (mm), (z, y, x).
    volume_cc : float
        Volume (cc) of the hottest part; default 0.03.

    Returns
    -------
    float
        Dose (Gy); NaN for an empty mask.
    """
    return dose_at_volume_cc(dose_gy, mask, volume_cc=volume_cc, spacing_mm=spacing_mm)
