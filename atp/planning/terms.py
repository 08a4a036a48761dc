"""The objective term kinds of the planner, each registered in `atp.planning.objectives`.

Maxima, minima, fall-off and uniformity penalize voxel residuals; mean-dose terms the mean;
dose-volume terms follow the piecewise-quadratic form of Wu & Mohan (Med Phys 27:701, 2000)
described in `atp.planning.objectives`. A new kind is one more class here (or in any module
that is imported), decorated with `register`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from atp.planning.objectives import GoalSpec, Term, _order_index, _xp, register


class _Residual(Term):
    """Penalty ``sum(r^2) / (ref^2 n)`` of a residual ``r`` with an identity Jacobian."""

    def residual(self, d):
        """The residual ``r`` on the doses of ``rows`` (0 where the limit holds).

        Parameters
        ----------
        d : np.ndarray
            Dose (Gy) of the term's ``rows``, (n,) (a torch tensor on the torch backend).

        Returns
        -------
        np.ndarray
            The residual (Gy), same shape as ``d``.
        """
        raise NotImplementedError

    def _scale(self) -> float:
        return 1.0 / (self.ref_gy * self.ref_gy * self.rows.size)

    def value_grad(self, d):
        r = self.residual(d)
        scale = self._scale()
        return (r @ r) * scale, (2.0 * scale) * r

    def curvature(self, d, v):
        return (2.0 * self._scale()) * v * (self.residual(d) != 0)


@register
@dataclass(kw_only=True, eq=False)
class UpperMax(_Residual):
    """``Dmax <= v``: every voxel above the limit is penalized."""

    kind: ClassVar[str] = "upper_max"
    direction: ClassVar[str | None] = "upper"
    goals: ClassVar[tuple[tuple[str, str], ...]] = (("dmax", "<="),)

    def residual(self, d):
        return (d - self.limit_gy).clip(min=0.0)

    def achieved(self, d):
        return float(np.max(d))

    def piece_violation(self, d):
        return np.asarray(d, dtype=np.float64) - self.limit_gy


@register
@dataclass(kw_only=True, eq=False)
class LowerMin(_Residual):
    """``Dmin >= v``: every voxel below the limit is penalized."""

    kind: ClassVar[str] = "lower_min"
    direction: ClassVar[str | None] = "lower"
    goals: ClassVar[tuple[tuple[str, str], ...]] = (("dmin", ">="),)

    def residual(self, d):
        return (d - self.limit_gy).clip(max=0.0)

    def achieved(self, d):
        return float(np.min(d))

    def piece_violation(self, d):
        return self.limit_gy - np.asarray(d, dtype=np.float64)


@register
@dataclass(kw_only=True, eq=False)
class Falloff(_Residual):
    """A per-voxel upper limit (the F_CI normal-tissue fall-off control)."""

    kind: ClassVar[str] = "falloff"
    direction: ClassVar[str | None] = "upper"
    voxelwise: ClassVar[bool] = True

    def residual(self, d):
        return (d - self.limit_gy).clip(min=0.0)

    def achieved(self, d):
        return np.asarray(d, dtype=np.float64)


@register
@dataclass(kw_only=True, eq=False)
class Uniformity(_Residual):
    """Every voxel pulled towards the prescription (an ``HI <=`` goal). Not a limit."""

    kind: ClassVar[str] = "uniformity"
    goals: ClassVar[tuple[tuple[str, str], ...]] = (("hi", "<="),)
    voxelwise: ClassVar[bool] = True

    @classmethod
    def from_goal(cls, spec: GoalSpec) -> Term:
        """The term for one resolved goal (see `Term.from_goal`).

        Parameters
        ----------
        spec : GoalSpec
            The resolved goal, its rows, weight and reference doses.

        Returns
        -------
        Term
            The goal's term.
        """
        rx = spec.rx_max_gy
        return cls(limit_gy=spec.goal.rx_gy or rx, **{**spec.fields, "ref_gy": rx})

    def residual(self, d):
        return d - self.limit_gy

    def achieved(self, d):
        return np.asarray(d, dtype=np.float64)


class _Mean(Term):
    """The squared violation of the mean dose, ``(mean - v)^2 / ref^2``."""

    def _diff(self, d):
        diff = d.mean() - self.limit_gy
        return diff.clip(min=0.0) if self.direction == "upper" else diff.clip(max=0.0)

    def value_grad(self, d):
        diff = self._diff(d)
        n, ref2 = self.rows.size, self.ref_gy ** 2
        # mean violation squared, normalised by ref^2 (n cancels in the mean)
        return diff * diff / ref2, _xp(d).ones_like(d) * (2.0 * diff / (ref2 * n))

    def curvature(self, d, v):
        n = self.rows.size
        active = self._diff(d) != 0
        return _xp(d).ones_like(d) * (v.sum() * (2.0 * active / (self.ref_gy ** 2 * n * n)))

    def achieved(self, d):
        return float(np.mean(d, dtype=np.float64))


@register
@dataclass(kw_only=True, eq=False)
class UpperMean(_Mean):
    """``Dmean <= v``."""

    kind: ClassVar[str] = "upper_mean"
    direction: ClassVar[str | None] = "upper"
    goals: ClassVar[tuple[tuple[str, str], ...]] = (("dmean", "<="),)


@register
@dataclass(kw_only=True, eq=False)
class LowerMean(_Mean):
    """``Dmean >= v``."""

    kind: ClassVar[str] = "lower_mean"
    direction: ClassVar[str | None] = "lower"
    goals: ClassVar[tuple[tuple[str, str], ...]] = (("dmean", ">="),)


@dataclass(kw_only=True, eq=False)
class _DoseVolume(_Residual):
    """A limit on D_x% (``volume_pct`` = x). ``Dx%``/``Dxcc`` goals limit the dose at a
    volume, ``VxGy``/``VxGy_cc`` goals the volume at a dose: both become a D_x% limit."""

    volume_pct: float = 0.0

    @classmethod
    def _limit_and_pct(cls, spec: GoalSpec) -> tuple[float, float]:
        r, m, n = spec.goal, spec.goal.goal.metric, spec.rows.size
        if m.kind in ("dpct", "dcc"):
            pct = m.param if m.kind == "dpct" else 100.0 * m.param / (n * spec.voxel_cc)
            return r.value, float(np.clip(pct, 0.0, 100.0))
        pct = r.value if m.kind == "vgy" else 100.0 * r.value / (n * spec.voxel_cc)
        return m.param, float(np.clip(pct, 0.0, 100.0))

    @classmethod
    def from_goal(cls, spec: GoalSpec) -> Term:
        """The term for one resolved goal (see `Term.from_goal`).

        Parameters
        ----------
        spec : GoalSpec
            The resolved goal, its rows, weight and reference doses.

        Returns
        -------
        Term
            The goal's term.
        """
        limit, pct = cls._limit_and_pct(spec)
        return cls(limit_gy=limit, volume_pct=pct, **spec.fields)

    def _d_x(self, d):
        # the sample next to D_x% on the failing side (numpy's "higher"/"lower" percentile):
        # the metric interpolates between two sorted doses and meets its limit only when
        # both do, so both are penalized
        side = "higher" if self.direction == "upper" else "lower"
        k = _order_index(self.rows.size, 100.0 - self.volume_pct, side)
        if isinstance(d, np.ndarray):
            return np.partition(d, k)[k]
        return d.kthvalue(k + 1).values

    def achieved(self, d):
        return float(np.percentile(np.asarray(d, dtype=np.float64), 100.0 - self.volume_pct))


@register
@dataclass(kw_only=True, eq=False)
class UpperDvh(_DoseVolume):
    """``D_x% <= v``."""

    kind: ClassVar[str] = "upper_dvh"
    direction: ClassVar[str | None] = "upper"
    goals: ClassVar[tuple[tuple[str, str], ...]] = (
        ("dpct", "<="), ("dcc", "<="), ("vgy", "<="), ("vgy_cc", "<="))

    @classmethod
    def from_goal(cls, spec: GoalSpec) -> Term:
        """The term for one resolved goal (see `Term.from_goal`).

        Parameters
        ----------
        spec : GoalSpec
            The resolved goal, its rows, weight and reference doses.

        Returns
        -------
        Term
            The goal's term.
        """
        limit, pct = cls._limit_and_pct(spec)
        if spec.goal.goal.metric.kind in ("dpct", "dcc") and pct * spec.rows.size / 100 < 1:
            # less than one voxel may exceed the limit (D0.03cc on coarse grids): a
            # dose-volume penalty would ignore the hottest voxel, so limit the maximum
            return UpperMax.from_goal(spec)
        return cls(limit_gy=limit, volume_pct=pct, **spec.fields)

    def residual(self, d):
        v = self.limit_gy
        return (d - v) * ((d > v) & (d <= self._d_x(d)))


@register
@dataclass(kw_only=True, eq=False)
class LowerDvh(_DoseVolume):
    """``D_x% >= v``."""

    kind: ClassVar[str] = "lower_dvh"
    direction: ClassVar[str | None] = "lower"
    goals: ClassVar[tuple[tuple[str, str], ...]] = (
        ("dpct", ">="), ("dcc", ">="), ("vgy", ">="), ("vgy_cc", ">="))

    def residual(self, d):
        v = self.limit_gy
        return (d - v) * ((d < v) & (d >= self._d_x(d)))
