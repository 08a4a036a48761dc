"""Linear-quadratic fractionation conversions: BED and EQD2.

Both work on a scalar total dose or per voxel on a dose array: each voxel's total
dose ``D`` is assumed delivered in ``n_fractions`` equal fractions of ``d = D / n``.
A scalar input gives a float, an array gives a float64 array of the same shape.
"""

from __future__ import annotations

import numpy as np

from atp.dosimetry.dvh import _check_real


def _check_lq(n_fractions, alpha_beta_gy) -> tuple[float, float]:
    if isinstance(n_fractions, bool):
        raise ValueError(f"n_fractions must be a number >= 1, got {n_fractions!r}")
    n = _check_real(n_fractions, "n_fractions", lo=1.0)
    ab = _check_real(alpha_beta_gy, "alpha_beta_gy", lo=0.0)
    if ab == 0.0:
        raise ValueError("alpha_beta_gy must be > 0, got 0")
    return n, ab


def _out(value: np.ndarray, like) -> float | np.ndarray:
    return float(value) if np.ndim(like) == 0 else value


def bed(dose_gy, *, n_fractions: float, alpha_beta_gy: float) -> float | np.ndarray:
    """Biologically effective dose BED = D (1 + d / (alpha/beta)) (Gy), d = D / n.

    Example: 60 Gy in 30 fractions, alpha/beta = 10 Gy -> 72 Gy.

    Parameters
    ----------
    dose_gy : float or np.ndarray
        Total physical dose (Gy), scalar or per voxel.
    n_fractions : float
        Number of fractions, >= 1.
    alpha_beta_gy : float
        The tissue's alpha/beta (Gy), > 0.

    Returns
    -------
    float or np.ndarray
        BED (Gy); float64 array of the same shape for an array input.
    """
    n, ab = _check_lq(n_fractions, alpha_beta_gy)
    d_total = np.asarray(dose_gy, dtype=np.float64)
    return _out(d_total * (1.0 + (d_total / n) / ab), dose_gy)


def eqd2(dose_gy, *, n_fractions: float, alpha_beta_gy: float) -> float | np.ndarray:
    """Equivalent dose in 2-Gy fractions EQD2 = D (d + alpha/beta) / (2 + alpha/beta) (Gy).

    Example: 25 Gy in 5 fractions, alpha/beta = 10 Gy -> 31.25 Gy.

    Parameters
    ----------
    dose_gy : float or np.ndarray
        Total physical dose (Gy), scalar or per voxel.
    n_fractions : float
        Number of fractions, >= 1.
    alpha_beta_gy : float
        The tissue's alpha/beta (Gy), > 0.

    Returns
    -------
    float or np.ndarray
        EQD2 (Gy); float64 array of the same shape for an array input.
    """
    n, ab = _check_lq(n_fractions, alpha_beta_gy)
    d_total = np.asarray(dose_gy, dtype=np.float64)
    return _out(d_total * (d_total / n + ab) / (2.0 + ab), dose_gy)


def physical_dose_for_eqd2(eqd2_gy, *, n_fractions: float,
                           alpha_beta_gy: float) -> float | np.ndarray:
    """The total physical dose in ``n_fractions`` whose EQD2 is ``eqd2_gy`` (inverse of `eqd2`).

    Solves ``D (D / n + a/b) = EQD2 (2 + a/b)`` for ``D >= 0``. It turns an endpoint
    threshold read as EQD2 (the "isodose converted to EQD2" of a Vx endpoint) into the
    physical isodose of a plan with ``n_fractions`` fractions.

    Parameters
    ----------
    eqd2_gy : float or array
        EQD2 (Gy), >= 0.
    n_fractions : float
        Number of fractions of the plan.
    alpha_beta_gy : float
        The tissue's alpha/beta (Gy).

    Returns
    -------
    float or ndarray
        Physical total dose (Gy). Example: 20 Gy EQD2 in 25 fractions, alpha/beta = 3 Gy
        -> 25 Gy (25 Gy at 1 Gy per fraction has EQD2 = 25 (1 + 3) / 5 = 20 Gy).
    """
    n, ab = _check_lq(n_fractions, alpha_beta_gy)
    e = np.asarray(eqd2_gy, dtype=np.float64)
    if np.any(e < 0.0) or not np.all(np.isfinite(e)):
        raise ValueError(f"eqd2_gy must be finite and >= 0, got {eqd2_gy!r}")
    c = e * (2.0 + ab)
    # the positive root of D^2 / n + ab D - c = 0, in the form without cancellation
    return _out(2.0 * c / (ab + np.sqrt(ab * ab + 4.0 * c / n)), eqd2_gy)
