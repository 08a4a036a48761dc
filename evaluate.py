"""Evaluate at one institution: ATP vs the clinical plan (or a re-plan) vs prediction.

    python evaluate.py site=lung institution=B ckpt_path=<run>/checkpoints/last.ckpt
    python evaluate.py --multirun site=lung institution=A,B,C ckpt_path=...
    python evaluate.py -m evaluation=tune_tolerances site=lung ckpt_path=...   # Optuna
    python evaluate.py data=openkbp site=npc split=val prediction=reference  # phase 2 only

Writes per-case and summary tables (CSV), figures and a self-contained report.html; a
multirun also writes one summary of all its jobs (atp.sweep_summary).
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from atp.config import CONF_DIR, register_resolvers

log = logging.getLogger("atp.evaluate")
register_resolvers()


@hydra.main(config_path=str(CONF_DIR), config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> dict | float | None:
    from atp.sweeps import run_job

    if cfg.objective is None:
        return run_job(evaluate, cfg)
    # a sweeper (Optuna) optimizes one number of the summary; a failed trial gives NaN
    return run_job(lambda c: float(evaluate(c)[c.objective]), cfg, failed_value=float("nan"))


def evaluate(cfg: DictConfig) -> dict:
    from atp.evaluation.criteria import criteria_sets
    from atp.evaluation.delivery import DeliverySettings
    from atp.evaluation.report import write_evaluation
    from atp.evaluation.run import evaluate_case, record_workflow
    from atp.evaluation.workflow import WorkflowLog
    from atp.io.loading import load_any_case
    from atp.loggers import close_loggers, instantiate_group, log_evaluation
    from atp.models.loading import ids_of, predictor

    out = Path(cfg.paths.output_dir)
    site = OmegaConf.to_container(cfg.site, resolve=True)
    inst = OmegaConf.to_container(cfg.institution, resolve=True)
    data = instantiate(cfg.data, site=site, _convert_="all")
    data.prepare_data()
    data.setup("test")
    files = data.splits[cfg.split][: cfg.max_cases or None]
    predict = predictor(cfg.prediction, ckpt_path=cfg.ckpt_path, patient_ids=ids_of(files),
                        fallback_net_cfg=cfg.net)
    engine, settings = instantiate(cfg.engine), instantiate(cfg.planner)
    tol = OmegaConf.to_container(cfg.tolerance)
    delivery = DeliverySettings(instantiate(cfg.machine), instantiate(cfg.sequencer)) \
        if cfg.deliverable else None
    criteria = criteria_sets(OmegaConf.to_container(cfg.get("criteria") or {}, resolve=True),
                             site_cfg=site, institution=inst)

    results = []
    for i, path in enumerate(files):
        case = load_any_case(path, site=site["name"])
        ev = evaluate_case(case, predict, site_cfg=site, institution=inst, engine=engine,
                           settings=settings, tolerances=tol, comparator=cfg.comparator,
                           criteria=criteria, engine_gap_fit=cfg.engine_gap,
                           beams_from=cfg.beams, delivery=delivery,
                           cache_dir=cfg.paths.cache_dir if cfg.cache else None)
        comp = ev.comparator
        log.info("%d/%d %s: ATP %s | %s %s | %.1f s", i + 1, len(files), case.patient_id,
                 ev.atp.summary(), comp.label, comp.result.summary() if comp.result else
                 "(the case's own dose)", ev.timing_s["end_to_end_s"])
        results.append(ev)
    summary = write_evaluation(out, results, site=site["name"], institution=inst["name"],
                               n_figures=cfg.dvh_figures)
    workflow = WorkflowLog(site=site["name"], institution=inst["name"], plan="ATP")
    for ev in results:
        record_workflow(workflow, ev)
    workflow.write(out)  # the time of each planning step (Fig. 7; atp.sweep_summary)
    loggers = instantiate_group(cfg.get("logger"))
    try:
        log_evaluation(loggers, summary, sorted((out / "figures").glob("*.png")))
    finally:
        close_loggers(loggers)
    log.info("report: %s", out / "report.html")
    return summary


if __name__ == "__main__":
    main()
