"""Plan quality indices: conformity (Paddick, RTOG), homogeneity (ICRU 83), gradient.

Volumes are voxel counts (the voxel volume cancels in every ratio). The prescription
isodose volume PIV is the set of voxels with dose >= the prescription anywhere in the
grid, or only inside ``body_mask`` when given. An index whose denominator is zero is
NaN.
"""

from __future__ import annotations

import math

import numpy as np

from atp.dosimetry.dvh import _check_mask, _check_real, dose_at_volume_percent


def _isodose(dose: np.ndarray, level_gy: float, body_mask) -> np.ndarray:
    """Boolean mask of dose >= ``level_gy``, restricted to ``body_mask`` if given."""
    iso = dose >= level_gy
    if body_mask is not None:
        iso &= _check_mask(body_mask, dose.shape, "body_mask")
    return iso


def _prescription(prescription_gy) -> float:
    rx = _check_real(prescription_gy, "prescription_gy", lo=0.0)
    if rx == 0.0:
        raise ValueError("prescription_gy must be > 0, got 0")
    return rx


def paddick_ci(dose_gy, target_mask, *, prescription_gy: float, body_mask=None) -> float:
    """Paddick conformity index TV_PIV^2 / (TV * PIV) (1 = perfect); NaN if TV or PIV is 0.

    References: Paddick, J Neurosurg 93 (2000) 219-222.

    Parameters
    ----------
    dose_gy : np.ndarray
        Dose (Gy), (z, y, x).
    target_mask : np.ndarray
        Boolean target mask, the shape of ``dose_gy``.
    prescription_gy : float
        Prescription dose (Gy), > 0.
    body_mask : np.ndarray, optional
        Boolean mask restricting the isodose volumes; ``None``: the whole grid.

    Returns
    -------
    float
        The index, in [0, 1].
    """
    rx = _prescription(prescription_gy)
    dose = np.asarray(dose_gy)
    target = _check_mask(target_mask, dose.shape, "target_mask")
    piv = _isodose(dose, rx, body_mask)
    tv = int(np.count_nonzero(target))
    n_piv = int(np.count_nonzero(piv))
    if tv == 0 or n_piv == 0:
        return math.nan
    tv_piv = int(np.count_nonzero(target & piv))
    return tv_piv * tv_piv / (tv * n_piv)


def rtog_ci(dose_gy, target_mask, *, prescription_gy: float, body_mask=None) -> float:
    """RTOG conformity index PIV / TV; NaN if TV is 0.

    Parameters
    ----------
    dose_gy : np.ndarray
        Dose (Gy), (z, y, x).
    target_mask : np.ndarray
        Boolean target mask, the shape of ``dose_gy``.
    prescription_gy : float
        Prescription dose (Gy), > 0.
    body_mask : np.ndarray, optional
        Boolean mask restricting the isodose volumes; ``None``: the whole grid.

    Returns
    -------
    float
        The index (1 = prescription isodose volume equals the target volume).
    """
    rx = _prescription(prescription_gy)
    dose = np.asarray(dose_gy)
    target = _check_mask(target_mask, dose.shape, "target_mask")
    tv = int(np.count_nonzero(target))
    if tv == 0:
        return math.nan
    return int(np.count_nonzero(_isodose(dose, rx, body_mask))) / tv


def homogeneity_index_icru83(dose_gy, target_mask) -> float:
    """ICRU 83 homogeneity index (D2% - D98%) / D50% (0 = homogeneous).

    Dx% follow `dose_at_volume_percent`. NaN for an empty target or D50% = 0.

    Parameters
    ----------
    dose_gy : np.ndarray
        Dose (Gy), (z, y, x).
    target_mask : np.ndarray
        Boolean target mask, the shape of ``dose_gy``.

    Returns
    -------
    float
        The index (dimensionless).
    """
    d2 = dose_at_volume_percent(dose_gy, target_mask, percent=2.0)
    d98 = dose_at_volume_percent(dose_gy, target_mask, percent=98.0)
    d50 = dose_at_volume_percent(dose_gy, target_mask, percent=50.0)
    if math.isnan(d50) or d50 == 0.0:
        return math.nan
    return (d2 - d98) / d50


def gradient_index(dose_gy, *, prescription_gy: float, body_mask=None) -> float:
    """Gradient index PIV50% / PIV100% (Paddick & Lippitz 2006); NaN if PIV100% is 0.

    Parameters
    ----------
    dose_gy : np.ndarray
        Dose (Gy), (z, y, x).
    prescription_gy : float
        Prescription dose (Gy), > 0.
    body_mask : np.ndarray, optional
        Boolean mask restricting the isodose volumes; ``None``: the whole grid.

    Returns
    -------
    float
        The index (>= 1).
    """
    rx = _prescription(prescription_gy)
    dose = np.asarray(dose_gy)
    piv100 = int(np.count_nonzero(_isodose(dose, rx, body_mask)))
    if piv100 == 0:
        return math.nan
    return int(np.count_nonzero(_isodose(dose, 0.5 * rx, body_mask))) / piv100
