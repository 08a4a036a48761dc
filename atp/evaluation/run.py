"""Evaluate one case the way the study did: prediction -> ATP plan, and the MNL plan.

ATP: the site's goal list (plus the institution's overlay and tolerances) with organ
values read off the predicted dose. MNL: the same goal list with the protocol values and
no prediction, on the same beams. Both are scored with `plan_endpoints`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from atp.cases import PatientCase
from atp.dose import beams_from_config, default_isocenter_mm, total_mu
from atp.dose.influence import DoseEngine
from atp.evaluation.endpoints import plan_endpoints, voxel_difference_to_prediction
from atp.planning import PlanResult, PlanSettings, goal_report, plan
from atp.planning.setup import beam_config_for, goal_list_for, tolerances_for


@dataclass
class CaseEvaluation:
    case: PatientCase
    predicted_gy: np.ndarray
    atp: PlanResult
    mnl: PlanResult
    rows: list[dict] = field(default_factory=list)
    goals: list[dict] = field(default_factory=list)
    voxel: dict = field(default_factory=dict)
    timing_s: dict = field(default_factory=dict)


def evaluate_case(case: PatientCase, predict: Callable[[PatientCase], np.ndarray], *,
                  site_cfg: Mapping, institution: Mapping, engine: DoseEngine,
                  settings: PlanSettings, tolerances: Mapping[str, float] | None = None
                  ) -> CaseEvaluation:
    """Predict, build the beams and matrix, plan ATP and MNL, and score all three doses."""
    site, inst = site_cfg["name"], institution["name"]
    timing = {}
    t0 = time.perf_counter()
    predicted = predict(case)
    timing["prediction_s"] = time.perf_counter() - t0
    t = time.perf_counter()
    beams = beams_from_config(beam_config_for(site_cfg, institution),
                              isocenter_mm=default_isocenter_mm(case),
                              laterality=case.metadata.get("laterality"))
    influence = engine.influence(case, beams)
    timing["influence_s"] = time.perf_counter() - t
    goals = goal_list_for(site_cfg, institution)
    tol = tolerances_for(site_cfg, institution, tolerances)
    t = time.perf_counter()
    atp = plan(case, influence, goals, predicted_dose_gy=predicted, tolerances=tol,
               settings=settings)
    timing["optimization_s"] = time.perf_counter() - t
    timing["end_to_end_s"] = time.perf_counter() - t0
    mnl = plan(case, influence, goals, settings=settings)
    timing["mnl_s"] = mnl.wall_s
    ev = CaseEvaluation(case, predicted, atp, mnl, timing_s=timing)
    kw = {"site": site, "institution": inst}
    ev.rows += plan_endpoints(case, atp.dose_gy, plan="ATP", resolved=mnl.resolved,
                              mu=total_mu(influence, atp.fluence), **kw)
    ev.rows += plan_endpoints(case, mnl.dose_gy, plan="MNL", resolved=mnl.resolved,
                              mu=total_mu(influence, mnl.fluence), **kw)
    ev.rows += plan_endpoints(case, predicted, plan="prediction", resolved=mnl.resolved, **kw)
    # criteria met: both plans judged on the same criteria, the protocol goal list (the
    # ATP plan's own goals hold predicted values and would not compare like with like)
    for name, dose in (("ATP", atp.dose_gy), ("MNL", mnl.dose_gy)):
        report = goal_report(case, dose, mnl.resolved)
        ev.goals.append({"case": case.patient_id, **kw, "plan": name,
                         "p1_met": all(o.met for o in report if o.priority == 1),
                         "goals_met": sum(o.met for o in report),
                         "goals_total": len(report),
                         "target_goals_met": sum(o.met for o in report if o.role == "target"),
                         "target_goals_total": sum(o.role == "target" for o in report)})
    ev.voxel = voxel_difference_to_prediction(case, atp.dose_gy, predicted, **kw)
    return ev
