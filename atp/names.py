"""Shared names: sites, institutions, ROI roles and canonical ROI names.

These mirror ``shared/DESIGN.md``; every module uses them instead of string literals.
"""

from __future__ import annotations

import re

SITES: tuple[str, ...] = ("npc", "lung", "breast", "cervix", "rectum")
INSTITUTIONS: tuple[str, ...] = ("A", "B", "C")

#: ROI roles. ``external`` is the body outline; ``control`` covers rings and patches.
ROI_ROLES: tuple[str, ...] = ("target", "organ", "control", "external")

BODY = "body"

SITE_ORGANS: dict[str, tuple[str, ...]] = {
    "npc": (
        "brainstem", "spinal_cord", "parotid_l", "parotid_r", "tmj_l", "tmj_r",
        "oral_cavity", "mandible", "larynx", "esophagus", "optic_nerve_l",
        "optic_nerve_r", "chiasm", "lens_l", "lens_r",
    ),
    "lung": ("lung_l", "lung_r", "heart", "spinal_cord", "esophagus"),
    "breast": (
        "lung_l", "lung_r", "heart", "breast_l", "breast_r", "humeral_head_l",
        "humeral_head_r", "spinal_cord",
    ),
    "cervix": (
        "bladder", "rectum", "bowel_small", "colon", "femoral_head_l",
        "femoral_head_r", "spinal_cord",
    ),
    "rectum": ("bladder", "bowel_small", "colon", "femoral_head_l", "femoral_head_r"),
}

#: OpenKBP structure file stem -> canonical name.
OPENKBP_ROIS: dict[str, str] = {
    "Brainstem": "brainstem",
    "SpinalCord": "spinal_cord",
    "RightParotid": "parotid_r",
    "LeftParotid": "parotid_l",
    "Esophagus": "esophagus",
    "Larynx": "larynx",
    "Mandible": "mandible",
    "PTV70": "ptv_7000",
    "PTV63": "ptv_6300",
    "PTV56": "ptv_5600",
}

_PTV_RE = re.compile(r"^ptv_(\d+)$")
_RING_RE = re.compile(r"^ring_(\d+)_(\d+)$")


def ptv_name(dose_gy: float) -> str:
    """Canonical target name for a dose level, e.g. 70 Gy -> ``ptv_7000``.

    Parameters
    ----------
    dose_gy : float
        Prescribed dose level (Gy); rounded to cGy in the name.

    Returns
    -------
    str
        Canonical target name ``ptv_<cGy>``.
    """
    return f"ptv_{round(dose_gy * 100):d}"


def ptv_dose_gy(name: str) -> float | None:
    """Dose level encoded in a canonical target name, or None if it is not one.

    Parameters
    ----------
    name : str
        ROI name, e.g. ``ptv_7000``.

    Returns
    -------
    float or None
        Dose level (Gy); None when ``name`` is not a canonical target name.
    """
    m = _PTV_RE.match(name)
    return int(m.group(1)) / 100.0 if m else None


def ring_limits_mm(name: str) -> tuple[float, float] | None:
    """Inner and outer distance of a canonical ring name, or None.

    Parameters
    ----------
    name : str
        ROI name, e.g. ``ring_5_20``.

    Returns
    -------
    tuple of float or None
        ``(inner_mm, outer_mm)`` distance from the targets (mm); None when ``name`` is not
        a canonical ring name.
    """
    m = _RING_RE.match(name)
    return (float(m.group(1)), float(m.group(2))) if m else None
