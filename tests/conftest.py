"""Shared fixtures. Heavy data (the OpenKBP sample) is read once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
OPENKBP_SAMPLE = REPO_ROOT.parent / "shared" / "data" / "openkbp-sample"


@pytest.fixture(scope="session")
def openkbp_dir() -> Path:
    if not OPENKBP_SAMPLE.is_dir():
        pytest.skip(f"OpenKBP sample not found at {OPENKBP_SAMPLE}")
    return OPENKBP_SAMPLE


@pytest.fixture(scope="session")
def openkbp_cases(openkbp_dir):
    from atp.io.openkbp import load_openkbp_dataset

    report = load_openkbp_dataset(openkbp_dir, progress=False)
    assert not report.skipped, report.skipped
    return report.cases


@pytest.fixture(scope="session")
def tiny_cohorts(tmp_path_factory):
    """Three-patient synthetic cohorts of every site on a 12 mm grid (short plans).

    Laid out as ``train.py`` expects them under ``paths.data_dir`` (institution A, seed
    2020), so a training run finds them instead of building its own. The lung cohort's
    reference plans are sequenced on the default machine, as cohort.py makes them
    (deliverable "clinical" plans with known MU, for the evaluation tests); the other
    sites keep fluence plans, which is faster (the rectum's VMAT arcs triple its time).
    """
    from atp.delivery import load_machine
    from atp.dose import PencilBeamEngine
    from atp.names import SITES
    from atp.planning import PlanSettings
    from atp.sites import load_institution_config, load_site_config
    from atp.synth.cohort import build_cohort

    data_dir = tmp_path_factory.mktemp("data")
    inst = load_institution_config("A")
    for site in SITES:
        cfg = load_site_config(site)
        build_cohort(data_dir / "synthetic" / site / "A_12mm_seed2020", site_cfg=cfg,
                     institution=inst, n=3, seed=2020, spacing_mm=12.0,
                     engine=PencilBeamEngine(),
                     settings=PlanSettings(max_iter=40, p1_rounds=1, **cfg["conformity"]),
                     machine=load_machine() if site == "lung" else None, progress=False)
    return data_dir


@pytest.fixture()
def compose_train(tmp_path):
    """Compose ``conf/train.yaml`` with overrides, tmp paths and a CSV logger."""
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from atp.config import CONF_DIR, register_resolvers

    register_resolvers()

    def _compose(overrides: list[str], *, data_dir=None):
        base = [f"paths.log_dir={tmp_path / 'logs'}",
                f"paths.data_dir={data_dir or tmp_path / 'data'}"]
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="train", overrides=base + overrides)
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / "run")
        return cfg

    return _compose


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_cohorts, tmp_path_factory):
    """A one-epoch CAD-UNet on the tiny lung cohort, with its run config next to it."""
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from atp.config import CONF_DIR, register_resolvers
    from train import train

    register_resolvers()
    run = tmp_path_factory.mktemp("train_run")
    overrides = ["site=lung", "debug=fast_dev_run", "trainer.fast_dev_run=false",
                 "trainer.max_epochs=1", "+trainer.limit_val_batches=1",
                 "grid_spacing_mm=12.0", "n_patients=3", "test_after_fit=false",
                 f"paths.data_dir={tiny_cohorts}", f"paths.log_dir={run}",
                 "callbacks.goal_guided_planning.every_n_epochs=1",
                 "callbacks.goal_guided_planning.n_cases=1",
                 "callbacks.goal_guided_planning.max_iter=20"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(run / "out")
    metrics = train(cfg)
    assert "val_plan/p1_met_share" in metrics  # the planning callback ran and logged
    ckpt = run / "out" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file() and (run / "out" / "config.yaml").is_file()
    assert list((run / "out" / "planning").glob("*/goal_report.csv"))
    return ckpt
