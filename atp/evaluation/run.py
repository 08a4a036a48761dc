"""Evaluate one case the way the study did: prediction -> ATP plan, against a comparator.

ATP: the site's goal list (plus the institution's overlay and tolerances) with organ
values read off the predicted dose. The comparator (`atp.evaluation.comparator`): the
case's clinical dose, or the protocol re-plan (the same goal list with its protocol values
and no prediction, on the same beams), which is also the fallback for a case without a
dose. All doses are scored with `plan_endpoints`; the criteria met are judged on the
protocol goal list and on every configured criteria set (`atp.evaluation.criteria`).

With ``delivery`` (`atp.evaluation.delivery.DeliverySettings`, evaluate.py's default) the
plans atp optimizes (ATP, the re-plan) are sequenced on the machine and everything above
is computed on their deliverable dose and sequenced MU; ``goal_values`` keeps every goal's
optimized and deliverable value.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from atp.cases import PatientCase
from atp.dose import cached_influence, total_mu
from atp.dose.cache import influence_cache_key
from atp.dose.influence import DoseEngine
from atp.dosimetry import dose_score, openkbp_dvh_metrics
from atp.evaluation.comparator import (
    CLINICAL,
    MODES,
    ComparatorPlan,
    clinical_plan,
    engine_gap,
    engine_label,
    protocol_replan,
    replan_cache_key,
)
from atp.evaluation.criteria import CriteriaSet, judge
from atp.evaluation.delivery import (
    DeliverySettings,
    cached_delivery,
    deliver_plan,
    goal_value_rows,
)
from atp.evaluation.endpoints import (
    endpoint_spec,
    plan_endpoints,
    voxel_difference_to_prediction,
)
from atp.planning import PlanResult, PlanSettings, goal_report, plan, resolve_goals
from atp.planning.setup import case_beams, goal_list_for, tolerances_for

log = logging.getLogger(__name__)
ATP = "ATP"
PREDICTION = "prediction"
MIMIC = "clinical (atp engine)"


@dataclass
class CaseEvaluation:
    """One evaluated case: the three doses, their endpoint rows and criteria, timings."""

    case: PatientCase
    predicted_gy: np.ndarray
    atp: PlanResult
    comparator: ComparatorPlan
    rows: list[dict] = field(default_factory=list)
    goals: list[dict] = field(default_factory=list)
    criteria: list[dict] = field(default_factory=list)
    voxel: dict = field(default_factory=dict)
    timing_s: dict = field(default_factory=dict)
    doses: list[dict] = field(default_factory=list)  # which engine made each dose
    goal_values: list[dict] = field(default_factory=list)  # optimized vs deliverable
    delivery: list[dict] = field(default_factory=list)  # sequencing figures per plan
    atp_optimized: PlanResult | None = None  # the fluence plan when ``atp`` is deliverable
    engine_gap: dict = field(default_factory=dict)
    prediction_scores: dict = field(default_factory=dict)  # OpenKBP scores vs the case dose
    notes: list[str] = field(default_factory=list)


def evaluate_case(case: PatientCase, predict: Callable[[PatientCase], np.ndarray], *,
                  site_cfg: Mapping, institution: Mapping, engine: DoseEngine,
                  settings: PlanSettings, tolerances: Mapping[str, float] | None = None,
                  cache_dir: str | Path | None = None, comparator: str = CLINICAL,
                  criteria: Sequence[CriteriaSet] = (), engine_gap_fit: bool | None = None,
                  beams_from: str = "patient", delivery: DeliverySettings | None = None
                  ) -> CaseEvaluation:
    """Predict, build the beams and matrix, plan ATP and the comparator, score all doses.

    Parameters
    ----------
    case : PatientCase
        The patient.
    predict : callable
        Maps a case to its predicted dose (Gy) on the case grid, (z, y, x).
    site_cfg : mapping
        The site facts.
    institution : mapping
        The institution overlay.
    engine : DoseEngine
        The configured dose engine.
    settings : PlanSettings
        The configured planner.
    tolerances : mapping of str to float, optional
        Per-ROI or per-goal tolerances (%) on top of the institution's.
    cache_dir : str or Path, optional
        Influence matrices and comparator re-plans are cached there; None computes both
        every time.
    comparator : str, optional
        ``clinical`` (default; the case's own dose, a case without one falls back to the
        re-plan, with a note) or ``replan`` (the protocol re-plan).
    criteria : sequence of CriteriaSet, optional
        Criteria sets every dose is judged on, next to the protocol goal list.
    engine_gap_fit : bool, optional
        Fit atp's beamlets to a clinical dose made by another engine and score that fit
        too (None: when the dose's origin is not atp's engine).
    beams_from : str, optional
        ``patient`` (default; the case's own RTPLAN beams when imported, else the
        institution template) or ``template`` (`atp.planning.setup.case_beams`).
    delivery : DeliverySettings, optional
        Sequence the ATP plan and a re-plan comparator on this machine and judge their
        deliverable doses (`atp.evaluation.delivery`); None judges the optimized fluence
        plans.

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
    beams, beam_origin = case_beams(case, site_cfg, institution, source=beams_from)
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
    atp_opt, atp_mu, delivered = atp, total_mu(influence, atp.fluence), {}
    if delivery is not None:
        delivered[ATP] = deliver_plan(case, influence, atp, delivery, engine=engine,
                                      plan_settings=settings, cache_dir=cache_dir)
        atp, atp_mu = delivered[ATP].plan, delivered[ATP].mu_total
        timing["sequencing_s"] = delivered[ATP].wall_s
    timing["end_to_end_s"] = time.perf_counter() - t0
    if comparator not in MODES:
        raise ValueError(f"comparator='{comparator}' is not one of {MODES}")
    notes = []
    t = time.perf_counter()
    if comparator == CLINICAL and case.dose_gy is not None:
        comp = clinical_plan(case)
    else:
        if comparator == CLINICAL:
            notes.append(f"patient {case.patient_id}: no clinical dose, compared with the "
                         "protocol re-plan instead")
            log.info(notes[-1])
        comp = protocol_replan(case, influence, goals, settings=settings,
                               cache_dir=cache_dir, influence_key=influence_key)
        if delivery is not None:
            kw = {"engine": engine, "plan_settings": settings, "cache_dir": cache_dir}
            if cache_dir is None:
                d = deliver_plan(case, influence, comp.result, delivery, **kw)
            else:  # sequenced once per case, machine and sequencer (a sweep's jobs)
                key = replan_cache_key(influence_key, goals, settings, extra={
                    "delivery": delivery.identity()})
                d = cached_delivery(Path(cache_dir) / f"replan_deliverable_"
                                    f"{case.patient_id}_{key[:24]}.npz", key, case,
                                    influence, comp.result, delivery, **kw)
            delivered[comp.label] = d
            comp = dataclasses.replace(comp, dose_gy=d.plan.dose_gy, mu=d.mu_total,
                                       result=d.plan)
    timing["comparator_s"] = time.perf_counter() - t
    ev = CaseEvaluation(case, predicted, atp, comp, timing_s=timing, notes=notes,
                        atp_optimized=atp_opt if delivery is not None else None)
    kw = {"site": site, "institution": inst}
    for label, d in delivered.items():
        ev.goal_values += goal_value_rows(case.patient_id, label, d.optimized.report,
                                          d.plan.report, **kw)
        ev.delivery.append({"case": case.patient_id, **kw, "plan": label, **d.figures()})
    if delivery is None:
        ev.goal_values += goal_value_rows(case.patient_id, ATP, atp.report, None, **kw)
    # the protocol goal list resolved without a prediction: the criteria every plan is
    # judged on (the ATP plan's own goals hold predicted values)
    protocol, _ = resolve_goals(case, goals)
    ep = {**kw, "endpoints": endpoint_spec(site_cfg, institution)}  # the study's endpoints
    ev.rows += plan_endpoints(case, atp.dose_gy, plan=ATP, resolved=protocol, mu=atp_mu, **ep)
    ev.rows += plan_endpoints(case, comp.dose_gy, plan=comp.label, resolved=protocol,
                              mu=comp.mu, **ep)
    ev.rows += plan_endpoints(case, predicted, plan=PREDICTION, resolved=protocol, **ep)
    own = engine_label(influence)
    machine = f", deliverable on {delivery.machine.name}" if delivery is not None else ""
    ev.doses = [{"case": case.patient_id, "plan": ATP, "engine": own + machine,
                 "beams": beam_origin},
                {"case": case.patient_id, "plan": comp.label, "engine": comp.engine + (
                    machine if comp.result is not None else ""),
                 "mu_known": comp.mu is not None},
                {"case": case.patient_id, "plan": PREDICTION, "engine": "dose prediction"}]
    doses = {ATP: atp.dose_gy, comp.label: comp.dose_gy, PREDICTION: predicted}
    if engine_gap_fit is None:
        engine_gap_fit = comp.result is None and not comp.engine.startswith("atp")
    if engine_gap_fit and comp.result is None:
        t = time.perf_counter()
        mimic = engine_gap(case, influence, comp.dose_gy)
        timing["engine_gap_s"] = time.perf_counter() - t
        ev.rows += plan_endpoints(case, mimic, plan=MIMIC, resolved=protocol, **ep)
        ev.doses.append({"case": case.patient_id, "plan": MIMIC, "engine": own})
        gap = voxel_difference_to_prediction(case, mimic, comp.dose_gy, **kw)
        ev.engine_gap = {"case": case.patient_id, "site": site, "institution": inst,
                         "clinical_engine": comp.engine, "atp_engine": own,
                         "mean_abs_diff_pct_rx": gap["mean_abs_diff_pct_rx"],
                         "p95_abs_diff_pct_rx": gap["p95_abs_diff_pct_rx"]}
        doses[MIMIC] = mimic
    for cs in criteria:
        for name, dose in doses.items():
            ev.criteria += judge(case, dose, cs, plan=name, site=site, institution=inst)
    for name, dose in ((ATP, atp.dose_gy), (comp.label, comp.dose_gy)):
        report = goal_report(case, dose, protocol)
        ev.goals.append({"case": case.patient_id, **kw, "plan": name,
                         "p1_met": all(o.met for o in report if o.priority == 1),
                         "goals_met": sum(o.met for o in report),
                         "goals_total": len(report),
                         "target_goals_met": sum(o.met for o in report if o.role == "target"),
                         "target_goals_total": sum(o.role == "target" for o in report)})
    ev.voxel = voxel_difference_to_prediction(case, atp.dose_gy, predicted, **kw)
    if case.dose_gy is not None:
        ev.prediction_scores = prediction_scores(case, predicted)
    return ev


