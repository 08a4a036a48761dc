"""DVH endpoints of one dose for the comparison tables (rows as in `atp.evaluation.compare`).

Targets, named by rank so that cases with different prescriptions pool (``PTV1`` = the
highest prescription, ``PTV2`` the next, ...): D98 %, D95 %, D2 % and Dmean in percent of
the target's own prescription, ICRU 83 HI and the Paddick CI at that prescription.
Organs: Dmean and near-max D0.03cc of every organ, plus every organ goal
metric of the goal list; organ dose endpoints also as EQD2 (alpha/beta 3 Gy, the case's
fractionation), so that institutions with different fractionations can be pooled.
"""

from __future__ import annotations

from atp.cases import PatientCase
from atp.dosimetry import eqd2, homogeneity_index_icru83, paddick_ci
from atp.planning.metrics import evaluate_metric, parse_metric
from atp.planning.resolve import ResolvedGoal
from atp.planning.structures import structure_mask

ORGAN_ALPHA_BETA_GY = 3.0


def plan_endpoints(case: PatientCase, dose_gy, *, plan: str, site: str, institution: str,
                   resolved: list[ResolvedGoal] = (), mu: float | None = None) -> list[dict]:
    """Endpoint rows of ``dose_gy`` (one plan of one case)."""
    base = {"case": case.patient_id, "site": site, "institution": institution, "plan": plan}
    rows: list[dict] = []

    def add(metric, value, unit, higher, kind):
        rows.append({**base, "metric": metric, "value": float(value), "unit": unit,
                     "higher_is_better": higher, "kind": kind})

    kw = {"spacing_mm": case.spacing_mm}
    body = case.body_mask
    ranked = sorted(case.prescriptions, key=lambda p: -p.dose_gy)
    for k, p in enumerate(ranked, start=1):
        m, label = case.mask(p.target), f"PTV{k}"
        for name, higher in (("D98%", True), ("D95%", True), ("D2%", False),
                             ("Dmean", False)):
            value = evaluate_metric(parse_metric(name), dose_gy, m, **kw)
            add(f"{name}({label})", 100.0 * value / p.dose_gy, "%Rx", higher, "target")
        add(f"HI({label})", homogeneity_index_icru83(dose_gy, m), "1", False, "index")
        add(f"CI({label})", paddick_ci(dose_gy, m, prescription_gy=p.dose_gy,
                                       body_mask=body), "1", True, "index")
    organ_metrics = {(r.goal.metric.name, r.roi) for r in resolved if r.role == "organ"}
    for name in case.organs:
        organ_metrics |= {("Dmean", name), ("D0.03cc", name)}
    n_fx = case.n_fractions or 1
    for metric_name, roi in sorted(organ_metrics):
        mask = structure_mask(case, roi)
        if mask is None or not mask.any():
            continue
        metric = parse_metric(metric_name)
        value = evaluate_metric(metric, dose_gy, mask, **kw)
        add(f"{metric_name}({roi})", value, metric.unit, False, "organ")
        if metric.is_dose:
            add(f"EQD2 {metric_name}({roi})",
                eqd2(value, n_fractions=n_fx, alpha_beta_gy=ORGAN_ALPHA_BETA_GY), "Gy",
                False, "organ")
    if mu is not None:
        add("MU per fraction", mu / n_fx, "MU", False, "delivery")
    return rows


def voxel_difference_to_prediction(case: PatientCase, plan_gy, predicted_gy, *,
                                   site: str, institution: str) -> dict:
    """|D_plan - D_pred| / D_Rx within the body: mean and 95th percentile, in %."""
    import numpy as np

    rx = case.max_prescription_gy or 1.0
    body = case.body_mask
    diff = np.abs(plan_gy[body].astype(np.float64) - predicted_gy[body]) / rx * 100.0
    return {"case": case.patient_id, "site": site, "institution": institution,
            "mean_abs_diff_pct_rx": float(diff.mean()),
            "p95_abs_diff_pct_rx": float(np.percentile(diff, 95))}
