"""Hydra/OmegaConf glue for the entry points (not part of the numpy domain layer)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

REPO_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = REPO_ROOT / "conf"


def register_resolvers() -> None:
    """Register ``${atp_repo_root:}`` (idempotent)."""
    if not OmegaConf.has_resolver("atp_repo_root"):
        OmegaConf.register_new_resolver("atp_repo_root", lambda: str(REPO_ROOT))
