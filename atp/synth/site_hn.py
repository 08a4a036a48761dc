"""Head and neck anatomy: nasopharyngeal carcinoma (``npc``).

Standard-frame positions (z, y, x) in mm, origin near the centre of the skull base:
nasopharynx at z ~ +28, lenses at z ~ +50, larynx at z ~ -78. A per-patient `Frame`
scales them (head size).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from atp.names import BODY
from atp.synth.shapes import Frame, Section, axes_from, ellipsoid, tube
from atp.synth.site_common import (
    SKIN_CROP_MM,
    Canvas,
    Fit,
    assign_levels,
    gtv_core,
    merge_components,
    spine,
    uniform,
    union,
)

#: World box (z, y, x) mm that holds every head and neck drawn by `build_npc`.
NPC_BOUNDS_MM = ((-110.0, -105.0, -92.0), (110.0, 110.0, 92.0))

_Z = (-115, -75, -55, -40, -20, 0, 40, 75, 95, 112)
_CY = (20, 18, 12, 2, 0, 0, 0, 2, 5, 8)
_AY = (58, 58, 64, 80, 86, 89, 91, 88, 76, 52)
_AX = (56, 55, 58, 62, 66, 70, 74, 72, 62, 42)


def _body(f: Frame) -> Section:
    sz, sy, sx = f.scale
    return Section(tuple(z * sz for z in _Z), tuple(c * sy for c in _CY), (0.0,) * len(_Z),
                   tuple(a * sy for a in _AY), tuple(a * sx for a in _AX), power=2.2)


def _mandible_paths(f: Frame, side: int) -> tuple[list, list, list]:
    s = side
    ramus = [f.p(12, 8, 50 * s), f.p(-28, 2, 46 * s)]
    lower = [f.p(-28, 2, 46 * s), f.p(-33, -25, 43 * s), f.p(-36, -48, 31 * s),
             f.p(-38, -62, 15 * s), f.p(-38, -67, 0)]
    upper = [(z + 12.0 * f.scale[0], y, x) for z, y, x in lower]
    return ramus, lower, upper


def _cranium(cv: Canvas, f: Frame, sec: Section, fat_mm: float) -> None:
    g = cv.grid
    z, y, _ = g.axes_mm()
    zbase = np.interp(y, [v * f.scale[1] for v in (-100, -45, -25, 10, 60, 100)],
                      [v * f.scale[0] for v in (62, 62, 20, 18, -8, -8)])
    region = z[:, None, None] > zbase[None, :, None]
    outer, inner = sec.shrunk(fat_mm + 1.0).mask(g), sec.shrunk(fat_mm + 8.0).mask(g)
    cv.paint(region & outer & ~inner, "cortical")
    cv.paint(region & inner, "brain")


def _face_and_neck(cv: Canvas, f: Frame) -> None:
    g = cv.grid
    for s in (-1, 1):
        cv.paint(ellipsoid(g, f.p(-75, 14, 40 * s), f.r(30, 12, 9)), "fat")
        cv.paint(tube(g, [f.p(22, 5, 18 * s), f.p(22, 32, 55 * s)], 7.0), "cortical")
        cv.paint(ellipsoid(g, f.p(10, 38, 52 * s), f.r(10, 9, 8)), -450.0)
    cv.paint(tube(g, [f.p(45, -6, 0), f.p(12, 12, 0)], 6.0), "bone")  # clivus
    cv.paint(ellipsoid(g, f.p(10, -52, 0), f.r(22, 26, 44), power=3.0), "bone")  # maxilla
    cv.paint(ellipsoid(g, f.p(18, -52, 0), f.r(22, 24, 10), power=3.0), "air")  # nasal cavity
    for s in (-1, 1):
        cv.paint(ellipsoid(g, f.p(12, -50, 27 * s), f.r(17, 16, 13)), "air")  # maxillary sinus
        cv.paint(ellipsoid(g, f.p(48, -62, 32 * s), f.r(17, 22, 17)), "fat")  # orbit
        cv.paint(ellipsoid(g, f.p(50, -74, 32 * s), f.r(11.5, 11.5, 11.5)), "water")  # globe
    teeth = [f.p(-8, -20, 40), f.p(-8, -50, 30), f.p(-8, -66, 14), f.p(-8, -70, 0)]
    for s in (-1, 1):
        cv.paint(tube(g, [(z, y, x * s) for z, y, x in teeth], 5.0), "cortical")
    airway = [f.p(30, -38, 0), f.p(22, -22, 0), f.p(5, -12, 0), f.p(-25, -8, 0),
              f.p(-52, -14, 0), f.p(-62, -18, 0)]
    cv.paint(tube(g, airway, 6.0), "air")
    cv.paint(tube(g, [f.p(-62, -18, 0), f.p(-85, -22, 0)], 4.0), "air")
    cv.paint(tube(g, [f.p(-85, -22, 0), f.p(-115, -20, 0)], 8.0), "air")  # trachea


def _organs(cv: Canvas, f: Frame) -> dict[str, np.ndarray]:
    g, rng = cv.grid, cv.rng
    jit = {n: uniform(rng, 0.88, 1.12) for n in ("parotid", "oral", "larynx", "brainstem")}
    org: dict[str, np.ndarray] = {}
    bs_c, bs_r = f.p(36, 26, 0), np.asarray(f.r(27, 12, 14)) * jit["brainstem"]
    org["brainstem"] = ellipsoid(g, bs_c, bs_r, axes=axes_from((1.0, -0.3, 0.0)))
    cord_pts = [f.p(10, 34, 0), f.p(-20, 32, 0), f.p(-60, 31, 0), f.p(-115, 38, 0)]
    org["spinal_cord"] = tube(g, cord_pts, 4.5)
    for s, lr in ((1, "l"), (-1, "r")):
        org[f"parotid_{lr}"] = ellipsoid(g, f.p(-4, 18, 47 * s),
                                         np.asarray(f.r(24, 18, 12)) * jit["parotid"])
        org[f"tmj_{lr}"] = ellipsoid(g, f.p(14, 8, 50 * s), f.r(5, 6, 7))
        org[f"optic_nerve_{lr}"] = tube(g, [f.p(50, -63, 30 * s), f.p(56, -24, 9 * s)], 2.5)
        org[f"lens_{lr}"] = ellipsoid(g, f.p(50, -83, 32 * s), f.r(4.5, 2.0, 4.5))
    mand = g.empty_mask()
    for s in (-1, 1):
        ramus, lower, upper = _mandible_paths(f, s)
        mand |= tube(g, ramus, 5.5) | tube(g, lower, 6.0) | tube(g, upper, 5.0)
    org["mandible"] = mand
    org["oral_cavity"] = ellipsoid(g, f.p(-17, -40, 0), np.asarray(f.r(12, 24, 26)) * jit["oral"])
    org["larynx"] = ellipsoid(g, f.p(-78, -22, 0), np.asarray(f.r(20, 14, 16)) * jit["larynx"])
    org["esophagus"] = tube(g, [f.p(-88, 2, 3), f.p(-115, 5, 5)], 7.0)
    org["chiasm"] = ellipsoid(g, f.p(57, -18, 0), f.r(2.5, 4.0, 7.0))
    return org


_ANCHORS = {
    "brainstem": (36, 26, 0), "spinal_cord": (-40, 32, 0), "parotid_l": (-4, 18, 47),
    "parotid_r": (-4, 18, -47), "tmj_l": (14, 8, 50), "tmj_r": (14, 8, -50),
    "oral_cavity": (-17, -40, 0), "mandible": (-38, -67, 0), "larynx": (-78, -22, 0),
    "esophagus": (-100, 3, 4), "optic_nerve_l": (53, -44, 20), "optic_nerve_r": (53, -44, -20),
    "chiasm": (57, -18, 0), "lens_l": (50, -83, 32), "lens_r": (50, -83, -32),
}


def _target_components(cv: Canvas, f: Frame, shape: dict, s: float) -> list[np.ndarray]:
    """[primary (+ involved node), primary margin, upper neck, lower neck] at scale ``s``."""
    g = cv.grid
    c, r = shape["center"], np.asarray(shape["radii"]) * s
    primary = ellipsoid(g, c, r, power=2.4)
    margin = ellipsoid(g, c, r + 9.0, power=2.4)
    node = shape["node"]
    if node is not None:
        primary |= ellipsoid(g, node, (11.0 * s,) * 3)
        margin |= ellipsoid(g, node, (11.0 * s + 7.0,) * 3)
    upper, lower = g.empty_mask(), g.empty_mask()
    for sd in (-1, 1):
        upper |= tube(g, [f.p(22, 10, 22 * sd), f.p(0, 10, 36 * sd), f.p(-30, 8, 38 * sd),
                          f.p(-58, 4, 37 * sd)], 15.0 * s)
        lower |= tube(g, [f.p(-58, 4, 37 * sd), f.p(-95, 6, 36 * sd), f.p(-112, 10, 34 * sd)],
                      14.0 * s)
        lower |= tube(g, [f.p(-35, 38, 42 * sd), f.p(-95, 32, 44 * sd)], 11.0 * s)
    upper |= tube(g, [f.p(22, 6, -22), f.p(22, 6, 22)], 10.0 * s)
    return [primary, margin, upper, lower]


def build_npc(cv: Canvas, *, levels_gy: Sequence[float], target_cc: float, fit: Fit) -> dict:
    """Paint a head and neck with NPC targets; returns the site facts for the metadata.

    Parameters
    ----------
    cv : Canvas
        The canvas painted (CT) and filled with the body, organ and target ROIs.
    levels_gy : sequence of float
        Dose levels (Gy) of the prescription scheme, one target per level.
    target_cc : float
        Wanted volume of the union of the targets (cc).
    fit : Fit
        The target volume search (`atp.synth.shapes.fit_scale` bound to the grid).

    Returns
    -------
    dict
        Site facts for the metadata: ``laterality``, ``target_scale``, ``body_scale_zyx`` and
        ``node_side`` (side of the involved upper-neck node, or None).
    """
    g, rng = cv.grid, cv.rng
    f = Frame((uniform(rng, 0.95, 1.04), uniform(rng, 0.92, 1.05), uniform(rng, 0.9, 1.06)))
    sec = _body(f)
    body = cv.add_roi(BODY, sec.mask(g), "external")
    fat_mm = uniform(rng, 4.0, 9.0)
    cv.paint(body, "fat")
    cv.paint(sec.shrunk(fat_mm).mask(g), "soft")
    _cranium(cv, f, sec, fat_mm)
    _face_and_neck(cv, f)
    cord_pts = [f.p(10, 34, 0), f.p(-20, 32, 0), f.p(-60, 31, 0), f.p(-115, 38, 0)]
    spine(cv, canal=cord_pts, z_range=(-115.0 * f.scale[0], 0.0), body_offset_mm=18.0,
          body_radii=(7.5, 8.0, 10.0), level_mm=17.0, canal_r_mm=7.0, spinous_mm=22.0)
    org = _organs(cv, f)
    for s in (-1, 1):
        for path, rad in zip(_mandible_paths(f, s), (5.5, 6.0, 5.0), strict=True):
            cv.paint(tube(g, path, rad), "bone")
    cv.paint(org["larynx"], "soft")
    cv.paint(tube(g, [f.p(-62, -18, 0), f.p(-85, -22, 0)], 4.0), "air")
    for name in ("lens_l", "lens_r"):
        cv.paint(org[name], 110.0)
    cv.paint(org["brainstem"] | org["chiasm"], "brain")
    cv.paint(org["spinal_cord"], "soft")

    # targets: primary centre, shape and an optional involved upper-neck node (70 Gy)
    node_side = int(rng.choice([-1, 1])) if rng.uniform() < 0.8 else 0
    shape = {
        "center": f.p(28 + rng.normal(0, 3), -16 + rng.normal(0, 3), rng.normal(0, 4)),
        "radii": np.asarray(f.r(21, 18, 24)) * rng.uniform(0.85, 1.15, 3),
        "node": f.p(-12 + uniform(rng, -15, 10), 8, 38 * node_side) if node_side else None,
    }
    inner = sec.shrunk(SKIN_CROP_MM).mask(g)
    cord_prv = tube(g, cord_pts, 4.5 + 5.0)
    n = len(levels_gy)

    def build(s: float):
        groups = merge_components(_target_components(cv, f, shape, s), n)
        ptvs = assign_levels(levels_gy, groups, inner, exclude=cord_prv)
        return union(list(ptvs.values())), ptvs

    scale, _, ptvs, _ = fit(build, target_cc)
    high = next(iter(ptvs.values()))
    cv.paint(gtv_core([high], g, margin_mm=6.0), "tumour")
    for name, mask in org.items():
        cv.add_roi(name, mask, "organ", anchors=[f.p(*_ANCHORS[name])])
    for name, mask in ptvs.items():
        cv.add_roi(name, mask, "target", anchors=[shape["center"]])
    side = {1: "left", -1: "right", 0: None}[node_side]
    return {"laterality": None, "node_side": side, "target_scale": round(scale, 4),
            "body_scale_zyx": [round(v, 4) for v in f.scale]}
