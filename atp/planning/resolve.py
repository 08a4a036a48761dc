"""Apply a goal list to one case: expand ROI patterns and give every goal its value."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from atp.cases import PatientCase
from atp.planning.goals import Goal, GoalError, GoalList, expand_roi
from atp.planning.metrics import evaluate_metric
from atp.planning.structures import DERIVED, structure_mask

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResolvedGoal:
    """A goal bound to one ROI of one case, with its value and where it came from."""

    goal: Goal
    roi: str
    role: str
    value: float
    source: str
    rx_gy: float | None = None  # the target's (or the highest) prescription
    predicted: float | None = None  # the metric on the predicted dose, if used

    @property
    def label(self) -> str:
        """The goal with its resolved value, e.g. ``Dmean(parotid_l) <= 26``."""
        return f"{self.goal.metric.name}({self.roi}) {self.goal.op} {self.value:.4g}"


def _role(case: PatientCase, goal: Goal, roi: str) -> str:
    if goal.role:
        return goal.role
    if roi in case.rois:
        role = case.rois[roi].role
        return "control" if role == "external" else role
    return "organ" if roi in DERIVED and roi != "normal_tissue" else "control"


def resolve_goals(case: PatientCase, goal_list: GoalList, *,
                  predicted_dose_gy: np.ndarray | None = None,
                  tolerances: Mapping[str, float] | None = None,
                  ) -> tuple[list[ResolvedGoal], list[str]]:
    """Resolved goals and the names of goals skipped because the case lacks the ROI.

    Parameters
    ----------
    case : PatientCase
        The case the goals are applied to (ROIs, prescriptions, laterality).
    goal_list : GoalList
        The goals, ROI patterns not yet expanded.
    predicted_dose_gy : np.ndarray, optional
        Predicted dose (Gy) on the case grid, (z, y, x); None: the organ goals that
        would read it take the list's ``value`` (source ``protocol``).
    tolerances : Mapping of str to float, optional
        Tolerance overrides (%) by ROI or goal name (`GoalList.with_tolerances`).

    Returns
    -------
    resolved : list of ResolvedGoal
        One per goal and expanded ROI, each with its value.
    skipped : list of str
        ``metric(roi)`` of each goal whose ROI is absent or empty.
    """
    if tolerances:
        goal_list = goal_list.with_tolerances(tolerances)
    if predicted_dose_gy is not None and predicted_dose_gy.shape != case.shape:
        raise ValueError(f"patient {case.patient_id}: predicted dose shape "
                         f"{predicted_dose_gy.shape} != case grid {case.shape}")
    rx = {p.target: p.dose_gy for p in case.prescriptions}
    rx_max = case.max_prescription_gy
    target_prios = [g.priority for g in goal_list.goals
                    if g.role == "target" or g.roi.startswith("ptv_")]
    target_prio = min(target_prios, default=2)
    laterality = case.metadata.get("laterality")
    resolved: list[ResolvedGoal] = []
    skipped: list[str] = []
    for i, g in enumerate(goal_list.goals):
        where = f"{goal_list.source}: goal {i} ({g.label})"
        try:
            if g.roi == "ptv_high":  # the target with the highest prescription
                names = [max(rx, key=rx.get)] if rx else []
            else:
                names = expand_roi(g.roi, case.rois, laterality=laterality)
        except GoalError as exc:
            raise GoalError(f"{where}: {exc}") from None
        for roi in names:
            mask = structure_mask(case, roi)
            if mask is None or not mask.any():
                skipped.append(f"{g.metric.name}({roi})")
                continue
            role = _role(case, g, roi)
            resolved.append(_value(case, g, roi, role, mask, where=where, rx=rx, rx_max=rx_max,
                                   target_prio=target_prio, predicted=predicted_dose_gy))
    for s in skipped:
        log.info("patient %s: goal on %s skipped (ROI absent or empty)", case.patient_id, s)
    return resolved, skipped


def _value(case, g: Goal, roi: str, role: str, mask, *, where, rx, rx_max, target_prio,
           predicted) -> ResolvedGoal:
    if role == "target":
        own_rx = rx.get(roi, rx_max)
        if g.value_pct_rx is not None:
            if own_rx is None:
                raise GoalError(f"{where}: target '{roi}' has no prescription")
            if not g.metric.is_dose:
                raise GoalError(f"{where}: value_pct_rx needs a dose metric")
            return ResolvedGoal(g, roi, role, own_rx * g.value_pct_rx / 100.0,
                                "prescription", own_rx)
        if g.value is None:
            raise GoalError(f"{where}: a target goal needs value_pct_rx or value")
        return ResolvedGoal(g, roi, role, g.value, "user", own_rx)
    if g.priority == 1 or role == "control" or g.priority < target_prio:
        if g.value_pct_rx is not None and rx_max is not None and g.metric.is_dose:
            return ResolvedGoal(g, roi, role, rx_max * g.value_pct_rx / 100.0, "user", rx_max)
        if g.value is None:
            raise GoalError(f"{where}: priority-{g.priority} {role} goals take a user value "
                            "('value' or 'value_pct_rx')")
        return ResolvedGoal(g, roi, role, g.value, "user", rx_max)
    if predicted is not None:
        pred = evaluate_metric(g.metric, predicted, mask, spacing_mm=case.spacing_mm)
        return ResolvedGoal(g, roi, role, pred * (1.0 + g.tolerance_pct / 100.0), "predicted",
                            rx_max, pred)
    if g.value is None:
        raise GoalError(f"{where}: no predicted dose and no protocol 'value' for this goal")
    return ResolvedGoal(g, roi, role, g.value, "protocol", rx_max)
