"""Hard limits for the planner: an augmented Lagrangian around the bound-constrained solve.

Hard terms (priority-1 goals; in lexicographic mode also the held terms of finished
levels) keep their squared penalty, but with a shifted limit (the Powell-Hestenes-
Rockafellar multiplier method in its shift form): after each solve, each piece of a hard
term (each voxel of a maximum or minimum limit, else the term's achieved value) moves
its shift by its violation, ``s <- max(0, s + g)``, and the limit the solver sees is
``limit - s`` (upper) or ``limit + s`` (lower). The multiplier is ``lambda = c s`` with
``c`` the penalty's curvature, so a finite weight holds a limit exactly once the shifts
have converged; the weight grows by ``boost`` (shifts divided by it, multipliers kept)
when a round did not cut the worst violation by 4.

When the rounds end with a limit still broken, `repair` moves the fluence along the
segment towards a witness that meets every limit (the previous level's plan, or a solve
on the hard terms alone) to the first point that meets them: for limits that are convex
in the fluence (maximum, minimum and mean dose) that point meets them all. If the solve on
the hard terms alone cannot meet them either, the set is infeasible (`achievable`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from atp.planning.objectives import Term
from atp.planning.optimizer import FluenceProblem, SolveResult

Solve = Callable[[list[Term], np.ndarray], SolveResult]


def _tolerance(t: Term, rtol: float) -> np.ndarray:
    return rtol * np.abs(np.asarray(t.limit_gy, dtype=np.float64)) + 1e-6


def broken(terms: Sequence[Term], dose: np.ndarray, rtol: float | Sequence[float]
           ) -> list[int]:
    """Indices of the ``terms`` whose achieved value on ``dose`` breaks the limit by more
    than ``rtol`` (relative to the limit; one value or one per term).

    Parameters
    ----------
    terms : Sequence of Term
        Terms with a direction (limits).
    dose : np.ndarray
        Dose (Gy) at the matrix rows, (n_rows,) (`FluenceProblem.dose`).
    rtol : float or Sequence of float
        Relative tolerance on each limit (one value, or one per term).

    Returns
    -------
    list of int
        Indices into ``terms`` of the broken ones.
    """
    rtols = np.broadcast_to(np.asarray(rtol, dtype=np.float64), (len(terms),))
    return [i for i, t in enumerate(terms)
            if np.any(t.violation(dose[t.rows]) > _tolerance(t, rtols[i]))]


def worst_violation(terms: Sequence[Term], dose: np.ndarray) -> float:
    """The largest violation relative to its limit over ``terms`` (0 when all are met).

    Parameters
    ----------
    terms : Sequence of Term
        Terms with a direction (limits).
    dose : np.ndarray
        Dose (Gy) at the matrix rows, (n_rows,) (`FluenceProblem.dose`).

    Returns
    -------
    float
        The largest violation divided by its limit (a fraction; 0.0 when none is
        violated).
    """
    out = 0.0
    for t in terms:
        v = t.violation(dose[t.rows]) / np.maximum(np.abs(np.asarray(t.limit_gy)), 1e-6)
        out = max(out, float(np.max(v)))
    return out


def repair(problem: FluenceProblem, terms: Sequence[Term], w: np.ndarray,
           witness: np.ndarray, rtol, *, steps: int = 14) -> tuple[np.ndarray, bool]:
    """The point nearest ``w`` on the segment to ``witness`` that meets every term.

    Returns ``(fluence, met)``; ``w`` unchanged when it already meets them, and
    ``met`` False when not even the witness does.

    Parameters
    ----------
    problem : FluenceProblem
        The dose matrix and objective.
    terms : Sequence of Term
        The limits to meet.
    w : np.ndarray
        Fluence (beamlet weights) to repair, (n_beamlets,).
    witness : np.ndarray
        A fluence that meets every limit, (n_beamlets,).
    rtol : float or Sequence of float
        Relative tolerance on each limit (`broken`).
    steps : int, optional
        Bisection steps along the segment.

    Returns
    -------
    fluence : np.ndarray
        The repaired fluence, float32, (n_beamlets,).
    met : bool
        Whether it meets every limit.
    """
    w = np.asarray(w, np.float32)
    if not broken(terms, problem.dose(w), rtol):
        return w, True
    witness = np.asarray(witness, np.float32)
    if broken(terms, problem.dose(witness), rtol):
        return w, False
    lo, hi = 0.0, 1.0  # lo breaks a limit, hi meets them all
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        if broken(terms, problem.dose((1 - mid) * w + mid * witness), rtol):
            lo = mid
        else:
            hi = mid
    return ((1 - hi) * w + hi * witness).astype(np.float32), True


def scale_to_limits(problem: FluenceProblem, terms: Sequence[Term], w: np.ndarray,
                    rtol) -> tuple[np.ndarray, bool]:
    """The largest fraction of ``w`` that meets every broken term, when all are upper limits.

    Dose is linear in the fluence, so scaling it down lowers every dose metric; a broken
    lower limit cannot be met this way (returns ``(w, False)``).

    Parameters
    ----------
    problem : FluenceProblem
        The dose matrix and objective.
    terms : Sequence of Term
        The limits to meet.
    w : np.ndarray
        Fluence (beamlet weights), (n_beamlets,).
    rtol : float or Sequence of float
        Relative tolerance on each limit (`broken`).

    Returns
    -------
    fluence : np.ndarray
        The scaled fluence (``w`` when it cannot help), float32, (n_beamlets,).
    met : bool
        Whether it meets every term.
    """
    if any(terms[i].direction != "upper" for i in broken(terms, problem.dose(w), rtol)):
        return np.asarray(w, np.float32), False
    # the segment to zero fluence, which meets every upper limit: `repair` bisects it
    return repair(problem, terms, w, np.zeros_like(w), rtol, steps=20)


def solve_hard(problem: FluenceProblem, terms: list[Term], hard: Sequence[int],
               w0: np.ndarray, solve: Solve, *, rounds: int, boost: float,
               rtol: float | Sequence[float], name: str, scale_rtol: float = 0.0
               ) -> tuple[np.ndarray, list[tuple[str, SolveResult]], bool]:
    """Minimize the weighted sum of ``terms`` with ``terms[i]`` for i in ``hard`` held.

    Round 0 solves ``terms`` as given; each later round (at most ``rounds``) shifts the
    hard limits by the violations of the previous one. The rounds also end when three of
    them cut the worst violation by less than 10 % (an infeasible set looks like that).
    When round 0 leaves only upper limits broken, none by more than ``scale_rtol`` of its
    limit, the fluence is scaled down until they hold instead (`scale_to_limits`): every
    dose, the targets' too, falls by about that fraction at most, where a multiplier
    round costs about as many evaluations as round 0 did. Returns the fluence, the solves
    (named ``name``, ``name_al1``, ...) and whether every hard term is met.

    Parameters
    ----------
    problem : FluenceProblem
        The dose matrix and objective.
    terms : list of Term
        All terms of the objective.
    hard : Sequence of int
        Indices into ``terms`` of the hard limits.
    w0 : np.ndarray
        Start fluence (beamlet weights), (n_beamlets,).
    solve : callable
        ``solve(terms, w0) -> SolveResult``, the bound-constrained solve to repeat.
    rounds : int
        At most this many multiplier rounds after the first solve.
    boost : float
        Penalty weight growth (>= 1) when a round did not cut the worst violation.
    rtol : float or Sequence of float
        Relative tolerance on each hard limit (one value, or one per index of ``hard``).
    name : str
        Name of the first solve (later ones get ``_al<k>``).
    scale_rtol : float, optional
        Largest relative violation of upper limits that round 0 may leave to a scaling
        of the fluence (0: never scale).

    Returns
    -------
    fluence : np.ndarray
        The last solve's fluence, (n_beamlets,).
    solves : list of (str, SolveResult)
        Every solve, named.
    met : bool
        Whether every hard term is met.
    """
    hard = list(hard)
    base = [terms[i] for i in hard]
    rtols = np.broadcast_to(np.asarray(rtol, dtype=np.float64), (len(hard),))
    shifts = [np.zeros(1) for _ in hard]
    weights = [t.weight for t in base]
    results: list[tuple[str, SolveResult]] = []
    current = list(terms)
    w = np.asarray(w0, np.float32)
    previous = np.inf
    worst_seen: list[float] = []
    for k in range(rounds + 1):
        r = solve(current, w)
        results.append((name if k == 0 else f"{name}_al{k}", r))
        w = r.fluence
        dose = problem.dose(w)
        if not hard or not broken(base, dose, rtols):
            return w, results, True
        if k == rounds:
            break
        worst = worst_violation(base, dose)
        if k == 0 and worst <= scale_rtol:
            w_scaled, met = scale_to_limits(problem, base, w, rtols)
            if met:
                return w_scaled, results, True
        worst_seen.append(worst)
        if len(worst_seen) > 3 and worst > 0.9 * worst_seen[-4]:
            break
        grow = worst > 0.25 * previous
        previous = worst
        for j, (i, t) in enumerate(zip(hard, base, strict=True)):
            s = np.maximum(shifts[j] + t.piece_violation(dose[t.rows]), 0.0)
            if grow:
                weights[j] *= boost
                s = s / boost
            shifts[j] = s
            sign = 1.0 if t.direction == "upper" else -1.0
            limit = np.asarray(t.limit_gy, dtype=np.float64) - sign * s
            limit = float(limit[0]) if limit.size == 1 else limit
            current[i] = t.with_limit(limit, weight=weights[j])
    return w, results, False


def achievable(problem: FluenceProblem, hard_terms: list[Term], index: int, w0: np.ndarray,
               solve: Solve, *, rounds: int, boost: float, rtol: float
               ) -> tuple[np.ndarray, list[tuple[str, SolveResult]]]:
    """A fluence with ``hard_terms[index]`` as tight as it gets while the other hard terms
    are met: its penalty minimized under the others as hard limits. Returns the fluence
    and the solves.

    Parameters
    ----------
    problem : FluenceProblem
        The dose matrix and objective.
    hard_terms : list of Term
        The hard limits (priority-1 terms).
    index : int
        Index into ``hard_terms`` of the term to tighten.
    w0 : np.ndarray
        Start fluence (beamlet weights), (n_beamlets,).
    solve : callable
        ``solve(terms, w0) -> SolveResult``, the bound-constrained solve to repeat.
    rounds : int
        At most this many multiplier rounds after the first solve.
    boost : float
        Penalty weight growth (>= 1) when a round did not cut the worst violation.
    rtol : float
        Relative tolerance on the other limits.

    Returns
    -------
    fluence : np.ndarray
        The fluence reached, (n_beamlets,).
    solves : list of (str, SolveResult)
        The solves, named ``achievable_<index>...``.
    """
    others = [i for i in range(len(hard_terms)) if i != index]
    w, results, _ = solve_hard(problem, hard_terms, others, w0, solve, rounds=rounds,
                               boost=boost, rtol=rtol, name=f"achievable_{index}")
    return w, results
