"""Paired comparison statistics for cohorts of plan metrics (e.g. ATP vs manual plans).

Paired inputs ``a`` and ``b`` are 1-D sequences of equal length, one value per patient.
Pairs where either value is NaN (e.g. a metric of an uncontoured ROI) are dropped.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as _st

from atp.dosimetry.dvh import _check_real


def _paired(a, b) -> np.ndarray:
    """Differences ``a - b`` (float64) of the complete pairs."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.ndim != 1 or y.ndim != 1:
        raise ValueError(f"a and b must be 1-D, got shapes {x.shape} and {y.shape}")
    if x.shape != y.shape:
        raise ValueError(f"a and b must have the same length, got {x.size} and {y.size}")
    keep = ~(np.isnan(x) | np.isnan(y))
    return x[keep] - y[keep]


def paired_ttest(a, b) -> float:
    """Two-tailed p value of the paired t test (`scipy.stats.ttest_rel`).

    NaN when fewer than 2 complete pairs remain or the differences have zero variance
    (the t statistic is then undefined).

    Parameters
    ----------
    a : sequence of float
        One value per patient (e.g. ATP plans).
    b : sequence of float
        The paired values, same length (e.g. manual plans).

    Returns
    -------
    float
        The p value.
    """
    d = _paired(a, b)
    if d.size < 2 or np.all(d == d[0]):
        return math.nan
    return float(_st.ttest_rel(d, np.zeros_like(d)).pvalue)


def bonferroni(p_values, *, m: int | None = None) -> np.ndarray:
    """Bonferroni-adjusted p values ``min(p * m, 1)`` (the study's Eq. 3).

    Parameters
    ----------
    p_values : sequence of float
        Unadjusted p values in [0, 1]; NaN entries stay NaN.
    m : int, optional
        Size of the family of tests. Default: the number of non-NaN p values. Pass it
        when the family is defined otherwise, e.g. the study's number of dosimetric
        endpoints compared, some of which may have no p value.

    Returns
    -------
    ndarray
        The adjusted p values (float64).
    """
    p = np.asarray(p_values, dtype=np.float64)
    finite = ~np.isnan(p)
    if np.any((p[finite] < 0.0) | (p[finite] > 1.0)):
        raise ValueError("p_values must lie in [0, 1]")
    if m is None:
        m = int(np.count_nonzero(finite))
    elif isinstance(m, bool) or int(m) != m or m < int(np.count_nonzero(finite)):
        raise ValueError(f"m must be an integer >= the number of p values, got {m!r}")
    return np.minimum(p * int(m), 1.0)


def mean_difference_ci(a, b, *, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``a - b`` and its two-sided t-distribution confidence interval.

    Returns ``(mean, lo, hi)``; the bounds are NaN for fewer than 2 complete pairs
    (all three for none).

    Parameters
    ----------
    a : sequence of float
        One value per patient (e.g. ATP plans).
    b : sequence of float
        The paired values, same length (e.g. manual plans).
    confidence : float
        Confidence level, strictly between 0 and 1; default 0.95.

    Returns
    -------
    tuple of 3 float
        ``(mean, lo, hi)`` in the unit of ``a`` and ``b``.
    """
    c = _check_real(confidence, "confidence", lo=0.0, hi=1.0)
    if c in (0.0, 1.0):
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")
    d = _paired(a, b)
    n = d.size
    if n == 0:
        return (math.nan, math.nan, math.nan)
    mean = float(d.mean(dtype=np.float64))
    if n < 2:
        return (mean, math.nan, math.nan)
    half = float(_st.t.ppf(0.5 + c / 2.0, n - 1)) * float(d.std(ddof=1)) / math.sqrt(n)
    return (mean, mean - half, mean + half)


def relative_difference_percent(reference, new, *, higher_is_better: bool = False):
    """Relative difference (%) of ``new`` against ``reference``, positive = new is better.

    For metrics where lower is better (OAR doses, HI, GI; the default) it is
    ``(reference - new) / reference * 100``: a 20 Gy -> 15 Gy mean dose gives +25 %.
    For coverage or conformity metrics (``higher_is_better=True``) the sign is flipped,
    ``(new - reference) / reference * 100``, so positive again means new is better.
    ``reference`` is assumed positive; ``reference == 0`` gives NaN. Scalars give a
    float, arrays a float64 array.

    Parameters
    ----------
    reference : float or np.ndarray
        Reference value(s), e.g. of the manual plan.
    new : float or np.ndarray
        New value(s), e.g. of the ATP plan, broadcastable with ``reference``.
    higher_is_better : bool
        True for coverage/conformity metrics; default False (lower is better).

    Returns
    -------
    float or np.ndarray
        Relative difference (%), positive when ``new`` is better.
    """
    ref = np.asarray(reference, dtype=np.float64)
    val = np.asarray(new, dtype=np.float64)
    safe = np.where(ref == 0.0, np.nan, ref)
    out = (safe - val) / safe * 100.0
    if higher_is_better:
        out = -out
    return float(out) if out.ndim == 0 else out
