"""The deliverable step of a plan run (`plan.py`): sequence, dose, report, files, DICOM."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("atp.delivery")


def deliver_and_save(case, influence, result, *, engine, machine, sequencer, plan_settings,
                     out_dir, cache_dir=None, predicted=None, summary: dict | None = None,
                     export_dicom: bool = False, force_export: bool = False, workflow=None):
    """Sequence ``result`` on ``machine``, write the run folder and log the comparison.

    Parameters
    ----------
    case : PatientCase
        The case planned.
    influence : DoseInfluence
        The matrix the plan was optimized with.
    result : PlanResult
        The optimized fluence plan.
    engine : DoseEngine
        For the matrix on the jaw rectangles (`atp.delivery.apertures`).
    machine : Machine
        The machine to sequence for.
    sequencer : SequencingSettings
        Sequencing options.
    plan_settings : PlanSettings
        The planner's settings (the re-optimization's objective).
    out_dir : str or Path
        The run folder to write.
    cache_dir : str or Path, optional
        Influence cache (None computes the rectangle matrix without caching).
    predicted : np.ndarray, optional
        Predicted dose (Gy) on the case grid, (z, y, x), saved and drawn in the DVH.
    summary : dict, optional
        Updated in place with the deliverable figures.
    export_dicom : bool
        Also write the DICOM plan set (refused for a plan breaking a P1 goal or a limit).
    force_export : bool
        Export despite broken priority-1 goals or machine limits.
    workflow : atp.evaluation.workflow.WorkflowLog, optional
        Gets the wall time of the ``sequencing`` step (sequencing, deliverable dose,
        re-optimization, files) and of the ``export``.

    Returns
    -------
    paths : dict of str to Path
        The files written.
    report : list
        The deliverable plan's goal report.
    """
    from atp.delivery.deliverable import deliver
    from atp.delivery.outputs import save_deliverable

    t0 = time.perf_counter()
    deliverable = deliver(case, influence, result, machine=machine, engine=engine,
                          settings=sequencer, plan_settings=plan_settings, cache_dir=cache_dir)
    figures = deliverable.figures()
    if summary is not None:
        summary.update({"deliverable": True, "mu_per_fraction_deliverable":
                        figures["mu_per_fraction_deliverable"]})
    paths = save_deliverable(out_dir, case, result, deliverable, predicted_dose_gy=predicted,
                             summary=summary)
    if workflow is not None:
        workflow.record(case.patient_id, "sequencing", time.perf_counter() - t0)
    for row in deliverable.comparison():
        log.info("%-45s optimized %8.2f -> deliverable %8.2f %s", row["label"],
                 row["optimized"], row["deliverable"],
                 "" if row["deliverable_met"] == row["optimized_met"]
                 else ("(now met)" if row["deliverable_met"] else "(LOST)"))
    log.info("%s on %s: %d control points, MU per fraction %.0f estimated -> %.0f sequenced "
             "-> %.0f deliverable, about %.0f s per fraction; %s", figures["delivery_mode"],
             machine.name, figures["control_points"], figures["mu_per_fraction_estimate"],
             figures["mu_per_fraction_sequenced"], figures["mu_per_fraction_deliverable"],
             figures["delivery_time_s"], deliverable.summary())
    for v in figures["violations"]:
        log.warning("machine limit: %s", v)
    if export_dicom:  # last: a refusal leaves the report that says why, and no DICOM file
        from pathlib import Path

        from atp.io.dicom.rtplan_export import export_plan_set

        t0 = time.perf_counter()
        paths.update({f"dicom_{k}": v for k, v in export_plan_set(
            Path(out_dir) / "dicom", case, deliverable.plan, deliverable.dose_gy,
            report=deliverable.report, force=force_export).items()})
        if workflow is not None:
            workflow.record(case.patient_id, "export", time.perf_counter() - t0)
    return paths, deliverable.report
