"""Pelvis anatomy: ``cervix`` and ``rectum`` sites.

Standard-frame positions (z, y, x) in mm, origin near the centre of the true pelvis:
femoral heads at z ~ -45, sacral promontory at z ~ +80, L4 at z ~ +128. A per-patient
`Frame` scales them; the subcutaneous fat is added on top.
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

PELVIS_BOUNDS_MM = ((-120.0, -155.0, -208.0), (120.0, 155.0, 208.0))

_ZK = (-140, -60, 0, 60, 140)
_AX, _AY, _CY = (158, 158, 152, 146, 144), (98, 98, 100, 104, 106), (5, 5, 2, -3, -3)
_RECTUM = ((25, 42, 10), (5, 50, 2), (-25, 47, 0), (-50, 35, 0), (-68, 22, 0))
_CAUDA = ((140, 66, 0), (85, 72, 0), (60, 76, 0), (40, 82, 0))
_LR = {1: "l", -1: "r"}


def _section(f: Frame, grow_mm: float = 0.0) -> Section:
    sz, sy, sx = f.scale
    return Section(tuple(z * sz for z in _ZK), tuple(c * sy for c in _CY), (0.0,) * len(_ZK),
                   tuple(a * sy + grow_mm for a in _AY), tuple(a * sx + grow_mm for a in _AX),
                   power=2.5)


def _nodal_paths(f: Frame, sd: int, *, external: bool) -> list[list]:
    """Pelvic lymph node chains of one side along the iliac vessels (standard frame)."""
    paths = [
        [f.p(70, 35, 38 * sd), f.p(25, 48, 52 * sd), f.p(-10, 30, 58 * sd)],  # internal iliac
        [f.p(-10, 30, 58 * sd), f.p(-28, -2, 62 * sd)],  # obturator
    ]
    if external:
        paths += [[f.p(105, 30, 12 * sd), f.p(70, 35, 38 * sd)],  # common iliac
                  [f.p(70, 35, 38 * sd), f.p(25, 10, 62 * sd), f.p(-25, -22, 68 * sd)]]
    return paths


def _bones(cv: Canvas, f: Frame, heads: dict) -> None:
    g = cv.grid
    for sd in (-1, 1):
        c, r = heads[sd]
        shell = ellipsoid(g, c, (r + 9.0,) * 3) & ~ellipsoid(g, c, (r + 1.0,) * 3)
        z, _, x = g.axes_mm()
        medial = (x[None, None, :] * sd < c[2] * sd + 4.0) & (z[:, None, None] > c[0] - 12.0)
        cv.paint(shell & medial, "bone")  # acetabulum
        plate = axes_from((0.0, 107.0, -72.0 * sd), hint=(0.85, 0.0, 0.5 * sd))
        wing = ellipsoid(g, f.p(30, 12, 86 * sd), (66.0 * f.scale[2], 55.0, 6.0), power=2.5,
                         axes=plate)
        _, y, _ = g.axes_mm()
        wing &= z[:, None, None] > -25.0 * f.scale[0] + 0.5 * (y[None, :, None] + 45.0)
        cv.paint(wing, "bone")  # iliac wing, its posterior part higher (sciatic notch)
        cv.paint(tube(g, [f.p(-40, -25, 62 * sd), f.p(-58, -62, 15 * sd), f.p(-58, -66, 0)],
                      10.0), "bone")  # superior pubic ramus
        cv.paint(tube(g, [f.p(-52, 12, 68 * sd), f.p(-82, 25, 55 * sd)], 12.0), "bone")
        cv.paint(tube(g, [f.p(-82, 22, 50 * sd), f.p(-70, -55, 14 * sd)], 7.0), "bone")
        trochanter = f.p(-62, 4, 114 * sd)
        cv.paint(tube(g, [c, trochanter], 14.0), "bone")
        cv.paint(tube(g, [trochanter, f.p(-58, 8, 124 * sd)], 15.0), "bone")
        shaft = [f.p(-65, 6, 118 * sd), f.p(-140, -5, 112 * sd)]
        cv.paint(tube(g, shaft, 14.0), "cortical")
        cv.paint(tube(g, shaft, 8.0), "marrow")
        cv.paint(ellipsoid(g, c, (r,) * 3), "bone")
        cv.paint(ellipsoid(g, c, (r - 4.0,) * 3), "marrow")
    sac = ((78, 50, 50, 16), (55, 62, 45, 14), (30, 72, 38, 12), (5, 80, 28, 10),
           (-20, 84, 18, 8), (-40, 82, 10, 6))
    for z, y, rx, ry in sac:
        cv.paint(ellipsoid(g, f.p(z, y, 0), (14.0, ry * f.scale[1], rx * f.scale[2]),
                           power=2.5), "bone")
    spine(cv, canal=[f.p(*p) for p in _CAUDA[:2]], z_range=(85.0 * f.scale[0], 140.0),
          body_offset_mm=28.0 * f.scale[1], body_radii=(12.0, 17.0, 23.0), level_mm=28.0,
          canal_r_mm=9.0, spinous_mm=20.0)
    cv.paint(tube(g, [f.p(*p) for p in _CAUDA[1:]], 6.0), "csf")


def _pelvis(cv: Canvas, f: Frame, *, fat_mm: float, uterus: bool) -> tuple[dict, dict]:
    """Paint body, muscles, bladder, rectum, colon, bowel and bones.

    Returns the organ masks and the geometry the targets need (``inner``: the body inside
    the skin crop, ``uterus`` mask and ``uterus_center``, ``rectum_pts``).
    """
    g, rng = cv.grid, cv.rng
    sec = _section(f, grow_mm=fat_mm)
    body = sec.mask(g)
    cv.paint(body, "fat")
    muscle_sec = _section(f)
    cv.paint(muscle_sec.mask(g), "muscle")
    cv.paint(ellipsoid(g, f.p(-20, 15, 0), f.r(55, 55, 60)), "fat")  # pelvic fat
    org: dict[str, np.ndarray] = {}
    heads = {}
    for sd in (-1, 1):
        c, r = f.p(-45, -5, 88 * sd), 23.0 * uniform(rng, 0.92, 1.08)
        heads[sd] = (c, r)
        org[f"femoral_head_{_LR[sd]}"] = (ellipsoid(g, c, (r,) * 3)
                                          | tube(g, [c, f.p(-62, 4, 114 * sd)], 14.0))
        cv.paint(tube(g, [f.p(140, 35, 40 * sd), f.p(60, 30, 55 * sd), f.p(0, 5, 72 * sd)],
                      22.0), "muscle")  # iliopsoas
    bladder_cc = uniform(rng, 90.0, 420.0)
    k = (bladder_cc / 166.0) ** (1 / 3)
    b_r = np.array([33.0, 30.0, 40.0]) * k
    b_c = np.add(f.p(-15, -45, 0), (b_r[0] - 33.0, uniform(rng, -5, 5), uniform(rng, -5, 5)))
    org["bladder"] = ellipsoid(g, b_c, b_r)
    rectum_pts = [f.p(*p) for p in _RECTUM]
    org["rectum"] = tube(g, rectum_pts, 15.0 * uniform(rng, 0.9, 1.15))
    sig = [(25, 42, 10), (40, 25, 40), (50, -10, 45), (58, -25, 15), (70, -10, 55),
           (85, 22, 100), (140, 35, 105)]
    colon = tube(g, [f.p(*p) for p in sig], 16.0)
    colon |= tube(g, [f.p(35, -5, -88), f.p(70, 15, -100), f.p(140, 25, -100)], 22.0)
    org["colon"] = colon
    uterus_mask, u_c = g.empty_mask(), None
    z_dome = float(b_c[0] + b_r[0])
    if uterus:
        u_c = (z_dome - 5.0, -8.0 * f.scale[1], uniform(rng, -8, 8))
        uterus_mask = (ellipsoid(g, u_c, (45.0, 22.0, 30.0), axes=axes_from((0.75, -0.65, 0.0)))
                       | ellipsoid(g, f.p(-22, 15, 0), (18.0, 15.0, 18.0)))
    z, y, x = g.axes_mm()
    cavity = _section(f).shrunk(15.0).mask(g)
    floor = z_dome + 3.0 + 0.004 * x[None, None, :] ** 2 - 0.15 * np.clip(y[None, :, None], 0, None)
    bag = cavity & (z[:, None, None] > floor) & (y[None, :, None] < 45.0 * f.scale[1])
    bag &= ~(colon | org["bladder"] | org["rectum"] | uterus_mask)
    for sd in (-1, 1):
        bag &= ~tube(g, [f.p(140, 35, 40 * sd), f.p(60, 30, 55 * sd), f.p(0, 5, 72 * sd)], 22.0)
    bag &= ~ellipsoid(g, f.p(110, 45, 0), (1e4, 30.0, 32.0))  # lumbar spine column
    org["bowel_small"] = bag
    ph = rng.uniform(0, 2 * np.pi, 3)
    wave = (np.sin(z[:, None, None] / 9.0 + ph[0]) * np.sin(y[None, :, None] / 8.0 + ph[1])
            * np.sin(x[None, None, :] / 10.0 + ph[2]))
    cv.paint(bag & (wave > 0.2), "soft")
    cv.paint(bag & (wave <= 0.2), "fat")
    cv.paint(bag & (wave < -0.8), "gas")
    cv.paint(colon, "soft")
    cv.paint(tube(g, [f.p(*p) for p in sig[2:]], 9.0), "gas")
    cv.paint(org["bladder"], "urine")
    cv.paint(uterus_mask, "soft")
    cv.paint(org["rectum"], "soft")
    cv.paint(tube(g, rectum_pts[1:3], 6.0), "gas")
    _bones(cv, f, heads)
    org["spinal_cord"] = tube(g, [f.p(*p) for p in _CAUDA], 5.0)
    cv.paint(org["spinal_cord"], "soft")
    cv.add_roi(BODY, body, "external")
    geo = {"inner": sec.shrunk(SKIN_CROP_MM).mask(g), "uterus": uterus_mask,
           "uterus_center": u_c, "rectum_pts": rectum_pts}
    return org, geo


def _habitus(rng: np.random.Generator) -> tuple[Frame, float]:
    f = Frame((uniform(rng, 0.95, 1.05), uniform(rng, 0.88, 1.1), uniform(rng, 0.88, 1.08)))
    return f, uniform(rng, 10.0, 30.0)


def _finish(cv: Canvas, org: dict, names: Sequence[str], ptvs: dict, anchor) -> None:
    for name in names:
        cv.add_roi(name, org[name], "organ")
    for name, m in ptvs.items():
        cv.add_roi(name, m, "target", anchors=[anchor])


def build_cervix(cv: Canvas, *, levels_gy: Sequence[float], target_cc: float, fit: Fit) -> dict:
    """Paint a female pelvis; PTV = uterus, cervix, parametria, vagina and pelvic nodes.

    With two dose levels the higher one is a boost to one involved pelvic node.

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
        Site facts for the metadata: ``laterality``, ``target_scale``, ``body_scale_zyx``,
        ``para_aortic`` (nodes extended para-aortic) and ``boost_side`` (or None).
    """
    g, rng = cv.grid, cv.rng
    f, fat_mm = _habitus(rng)
    org, geo = _pelvis(cv, f, fat_mm=fat_mm, uterus=True)
    u_c = geo["uterus_center"]
    para_aortic = target_cc > 1300.0 and rng.uniform() < 0.6
    boost_side = int(rng.choice([-1, 1]))
    path = _nodal_paths(f, boost_side, external=True)[3 if rng.uniform() < 0.6 else 0]
    t = uniform(rng, 0.2, 0.8)
    boost_c = tuple(np.add(path[0], np.multiply(t, np.subtract(path[-1], path[0]))))
    boost_r = uniform(rng, 10.0, 15.0)

    def build(s: float):
        primary = (ellipsoid(g, u_c, np.array([50.0, 27.0, 35.0]) * s,
                             axes=axes_from((0.75, -0.65, 0.0)))
                   | ellipsoid(g, f.p(-22, 15, 0), np.array([26.0, 23.0, 26.0]) * s)
                   | ellipsoid(g, f.p(-18, 12, 0), np.array([22.0, 22.0, 46.0]) * s)
                   | tube(g, [f.p(-35, 18, 0), f.p(-58, 12, 0)], 17.0 * s))
        nodes = tube(g, [f.p(75, 52, 0), f.p(30, 66, 0)], 13.0 * s)
        for sd in (-1, 1):
            for pts in _nodal_paths(f, sd, external=True):
                nodes |= tube(g, pts, 17.0 * s)
        if para_aortic:
            nodes |= tube(g, [f.p(105, 28, 10), f.p(140, 22, 12)], 20.0 * s)
        comps = [ellipsoid(g, boost_c, (boost_r,) * 3), primary | nodes]
        ptvs = assign_levels(levels_gy, merge_components(comps, len(levels_gy)), geo["inner"])
        return union(list(ptvs.values())), ptvs

    scale, _, ptvs, _ = fit(build, target_cc)
    cv.paint(gtv_core([geo["uterus"]], g, margin_mm=6.0), "tumour")
    if len(levels_gy) > 1:
        cv.paint(ellipsoid(g, boost_c, (max(boost_r - 5.0, 3.0),) * 3), "tumour")
    _finish(cv, org, ("bladder", "rectum", "bowel_small", "colon", "femoral_head_l",
                      "femoral_head_r", "spinal_cord"), ptvs, boost_c)
    return {"laterality": None, "para_aortic": bool(para_aortic),
            "boost_side": ({1: "left", -1: "right"}[boost_side] if len(levels_gy) > 1 else None),
            "target_scale": round(scale, 4), "body_scale_zyx": [round(v, 4) for v in f.scale]}


def build_rectum(cv: Canvas, *, levels_gy: Sequence[float], target_cc: float, fit: Fit) -> dict:
    """Paint a pelvis with a rectal tumour; PTV = mesorectum + presacral and pelvic nodes.

    With two dose levels the higher one covers the tumour and its mesorectum.

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
        ``tumour_z_mm`` (tumour centre, mm).
    """
    g, rng = cv.grid, cv.rng
    f, fat_mm = _habitus(rng)
    org, geo = _pelvis(cv, f, fat_mm=fat_mm, uterus=bool(rng.uniform() < 0.5))
    pts = geo["rectum_pts"]
    z_t = f.scale[0] * uniform(rng, -50.0, 0.0)
    half = uniform(rng, 12.0, 25.0)
    zs = np.array([p[0] for p in pts])
    ys, xs = np.array([p[1] for p in pts]), np.array([p[2] for p in pts])
    seg = [(float(z), float(np.interp(z, zs[::-1], ys[::-1])), float(np.interp(z, zs[::-1],
                                                                              xs[::-1])))
           for z in np.linspace(z_t + half, max(z_t - half, -68.0 * f.scale[0]), 5)]
    meso_top = f.p(60, 58, 0)

    def build(s: float):
        boost = tube(g, seg, 33.0 * s)
        elective = tube(g, [meso_top, *pts[:-1], f.p(-60, 28, 0)],
                        np.array([28.0, 30.0, 30.0, 30.0, 26.0, 16.0]) * s)  # to the levators
        elective |= tube(g, [f.p(75, 52, 0), f.p(30, 68, 0), f.p(-10, 76, 0)], 14.0 * s)
        for sd in (-1, 1):
            for path in _nodal_paths(f, sd, external=False):
                elective |= tube(g, path, 18.0 * s)
        groups = merge_components([boost, elective], len(levels_gy))
        ptvs = assign_levels(levels_gy, groups, geo["inner"])
        return union(list(ptvs.values())), ptvs

    scale, _, ptvs, _ = fit(build, target_cc)
    cv.paint(tube(g, seg, 20.0), "tumour")
    _finish(cv, org, ("bladder", "bowel_small", "colon", "femoral_head_l", "femoral_head_r"),
            ptvs, seg[2])
    return {"laterality": None, "tumour_z_mm": round(float(z_t), 2),
            "target_scale": round(scale, 4), "body_scale_zyx": [round(v, 4) for v in f.scale]}
