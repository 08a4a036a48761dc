"""From an optimized fluence to a deliverable plan: sequence, rebuild, dose, goal report.

`make_deliverable` sequences every beam on a machine (`atp.delivery.sequencing`), rebuilds
the beamlet fluence the leaves deliver (transmission and leaf widths included,
`atp.delivery.fluence`), computes the dose as ``D @ delivered fluence`` and evaluates the
plan's goals on it. Optionally the segment MU are then re-optimized with the leaves fixed
(`atp.delivery.reoptimize`); the result is kept only when it loses no priority-1 goal that
the sequenced plan met, and both are reported.

``D @ w`` is the engine's dose of the delivered fluence wherever the delivered fluence lies
on the engine's beamlets. Fluence delivered outside them (leaves open over a 10 mm outer
leaf's second, beamlet-less row; transmission beyond the beamlet rectangle) has no dose
column and is left out; with beamlet rows that are leaf pairs (the defaults) only
transmission outside the targets' beam's-eye view plus margin is lost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from atp.delivery.fluence import plan_weights
from atp.delivery.machine import Machine
from atp.delivery.sequence import DeliverablePlan
from atp.delivery.sequencing import SequencingSettings, beam_groups, sequence_plan


@dataclass
class DeliverableResult:
    """A deliverable plan, its dose and goals, next to the optimized fluence plan."""

    plan: DeliverablePlan
    fluence: np.ndarray  # delivered beamlet weights, all fractions
    dose_gy: np.ndarray  # case grid
    report: list
    optimized_report: list
    sequenced_plan: DeliverablePlan
    sequenced_report: list
    sequenced_dose_gy: np.ndarray
    mu_estimate_per_fraction: float
    sequencing_s: float
    reoptimization: dict = field(default_factory=dict)
    delivery_influence: object = None  # the matrix ``fluence`` indexes

    @property
    def all_p1_met(self) -> bool:
        """True when the deliverable plan meets every priority-1 goal."""
        return all(o.met for o in self.report if o.priority == 1)

    @property
    def n_goals_met(self) -> int:
        """Number of goals the deliverable plan meets."""
        return sum(bool(o.met) for o in self.report)

    def p1_lost(self) -> list[str]:
        """Priority-1 goals the fluence plan met and the deliverable plan does not.

        Returns
        -------
        list of str
            Goal labels.
        """
        return [d.label for o, d in zip(self.optimized_report, self.report, strict=True)
                if o.priority == 1 and o.met and not d.met]

    def summary(self) -> str:
        """One line on the deliverable plan's goals.

        Returns
        -------
        str
            Goals met of all, and the priority-1 goals it violates, if any.
        """
        bad = [o.label for o in self.report if o.priority == 1 and not o.met]
        return (f"deliverable: {self.n_goals_met} of {len(self.report)} goals met; "
                + ("all P1 constraints met" if not bad else f"P1 VIOLATED: {', '.join(bad)}"))

    def comparison(self) -> list[dict]:
        """Per goal: requested, optimized, sequenced and deliverable value and met.

        Returns
        -------
        list of dict
            One row per goal (label, priority, role, unit, requested, and achieved value
            and met flag of the optimized, sequenced and deliverable plans), in the
            goals' units.
        """
        rows = []
        for o, s, d in zip(self.optimized_report, self.sequenced_report, self.report,
                           strict=True):
            rows.append({"label": o.label, "priority": o.priority, "role": o.role,
                         "unit": o.unit, "requested": o.requested,
                         "optimized": o.achieved, "optimized_met": o.met,
                         "sequenced": s.achieved, "sequenced_met": s.met,
                         "deliverable": d.achieved, "deliverable_met": d.met})
        return rows

    def figures(self) -> dict:
        """Numbers for logs and reports.

        Returns
        -------
        dict
            Machine, mode, control points, segments, MU per fraction (estimate,
            sequenced, deliverable), delivery time (s), sequencing time (s),
            re-optimization info, goals met, lost priority-1 goals and limit violations.
        """
        p, s = self.plan, self.sequenced_plan
        return {"machine": p.machine.name, "delivery_mode": p.mode,
                "beamlets_and_leaves": p.machine.alignment_note(
                    self.delivery_influence.bixel_mm) if self.delivery_influence else "",
                "n_beams": len(p.beams), "control_points": p.n_control_points,
                "segments": p.n_segments,
                "mu_per_fraction_estimate": self.mu_estimate_per_fraction,
                "mu_per_fraction_sequenced": s.mu_per_fraction,
                "mu_per_fraction_deliverable": p.mu_per_fraction,
                "delivery_time_s": p.delivery_time_s(),
                "sequencing_s": self.sequencing_s,
                "reoptimization": self.reoptimization,
                "deliverable_all_p1_met": self.all_p1_met,
                "deliverable_goals_met": self.n_goals_met,
                "p1_lost": self.p1_lost(), "violations": p.violations()}


def _report(case, influence, weights, resolved):
    from atp.planning import goal_report

    dose = influence.dose_ct(weights.astype(np.float32), case)
    return dose, goal_report(case, dose, resolved)


def make_deliverable(case, influence, result, *, machine: Machine,
                     settings: SequencingSettings | None = None, plan_settings=None,
                     delivery: object | None = None) -> DeliverableResult:
    """Sequence ``result`` (an `atp.planning.PlanResult`) and evaluate what it delivers.

    Parameters
    ----------
    case : PatientCase
        The case the plan is for (goals, fractions, dose grid).
    influence : DoseInfluence
        The matrix the plan was optimized with.
    result : PlanResult
        The optimized fluence plan (weights, resolved goals, goal report).
    machine : Machine
        The machine to sequence for.
    settings : SequencingSettings, optional
        Sequencing options; default `SequencingSettings()`.
    plan_settings : atp.planning.PlanSettings, optional
        The planner's settings, for the re-optimizations' objective (default settings
        when omitted).
    delivery : DoseInfluence, optional
        The engine's matrix on the beams' jaw rectangles (`atp.delivery.apertures.
        delivery_influence`): the dose of everything the leaves deliver. Without it the
        plan's own matrix is used and fluence outside its beamlets is left out.

    Returns
    -------
    DeliverableResult
        The deliverable plan (re-optimized when accepted), its dose (Gy) and goal report,
        next to the sequenced plan and the optimized plan's report.
    """
    from atp.delivery.apertures import transfer_weights
    from atp.dose.mu import total_mu
    from atp.planning import PlanSettings, build_terms

    settings = settings or SequencingSettings()
    n_fx = int(case.n_fractions or 1)
    dlv = delivery if delivery is not None else influence
    w_opt = transfer_weights(influence, result.fluence, dlv) if dlv is not influence \
        else np.asarray(result.fluence, dtype=np.float64)
    terms = build_terms(case, dlv, result.resolved, plan_settings or PlanSettings())
    info: dict = {}
    t0 = time.perf_counter()
    if settings.merge_sectors and any(len(i) > 1 for _, i in beam_groups(dlv)):
        from atp.delivery.reoptimize import merge_arc_sectors

        w_opt, info["sector_merge"] = merge_arc_sectors(
            dlv, w_opt, terms, sector_deg=settings.sector_deg,
            max_iter=settings.merge_max_iter)
    t1 = time.perf_counter()
    sequenced = sequence_plan(dlv, w_opt, machine, settings, n_fractions=n_fx)
    t_seq = time.perf_counter() - t1
    w_seq = plan_weights(sequenced, dlv)
    dose_seq, rep_seq = _report(case, dlv, w_seq, result.resolved)
    final, w, dose, rep = sequenced, w_seq, dose_seq, rep_seq
    if settings.reoptimize:
        from atp.delivery.reoptimize import reoptimize_weights

        reopt, info["weights"] = reoptimize_weights(sequenced, dlv, terms,
                                                    max_iter=settings.reoptimize_max_iter)
        w_re = plan_weights(reopt, dlv)
        dose_re, rep_re = _report(case, dlv, w_re, result.resolved)
        lost = [a.label for a, b in zip(rep_seq, rep_re, strict=True)
                if a.priority == 1 and a.met and not b.met]
        info["weights"]["accepted"] = not lost and not reopt.violations()
        info["weights"]["p1_lost"] = lost
        if info["weights"]["accepted"]:
            final, w, dose, rep = reopt, w_re, dose_re, rep_re
    info["sector_merge_s"] = t1 - t0
    return DeliverableResult(
        plan=final, fluence=w, dose_gy=dose, report=rep, optimized_report=result.report,
        sequenced_plan=sequenced, sequenced_report=rep_seq, sequenced_dose_gy=dose_seq,
        mu_estimate_per_fraction=total_mu(influence, result.fluence) / n_fx,
        sequencing_s=t_seq, reoptimization=info, delivery_influence=dlv)


def deliver(case, influence, result, *, machine: Machine, engine=None,
            settings: SequencingSettings | None = None, plan_settings=None,
            cache_dir=None) -> DeliverableResult:
    """`make_deliverable` with the engine's matrix on the beams' jaw rectangles
    (`atp.delivery.apertures.delivery_influence`, cached in ``cache_dir`` when given);
    without an ``engine`` the plan's own matrix is used.

    Parameters
    ----------
    case : PatientCase
        The case the plan is for.
    influence : DoseInfluence
        The matrix the plan was optimized with.
    result : PlanResult
        The optimized fluence plan.
    machine : Machine
        The machine to sequence for.
    engine : DoseEngine, optional
        The engine for the jaw-rectangle matrix; None: use ``influence``.
    settings : SequencingSettings, optional
        Sequencing options; default `SequencingSettings()`.
    plan_settings : atp.planning.PlanSettings, optional
        The planner's settings, for the re-optimization's objective.
    cache_dir : str or Path, optional
        Influence cache folder for the jaw-rectangle matrix.

    Returns
    -------
    DeliverableResult
        As `make_deliverable`.
    """
    delivery = None
    if engine is not None:
        from atp.delivery.apertures import delivery_influence

        delivery = delivery_influence(engine, case, influence, cache_dir=cache_dir)
    return make_deliverable(case, influence, result, machine=machine, settings=settings,
                            plan_settings=plan_settings, delivery=delivery)
