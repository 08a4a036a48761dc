"""A deliverable plan's run folder: arrays, the two-column goal report, figures, DICOM.

``goal_report.csv/.json`` report every goal on the deliverable dose (``achieved``, ``met``,
``margin``) next to the optimized fluence plan's value (``optimized_achieved``,
``optimized_met``) and the sequenced plan's before the segment re-optimization
(``sequenced_achieved``). ``plan.npz`` keeps the optimized ``fluence`` (a warm start needs
it) with the deliverable ``dose_gy``, the ``optimized_dose_gy`` and the delivered beamlet
weights; ``sequence.json`` summarizes every beam's control points, MU and time.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from atp.io.atomic import atomic_open, atomic_write_text

EXTRA_FIELDS = ("optimized_achieved", "optimized_met", "sequenced_achieved")


def report_rows(deliverable) -> list[dict]:
    """The deliverable goal report with the optimized and sequenced values of each goal.

    Parameters
    ----------
    deliverable : DeliverableResult
        The deliverable plan and its reports.

    Returns
    -------
    list of dict
        One row per goal: the deliverable goal's fields, plus ``optimized_achieved``,
        ``optimized_met`` and ``sequenced_achieved`` (in the goal's unit).
    """
    rows = []
    for o, s, d in zip(deliverable.optimized_report, deliverable.sequenced_report,
                       deliverable.report, strict=True):
        rows.append({**asdict(d), "optimized_achieved": o.achieved, "optimized_met": o.met,
                     "sequenced_achieved": s.achieved})
    return rows


def sequence_summary(plan) -> list[dict]:
    """Per beam: name, technique, control points, segments, MU, time and gantry range.

    Parameters
    ----------
    plan : DeliverablePlan
        The sequenced plan.

    Returns
    -------
    list of dict
        One row per beam: MU per fraction, delivery time (s), IEC gantry start and stop
        (degrees), jaws (mm) and the sequencing error (MU, None when not recorded).
    """
    return [{"name": b.name, "technique": b.technique, "rotation": b.rotation,
             "control_points": b.n_cp, "segments": b.n_segments, "mu_per_fraction": b.mu,
             "delivery_time_s": b.delivery_time_s(plan.machine),
             "gantry_start_deg": float(b.gantry_iec_deg[0]),
             "gantry_stop_deg": float(b.gantry_iec_deg[-1]), "jaws_mm": list(b.jaws_mm),
             "sequencing_error_mu": b.info.get("max_pair_error_mu")} for b in plan.beams]


def save_deliverable(out_dir: str | os.PathLike, case, result, deliverable, *,
                     predicted_dose_gy: np.ndarray | None = None, summary: dict | None = None,
                     export_dicom: bool = False, force_export: bool = False
                     ) -> dict[str, Path]:
    """Write the run folder of a deliverable plan (see the module docstring).

    Parameters
    ----------
    out_dir : str or Path
        The run folder (created files are written atomically).
    case : PatientCase
        The case planned (patient id, structures for the DVH).
    result : PlanResult
        The optimized fluence plan.
    deliverable : DeliverableResult
        The deliverable plan, its dose and reports.
    predicted_dose_gy : np.ndarray, optional
        Predicted dose (Gy) on the case grid, (z, y, x), saved and drawn in the DVH.
    summary : dict, optional
        Extra fields for ``goal_report.json``.
    export_dicom : bool
        Also write ``dicom/`` (CT if needed, RTSTRUCT, RTPLAN, RTDOSE), last: a plan that
        breaks a priority-1 goal or a machine limit gets its report and figures, then
        `atp.io.dicom.rtplan_export.ExportRefused` and no DICOM file.
    force_export : bool
        Export despite broken priority-1 goals or machine limits.

    Returns
    -------
    dict of str to Path
        The paths written, by kind (``plan``, ``report_csv``, ``dvh``, ``dicom_*``, ...).
    """
    from atp.viz import plot_dvh_overlay, save_figure
    from atp.viz.delivery import plot_fluences

    out = Path(out_dir)
    paths = {"plan": out / "plan.npz", "report_csv": out / "goal_report.csv",
             "report_json": out / "goal_report.json", "dvh": out / "dvh.png",
             "sequence": out / "sequence.json", "fluence_png": out / "fluence.png"}
    arrays = {"fluence": result.fluence, "dose_gy": deliverable.dose_gy,
              "optimized_dose_gy": result.dose_gy,
              "deliverable_fluence": deliverable.fluence.astype(np.float32)}
    if predicted_dose_gy is not None:
        arrays["predicted_dose_gy"] = predicted_dose_gy
    with atomic_open(paths["plan"]) as fh:
        np.savez_compressed(fh, **arrays)
    rows = report_rows(deliverable)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["label"])
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(paths["report_csv"], buf.getvalue())
    figures = deliverable.figures()
    doc = {**(summary or {}), "patient_id": case.patient_id,
           "summary": deliverable.summary(), "optimized_summary": result.summary(),
           "all_p1_met": deliverable.all_p1_met, "goals_met": deliverable.n_goals_met,
           "goals_total": len(deliverable.report),
           "optimized_goals_met": result.n_goals_met, "skipped": result.skipped,
           "phases": result.phases, "deliverable": figures, "goals": rows}
    atomic_write_text(paths["report_json"], json.dumps(doc, indent=2, default=float))
    atomic_write_text(paths["sequence"], json.dumps(
        {**figures, "beams": sequence_summary(deliverable.plan),
         "machine_settings": deliverable.plan.machine.to_dict()}, indent=2, default=float))
    doses = {"deliverable": deliverable.dose_gy, "optimized fluence": result.dose_gy}
    if predicted_dose_gy is not None:
        doses["prediction"] = predicted_dose_gy
    save_figure(plot_dvh_overlay(case, doses, title=f"{case.patient_id}: "
                                 f"{deliverable.summary()}"), paths["dvh"])
    save_figure(plot_fluences(deliverable.plan), paths["fluence_png"])
    if export_dicom:
        from atp.io.dicom.rtplan_export import export_plan_set

        paths.update({f"dicom_{k}": v for k, v in export_plan_set(
            out / "dicom", case, deliverable.plan, deliverable.dose_gy,
            report=deliverable.report, force=force_export).items()})
    return paths
