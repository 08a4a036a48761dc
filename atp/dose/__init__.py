"""Photon dose engine: beam geometry, a 6 MV pencil-beam influence matrix, MU, caching.

Pure numpy/scipy (the domain layer): never imports torch, Lightning, Hydra or OmegaConf.
"""

from atp.dose.beams import (
    Beam,
    arc_gantry_angles_deg,
    beams_from_config,
    default_isocenter_mm,
)
from atp.dose.cache import cached_influence, influence_cache_key, load_influence, save_influence
from atp.dose.grid import make_dose_grid, to_ct_grid
from atp.dose.influence import DoseEngine, DoseInfluence
from atp.dose.kernel import PencilBeamSettings
from atp.dose.mu import beam_mu, total_mu
from atp.dose.pencil_beam import PencilBeamEngine

__all__ = [
    "Beam",
    "DoseEngine",
    "DoseInfluence",
    "PencilBeamEngine",
    "PencilBeamSettings",
    "arc_gantry_angles_deg",
    "beam_mu",
    "beams_from_config",
    "cached_influence",
    "default_isocenter_mm",
    "influence_cache_key",
    "load_influence",
    "make_dose_grid",
    "save_influence",
    "to_ct_grid",
    "total_mu",
]
