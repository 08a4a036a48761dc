"""Train the dose-prediction network of one site.

    python train.py site=lung                          # the study's preset
    python train.py site=lung experiment=cpu_quick     # CPU preset (~10 min on 2 cores)
    python train.py site=npc data=openkbp experiment=cpu_quick
    python train.py --multirun site=npc,lung,breast,cervix,rectum experiment=cpu_quick

Hydra assembles the LightningModule, the augmentation and the site's data module from
``conf/``; W&B runs offline unless WANDB_MODE says otherwise.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from atp.config import CONF_DIR, register_resolvers

log = logging.getLogger("atp.train")
register_resolvers()


@hydra.main(config_path=str(CONF_DIR), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> dict | None:
    from atp.sweeps import run_job

    return run_job(train, cfg)


def train(cfg: DictConfig) -> dict:
    """Fit (and test) from a composed config; returns the final metrics."""
    import pytorch_lightning as pl
    import torch

    from atp.config import print_config
    from atp.io.atomic import atomic_write_text
    from atp.loggers import close_loggers, instantiate_group

    out_dir = Path(cfg.paths.output_dir)
    print_config(cfg, out_dir / "config.yaml")  # evaluate.py rebuilds the net from it
    pl.seed_everything(cfg.seed, workers=True)
    if not torch.cuda.is_available() and cfg.trainer.get("accelerator") in ("auto", "gpu") \
            and tuple(cfg.patch_size) == (128, 128, 128):
        log.warning("no GPU: the study's preset (128^3 patches, 3 mm) is meant for a GPU; "
                    "on a CPU use experiment=cpu_quick")

    site = OmegaConf.to_container(cfg.site, resolve=True)
    data = instantiate(cfg.data, site=site, _convert_="all")
    data.prepare_data()
    data.setup("fit")
    # the data module's layout: a distance prior is fitted on the training cases by setup
    model = instantiate(cfg.model, baseline_dose=data.mean_training_dose(),
                        layout=data.layout.to_dict())
    loggers = instantiate_group(cfg.get("logger"))
    trainer = instantiate(cfg.trainer, callbacks=instantiate_group(cfg.get("callbacks")),
                          logger=loggers or False)
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    status = "failed"
    try:
        trainer.fit(model, datamodule=data, ckpt_path=cfg.ckpt_path)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        if cfg.test_after_fit and not cfg.trainer.get("fast_dev_run"):
            best = trainer.checkpoint_callback.best_model_path if \
                trainer.checkpoint_callback else None
            trainer.test(model, datamodule=data, ckpt_path=best or None)
            metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
        status = "success"
    finally:
        close_loggers(loggers, status=status)
    log.info("metrics: %s", {k: round(v, 4) for k, v in metrics.items()})
    atomic_write_text(out_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    log.info("run folder: %s", out_dir)
    return metrics


if __name__ == "__main__":
    main()
