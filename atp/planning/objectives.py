"""Objective terms of the fluence optimization, each a penalty on a set of voxel rows.

Every term is dimensionless: squared dose violations divided by the square of a reference
dose (the goal's value, or the prescription for falloff/uniformity terms), averaged over the
term's voxels. Dose-volume terms follow the classic piecewise-quadratic form (Wu & Mohan,
Med Phys 27:701, 2000): for ``D_x% <= v`` only the voxels above ``v`` that are not among
the hottest x % allowed to exceed it are penalized (those with ``v < d <= D_x%``); for
``D_x% >= v`` the voxels below ``v`` that are not among the coldest (100 - x) % allowed
(those with ``D_x% <= d < v``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

KINDS = ("upper_max", "lower_min", "upper_mean", "lower_mean", "upper_dvh", "lower_dvh",
         "falloff", "uniformity")


@dataclass
class Term:
    """One penalty. ``limit_gy`` is a scalar, or one value per row for ``falloff``."""

    kind: str
    rows: np.ndarray
    limit_gy: float | np.ndarray
    weight: float = 1.0
    volume_pct: float = 0.0  # x of D_x% for dose-volume terms
    ref_gy: float = 1.0  # normalisation dose
    priority: int = 0
    label: str = ""
    goal_index: int | None = None  # index into the resolved goal list, if from a goal
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"objective '{self.label}': unknown kind '{self.kind}'")
        self.rows = np.asarray(self.rows, dtype=np.int64)
        if np.unique(self.rows).size != self.rows.size:
            raise ValueError(f"objective '{self.label}': duplicate rows")
        if self.rows.size == 0:
            raise ValueError(f"objective '{self.label}': its structure has no voxel in the "
                             "dose grid")
        if not self.ref_gy > 0:
            raise ValueError(f"objective '{self.label}': reference dose must be > 0")

    def value_grad(self, dose_gy: np.ndarray) -> tuple[float, np.ndarray]:
        """Penalty and its gradient with respect to the doses of ``rows``."""
        d = dose_gy[self.rows].astype(np.float64)
        n = d.size
        scale = 1.0 / (self.ref_gy * self.ref_gy * n)
        k, v = self.kind, self.limit_gy
        if k in ("upper_max", "falloff"):
            r = np.maximum(d - v, 0.0)
        elif k == "lower_min":
            r = np.minimum(d - v, 0.0)
        elif k == "uniformity":
            r = d - v
        elif k in ("upper_mean", "lower_mean"):
            diff = float(d.mean(dtype=np.float64)) - float(v)
            diff = max(diff, 0.0) if k == "upper_mean" else min(diff, 0.0)
            # mean violation squared, normalised by ref^2 (n cancels in the mean)
            return diff * diff / self.ref_gy ** 2, np.full(n, 2.0 * diff / (self.ref_gy ** 2 * n))
        else:  # dose-volume
            # the sample next to D_x% on the failing side: the metric interpolates between
            # two sorted doses and meets its limit only when both do, so both are penalized
            side = "higher" if k == "upper_dvh" else "lower"
            d_x = float(np.percentile(d, 100.0 - self.volume_pct, method=side))
            if k == "upper_dvh":
                r = np.where((d > v) & (d <= d_x), d - v, 0.0)
            else:
                r = np.where((d < v) & (d >= d_x), d - v, 0.0)
        return float(np.dot(r, r)) * scale, 2.0 * scale * r


def achieved(term: Term, dose_gy: np.ndarray) -> float | np.ndarray:
    """The quantity a term limits, on ``dose_gy``: max, min, mean, D_x% or per-voxel dose."""
    d = dose_gy[term.rows].astype(np.float64)
    k = term.kind
    if k == "upper_max":
        return float(d.max())
    if k == "lower_min":
        return float(d.min())
    if k in ("upper_mean", "lower_mean"):
        return float(d.mean())
    if k in ("upper_dvh", "lower_dvh"):
        return float(np.percentile(d, 100.0 - term.volume_pct))
    return d  # falloff and uniformity: the voxel doses


def held(term: Term, dose_gy: np.ndarray, *, slack: float, weight: float) -> Term | None:
    """A copy of ``term`` that forbids doing worse than on ``dose_gy`` (beyond ``slack``).

    Its limit stays the goal's own limit when the goal is met (so a met hard constraint
    stays met), else becomes the achieved value loosened by ``slack``. Uniformity terms
    are not held (they are not limits).
    """
    if term.kind == "uniformity":
        return None
    a = np.asarray(achieved(term, dose_gy))
    lim = np.asarray(term.limit_gy, dtype=np.float64)
    tol = 1e-4 * np.abs(lim) + 1e-9
    if term.kind.startswith("upper") or term.kind == "falloff":
        limit = np.where(a <= lim + tol, lim, a * (1.0 + slack))
    else:
        limit = np.where(a >= lim - tol, lim, a * (1.0 - slack))
    limit = float(limit) if np.ndim(limit) == 0 else limit
    return Term(term.kind, rows=term.rows, limit_gy=limit, weight=weight,
                volume_pct=term.volume_pct, ref_gy=term.ref_gy, priority=term.priority,
                label=f"held: {term.label}", goal_index=term.goal_index)


def total_objective(terms: list[Term], dose_gy: np.ndarray) -> tuple[float, np.ndarray,
                                                                      np.ndarray]:
    """Normalized weighted sum (study eq. 2): sum_k w_k f_k / sum_k w_k.

    Returns the total, its gradient with respect to the full dose vector and each term's
    unweighted value.
    """
    wsum = float(sum(t.weight for t in terms))
    grad = np.zeros(dose_gy.shape[0], dtype=np.float64)
    values = np.empty(len(terms), dtype=np.float64)
    total = 0.0
    for i, t in enumerate(terms):
        f, g = t.value_grad(dose_gy)
        values[i] = f
        total += t.weight * f
        grad[t.rows] += (t.weight / wsum) * g  # rows are unique within a term
    return total / wsum, grad, values
