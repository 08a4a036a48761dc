"""Structures a goal list may name that are derived from the case's own ROIs.

- ``ring_<inner>_<outer>``: body voxels outside the targets whose distance to the target
  union lies in (inner, outer] mm (control structures for conformity);
- ``normal_tissue``: body minus targets;
- ``lungs``: both lungs minus the targets (the usual lung dose-volume structure).
"""

from __future__ import annotations

import numpy as np

from atp.cases import PatientCase
from atp.names import ring_limits_mm

DERIVED = ("normal_tissue", "lungs")


def structure_mask(case: PatientCase, name: str) -> np.ndarray | None:
    """Mask of ROI or derived structure ``name``; None when the case cannot provide it.

    Parameters
    ----------
    case : PatientCase
        The case whose ROIs, body and targets define the structure.
    name : str
        A canonical ROI name, ``normal_tissue``, ``lungs`` or ``ring_<inner>_<outer>``.

    Returns
    -------
    np.ndarray or None
        Boolean mask on the case grid, (z, y, x); None for an unknown name, or for
        ``lungs`` when the case has neither lung.
    """
    if name in case.rois:
        return case.rois[name].mask
    if name == "normal_tissue":
        return case.body_mask & ~case.target_union()
    if name == "lungs":
        if "lung_l" not in case.rois and "lung_r" not in case.rois:
            return None
        m = np.zeros(case.shape, bool)
        for side in ("lung_l", "lung_r"):
            if side in case.rois:
                m |= case.rois[side].mask
        return m & ~case.target_union()
    limits = ring_limits_mm(name)
    if limits is not None:
        dist = case.distance_to_targets_mm()
        inner, outer = limits
        return case.body_mask & (dist > inner) & (dist <= outer)
    return None
