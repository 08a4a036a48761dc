"""Objective terms of the fluence optimization: one class per kind, found in a registry.

Every term is a dimensionless penalty on a set of voxel rows: squared dose violations
divided by the square of a reference dose (the goal's value, or the prescription for
falloff/uniformity terms), averaged over the term's voxels. Dose-volume terms follow the
classic piecewise-quadratic form (Wu & Mohan, Med Phys 27:701, 2000): for ``D_x% <= v``
only the voxels above ``v`` that are not among the hottest x % allowed to exceed it are
penalized (those with ``v < d <= D_x%``); for ``D_x% >= v`` the voxels below ``v`` that
are not among the coldest (100 - x) % allowed (those with ``D_x% <= d < v``).

A term class says what it limits (``achieved``), in which ``direction`` (``"upper"``:
achieved <= limit, ``"lower"``: achieved >= limit, None: not a limit), its penalty and
gradient (``value_grad``), a Gauss-Newton curvature product (``curvature``, for Newton
steps) and which goal metrics it serves (``goals``: ``(metric kind, op)`` pairs).
`register` puts it in `TERMS` (by kind) and `GOAL_TERMS` (by goal metric): adding a term
kind touches one module, the one that defines the class (the built-in kinds: `atp.planning.terms`).

``value_grad`` and ``curvature`` use only operations that numpy arrays and torch tensors
share (the torch backend, `atp.backends.torch_objective`, calls them on tensors).
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

if TYPE_CHECKING:
    from atp.planning.resolve import ResolvedGoal

#: kind name -> term class
TERMS: dict[str, type[Term]] = {}
#: (metric kind, op) of a goal -> the term class that turns such goals into terms
GOAL_TERMS: dict[tuple[str, str], type[Term]] = {}


def register(cls: type[Term]) -> type[Term]:
    """Class decorator: make a term class known by its ``kind`` and its ``goals``.

    Parameters
    ----------
    cls : type of Term
        The term class; ValueError when its kind or goals belong to another class.

    Returns
    -------
    type of Term
        ``cls`` itself, now in `TERMS` and `GOAL_TERMS`.
    """
    if not cls.kind:
        raise ValueError(f"term class {cls.__name__} has no kind")
    if TERMS.get(cls.kind, cls) is not cls:
        raise ValueError(f"term kind '{cls.kind}' is already {TERMS[cls.kind].__name__}")
    for key in cls.goals:
        if GOAL_TERMS.get(key, cls) is not cls:
            raise ValueError(f"goals {key} are already turned into "
                             f"{GOAL_TERMS[key].__name__} terms")
    TERMS[cls.kind] = cls
    GOAL_TERMS.update({key: cls for key in cls.goals})
    return cls


def unregister(cls: type[Term]) -> None:
    """Remove a term class from the registry (tests that add a toy kind).

    Parameters
    ----------
    cls : type of Term
        The term class to forget (its kind and goals; absent entries are ignored).
    """
    if TERMS.get(cls.kind) is cls:
        del TERMS[cls.kind]
    for key in [k for k, c in GOAL_TERMS.items() if c is cls]:
        del GOAL_TERMS[key]


def make_term(kind: str, **fields) -> Term:
    """A term of the registered ``kind``; ``fields`` are the class's dataclass fields.

    Parameters
    ----------
    kind : str
        A registered kind name (a key of `TERMS`).
    **fields
        The term's fields (``rows``, ``limit_gy``, ``weight``, ...).

    Returns
    -------
    Term
        The new term.
    """
    if kind not in TERMS:
        raise ValueError(f"unknown objective kind '{kind}' (known: {sorted(TERMS)})")
    return TERMS[kind](**fields)


@functools.lru_cache(maxsize=1024)
def _order_index(n: int, q: float, method: str) -> int:
    """The index of numpy's ``percentile(x, q, method)`` in ``sort(x)``, ``x.size = n``."""
    return int(np.percentile(np.arange(n), q, method=method))


def _xp(a):
    """The array module of ``a``: numpy, or torch for the torch backend's tensors."""
    if isinstance(a, np.ndarray | np.generic | float | int):
        return np
    return sys.modules[type(a).__module__.split(".")[0]]


@dataclass(frozen=True)
class GoalSpec:
    """What a term class needs to turn one resolved goal into a term."""

    goal: ResolvedGoal
    rows: np.ndarray
    weight: float
    rx_max_gy: float
    voxel_cc: float
    goal_index: int

    @property
    def fields(self) -> dict:
        """The common term fields: rows, weight, reference dose, priority, label, index."""
        r, m = self.goal, self.goal.goal.metric
        ref = max(r.value if m.is_dose else m.param, 0.05 * self.rx_max_gy)
        return dict(rows=self.rows, weight=self.weight, ref_gy=ref, priority=r.goal.priority,
                    label=r.label, goal_index=self.goal_index)


