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


def load_model(cfg: DictConfig):
    """The checkpoint's module, its net rebuilt from the training run's config if found."""
    from atp.models import DosePredictionModule

    if cfg.ckpt_path is None:
        raise ValueError("prediction=model needs ckpt_path=<checkpoint> (or prediction="
                         "reference | <folder of predictions>)")
    ckpt = Path(cfg.ckpt_path)
    if not ckpt.is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt}: no such checkpoint")
    train_cfg_path = ckpt.parent.parent / "config.yaml"  # written by train.py
    train_cfg = cfg
    if train_cfg_path.is_file():
        train_cfg = OmegaConf.load(train_cfg_path)
        log.info("network rebuilt from %s", train_cfg_path)
    else:
        log.warning("%s not found: the network comes from this run's config", train_cfg_path)
    try:
        module = DosePredictionModule.load_from_checkpoint(
            ckpt, map_location="cpu", net=instantiate(train_cfg.net),
            loss=instantiate(cfg.loss), optimizer=instantiate(cfg.optimizer), scheduler=None)
    except (RuntimeError, EOFError, KeyError, OSError) as exc:
        raise ValueError(f"ckpt_path={ckpt}: not a readable checkpoint of this network "
                         f"({type(exc).__name__}: {exc})") from exc
    return module, train_cfg


def predictor(cfg: DictConfig, data):
    """``case -> predicted dose``: the model (``prediction=model``), the case's own dose
    (``reference``: a perfect prediction) or a folder of files (``<patient id>.csv|.npy``)."""
    from atp.io.loading import find_prediction, load_dose

    if cfg.prediction == "model":
        from atp.models.predict import predict_case

        module, train_cfg = load_model(cfg)
        include_ct = bool(train_cfg.data.include_ct)
        return lambda case: predict_case(module, case, organs=data.organs,
                                         include_ct=include_ct, mirror_to=data.mirror_to)
    if cfg.prediction == "reference":
        return lambda case: case.dose_gy
    ids = [Path(f).stem for f in data.splits[cfg.split][: cfg.max_cases or None]]
    for pid in ids:  # every file is there before any planning starts
        find_prediction(cfg.prediction, pid)
    return lambda case: load_dose(find_prediction(cfg.prediction, case.patient_id),
                                  shape=case.shape)


def evaluate(cfg: DictConfig) -> dict:
    from atp.evaluation.criteria import criteria_sets
    from atp.evaluation.report import write_evaluation
    from atp.evaluation.run import evaluate_case, record_workflow
    from atp.evaluation.workflow import WorkflowLog
    from atp.io.loading import load_any_case
    from atp.loggers import close_loggers, instantiate_group, log_evaluation

    out = Path(cfg.paths.output_dir)
    site = OmegaConf.to_container(cfg.site, resolve=True)
    inst = OmegaConf.to_container(cfg.institution, resolve=True)
    data = instantiate(cfg.data, site=site, _convert_="all")
    data.prepare_data()
    data.setup("test")
    files = data.splits[cfg.split][: cfg.max_cases or None]
    predict = predictor(cfg, data)
    engine, settings = instantiate(cfg.engine), instantiate(cfg.planner)
    tol = OmegaConf.to_container(cfg.tolerance)
    criteria = criteria_sets(OmegaConf.to_container(cfg.get("criteria") or {}, resolve=True),
                             site_cfg=site, institution=inst)

    results = []
    for i, path in enumerate(files):
        case = load_any_case(path, site=site["name"])
        ev = evaluate_case(case, predict, site_cfg=site, institution=inst, engine=engine,
                           settings=settings, tolerances=tol, comparator=cfg.comparator,
                           criteria=criteria, engine_gap_fit=cfg.engine_gap,
                           beams_from=cfg.beams,
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
