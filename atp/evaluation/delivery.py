"""Deliverable plans in an evaluation: ATP and re-plan comparators sequenced on a machine.

With a `DeliverySettings` (``deliverable=true`` in conf/evaluate.yaml, the default), every
plan atp optimizes in an evaluation (ATP, and the ``MNL-replan`` comparator) is sequenced
on the configured machine (`atp.delivery.deliverable`); goals, endpoints, criteria, MU and
the ATP-vs-comparator comparison are then computed on the deliverable dose. The optimized
fluence plan is kept next to it, and `goal_value_rows` lists every goal with both values.
Without one (``deliverable=false``) plans are judged on the optimized fluence, as before.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from atp.delivery.machine import Machine
from atp.delivery.sequencing import SequencingSettings


@dataclass(frozen=True)
class DeliverySettings:
    """How evaluated plans are made deliverable.

    Parameters
    ----------
    machine : Machine
        The treatment machine (``conf/machine``).
    sequencer : SequencingSettings
        The leaf sequencing (``conf/sequencer``).
    jaw_matrix : bool
        Dose from the engine's matrix on the beams' jaw rectangles (as ``plan.py``;
        computed once per case and beam set, cached with the influence matrices). False
        uses the plan's own matrix: faster, transmission outside the optimizer's beamlets
        is left out (the planning callback's choice).
    """

    machine: Machine
    sequencer: SequencingSettings = dataclasses.field(default_factory=SequencingSettings)
    jaw_matrix: bool = True

    def identity(self) -> dict:
        """What a deliverable plan depends on, JSON-able (machine facts and settings).

        Returns
        -------
        dict
            ``machine``, ``sequencer`` (their ``to_dict``) and ``jaw_matrix``.
        """
        return {"machine": self.machine.to_dict(), "sequencer": self.sequencer.to_dict(),
                "jaw_matrix": self.jaw_matrix}


@dataclass
class DeliveredPlan:
    """One plan made deliverable: the plan as evaluated and what it came from.

    ``plan`` is the optimized `PlanResult` with the deliverable dose and goal report in
    place of the fluence plan's (its ``fluence`` stays the optimized beamlet weights);
    ``optimized`` the fluence plan itself; ``mu_total`` the sequenced MU over all
    fractions; ``summary`` the sequencing figures (machine, control points, MU, times);
    ``result`` the `atp.delivery.deliverable.DeliverableResult` (None when rebuilt from
    the cache, `cached_delivery`).
    """

    plan: object
    optimized: object
    mu_total: float
    summary: dict
    wall_s: float
    result: object = None
    cached: bool = False

    def figures(self) -> dict:
        """The sequencing figures with the wall time and whether it came from the cache.

        Returns
        -------
        dict
            ``summary`` plus ``wall_s`` (s) and ``cached``.
        """
        return {**self.summary, "wall_s": self.wall_s, "cached": self.cached}


def _summary(d) -> dict:
    fig = d.figures()
    return {k: fig[k] for k in ("machine", "delivery_mode", "n_beams", "control_points",
                                "segments", "mu_per_fraction_estimate",
                                "mu_per_fraction_deliverable", "delivery_time_s",
                                "sequencing_s")} | {
        "p1_lost": "; ".join(fig["p1_lost"]), "violations": len(fig["violations"])}


def deliver_plan(case, influence, result, delivery: DeliverySettings, *, engine=None,
                 plan_settings=None, cache_dir=None) -> DeliveredPlan:
    """Sequence an optimized plan on ``delivery.machine`` and evaluate what it delivers.

    Parameters
    ----------
    case : PatientCase
        The patient.
    influence : DoseInfluence
        The plan's influence matrix.
    result : PlanResult
        The optimized plan (`atp.planning.PlanResult`).
    delivery : DeliverySettings
        The machine and sequencer settings.
    engine : DoseEngine, optional
        For the jaw-rectangle matrix (``delivery.jaw_matrix``); None uses the plan's own.
    plan_settings : PlanSettings, optional
        The planner's settings (the objective of the segment-MU re-optimization).
    cache_dir : path, optional
        Where the jaw-rectangle matrix is cached.

    Returns
    -------
    DeliveredPlan
    """
    from atp.delivery.deliverable import deliver

    t0 = time.perf_counter()
    d = deliver(case, influence, result, machine=delivery.machine,
                engine=engine if delivery.jaw_matrix else None, settings=delivery.sequencer,
                plan_settings=plan_settings, cache_dir=cache_dir)
    wall = time.perf_counter() - t0
    phases = [*result.phases, {"phase": "deliverable", "machine": delivery.machine.name,
                               "mode": d.plan.mode, "wall_s": wall}]
    plan = dataclasses.replace(result, dose_gy=d.dose_gy, report=d.report, phases=phases)
    n_fx = int(case.n_fractions or 1)
    return DeliveredPlan(plan=plan, optimized=result, mu_total=d.plan.mu_per_fraction * n_fx,
                         summary=_summary(d), wall_s=wall, result=d)


def cached_delivery(path, key: str, case, influence, result, delivery: DeliverySettings,
                    **kw) -> DeliveredPlan:
    """`deliver_plan`, its dose, MU and figures kept in ``path`` (an ``.npz``) under
    ``key``: a plan that does not change between the jobs of a sweep (the protocol
    re-plan) is sequenced once. A missing, unreadable or stale file is recomputed.

    Parameters
    ----------
    path : str or Path
        The cache file (``.npz``), written atomically after a fresh sequencing.
    key : str
        What the cached result depends on; a file with another key is stale.
    case, influence, result : PatientCase, DoseInfluence, PlanResult
        As in `deliver_plan`.
    delivery : DeliverySettings
        The machine and sequencer settings.
    **kw
        Passed to `deliver_plan` (``engine``, ``plan_settings``, ``cache_dir``).

    Returns
    -------
    DeliveredPlan
        With ``cached=True`` and ``wall_s`` 0 when read from ``path``.
    """
    import json
    from pathlib import Path

    import numpy as np

    from atp.io.atomic import atomic_open
    from atp.planning import goal_report

    path = Path(path)
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                meta, dose = json.loads(str(z["meta"])), z["dose_gy"]
            if meta["key"] == key and dose.shape == tuple(case.shape):
                plan = dataclasses.replace(
                    result, dose_gy=dose, report=goal_report(case, dose, result.resolved),
                    phases=[*result.phases, {"phase": "deliverable (cached)",
                                             "machine": delivery.machine.name}])
                return DeliveredPlan(plan=plan, optimized=result, mu_total=meta["mu_total"],
                                     summary=meta["summary"], wall_s=0.0, cached=True)
        except (OSError, KeyError, ValueError):
            pass
    out = deliver_plan(case, influence, result, delivery, **kw)
    with atomic_open(path, mode="wb") as fh:
        np.savez_compressed(fh, dose_gy=out.plan.dose_gy.astype(np.float32),
                            meta=np.array(json.dumps({"key": key, "mu_total": out.mu_total,
                                                      "summary": out.summary}, default=float)))
    return out


def goal_value_rows(case_id: str, plan_label: str, optimized_report, deliverable_report,
                    **extra) -> list[dict]:
    """Every goal of a plan with its optimized (fluence) and its deliverable value.

    Parameters
    ----------
    case_id : str
        Patient id.
    plan_label : str
        The plan's label.
    optimized_report : list of GoalOutcome
        Goal report of the optimized fluence plan.
    deliverable_report : list of GoalOutcome or None
        Goal report of the same resolved goals on the deliverable dose; None for a plan
        that was not sequenced (empty deliverable columns).
    **extra
        Columns added to every row (site, institution).

    Returns
    -------
    list of dict
        ``case, plan, goal, priority, role, unit, requested, optimized, optimized_met,
        deliverable, deliverable_met, change`` (deliverable - optimized, the goal's unit).
    """
    rows = []
    deliv = deliverable_report or [None] * len(optimized_report)
    for o, d in zip(optimized_report, deliv, strict=True):
        rows.append({"case": case_id, **extra, "plan": plan_label, "goal": o.label,
                     "priority": o.priority, "role": o.role, "unit": o.unit,
                     "requested": o.requested, "optimized": o.achieved,
                     "optimized_met": bool(o.met),
                     "deliverable": None if d is None else d.achieved,
                     "deliverable_met": None if d is None else bool(d.met),
                     "change": None if d is None else d.achieved - o.achieved})
    return rows


def delivery_summary(goal_rows: list[dict]) -> list[dict]:
    """Per plan: goals and P1 goals met before and after sequencing, goals lost.

    Parameters
    ----------
    goal_rows : list of dict
        Rows of `goal_value_rows` (deliverable values present).

    Returns
    -------
    list of dict
        One per plan label: ``cases, goals``, goals met before and after sequencing
        (all and P1), ``lost`` and ``gained``.
    """
    out = []
    for label in dict.fromkeys(r["plan"] for r in goal_rows):
        rows = [r for r in goal_rows if r["plan"] == label]
        p1 = [r for r in rows if r["priority"] == 1]
        out.append({"plan": label, "cases": len({r["case"] for r in rows}),
                    "goals": len(rows),
                    "optimized_met": sum(r["optimized_met"] for r in rows),
                    "deliverable_met": sum(r["deliverable_met"] for r in rows),
                    "p1_optimized_met": sum(r["optimized_met"] for r in p1),
                    "p1_deliverable_met": sum(r["deliverable_met"] for r in p1),
                    "lost": sum(r["optimized_met"] and not r["deliverable_met"] for r in rows),
                    "gained": sum(r["deliverable_met"] and not r["optimized_met"]
                                  for r in rows)})
    return out
