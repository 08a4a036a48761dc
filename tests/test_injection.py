"""The configured engine and planner reach every consumer; presets belong to one entry point.

A fake engine (`fake_engine.CountingEngine`) composed through config must be the engine
that builds the synthetic cohort, that the planning callback plans with, that evaluate.py
and plan.py compute their influence matrices with; the planner settings likewise.
"""

from __future__ import annotations

import dataclasses

import pytest
from fake_engine import CountingEngine
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from atp.config import CONF_DIR, register_resolvers
from atp.planning import PlanSettings

FAKE = ["engine._target_=fake_engine.CountingEngine"]


def _compose(name: str, overrides: list[str], out_dir=None):
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name=name, overrides=overrides)
    if out_dir is not None:
        with open_dict(cfg):
            cfg.paths.output_dir = str(out_dir)
    return cfg


@pytest.fixture()
def counting():
    CountingEngine.CALLS.clear()
    yield CountingEngine.CALLS
    CountingEngine.CALLS.clear()


def test_cohort_build_and_callback_use_the_configured_engine_and_planner(tmp_path, counting):
    from atp.models import DosePredictionModule
    from atp.synth.cohort import read_manifest

    cfg = _compose("train", ["site=lung", "grid_spacing_mm=12.0", "n_patients=3",
                             "planner.max_iter=25", "planner.ladder=7",
                             f"paths.data_dir={tmp_path / 'data'}",
                             f"paths.log_dir={tmp_path / 'logs'}", *FAKE], tmp_path / "run")
    site = OmegaConf.to_container(cfg.site, resolve=True)
    dm = instantiate(cfg.data, site=site, _convert_="all")
    dm.prepare_data()  # no cohort there: built on first use with the configured objects
    # 3 patients x (the plan's matrix + the same engine's matrix on the jaw rectangles:
    # the reference plans are sequenced on the configured machine)
    assert len(counting) == 6
    manifest = read_manifest(dm.root)
    assert "counting_pencil_beam" in str(manifest)  # the manifest records the engine
    assert manifest["machine"]["name"] == instantiate(cfg.machine).name  # ... the machine
    assert '"ladder": 7' in str(manifest).replace("'", '"')  # ... and the planner

    callbacks = {k: instantiate(c) for k, c in cfg.callbacks.items() if c}
    planning = callbacks["goal_guided_planning"]
    assert isinstance(planning.engine, CountingEngine)
    assert isinstance(planning.settings, PlanSettings)
    expected = dataclasses.replace(instantiate(cfg.planner), max_iter=cfg.callbacks
                                   .goal_guided_planning.max_iter)
    assert planning.settings == expected and planning.settings.ladder == 7
    assert planning.delivery.machine == instantiate(cfg.machine)  # deliverable, fast
    assert not planning.delivery.sequencer.reoptimize and not planning.delivery.jaw_matrix
    dm.setup("fit")
    planning.n_cases = 1
    before = len(counting)
    metrics = planning.plan_cases(instantiate(cfg.model), dm, tmp_path / "cb", epoch=0)
    assert len(counting) == before + 1 and 0.0 <= metrics["goals_met_share"] <= 1.0
    assert isinstance(instantiate(cfg.model), DosePredictionModule)


def test_callback_refuses_a_missing_institution():
    from atp.callbacks import GoalGuidedPlanning

    with pytest.raises(ValueError, match="institution"):
        GoalGuidedPlanning(institution={}, engine=CountingEngine(), planner=PlanSettings())


def test_evaluate_and_plan_use_the_configured_engine(tiny_checkpoint, tiny_cohorts,
                                                     tmp_path, counting):
    from evaluate import evaluate
    from plan import plan_case

    cfg = _compose("evaluate", ["site=lung", "institution=A", f"ckpt_path={tiny_checkpoint}",
                                "grid_spacing_mm=12.0", "n_patients=3", "max_cases=1",
                                "split=val", "planner.max_iter=20",
                                f"paths.data_dir={tiny_cohorts}",
                                f"paths.cache_dir={tmp_path / 'cache'}",
                                f"paths.log_dir={tmp_path}", *FAKE], tmp_path / "eval")
    evaluate(cfg)
    # ATP and the comparator share one influence matrix; the deliverable dose (the default)
    # is computed on the same engine's matrix on the beams' jaw rectangles
    assert len(counting) == 2
    case_file = next((tiny_cohorts / "synthetic" / "lung" / "A_12mm_seed2020").glob("*.npz"))
    cfg = _compose("plan", [f"case={case_file}", "site=lung", "institution=A",
                            "cache_influence=false", "planner.max_iter=20",
                            f"paths.log_dir={tmp_path}", *FAKE], tmp_path / "plan")
    plan_case(cfg)
    # plan.py: the plan's matrix, and (deliverable=true) the same engine's matrix on the
    # beams' jaw rectangles for the deliverable dose (atp.delivery.apertures)
    assert len(counting) == 2 + 2


@pytest.mark.parametrize("preset", sorted(p.stem for p in (CONF_DIR / "evaluation")
                                          .glob("*.yaml")))
def test_evaluation_presets_belong_to_evaluate_py(preset):
    cfg = _compose("evaluate", [f"evaluation={preset}", "ckpt_path=x.ckpt"])
    assert cfg.task_name == "evaluate"
    with pytest.raises(ConfigCompositionException):
        _compose("train", [f"evaluation={preset}"])
    if (CONF_DIR / "experiment" / f"{preset}.yaml").is_file():
        return  # a training preset of the same name (cpu_quick) is a different file
    with pytest.raises(ConfigCompositionException):
        _compose("train", [f"experiment={preset}"])


@pytest.mark.parametrize("preset", sorted(p.stem for p in (CONF_DIR / "experiment")
                                          .glob("*.yaml")))
def test_training_presets_do_not_compose_under_evaluate_py(preset):
    with pytest.raises(ConfigCompositionException):
        _compose("evaluate", [f"experiment={preset}", "ckpt_path=x.ckpt"])
