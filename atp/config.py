"""Hydra/OmegaConf glue for the entry points (not part of the numpy domain layer)."""

from __future__ import annotations

from omegaconf import OmegaConf

from atp.sites import CONF_DIR, REPO_ROOT

__all__ = ["CONF_DIR", "REPO_ROOT", "print_config", "register_resolvers"]


def _in_channels(layout) -> int:
    """Input channels of the network: those of the data's `atp.data.ChannelLayout`."""
    from atp.data.channels import ChannelLayout

    return ChannelLayout.from_dict(OmegaConf.to_container(layout, resolve=True)).n_channels


def _canonical_side(site_name) -> str | None:
    """The side a site's cases are mirrored to for the network (breast: right), or None."""
    from atp.data.channels import CANONICAL_SIDE

    return CANONICAL_SIDE.get(str(site_name))


def _mm(value) -> str:
    """A length for folder names: 6, 6.0 and "6" all give ``6mm``; 2.5 gives ``2.5mm``."""
    return f"{float(value):g}mm"


def _institution(name, current):
    """``current`` (the composed institution) if it is ``name``, else ``name``'s config file."""
    if current is not None and str(current["name"]) == str(name):
        return current
    from atp.sites import load_institution_config

    return load_institution_config(str(name))


def register_resolvers() -> None:
    """Register the ``atp_*`` resolvers used by ``conf/`` (idempotent)."""
    for name, fn in (("atp_repo_root", lambda: str(REPO_ROOT)),
                     ("atp_in_channels", _in_channels),
                     ("atp_canonical_side", _canonical_side),
                     ("atp_mm", _mm), ("atp_institution", _institution)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


def print_config(cfg, path=None) -> str:
    """The resolved config as a YAML tree: printed, and saved to ``path`` if given."""
    from atp.io.atomic import atomic_write_text

    text = OmegaConf.to_yaml(cfg, resolve=True)
    print(text)
    if path is not None:
        atomic_write_text(path, text)
    return text
