"""`plan()`: goal-guided inverse optimization of one case, and its goal report.

Priority -> weight: ``weight = goal.weight * ladder ** (p_max - p)`` with ``p_max`` the
lowest priority in use (default ladder 10: each level counts ten times the next).
Two controls are added to the goals: F_CI, a normal-tissue fall-off limit
``Rx_max * (end + (start - end) * exp(-max(r - offset, 0) / falloff_mm))`` at distance ``r``
from the targets (``offset`` = ``falloff_offset_mm``, the "distance from target border" of
commercial normal-tissue objectives: a limit that falls from the target's own border
conflicts with its D95 coverage), and F_maxdose, an overdose penalty above
``maxdose_pct`` (106 %) of the highest Rx.
Priority-1 goals are hard limits (`atp.planning.constrained`): an augmented Lagrangian
(``p1_rounds`` multiplier rounds, penalty growth ``p1_boost``) holds them whenever they can
all be met together (in the weighted mode, upper limits that the first solve breaks by at
most ``p1_scale_pct`` are met by scaling the fluence down instead of more rounds); when
they cannot, a solve on them alone shows it, and the plan holds them at the values that
solve reached and names each broken goal with the tightest value it can reach while the
other priority-1 goals are met (`PlanResult.p1_infeasible`).
Solver, stop rule and backend: `PlanSettings`, `atp.planning.optimizer`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from atp.cases import PatientCase
from atp.planning.constrained import achievable, broken, repair, solve_hard
from atp.planning.goals import GoalError, GoalList
from atp.planning.objectives import GOAL_TERMS, Falloff, GoalSpec, Term, UpperMax
from atp.planning.optimizer import BACKENDS, FluenceProblem, SolveResult
from atp.planning.report import MET_RTOL, GoalOutcome, goal_report
from atp.planning.resolve import ResolvedGoal, resolve_goals
from atp.planning.smoothness import SmoothnessTerm, neighbour_pairs
from atp.planning.solvers import SOLVERS
from atp.planning.structures import structure_mask

#: Relative tolerance to which the lexicographic mode holds finished priority levels.
HOLD_RTOL = 1e-3


@dataclass(frozen=True)
class PlanSettings:
    """Optimization settings (all have study-like defaults)."""

    mode: str = "weighted"  # or "lexicographic"
    ladder: float = 10.0
    max_iter: int = 1500  # per solve: a cap; the goal-metric stop rule ends it first
    falloff_start_pct: float = 100.0
    falloff_end_pct: float = 30.0
    falloff_mm: float = 15.0
    falloff_offset_mm: float = 5.0
    falloff_priority: int = 3
    maxdose_pct: float = 106.0
    maxdose_priority: int = 2
    smoothness: float = 0.0
    p1_rounds: int = 10  # augmented-Lagrangian rounds for hard limits (0: soft P1 goals)
    p1_boost: float = 4.0  # penalty growth when a round did not cut the worst violation
    p1_scale_pct: float = 0.5  # upper P1 limits broken by at most this: scale the fluence
    lexicographic_slack: float = 0.02
    solver: str = "lbfgsb"  # see atp.planning.solvers.SOLVERS
    stop_gy: float = 0.1  # stop when no goal metric moved more than this ...
    stop_window: int = 30  # ... over the last this many iterations
    lbfgs_memory: int = 100  # L-BFGS-B correction pairs (scipy's maxcor)
    backend: str = "numpy"  # or "torch" (atp.backends.torch_objective)
    device: str = "cpu"  # torch backend: "cpu" or "cuda"
    threads: int = 0  # numpy backend: threads for the sparse products (0: every CPU)

    def __post_init__(self) -> None:
        if self.mode not in ("weighted", "lexicographic"):
            raise ValueError(f"PlanSettings.mode: '{self.mode}' is not weighted/lexicographic")
        if self.solver not in SOLVERS:
            raise ValueError(f"PlanSettings.solver: '{self.solver}' is not one of "
                             f"{sorted(SOLVERS)}")
        if self.backend not in ("numpy", *BACKENDS):
            raise ValueError(f"PlanSettings.backend: '{self.backend}' is not one of "
                             f"{['numpy', *BACKENDS]}")
        if self.device != "cpu" and not self.device.startswith("cuda"):
            raise ValueError(f"PlanSettings.device: '{self.device}' is not cpu or cuda[:n]")
        if self.backend == "numpy" and self.device != "cpu":
            raise ValueError("PlanSettings.device: the numpy backend runs on the cpu")
        if self.lbfgs_memory < 1:
            raise ValueError(f"PlanSettings.lbfgs_memory must be >= 1, not {self.lbfgs_memory}")
        if self.threads < 0:
            raise ValueError(f"PlanSettings.threads must be >= 0 (0: every CPU), not "
                             f"{self.threads}")
        if self.stop_gy < 0:
            raise ValueError(f"PlanSettings.stop_gy must be >= 0, not {self.stop_gy}")
        if self.stop_window < 1:
            raise ValueError(f"PlanSettings.stop_window must be >= 1, not {self.stop_window}")
        if self.p1_rounds < 0 or not self.p1_boost >= 1.0:
            raise ValueError("PlanSettings.p1_rounds must be >= 0 and p1_boost >= 1")
        if not 0.0 <= self.p1_scale_pct < 100.0:
            raise ValueError(f"PlanSettings.p1_scale_pct must be in [0, 100), not "
                             f"{self.p1_scale_pct}")
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
    #: goal index -> tightest achievable value, for each priority-1 goal that cannot be
    #: met together with the others (empty when the hard limits are feasible)
    p1_infeasible: dict[int, float] = field(default_factory=dict)

    @property
    def all_p1_met(self) -> bool:
        """Whether every priority-1 goal is met."""
        return all(o.met for o in self.report if o.priority == 1)

    @property
    def p1_feasible(self) -> bool:
        """False when the priority-1 goals were found unable to hold together."""
        return not self.p1_infeasible

    @property
    def n_goals_met(self) -> int:
        """How many goals of the report are met."""
        return sum(bool(o.met) for o in self.report)

    def summary(self) -> str:
        """One line: goals met, and the priority-1 state (met, violated or infeasible).

        Returns
        -------
        str
            E.g. ``12 of 14 goals met; all P1 constraints met``.
        """
        p1 = [o for o in self.report if o.priority == 1]
        head = f"{self.n_goals_met} of {len(self.report)} goals met; "
        if self.p1_infeasible:
            return head + "P1 INFEASIBLE: " + "; ".join(
                f"{self.resolved[i].label} (achievable {a:.4g} "
                f"{self.resolved[i].goal.metric.unit})"
                for i, a in self.p1_infeasible.items())
        bad = [o.label for o in p1 if not o.met]
        return head + ("all P1 constraints met" if not bad else f"P1 VIOLATED: {', '.join(bad)}")


def _rows(influence) -> tuple[np.ndarray, int]:
    vi = np.asarray(influence.voxel_index, dtype=np.int64)
    return vi, int(np.prod(influence.grid.shape))


def build_terms(case: PatientCase, influence, resolved: list[ResolvedGoal],
                settings: PlanSettings) -> list[Term]:
    """Objective terms for the resolved goals plus the F_CI and F_maxdose controls.

    Parameters
    ----------
    case : PatientCase
        The case, on the dose grid (its shape must be ``influence.grid.shape``).
    influence : atp.dose.DoseInfluence
        The dose matrix's ``voxel_index`` and ``grid`` (rows of each structure).
    resolved : list of ResolvedGoal
        The goals (`resolve_goals`); those with no voxel in the matrix are left out.
    settings : PlanSettings
        Priority ladder and the F_CI / F_maxdose settings.

    Returns
    -------
    list of Term
        One term per goal, then F_CI (falloff) and F_maxdose.
    """
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

    Parameters
    ----------
    case : PatientCase
        The case on the dose grid, with ROIs and prescriptions.
    influence : atp.dose.DoseInfluence
        The beams' dose-influence matrix and its maps (see above).
    goal_list : GoalList
        The prioritized goals.
    predicted_dose_gy : np.ndarray, optional
        Predicted dose (Gy) on the case grid, (z, y, x); None: the organ goals that
        would read it take the list's ``value`` instead (the manual / MNL plan).
    tolerances : Mapping of str to float, optional
        Tolerance overrides (%) by ROI or goal name.
    settings : PlanSettings, optional
        Optimization settings; default ``PlanSettings()``.
    warm_start : np.ndarray, optional
        Start fluence (beamlet weights), (n_beamlets,).

    Returns
    -------
    PlanResult
        Fluence, dose (Gy) on the case grid, goal report and solve record.
    """
    settings = settings or PlanSettings()
    t0 = time.perf_counter()
    resolved, skipped = resolve_goals(case, goal_list, predicted_dose_gy=predicted_dose_gy,
                                      tolerances=tolerances)
    terms = build_terms(case, influence, resolved, settings)
    problem = FluenceProblem(influence.matrix, backend=settings.backend, device=settings.device,
                             threads=settings.threads)
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
        pairs = neighbour_pairs(influence.beamlet_beam, influence.beamlet_uv_mm,
                                bixel_mm=influence.bixel_mm)
        smooth = SmoothnessTerm(pairs, settings.smoothness, float(w0.mean()))
    s = settings

    def solve(ts: list[Term], w: np.ndarray) -> SolveResult:
        return problem.solve(ts, w, max_iter=s.max_iter, smooth=smooth, solver=s.solver,
                             stop_gy=s.stop_gy, stop_window=s.stop_window,
                             memory=s.lbfgs_memory)

    def full_dose(w: np.ndarray) -> np.ndarray:
        dose = np.zeros(n_grid, dtype=np.float32)
        dose[vi] = problem.dose(w)
        return dose.reshape(case.shape)

    drive = _weighted if s.mode == "weighted" else _lexicographic
    w, results, unmet_p1 = drive(problem, terms, w0, s, solve)
    infeasible = {}
    for gi, (wj, extra) in unmet_p1.items():  # the tightest value of each, in its metric
        results += extra
        infeasible[gi] = goal_report(case, full_dose(wj), [resolved[gi]])[0].achieved
    dose = full_dose(w)
    report = [replace(o, achievable=infeasible.get(i)) if i in infeasible else o
              for i, o in enumerate(goal_report(case, dose, resolved))]
    return PlanResult(
        fluence=np.asarray(w, np.float32), dose_gy=dose, report=report, resolved=resolved,
        skipped=skipped, objective_history=[f for _, r in results for f in r.history],
        n_iterations=sum(r.n_iterations for _, r in results),
        n_evaluations=sum(r.n_evaluations for _, r in results),
        wall_s=time.perf_counter() - t0,
        phases=[{"phase": name, "objective": r.objective, "iterations": r.n_iterations,
                 "evaluations": r.n_evaluations, "hess_vec": r.n_hess_vec,
                 "wall_s": r.wall_s} for name, r in results],
        p1_infeasible=infeasible)


