"""Build the synthetic cohort of one site: procedural anatomy + reference plans.

    python cohort.py site=lung n=40 seed=2020 spacing_mm=6
    python cohort.py --multirun site=npc,lung,breast,cervix,rectum spacing_mm=6

Cases go to ``${paths.data_dir}/synthetic/<site>/...`` with a manifest; re-running skips
finished patients and regenerates corrupted ones.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from atp.config import CONF_DIR, register_resolvers

log = logging.getLogger("atp.cohort")
register_resolvers()


@hydra.main(config_path=str(CONF_DIR), config_name="cohort", version_base="1.3")
def main(cfg: DictConfig) -> str:
    from atp.cases import load_case
    from atp.synth.cohort import build_cohort, read_manifest, reference_plan_stats
    from atp.viz import plot_case

    site = OmegaConf.to_container(cfg.site, resolve=True)
    inst = OmegaConf.to_container(cfg.institution, resolve=True)
    settings = instantiate(cfg.planner)
    result = build_cohort(cfg.out_dir, site_cfg=site, institution=inst, n=cfg.n,
                          seed=cfg.seed, spacing_mm=cfg.spacing_mm,
                          engine=instantiate(cfg.engine), settings=settings,
                          sparing_pct=cfg.sparing_pct,
                          target_mean_band_pct=tuple(cfg.target_mean_band_pct),
                          sparing_max_iter=cfg.sparing_max_iter, bixel_mm=cfg.bixel_mm,
                          machine=instantiate(cfg.machine) if cfg.deliverable else None,
                          sequencer=instantiate(cfg.sequencer))
    manifest = read_manifest(cfg.out_dir)
    stats = reference_plan_stats(manifest)
    log.info("%s: %d built, %d regenerated, %d already there, in %.0f s; reference plans "
             "meeting every P1 goal: %d of %d (%.0f %%); target mean / Rx %.3f to %.3f; "
             "D95 / Rx min %.3f, median %.3f; sequenced on the machine: %d (a P1 goal lost "
             "in sequencing: %d)",
             site["name"], len(result.built), len(result.regenerated), len(result.skipped),
             result.seconds, stats["p1_all_met"], stats["n"], stats["p1_rate_pct"],
             stats["target_mean_over_rx_min"], stats["target_mean_over_rx_max"],
             stats["target_d95_over_rx_min"], stats["target_d95_over_rx_median"],
             stats["deliverable"], stats["p1_lost_in_delivery"])
    for entry in manifest["patients"][: cfg.figures]:
        case = load_case(Path(cfg.out_dir) / entry["file"])
        png = Path(cfg.out_dir) / "figures" / f"{case.patient_id}.png"
        plot_case(case, dose_gy=case.dose_gy, path=png)
        log.info("figure: %s", png)
    log.info("manifest: %s", result.manifest_path)
    return str(result.manifest_path)


if __name__ == "__main__":
    main()
