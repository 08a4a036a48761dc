"""Site and institution facts read straight from ``conf/`` (no Hydra needed).

The Hydra entry points compose the same files; scripts, benchmarks and tests that run
without Hydra read them through these functions.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from atp.names import INSTITUTIONS, SITES

REPO_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = REPO_ROOT / "conf"


def _read(path: Path) -> dict:
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read ({exc})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return doc


def load_site_config(site: str) -> dict:
    """``conf/site/<site>.yaml`` as a dict.

    Parameters
    ----------
    site : str
        Site name, one of ``atp.names.SITES``.

    Returns
    -------
    dict
        The parsed YAML mapping.
    """
    if site not in SITES:
        raise ValueError(f"unknown site '{site}' (known: {list(SITES)})")
    return _read(CONF_DIR / "site" / f"{site}.yaml")


def load_institution_config(name: str) -> dict:
    """``conf/institution/<name>.yaml`` as a dict.

    Parameters
    ----------
    name : str
        Institution name, one of ``atp.names.INSTITUTIONS``.

    Returns
    -------
    dict
        The parsed YAML mapping.
    """
    if name not in INSTITUTIONS:
        raise ValueError(f"unknown institution '{name}' (known: {list(INSTITUTIONS)})")
    return _read(CONF_DIR / "institution" / f"{name}.yaml")
