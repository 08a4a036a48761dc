"""Blinded physician review of ATP vs comparator plans (the study's Fig. 3).

    python review.py step=prepare runs=[outputs/demo/evaluate] review_dir=outputs/review
    python review.py step=simulate review_dir=outputs/review      # simulated reviewers
    python review.py step=analyze review_dir=outputs/review       # answers/*.json|csv

prepare: one offline HTML packet per reviewer (packets/) and the answer key (key/);
analyze: acceptance, preference and AI recognition by number of agreeing reviewers,
Fleiss' kappa, the dosimetric comparison split by preference, and a report.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from atp.config import CONF_DIR, register_resolvers

log = logging.getLogger("atp.review")
register_resolvers()
STEPS = ("prepare", "simulate", "analyze")


@hydra.main(config_path=str(CONF_DIR), config_name="review", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    if cfg.step not in STEPS:
        raise SystemExit(f"step={cfg.step}: expected one of {', '.join(STEPS)}")
    return {"prepare": prepare, "simulate": simulate, "analyze": analyze}[cfg.step](cfg)


def prepare(cfg: DictConfig) -> dict:
    from atp.review import prepare_review

    r = cfg.review
    runs = [cfg.runs] if isinstance(cfg.runs, str) else list(cfg.runs)
    reviewers = r.reviewers  # a list of IDs, or a number of reviewers (R1, R2, ...)
    reviewers = [f"R{i + 1}" for i in range(reviewers)] if isinstance(reviewers, int) \
        else list(reviewers)
    out = prepare_review(runs, cfg.review_dir, reviewers=reviewers,
                         seed=int(r.seed), new_label=r.new_label,
                         questions=OmegaConf.to_container(r.questions),
                         forbidden_terms=list(r.forbidden_terms), dpi=int(r.figure_dpi),
                         overwrite=bool(cfg.overwrite))
    log.info("%d cases, reviewers %s: send %s/review_<reviewer>.html to each reviewer; "
             "keep %s to yourself", out["cases"], ", ".join(out["reviewers"]),
             Path(cfg.review_dir) / "packets", out["key"].parent)
    return out


def simulate(cfg: DictConfig) -> list:
    from atp.review import load_key
    from atp.review.simulate import write_simulated_answers

    key = load_key(Path(cfg.review_dir) / "key" / "key.json")
    paths = write_simulated_answers(key, cfg.simulated_answers_dir,
                                    **OmegaConf.to_container(cfg.review.simulate))
    log.info("SIMULATED answers of %d reviewers: %s", len(paths), cfg.simulated_answers_dir)
    return paths


def analyze(cfg: DictConfig) -> dict:
    from atp.review import analyze_review, load_answer_file, load_key
    from atp.review.analysis import answer_files, evaluation_reports_of

    key_path = Path(cfg.review_dir) / "key" / "key.json"
    out = cfg.analysis_dir
    if out is None:  # keep simulated and real analyses apart
        files = answer_files(cfg.answers_dir)
        simulated = bool(files) and load_answer_file(files[0]).simulated
        out = Path(cfg.review_dir) / ("analysis_simulated" if simulated else "analysis")
    reports = evaluation_reports_of(load_key(key_path)) if cfg.add_to_evaluation_report \
        else []
    summary = analyze_review(key_path, cfg.answers_dir, out, evaluation_reports=reports,
                             keyword_top=int(cfg.review.keyword_top))
    log.info("acceptable (unanimous) %.0f %%, preferred (unanimous) %.0f %%, recognized "
             "%.0f %%%s", 100 * summary["atp_acceptable_unanimous"],
             100 * summary["atp_preferred_unanimous"], 100 * summary["atp_recognition_rate"],
             " [SIMULATED reviewers]" if summary["simulated"] else "")
    return summary


if __name__ == "__main__":
    main()