def _hard_p1(problem, terms, hard, w, s: PlanSettings, solve, results):
    """Meet the priority-1 terms ``terms[i], i in hard`` after a solve that left some
    broken: a solve on them alone; if it meets them, move ``w`` towards it until they
    hold; if not, they are infeasible. Returns the (possibly relaxed) hard limits, a
    witness that meets them and, per broken goal index, (fluence at its tightest
    achievable value, solves)."""
    p1 = [terms[i] for i in hard]
    w_alone, res, feasible = solve_hard(problem, p1, range(len(p1)), w, solve,
                                        rounds=s.p1_rounds, boost=s.p1_boost, rtol=MET_RTOL,
                                        name="p1_alone")
    results += res
    if feasible:
        return p1, w_alone, {}
    dose = problem.dose(w_alone)
    unmet = {}
    relaxed = list(p1)
    for j in broken(p1, dose, MET_RTOL):
        if p1[j].goal_index is not None:
            unmet[p1[j].goal_index] = achievable(problem, p1, j, w_alone, solve,
                                                 rounds=s.p1_rounds, boost=s.p1_boost,
                                                 rtol=MET_RTOL)
        # hold it where the solve on the hard limits alone left it, loosened by the
        # lexicographic slack (the same hold as a finished level's): the solve meets these
        relaxed[j] = p1[j].held(dose[p1[j].rows], slack=s.lexicographic_slack,
                                weight=p1[j].weight)
    return relaxed, w_alone, unmet


