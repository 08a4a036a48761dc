"""The paths group composes and resolves to the repository, independent of the cwd."""

from __future__ import annotations

import os
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from atp.config import CONF_DIR, REPO_ROOT, register_resolvers


def test_paths_resolve_from_the_repository(tmp_path, monkeypatch):
    register_resolvers()
    monkeypatch.chdir(tmp_path)  # the working directory must not matter
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(overrides=["+paths=default"])
    OmegaConf.set_struct(cfg, False)
    del cfg.paths["output_dir"]  # needs a running Hydra app
    paths = OmegaConf.to_container(cfg, resolve=True)["paths"]
    assert Path(paths["root_dir"]) == REPO_ROOT
    assert Path(paths["data_dir"]) == REPO_ROOT / "data"
    assert Path(os.path.normpath(paths["openkbp_dir"])) == (
        REPO_ROOT.parent / "shared" / "data" / "openkbp-sample")
