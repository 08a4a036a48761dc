"""The goal report: for each goal, what was asked, where the value came from, what the plan
achieved and whether it meets it. It reports criteria met, never clinical acceptability."""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import asdict, dataclass

import numpy as np

from atp.cases import PatientCase
from atp.io.atomic import atomic_write_text
from atp.planning.metrics import evaluate_metric
from atp.planning.resolve import ResolvedGoal
from atp.planning.structures import structure_mask

#: Relative slack when comparing an achieved value with the requested one.
MET_RTOL = 1e-4


@dataclass(frozen=True)
class GoalOutcome:
    """One row of the goal report: requested, predicted and achieved value (the metric's
    ``unit``), the margin (>= 0 when met) and whether the goal is met."""

    label: str
    roi: str
    metric: str
    op: str
    priority: int
    role: str
    source: str
    requested: float
    predicted: float | None
    achieved: float
    met: bool
    margin: float  # >= 0 when met, in the metric's unit
    unit: str
    #: a priority-1 goal that cannot be met with the other priority-1 goals: its tightest
    #: achievable value (PlanResult.p1_infeasible); None otherwise
    achievable: float | None = None


def goal_report(case: PatientCase, dose_gy: np.ndarray, resolved: list[ResolvedGoal]
                ) -> list[GoalOutcome]:
    """Evaluate every resolved goal on ``dose_gy`` (case grid).

    Parameters
    ----------
    case : PatientCase
        The case the goals were resolved on (structures and voxel spacing).
    dose_gy : np.ndarray
        Dose (Gy) on the case grid, (z, y, x).
    resolved : list of ResolvedGoal
        The goals to evaluate (`resolve_goals`).

    Returns
    -------
    list of GoalOutcome
        One per resolved goal, in order: requested and achieved values (the metric's
        unit), margin and whether it is met (to a relative slack of ``MET_RTOL``).
    """
    out = []
    for r in resolved:
        m = r.goal.metric
        achieved = evaluate_metric(m, dose_gy, structure_mask(case, r.roi),
                                   spacing_mm=case.spacing_mm)
        margin = (r.value - achieved) if r.goal.op == "<=" else (achieved - r.value)
        met = bool(margin >= -MET_RTOL * max(abs(r.value), 1e-6))
        out.append(GoalOutcome(label=r.label, roi=r.roi, metric=m.name, op=r.goal.op,
                               priority=r.goal.priority, role=r.role, source=r.source,
                               requested=float(r.value), predicted=r.predicted,
                               achieved=float(achieved), met=met, margin=float(margin),
                               unit=m.unit))
    return out


def write_report_csv(report: list[GoalOutcome], path: str | os.PathLike) -> None:
    """Write the goal report as CSV, atomically.

    Parameters
    ----------
    report : list of GoalOutcome
        The rows, one per goal (the fields of `GoalOutcome` as columns).
    path : str or os.PathLike
        The CSV file to write.
    """
    buf = io.StringIO()
    fields = list(GoalOutcome.__dataclass_fields__)
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    for o in report:
        w.writerow(asdict(o))
    atomic_write_text(path, buf.getvalue())


def write_report_json(report: list[GoalOutcome], path: str | os.PathLike, **extra) -> None:
    """Write the goal report (and any extra summary fields) as JSON, atomically.

    Parameters
    ----------
    report : list of GoalOutcome
        The goals, written under ``goals``.
    path : str or os.PathLike
        The JSON file to write.
    **extra
        Top-level summary fields (JSON-serializable), written before ``goals``.
    """
    doc = {**extra, "goals": [asdict(o) for o in report]}
    atomic_write_text(path, json.dumps(doc, indent=2))