def _weighted(problem, terms, w0, s: PlanSettings, solve):
    """The weighted sum with the priority-1 goals as hard limits."""
    hard = [i for i, t in enumerate(terms) if t.priority == 1 and t.direction is not None]
    w, results, met = solve_hard(problem, terms, hard, w0, solve, rounds=s.p1_rounds,
                                 boost=s.p1_boost, rtol=MET_RTOL, name="weighted",
                                 scale_rtol=s.p1_scale_pct / 100 if s.p1_rounds else 0.0)
    if met or s.p1_rounds == 0:
        return w, results, {}
    limits, witness, unmet = _hard_p1(problem, terms, hard, w, s, solve, results)
    if unmet:  # hold the relaxed limits, starting from the plan so far
        current = list(terms)
        for i, t in zip(hard, limits, strict=True):
            current[i] = t
        w, res, met = solve_hard(problem, current, hard, w, solve, rounds=s.p1_rounds,
                                 boost=s.p1_boost, rtol=MET_RTOL, name="weighted_relaxed")
        results += res
    w, _ = repair(problem, limits, w, witness, MET_RTOL)
    return w, results, unmet


def _lexicographic(problem, terms, w0, s: PlanSettings, solve):
    """Optimize priority levels in order, holding every finished level's goals.

    After level k is optimized, each of its terms is added to all later phases as a
    held copy (see `Term.held`): its limit is the goal's own when met, else the achieved
    value loosened by ``lexicographic_slack``. Held terms are hard limits, like the
    priority-1 goals of the weighted mode (`atp.planning.constrained`), met to
    ``MET_RTOL`` when they come from priority 1 and to ``HOLD_RTOL`` (0.1 %) otherwise;
    the first level's solve is the solve on the priority-1 goals alone.
    """
    levels = sorted({t.priority for t in terms})
    held_terms: list[Term] = []
    results: list[tuple[str, SolveResult]] = []
    unmet: dict = {}
    w = w0
    for level in levels:
        level_terms = [t for t in terms if t.priority == level]
        big = 100.0 * max(t.weight for t in terms)
        for t in held_terms:
            t.weight = big
        current = level_terms + held_terms
        hard = list(range(len(level_terms), len(current)))
        rtol = [MET_RTOL if t.priority == 1 else HOLD_RTOL for t in held_terms]
        w_start = w
        w, res, met = solve_hard(problem, current, hard, w, solve, rounds=s.p1_rounds,
                                 boost=s.p1_boost, rtol=rtol, name=f"priority_{level}")
        results += res
        if not met and s.p1_rounds > 0:
            w, _ = repair(problem, held_terms, w, w_start, rtol)
        if level == 1 and s.p1_rounds > 0:  # the solve on the hard goals alone
            p1 = [i for i, t in enumerate(level_terms) if t.direction is not None]
            if broken([level_terms[i] for i in p1], problem.dose(w), MET_RTOL):
                _, w, unmet = _hard_p1(problem, level_terms, p1, w, s, solve, results)
        dose = problem.dose(w)
        held_terms += [h for t in level_terms
                       if (h := t.held(dose[t.rows], slack=s.lexicographic_slack, weight=big))]
    return w, results, unmet
