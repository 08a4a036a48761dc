"""Evaluate one case the way the study did: prediction -> ATP plan, against a comparator.

ATP: the site's goal list (plus the institution's overlay and tolerances) with organ
values read off the predicted dose. The comparator (`atp.evaluation.comparator`): the
protocol re-plan, the same goal list with its protocol values and no prediction, on the
same beams. All doses are scored with `plan_endpoints`, and the criteria met are judged
on the protocol goal list for every plan.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from atp.cases import PatientCase
from atp.dose import beams_from_config, cached_influence, default_isocenter_mm, total_mu
from atp.dose.cache import influence_cache_key
from atp.dose.influence import DoseEngine
from atp.evaluation.comparator import ComparatorPlan, protocol_replan
from atp.evaluation.endpoints import plan_endpoints, voxel_difference_to_prediction
from atp.planning import PlanResult, PlanSettings, goal_report, plan, resolve_goals
from atp.planning.setup import beam_config_for, goal_list_for, tolerances_for

ATP = "ATP"


@dataclass
class CaseEvaluation:
    """One evaluated case: the three doses, their endpoint rows and criteria, timings."""

    case: PatientCase
    predicted_gy: np.ndarray
    atp: PlanResult
    comparator: ComparatorPlan
    rows: list[dict] = field(default_factory=list)
    goals: list[dict] = field(default_factory=list)
    voxel: dict = field(default_factory=dict)
    timing_s: dict = field(default_factory=dict)


def evaluate_case(case: PatientCase, predict: Callable[[PatientCase], np.ndarray], *,
                  site_cfg: Mapping, institution: Mapping, engine: DoseEngine,
                  settings: PlanSettings, tolerances: Mapping[str, float] | None = None,
                  cache_dir: str | Path | None = None) -> CaseEvaluation:
    """Predict, build the beams and matrix, plan ATP and the comparator, score all doses.

    Parameters
    ----------
    case : the patient
    predict : maps a case to its predicted dose (Gy, case grid)
    site_cfg, institution : the site facts and the institution overlay
    engine : the configured dose engine
    settings : the configured planner
    tolerances : per-ROI or per-goal tolerances (%) on top of the institution's
    cache_dir : influence matrices and comparator re-plans are cached there; None
        computes both every time

    Returns
    -------
    CaseEvaluation
    """
    site, inst = site_cfg["name"], institution["name"]
    timing = {}
    t0 = time.perf_counter()
    predicted = predict(case)
    timing["prediction_s"] = time.perf_counter() - t0
    t = time.perf_counter()
    beams = beams_from_config(beam_config_for(site_cfg, institution),
                              isocenter_mm=default_isocenter_mm(case),
                              laterality=case.metadata.get("laterality"))
    if cache_dir is None:
        influence, influence_key = engine.influence(case, beams), None
    else:
        influence = cached_influence(engine, case, beams, cache_dir=cache_dir)
        influence_key = influence_cache_key(case, beams, engine)
    timing["influence_s"] = time.perf_counter() - t
    goals = goal_list_for(site_cfg, institution)
    tol = tolerances_for(site_cfg, institution, tolerances)
    t = time.perf_counter()
    atp = plan(case, influence, goals, predicted_dose_gy=predicted, tolerances=tol,
               settings=settings)
    timing["optimization_s"] = time.perf_counter() - t
    timing["end_to_end_s"] = time.perf_counter() - t0
    t = time.perf_counter()
    comp = protocol_replan(case, influence, goals, settings=settings, cache_dir=cache_dir,
                           influence_key=influence_key)
    timing["comparator_s"] = time.perf_counter() - t
    ev = CaseEvaluation(case, predicted, atp, comp, timing_s=timing)
    # the protocol goal list resolved without a prediction: the criteria every plan is
    # judged on (the ATP plan's own goals hold predicted values)
    protocol, _ = resolve_goals(case, goals)
    kw = {"site": site, "institution": inst}
    ev.rows += plan_endpoints(case, atp.dose_gy, plan=ATP, resolved=protocol,
                              mu=total_mu(influence, atp.fluence), **kw)
    ev.rows += plan_endpoints(case, comp.dose_gy, plan=comp.label, resolved=protocol,
                              mu=comp.mu, **kw)
    ev.rows += plan_endpoints(case, predicted, plan="prediction", resolved=protocol, **kw)
    for name, dose in ((ATP, atp.dose_gy), (comp.label, comp.dose_gy)):
        report = goal_report(case, dose, protocol)
        ev.goals.append({"case": case.patient_id, **kw, "plan": name,
                         "p1_met": all(o.met for o in report if o.priority == 1),
                         "goals_met": sum(o.met for o in report),
                         "goals_total": len(report),
                         "target_goals_met": sum(o.met for o in report if o.role == "target"),
                         "target_goals_total": sum(o.role == "target" for o in report)})
    ev.voxel = voxel_difference_to_prediction(case, atp.dose_gy, predicted, **kw)
    return ev
