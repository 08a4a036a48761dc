"""Write a plan's results into a run folder: arrays, goal report, DVH figure."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from atp.cases import PatientCase
from atp.io.atomic import atomic_open
from atp.planning.planner import PlanResult
from atp.planning.report import write_report_csv, write_report_json


def save_plan(out_dir: str | os.PathLike, case: PatientCase, result: PlanResult, *,
              predicted_dose_gy: np.ndarray | None = None, summary: dict | None = None
              ) -> dict[str, Path]:
    """Write ``plan.npz`` (fluence, dose), ``goal_report.csv/.json`` and ``dvh.png``.

    Parameters
    ----------
    out_dir : str or os.PathLike
        The run folder to write into (it must exist).
    case : PatientCase
        The planned case (patient id, ROIs and reference dose for the DVH figure).
    result : PlanResult
        The plan to save.
    predicted_dose_gy : np.ndarray, optional
        Predicted dose (Gy) on the case grid, (z, y, x); saved and drawn when given.
    summary : dict, optional
        Extra fields for ``goal_report.json``.

    Returns
    -------
    dict of str to Path
        The written files, by key ``plan``, ``report_csv``, ``report_json`` and ``dvh``.
    """
    from atp.viz import plot_dvh_overlay, save_figure

    out = Path(out_dir)
    paths = {"plan": out / "plan.npz", "report_csv": out / "goal_report.csv",
             "report_json": out / "goal_report.json", "dvh": out / "dvh.png"}
    arrays = {"fluence": result.fluence, "dose_gy": result.dose_gy}
    if predicted_dose_gy is not None:
        arrays["predicted_dose_gy"] = predicted_dose_gy
    with atomic_open(paths["plan"]) as fh:
        np.savez_compressed(fh, **arrays)
    write_report_csv(result.report, paths["report_csv"])
    write_report_json(result.report, paths["report_json"], patient_id=case.patient_id,
                      summary=result.summary(), all_p1_met=result.all_p1_met,
                      p1_feasible=result.p1_feasible,
                      p1_infeasible={result.resolved[i].label: a
                                     for i, a in result.p1_infeasible.items()},
                      goals_met=result.n_goals_met, goals_total=len(result.report),
                      skipped=result.skipped, phases=result.phases, **(summary or {}))
    doses = {"ATP plan": result.dose_gy}
    if predicted_dose_gy is not None:
        doses["prediction"] = predicted_dose_gy
    if case.dose_gy is not None and case.dose_gy is not predicted_dose_gy:
        doses["reference"] = case.dose_gy
    save_figure(plot_dvh_overlay(case, doses, title=f"{case.patient_id}: {result.summary()}"),
                paths["dvh"])
    return paths


def previous_fluence(path: str, *, n_beamlets: int):
    """The fluence of a previous plan (its ``plan.npz`` or run folder), checked.

    Parameters
    ----------
    path : str
        A ``plan.npz`` written by `save_plan`, or the run folder holding it.
    n_beamlets : int
        Number of beamlets of the beams to re-optimize.

    Returns
    -------
    np.ndarray
        The saved fluence (beamlet weights, float32 as `save_plan` writes it),
        (n_beamlets,).
    """
    p = Path(path)
    p = p / "plan.npz" if p.is_dir() else p
    if not p.is_file():
        raise FileNotFoundError(f"warm_start={path}: no plan.npz there")
    with np.load(p) as z:
        if "fluence" not in z:
            raise ValueError(f"warm_start={p}: no 'fluence' array (not a plan.py output)")
        fluence = z["fluence"]
    if fluence.shape != (n_beamlets,):
        raise ValueError(f"warm_start={p}: {fluence.shape[0]} beamlets, these beams have "
                         f"{n_beamlets} (same case, beams and engine settings needed)")
    return fluence
