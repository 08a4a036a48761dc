"""`plan()`: goal-guided inverse optimization of one case, and its goal report.

Priority -> weight: ``weight = goal.weight * ladder ** (p_max - p)`` with ``p_max`` the
lowest priority in use (default ladder 10: each level counts ten times the next).
Two controls are added to the goals: F_CI, a normal-tissue fall-off limit
``Rx_max * (end + (start - end) * exp(-max(r - offset, 0) / falloff_mm))`` at distance ``r``
from the targets (``offset`` = ``falloff_offset_mm``, the "distance from target border" of
commercial normal-tissue objectives: a limit that falls from the target's own border
conflicts with its D95 coverage), and F_maxdose, an overdose penalty above
``maxdose_pct`` (106 %) of the highest Rx.
Hard (priority-1) goals still violated after a solve get their weight multiplied by
``p1_boost`` and the plan is re-optimized from where it stopped (``p1_rounds`` times).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from atp.cases import PatientCase
from atp.planning.goals import GoalError, GoalList
from atp.planning.objectives import GOAL_TERMS, Falloff, GoalSpec, Term, UpperMax
from atp.planning.optimizer import FluenceProblem, SmoothnessTerm, SolveResult
from atp.planning.report import GoalOutcome, goal_report
from atp.planning.resolve import ResolvedGoal, resolve_goals
from atp.planning.structures import structure_mask

#: Relative tolerance to which the lexicographic mode holds finished priority levels.
HOLD_RTOL = 1e-3


@dataclass(frozen=True)
class PlanSettings:
    """Optimization settings (all have study-like defaults)."""

    mode: str = "weighted"  # or "lexicographic"
    ladder: float = 10.0
    max_iter: int = 200
    falloff_start_pct: float = 100.0
    falloff_end_pct: float = 30.0
    falloff_mm: float = 15.0
    falloff_offset_mm: float = 5.0
    falloff_priority: int = 3
    maxdose_pct: float = 106.0
    maxdose_priority: int = 2
    smoothness: float = 0.0
    p1_rounds: int = 3
    p1_boost: float = 4.0
    lexicographic_slack: float = 0.02

    def __post_init__(self) -> None:
        if self.mode not in ("weighted", "lexicographic"):
            raise ValueError(f"PlanSettings.mode: '{self.mode}' is not weighted/lexicographic")
        if not self.falloff_offset_mm >= 0.0:
            raise ValueError("PlanSettings.falloff_offset_mm must be >= 0")
        if not self.ladder >= 1.0:
            raise ValueError("PlanSettings.ladder must be >= 1")


@dataclass
class PlanResult:
    """Fluence, dose on the case grid, the goal report and how the solve went."""

    fluence: np.ndarray
    dose_gy: np.ndarray
    report: list[GoalOutcome]
    resolved: list[ResolvedGoal]
    skipped: list[str]
    objective_history: list[float]
    n_iterations: int
    n_evaluations: int
    wall_s: float
    phases: list[dict] = field(default_factory=list)

    @property
    def all_p1_met(self) -> bool:
        return all(o.met for o in self.report if o.priority == 1)

    @property
    def n_goals_met(self) -> int:
        return sum(bool(o.met) for o in self.report)

    def summary(self) -> str:
        p1 = [o for o in self.report if o.priority == 1]
        bad = [o.label for o in p1 if not o.met]
        head = (f"{self.n_goals_met} of {len(self.report)} goals met; "
                + ("all P1 constraints met" if not bad else f"P1 VIOLATED: {', '.join(bad)}"))
        return head


def _rows(influence) -> tuple[np.ndarray, int]:
    vi = np.asarray(influence.voxel_index, dtype=np.int64)
    return vi, int(np.prod(influence.grid.shape))


def build_terms(case: PatientCase, influence, resolved: list[ResolvedGoal],
                settings: PlanSettings) -> list[Term]:
    """Objective terms for the resolved goals plus the F_CI and F_maxdose controls."""
    vi, n_grid = _rows(influence)
    if tuple(influence.grid.shape) != case.shape:
        raise ValueError(f"patient {case.patient_id}: influence grid {influence.grid.shape} "
                         f"!= case grid {case.shape}; plan on the dose grid's case")
    row_of = np.full(n_grid, -1, dtype=np.int64)
    row_of[vi] = np.arange(vi.size)

    def rows(mask: np.ndarray) -> np.ndarray:
        r = row_of[np.flatnonzero(mask.ravel())]
        return np.sort(r[r >= 0])

    rx_max = case.max_prescription_gy
    if rx_max is None:
        raise GoalError(f"patient {case.patient_id}: no prescription to plan for")
    prios = [r.goal.priority for r in resolved] + [settings.falloff_priority,
                                                   settings.maxdose_priority]
    p_max = max(prios)

    def weight(p: int, w: float = 1.0) -> float:
        return w * settings.ladder ** (p_max - p)

    voxel_cc = case.voxel_volume_cc
    terms: list[Term] = []
    for gi, r in enumerate(resolved):
        m, op = r.goal.metric, r.goal.op
        rr = rows(structure_mask(case, r.roi))
        if rr.size == 0:
            continue
        cls = GOAL_TERMS.get((m.kind, op))
        if cls is None:
            raise GoalError(f"goal {r.label}: {m.name} with '{op}' cannot be optimized")
        terms.append(cls.from_goal(GoalSpec(
            goal=r, rows=rr, weight=weight(r.goal.priority, r.goal.weight), rx_max_gy=rx_max,
            voxel_cc=voxel_cc, goal_index=gi)))
    dist = case.distance_to_targets_mm()
    nt = rows(case.body_mask & ~case.target_union())
    s = settings
    beyond_mm = np.maximum(dist.ravel()[vi[nt]] - s.falloff_offset_mm, 0.0)
    limit = rx_max * (s.falloff_end_pct + (s.falloff_start_pct - s.falloff_end_pct)
                      * np.exp(-beyond_mm / s.falloff_mm)) / 100.0
    terms.append(Falloff(rows=nt, limit_gy=limit, weight=weight(s.falloff_priority),
                         ref_gy=rx_max, priority=s.falloff_priority, label="F_CI falloff"))
    terms.append(UpperMax(rows=np.arange(vi.size), limit_gy=rx_max * s.maxdose_pct / 100,
                          weight=weight(s.maxdose_priority), ref_gy=rx_max,
                          priority=s.maxdose_priority, label=f"F_maxdose {s.maxdose_pct:g}% Rx"))
    return terms


def plan(case: PatientCase, influence, goal_list: GoalList, *,
         predicted_dose_gy: np.ndarray | None = None,
         tolerances: Mapping[str, float] | None = None,
         settings: PlanSettings | None = None,
         warm_start: np.ndarray | None = None) -> PlanResult:
    """Plan one case: resolve goals, optimize the fluence, report every goal.

    ``influence`` (an `atp.dose.DoseInfluence`) provides ``matrix`` (voxels x beamlets),
    ``voxel_index`` (flat grid index of each row) and ``grid``; for the smoothness term
    also ``beamlet_beam``, ``beamlet_uv_mm`` and ``bixel_mm``. ``warm_start`` is a
    previous fluence (re-optimization after a goal edit); otherwise the solve starts
    from a uniform fluence.
    """
    settings = settings or PlanSettings()
    t0 = time.perf_counter()
    resolved, skipped = resolve_goals(case, goal_list, predicted_dose_gy=predicted_dose_gy,
                                      tolerances=tolerances)
    terms = build_terms(case, influence, resolved, settings)
    problem = FluenceProblem(influence.matrix)
    vi, n_grid = _rows(influence)
    in_target = case.target_union().ravel()[vi]
    w0 = problem.uniform_fluence(np.flatnonzero(in_target), case.max_prescription_gy)
    if warm_start is not None:
        w0 = np.asarray(warm_start, dtype=np.float32)
        if w0.shape != (problem.n_beamlets,):
            raise ValueError(f"warm_start has {w0.shape} weights, the beams have "
                             f"{problem.n_beamlets} beamlets")
    smooth = None
    if settings.smoothness > 0:
        from atp.planning.optimizer import neighbour_pairs

        pairs = neighbour_pairs(influence.beamlet_beam, influence.beamlet_uv_mm,
                                bixel_mm=influence.bixel_mm)
        smooth = SmoothnessTerm(pairs, settings.smoothness, float(w0.mean()))
    if settings.mode == "weighted":
        results = _weighted(problem, terms, resolved, w0, settings, smooth,
                            lambda w: _p1_unmet(case, influence, problem, resolved, w))
    else:
        results = _lexicographic(problem, terms, w0, settings, smooth)
    last = results[-1][1]
    dose = np.zeros(n_grid, dtype=np.float32)
    dose[vi] = problem.dose(last.fluence)
    dose = dose.reshape(case.shape)
    report = goal_report(case, dose, resolved)
    return PlanResult(
        fluence=last.fluence, dose_gy=dose, report=report, resolved=resolved, skipped=skipped,
        objective_history=[f for _, r in results for f in r.history],
        n_iterations=sum(r.n_iterations for _, r in results),
        n_evaluations=sum(r.n_evaluations for _, r in results),
        wall_s=time.perf_counter() - t0,
        phases=[{"phase": name, "objective": r.objective, "iterations": r.n_iterations,
                 "evaluations": r.n_evaluations, "wall_s": r.wall_s} for name, r in results])


def _p1_unmet(case, influence, problem, resolved, w) -> set[int]:
    """Indices of the resolved priority-1 goals that the fluence ``w`` does not meet."""
    vi, n_grid = _rows(influence)
    dose = np.zeros(n_grid, dtype=np.float32)
    dose[vi] = problem.dose(w)
    p1 = [i for i, r in enumerate(resolved) if r.goal.priority == 1]
    report = goal_report(case, dose.reshape(case.shape), [resolved[i] for i in p1])
    return {i for i, o in zip(p1, report, strict=True) if not o.met}


def _weighted(problem, terms, resolved, w0, s: PlanSettings, smooth, p1_unmet):
    results = [("weighted", problem.solve(terms, w0, max_iter=s.max_iter, smooth=smooth))]
    for k in range(s.p1_rounds):
        bad = p1_unmet(results[-1][1].fluence)
        if not bad:
            break
        for t in terms:
            if t.goal_index in bad:
                t.weight *= s.p1_boost
        results.append((f"p1_boost_{k + 1}", problem.solve(
            terms, results[-1][1].fluence, max_iter=s.max_iter, smooth=smooth)))
    return results


def _lexicographic(problem, terms, w0, s: PlanSettings, smooth):
    """Optimize priority levels in order, holding every finished level's goals.

    After level k is optimized, each of its terms is added to all later phases as a
    held copy (see `Term.held`): its limit is the goal's own when met, else the
    achieved value loosened by ``lexicographic_slack``. Held terms carry a large weight,
    raised tenfold (up to three times) while any of them is violated by more than
    ``HOLD_RTOL`` (0.1 %): the penalty method holds a level to within that tolerance.
    """
    levels = sorted({t.priority for t in terms})
    held_terms: list[Term] = []
    results: list[tuple[str, SolveResult]] = []
    w = w0
    for level in levels:
        level_terms = [t for t in terms if t.priority == level]
        big = 100.0 * max(t.weight for t in terms)
        for attempt in range(4):
            for t in held_terms:
                t.weight = big * 10.0 ** attempt
            r = problem.solve(level_terms + held_terms, w, max_iter=s.max_iter, smooth=smooth)
            w = r.fluence
            if not _held_violated(held_terms, problem.dose(w)):
                break
        results.append((f"priority_{level}", r))
        dose = problem.dose(w)
        held_terms += [h for t in level_terms
                       if (h := t.held(dose[t.rows], slack=s.lexicographic_slack, weight=big))]
    return results


def _held_violated(held_terms: list[Term], dose: np.ndarray, *, rtol: float = HOLD_RTOL
                   ) -> bool:
    for t in held_terms:
        tol = rtol * np.abs(np.asarray(t.limit_gy, dtype=np.float64)) + 1e-6
        if np.any(t.violation(dose[t.rows]) > tol):
            return True
    return False
