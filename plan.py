"""Plan one case from a predicted dose with the site's goal list and an institution's beams.

    python plan.py case=../shared/data/openkbp-sample/train-pats/pt_1 site=npc institution=A
    python plan.py case=... +tolerance.parotid_l=-20 planner=lexicographic
    python plan.py case=... +tolerance.parotid_l=-30 warm_start=<previous run folder>

Writes plan.npz, goal_report.csv/.json and dvh.png into the Hydra run folder; by default
the plan is sequenced on the machine (``deliverable=true``; ``export_dicom=true`` adds the
DICOM set).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from atp.config import CONF_DIR, register_resolvers

log = logging.getLogger("atp.plan")
register_resolvers()


@hydra.main(config_path=str(CONF_DIR), config_name="plan", version_base="1.3")
def main(cfg: DictConfig) -> dict | None:
    from atp.sweeps import run_job

    return run_job(plan_case, cfg)


def plan_case(cfg: DictConfig) -> dict:
    """Plan ``cfg.case``; the run folder gets the plan, its goal report and a DVH."""
    from atp.dose import cached_influence, total_mu
    from atp.evaluation.workflow import WorkflowLog, read_workflow
    from atp.io.loading import load_any_case, load_dose
    from atp.planning import plan
    from atp.planning.outputs import previous_fluence, save_plan
    from atp.planning.setup import case_beams, goal_list_for, tolerances_for

    site = OmegaConf.to_container(cfg.site, resolve=True)
    inst = OmegaConf.to_container(cfg.institution, resolve=True)
    out_dir = cfg.paths.output_dir
    case = load_any_case(cfg.case, site=site["name"])
    workflow = WorkflowLog(site=site["name"], institution=inst["name"], plan="ATP")
    t0 = time.perf_counter()
    if cfg.prediction is not None:
        predicted = load_dose(cfg.prediction, shape=case.shape)
    elif case.dose_gy is not None:
        log.warning("no prediction given: the case's own dose stands in for it")
        predicted = case.dose_gy
    else:
        raise SystemExit(f"{cfg.case}: no prediction given and the case has no dose")
    workflow.record(case.patient_id, "prediction", time.perf_counter() - t0)

    t0 = time.perf_counter()
    beams, beam_origin = case_beams(case, site, inst, source=cfg.beams)
    engine = instantiate(cfg.engine)
    if cfg.cache_influence:
        influence = cached_influence(engine, case, beams, cache_dir=cfg.paths.cache_dir)
    else:
        influence = engine.influence(case, beams)
    t_influence = time.perf_counter() - t0

    settings = instantiate(cfg.planner)
    tolerances = tolerances_for(site, inst, OmegaConf.to_container(cfg.tolerance))
    warm = None
    if cfg.warm_start is not None:  # the refinement loop: re-optimize from a previous plan
        warm = previous_fluence(cfg.warm_start, n_beamlets=influence.n_beamlets)
        log.info("warm start from %s", cfg.warm_start)
        previous = Path(cfg.warm_start) if Path(cfg.warm_start).is_dir() else \
            Path(cfg.warm_start).parent
        if (previous / "workflow.csv").is_file():  # the refinement series goes on
            workflow.extend(read_workflow(previous).rows)
    result = plan(case, influence, goal_list_for(site, inst), predicted_dose_gy=predicted,
                  tolerances=tolerances, settings=settings, warm_start=warm)
    workflow.record(case.patient_id, "beams_and_matrix", t_influence)
    workflow.record(case.patient_id, "optimization", result.wall_s,
                    start="cold" if warm is None else "warm")
    mu = total_mu(influence, result.fluence)
    summary = {"site": site["name"], "institution": inst["name"], "n_beams": len(beams),
               "beams_from": beam_origin,
               "n_beamlets": influence.n_beamlets, "total_mu_all_fractions": mu,
               "mu_per_fraction": mu / (case.n_fractions or 1),
               "influence_s": t_influence, "optimization_s": result.wall_s,
               "tolerances": tolerances, "mode": settings.mode,
               "warm_start": cfg.warm_start, "evaluations": result.n_evaluations}
    if cfg.deliverable:  # sequence on the machine; goals, MU and DICOM from the apertures
        from atp.delivery.run import deliver_and_save

        paths, report = deliver_and_save(
            case, influence, result, engine=engine, machine=instantiate(cfg.machine),
            sequencer=instantiate(cfg.sequencer), plan_settings=settings, out_dir=out_dir,
            cache_dir=cfg.paths.cache_dir if cfg.cache_influence else None,
            predicted=predicted, summary=summary, export_dicom=cfg.export_dicom,
            force_export=cfg.force_export, workflow=workflow)
    else:
        paths = save_plan(out_dir, case, result, predicted_dose_gy=predicted, summary=summary)
        report = result.report
    workflow.write(out_dir)
    for o in report:
        log.info("%-45s %-12s requested %8.2f achieved %8.2f %s %s", o.label, o.source,
                 o.requested, o.achieved, o.unit, "met" if o.met else "NOT MET")
    log.info("%s | %d beams, %d beamlets, %.0f MU per fraction | influence %.1f s, "
             "optimization %.1f s", result.summary(), len(beams), influence.n_beamlets,
             summary["mu_per_fraction"], t_influence, result.wall_s)
    log.info("results in %s", paths["report_csv"].parent)
    return {"all_p1_met": all(o.met for o in report if o.priority == 1),
            "goals_met": sum(o.met for o in report)}


if __name__ == "__main__":
    main()