def prediction_scores(case: PatientCase, predicted_gy: np.ndarray) -> dict:
    """The OpenKBP challenge's scores of a prediction against the case's own dose.

    Parameters
    ----------
    case : PatientCase
        The patient with its own dose (Gy) and scoring mask.
    predicted_gy : np.ndarray
        Predicted dose (Gy) on the case grid, (z, y, x).

    Returns
    -------
    dict
        ``dose_score_gy`` (mean |difference| over the case's scoring mask), and the DVH
        metrics of both doses (``reference_metrics``, ``predicted_metrics``), which a
        cohort's DVH score pools (`atp.dosimetry.cohort_scores`).
    """
    rois = {n: r.mask for n, r in case.rois.items() if r.role in ("target", "organ")}
    kw = {"spacing_mm": case.spacing_mm, "target_names": set(case.targets)}
    return {"dose_score_gy": dose_score(case.dose_gy, predicted_gy, case.scoring_mask),
            "reference_metrics": openkbp_dvh_metrics(case.dose_gy, rois, **kw),
            "predicted_metrics": openkbp_dvh_metrics(predicted_gy, rois, **kw)}



def record_workflow(log, ev: CaseEvaluation) -> None:
    """Add the planning steps of one evaluated case to a `WorkflowLog` (one cold round).

    Parameters
    ----------
    log : WorkflowLog
        The log to add to.
    ev : CaseEvaluation
        The evaluated case; its ``timing_s`` (s) gives the step times.
    """
    pid, t = ev.case.patient_id, ev.timing_s
    log.record(pid, "prediction", t["prediction_s"])
    log.record(pid, "beams_and_matrix", t["influence_s"])
    log.record(pid, "optimization", t["optimization_s"], start="cold")
    if "sequencing_s" in t:
        log.record(pid, "sequencing", t["sequencing_s"])
