"""Hydra/OmegaConf glue for the entry points (not part of the numpy domain layer)."""

from __future__ import annotations

from omegaconf import OmegaConf

from atp.sites import CONF_DIR, REPO_ROOT

__all__ = ["CONF_DIR", "REPO_ROOT", "register_resolvers"]


def register_resolvers() -> None:
    """Register ``${atp_repo_root:}`` (idempotent)."""
    if not OmegaConf.has_resolver("atp_repo_root"):
        OmegaConf.register_new_resolver("atp_repo_root", lambda: str(REPO_ROOT))