@dataclass(kw_only=True, eq=False)
class Term:
    """One penalty on the doses of ``rows``. ``limit_gy``: a scalar or one value per row."""

    kind: ClassVar[str] = ""
    direction: ClassVar[str | None] = None
    goals: ClassVar[tuple[tuple[str, str], ...]] = ()
    voxelwise: ClassVar[bool] = False  # achieved is one value per row, not one number

    rows: np.ndarray
    limit_gy: float | np.ndarray
    weight: float = 1.0
    ref_gy: float = 1.0  # normalisation dose
    priority: int = 0
    label: str = ""
    goal_index: int | None = None  # index into the resolved goal list, if from a goal

    def __post_init__(self) -> None:
        self.rows = np.asarray(self.rows, dtype=np.int64)
        if np.unique(self.rows).size != self.rows.size:
            raise ValueError(f"objective '{self.label}': duplicate rows")
        if self.rows.size == 0:
            raise ValueError(f"objective '{self.label}': its structure has no voxel in the "
                             "dose grid")
        if not self.ref_gy > 0:
            raise ValueError(f"objective '{self.label}': reference dose must be > 0")

    @classmethod
    def from_goal(cls, spec: GoalSpec) -> Term:
        """The term for one resolved goal (the goal's value as the limit).

        Parameters
        ----------
        spec : GoalSpec
            The resolved goal, its rows, weight and reference doses.

        Returns
        -------
        Term
            The goal's term.
        """
        return cls(limit_gy=spec.goal.value, **spec.fields)

    # --- what a kind defines -------------------------------------------------------------
    def value_grad(self, d):
        """Penalty and its gradient with respect to ``d``, the doses of ``rows``.

        Parameters
        ----------
        d : np.ndarray
            Dose (Gy) of the term's ``rows``, (n,) (a torch tensor on the torch backend).

        Returns
        -------
        value : float
            The dimensionless penalty.
        grad : np.ndarray
            Its gradient (1/Gy), same shape as ``d``.
        """
        raise NotImplementedError

    def curvature(self, d, v):
        """Gauss-Newton Hessian of the penalty (w.r.t. ``d``) times ``v``.

        Parameters
        ----------
        d : np.ndarray
            Dose (Gy) of the term's ``rows``, (n,) (a torch tensor on the torch backend).
        v : np.ndarray
            A direction in dose space (Gy), same shape as ``d``.

        Returns
        -------
        np.ndarray
            The product, same shape as ``d``.
        """
        raise NotImplementedError

    def achieved(self, d: np.ndarray) -> float | np.ndarray:
        """The quantity the term limits, on the doses of ``rows`` (a float or per row).

        Parameters
        ----------
        d : np.ndarray
            Dose (Gy) of the term's ``rows``, (n,).

        Returns
        -------
        float or np.ndarray
            The achieved value (Gy): one number, or one per row for ``voxelwise`` terms.
        """
        raise NotImplementedError

    # --- generic, from direction and achieved --------------------------------------------
    def with_limit(self, limit_gy: float | np.ndarray, **changes) -> Term:
        """A copy with another limit (and any other field changed).

        Parameters
        ----------
        limit_gy : float or np.ndarray
            The new limit (Gy): a scalar or one value per row.
        **changes
            Other fields to change (``weight``, ``label``, ...).

        Returns
        -------
        Term
            The copy (same class).
        """
        return dataclasses.replace(self, limit_gy=limit_gy, **changes)

    def violation(self, d: np.ndarray) -> np.ndarray:
        """How far the achieved value lies on the wrong side of the limit (> 0: violated).

        Parameters
        ----------
        d : np.ndarray
            Dose (Gy) of the term's ``rows``, (n,).

        Returns
        -------
        np.ndarray
            The violation (Gy), float64: 0-d, or one per row for ``voxelwise`` terms.
            ValueError for a term without a ``direction``.
        """
        if self.direction is None:
            raise ValueError(f"objective '{self.label}' is not a limit")
        a = np.asarray(self.achieved(d), dtype=np.float64)
        gap = a - np.asarray(self.limit_gy, dtype=np.float64)
        return gap if self.direction == "upper" else -gap

    def piece_violation(self, d: np.ndarray) -> np.ndarray:
        """`violation` of each piece the penalty acts on (each voxel of a maximum or
        minimum limit, else the one achieved value): the augmented Lagrangian's
        constraints (`atp.planning.constrained`).

        Parameters
        ----------
        d : np.ndarray
            Dose (Gy) of the term's ``rows``, (n,).

        Returns
        -------
        np.ndarray
            The violation (Gy) of each piece, float64, 1-D.
        """
        return np.atleast_1d(self.violation(d))

    def held(self, d: np.ndarray, *, slack: float, weight: float) -> Term | None:
        """A copy that forbids doing worse than on ``d`` (beyond ``slack``).

        Its limit stays the term's own limit where it is met (so a met hard constraint
        stays met), else becomes the achieved value loosened by ``slack``. Terms without
        a direction are not held (they are not limits).

        Parameters
        ----------
        d : np.ndarray
            Dose (Gy) of the term's ``rows``, (n,).
        slack : float
            Relative loosening of a broken limit (0.02: 2 %).
        weight : float
            The copy's weight.

        Returns
        -------
        Term or None
            The held copy, labelled ``held: <label>``; None without a direction.
        """
        if self.direction is None:
            return None
        a = np.asarray(self.achieved(d))
        lim = np.asarray(self.limit_gy, dtype=np.float64)
        tol = 1e-4 * np.abs(lim) + 1e-9
        if self.direction == "upper":
            limit = np.where(a <= lim + tol, lim, a * (1.0 + slack))
        else:
            limit = np.where(a >= lim - tol, lim, a * (1.0 - slack))
        limit = float(limit) if np.ndim(limit) == 0 else limit
        return self.with_limit(limit, weight=weight, label=f"held: {self.label}")


