"""Registry of the site builders: the world box each site needs and the function painting it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType

from atp.synth.site_hn import NPC_BOUNDS_MM, build_npc
from atp.synth.site_pelvis import PELVIS_BOUNDS_MM, build_cervix, build_rectum
from atp.synth.site_thorax import (
    BREAST_BOUNDS_MM,
    THORAX_BOUNDS_MM,
    build_breast,
    build_lung,
)


@dataclass(frozen=True)
class SiteBuilder:
    """``bounds_mm``: world box ((z, y, x) low, (z, y, x) high) of the grid; ``build``: painter.

    ``build(canvas, *, levels_gy, target_cc, fit)`` paints the CT, adds the body, organ and
    target ROIs to the canvas and returns site facts for the metadata (with ``laterality``).
    """

    bounds_mm: tuple[tuple[float, float, float], tuple[float, float, float]]
    build: Callable[..., dict]


SITE_BUILDERS = MappingProxyType({
    "npc": SiteBuilder(NPC_BOUNDS_MM, build_npc),
    "lung": SiteBuilder(THORAX_BOUNDS_MM, build_lung),
    "breast": SiteBuilder(BREAST_BOUNDS_MM, build_breast),
    "cervix": SiteBuilder(PELVIS_BOUNDS_MM, build_cervix),
    "rectum": SiteBuilder(PELVIS_BOUNDS_MM, build_rectum),
})
