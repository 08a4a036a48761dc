"""Every config group composes and instantiates; site and institution facts are valid."""

from __future__ import annotations

import itertools

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from atp.config import CONF_DIR, register_resolvers
from atp.dose import PencilBeamEngine, beams_from_config
from atp.names import INSTITUTIONS, SITE_ORGANS, SITES, ptv_dose_gy
from atp.planning import PlanSettings
from atp.planning.setup import (
    beam_config_for,
    goal_list_for,
    prescription_schemes_for,
    tolerances_for,
)


def _compose(config_name: str, overrides: list[str]):
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides)


def _group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("engine", _group_options("engine"))
def test_engine_group_instantiates(engine):
    cfg = _compose("plan", [f"engine={engine}", "case=x"])
    assert isinstance(instantiate(cfg.engine), PencilBeamEngine)


@pytest.mark.parametrize("planner", _group_options("planner"))
def test_planner_group_instantiates(planner):
    cfg = _compose("plan", [f"planner={planner}", "case=x"])
    settings = instantiate(cfg.planner)  # the site's conformity block is interpolated
    assert isinstance(settings, PlanSettings) and settings.mode == planner


@pytest.mark.parametrize(("site", "institution"), list(itertools.product(SITES, INSTITUTIONS)))
def test_site_and_institution_facts(site, institution):
    cfg = _compose("plan", [f"site={site}", f"institution={institution}", "case=x"])
    s = OmegaConf.to_container(cfg.site, resolve=True)
    inst = OmegaConf.to_container(cfg.institution, resolve=True)
    assert s["name"] == site and inst["name"] == institution
    assert set(s["organs"]) == set(SITE_ORGANS[site])  # channel order uses DESIGN names
    goals = goal_list_for(s, inst)  # validates every goal (site list + overlay)
    assert any(g.priority == 1 for g in goals.goals)
    assert any(g.roi.startswith("ptv") for g in goals.goals)
    for laterality in ("left", "right"):
        beams = beams_from_config(beam_config_for(s, inst), isocenter_mm=(0.0, 0.0, 0.0),
                                  laterality=laterality)
        assert len(beams) >= 5
    for scheme in prescription_schemes_for(s, inst):
        assert scheme["n_fractions"] >= 1 and all(d > 0 for d in scheme["levels_gy"])
        assert ptv_dose_gy(f"ptv_{round(scheme['levels_gy'][0] * 100)}") is not None
    tol = tolerances_for(s, inst, {"heart": -5})
    assert tol["heart"] == -5.0
    PlanSettings(**s["conformity"])  # the site's conformity block is a valid setting


TRAIN_GROUPS = ("augmentation", "net", "loss", "optimizer", "scheduler", "trainer",
                "callbacks", "logger")


@pytest.mark.parametrize(("group", "option"), [(g, o) for g in TRAIN_GROUPS
                                               for o in _group_options(g)])
def test_every_training_group_option_instantiates(group, option, tmp_path):
    import torch

    overrides = [f"{group}={option}", f"paths.log_dir={tmp_path}", f"paths.data_dir={tmp_path}"]
    if option in ("gpu", "ddp"):
        pytest.skip("needs a GPU") if not torch.cuda.is_available() else None
    cfg = _compose("train", overrides)
    from omegaconf import open_dict

    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
    node = cfg[group]
    if group == "optimizer":
        obj = instantiate(node)(params=[torch.nn.Parameter(torch.zeros(1))])
        assert isinstance(obj, torch.optim.Optimizer)
    elif group == "scheduler":
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        assert instantiate(node)(optimizer=opt) is not None
    elif group in ("callbacks", "logger"):
        objs = [instantiate(c) for c in (node or {}).values()]
        assert all(o is not None for o in objs)
    else:
        assert instantiate(node) is not None


@pytest.mark.parametrize("data", _group_options("data"))
def test_data_and_model_groups_instantiate(data, tmp_path):
    from atp.data import DoseDataModule
    from atp.models import DosePredictionModule

    extra = [f"data.root={tmp_path / 'dicom'}"] if data == "dicom" else []  # a user value
    cfg = _compose("train", [f"data={data}", "site=breast", f"paths.log_dir={tmp_path}",
                             f"paths.data_dir={tmp_path}", "debug=fast_dev_run", *extra])
    site = OmegaConf.to_container(cfg.site, resolve=True)
    dm = instantiate(cfg.data, site=site, _convert_="all")
    assert isinstance(dm, DoseDataModule)
    # breast: left-sided cases mirrored to the right; OpenKBP keeps its own fixed layout
    assert dm.layout.mirror_to == (None if data == "openkbp" else "right")
    model = instantiate(cfg.model)
    assert isinstance(model, DosePredictionModule)
    assert model.layout == dm.layout  # one layout for the data, the net and the checkpoint
    assert model.net.in_channels == dm.layout.n_channels