def total_objective(terms: list[Term], dose_gy: np.ndarray) -> tuple[float, np.ndarray,
                                                                      np.ndarray]:
    """Normalized weighted sum (study eq. 2): sum_k w_k f_k / sum_k w_k.

    Returns the total, its gradient with respect to the full dose vector and each term's
    unweighted value.

    Parameters
    ----------
    terms : list of Term
        The terms; their ``rows`` index ``dose_gy``.
    dose_gy : np.ndarray
        Dose (Gy) at the rows of the dose matrix, (n_rows,).

    Returns
    -------
    total : float
        The normalized weighted sum (dimensionless).
    grad : np.ndarray
        Its gradient w.r.t. ``dose_gy`` (1/Gy), float64, (n_rows,).
    values : np.ndarray
        Each term's unweighted penalty, float64, (len(terms),).
    """
    wsum = float(sum(t.weight for t in terms))
    grad = np.zeros(dose_gy.shape[0], dtype=np.float64)
    values = np.empty(len(terms), dtype=np.float64)
    total = 0.0
    for i, t in enumerate(terms):
        f, g = t.value_grad(dose_gy[t.rows].astype(np.float64))
        values[i] = f
        total += t.weight * f
        grad[t.rows] += (t.weight / wsum) * g  # rows are unique within a term
    return total / wsum, grad, values


def total_curvature(terms: list[Term], dose_gy: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Gauss-Newton Hessian of `total_objective` (w.r.t. the dose) times ``v``.

    Parameters
    ----------
    terms : list of Term
        The terms; their ``rows`` index ``dose_gy``.
    dose_gy : np.ndarray
        Dose (Gy) at the rows of the dose matrix, (n_rows,).
    v : np.ndarray
        A direction in dose space (Gy), (n_rows,).

    Returns
    -------
    np.ndarray
        The product, float64, (n_rows,).
    """
    wsum = float(sum(t.weight for t in terms))
    out = np.zeros(dose_gy.shape[0], dtype=np.float64)
    for t in terms:
        out[t.rows] += (t.weight / wsum) * t.curvature(dose_gy[t.rows].astype(np.float64),
                                                       v[t.rows])
    return out


# The term kinds register themselves on import; importing them here keeps
# `atp.planning.objectives` the one place to find every kind.
from atp.planning.terms import (  # noqa: E402
    Falloff,
    LowerDvh,
    LowerMean,
    LowerMin,
    Uniformity,
    UpperDvh,
    UpperMax,
    UpperMean,
)

__all__ = [
    "GOAL_TERMS",
    "TERMS",
    "GoalSpec",
    "Term",
    "make_term",
    "register",
    "total_curvature",
    "total_objective",
    "unregister",
    "UpperMax",
    "LowerMin",
    "Falloff",
    "Uniformity",
    "UpperMean",
    "LowerMean",
    "UpperDvh",
    "LowerDvh",
]
