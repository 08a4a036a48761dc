"""`train.py` on tiny data: every site, OpenKBP, every experiment, and no network."""

from __future__ import annotations

import socket

import pytest

from atp.config import CONF_DIR
from atp.names import SITES

FAST = ["debug=fast_dev_run", "grid_spacing_mm=12.0", "n_patients=3"]


@pytest.mark.parametrize("site", SITES)
def test_fast_dev_run_every_site(site, tiny_cohorts, compose_train):
    from train import train

    cfg = compose_train([f"site={site}", *FAST], data_dir=tiny_cohorts)
    metrics = train(cfg)
    assert metrics["val/mae_body_gy"] >= 0 and "train/loss" in metrics


def test_fast_dev_run_on_openkbp(openkbp_dir, compose_train):
    from train import train

    cfg = compose_train(["site=npc", "data=openkbp", "debug=fast_dev_run",
                         f"paths.openkbp_dir={openkbp_dir}"])
    metrics = train(cfg)
    assert "val/dose_score_gy" in metrics


@pytest.mark.parametrize("experiment",
                         sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml")))
def test_every_experiment_runs_with_fast_dev_run(experiment, tiny_cohorts, compose_train):
    from train import train

    plain = compose_train([f"experiment={experiment}"])
    if experiment == "cpu_quick":  # the experiment's values win over train.yaml's
        assert plain.grid_spacing_mm == 6.0 and list(plain.patch_size) == [48, 48, 48]
    # the experiment first, then the debug limits on top (as on the command line)
    cfg = compose_train([f"experiment={experiment}", "site=lung", *FAST],
                        data_dir=tiny_cohorts)
    assert cfg.trainer.fast_dev_run
    train(cfg)


def test_wandb_logger_stays_offline(tiny_cohorts, compose_train, monkeypatch):
    """A run with the default W&B logger makes no connection off this machine."""
    from train import train

    attempts = []
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else str(address)
        if isinstance(address, tuple) and host not in ("127.0.0.1", "localhost", "::1"):
            attempts.append(address)
            raise OSError(f"test blocked a network connection to {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    cfg = compose_train(["site=lung", *FAST, "logger=wandb"], data_dir=tiny_cohorts)
    assert cfg.logger.wandb.mode == "offline"
    train(cfg)
    assert attempts == []
