"""Plan one case from a predicted dose with the site's goal list and an institution's beams.

    python plan.py case=../shared/data/openkbp-sample/train-pats/pt_1 site=npc institution=A
    python plan.py case=... +tolerance.parotid_l=-20 planner=lexicographic
    python plan.py case=... +tolerance.parotid_l=-30 warm_start=<previous run folder>

Writes plan.npz, goal_report.csv/.json and dvh.png into the Hydra run folder.
"""

from __future__ import annotations

import logging
import time

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


def previous_fluence(path: str, *, n_beamlets: int):
    """The fluence of a previous plan (its ``plan.npz`` or run folder), checked."""
    from pathlib import Path

    import numpy as np

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


def plan_case(cfg: DictConfig) -> dict:
    """Plan ``cfg.case``; the run folder gets the plan, its goal report and a DVH."""
    from atp.dose import beams_from_config, cached_influence, default_isocenter_mm, total_mu
    from atp.io.loading import load_any_case, load_dose
    from atp.planning import plan
    from atp.planning.outputs import save_plan
    from atp.planning.setup import beam_config_for, goal_list_for, tolerances_for

    site = OmegaConf.to_container(cfg.site, resolve=True)
    inst = OmegaConf.to_container(cfg.institution, resolve=True)
    out_dir = cfg.paths.output_dir
    case = load_any_case(cfg.case, site=site["name"])
    if cfg.prediction is not None:
        predicted = load_dose(cfg.prediction, shape=case.shape)
    elif case.dose_gy is not None:
        log.warning("no prediction given: the case's own dose stands in for it")
        predicted = case.dose_gy
    else:
        raise SystemExit(f"{cfg.case}: no prediction given and the case has no dose")

    t0 = time.perf_counter()
    beams = beams_from_config(beam_config_for(site, inst), laterality=case.metadata.get(
        "laterality"), isocenter_mm=default_isocenter_mm(case))
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
    result = plan(case, influence, goal_list_for(site, inst), predicted_dose_gy=predicted,
                  tolerances=tolerances, settings=settings, warm_start=warm)
    mu = total_mu(influence, result.fluence)
    summary = {"site": site["name"], "institution": inst["name"], "n_beams": len(beams),
               "n_beamlets": influence.n_beamlets, "total_mu_all_fractions": mu,
               "mu_per_fraction": mu / (case.n_fractions or 1),
               "influence_s": t_influence, "optimization_s": result.wall_s,
               "tolerances": tolerances, "mode": settings.mode,
               "warm_start": cfg.warm_start, "evaluations": result.n_evaluations}
    paths = save_plan(out_dir, case, result, predicted_dose_gy=predicted, summary=summary)
    for o in result.report:
        log.info("%-45s %-12s requested %8.2f achieved %8.2f %s %s", o.label, o.source,
                 o.requested, o.achieved, o.unit, "met" if o.met else "NOT MET")
    log.info("%s | %d beams, %d beamlets, %.0f MU per fraction | influence %.1f s, "
             "optimization %.1f s", result.summary(), len(beams), influence.n_beamlets,
             summary["mu_per_fraction"], t_influence, result.wall_s)
    log.info("results in %s", paths["report_csv"].parent)
    return {"all_p1_met": result.all_p1_met, "goals_met": result.n_goals_met}


if __name__ == "__main__":
    main()
