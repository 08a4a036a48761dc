"""Thorax anatomy (arms raised): ``lung`` and ``breast`` sites.

Standard-frame positions (z, y, x) in mm, origin at the mid-thorax (carina at z ~ +35,
diaphragm domes at z ~ -45..-55, humeral heads at z ~ +100). A per-patient `Frame`
scales them; the subcutaneous fat is added on top.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from atp.names import BODY, ptv_name
from atp.synth.shapes import Frame, Section, axes_from, ellipsoid, tube
from atp.synth.site_common import (
    SKIN_CROP_MM,
    Canvas,
    Fit,
    gtv_core,
    spine,
    uniform,
    union,
)

_LR = {1: "l", -1: "r"}

THORAX_BOUNDS_MM = ((-130.0, -135.0, -210.0), (150.0, 135.0, 210.0))
BREAST_BOUNDS_MM = ((-130.0, -215.0, -210.0), (150.0, 135.0, 210.0))

_ZK = (-160, 20, 60, 95, 170)
_BODY_AX, _BODY_AY, _BODY_CY = (148, 148, 150, 162, 162), (102, 102, 100, 96, 92), (0, 0, 1, 3, 5)
_CAGE_AX, _CAGE_AY, _CAGE_CY = (138, 138, 126, 104, 80), (92, 92, 88, 80, 68), (0, 0, 2, 6, 10)


def _section(f: Frame, ax: Sequence[float], ay: Sequence[float], cy: Sequence[float],
             grow_mm: float = 0.0, power: float = 2.6) -> Section:
    sz, sy, sx = f.scale
    return Section(tuple(z * sz for z in _ZK), tuple(c * sy for c in cy), (0.0,) * len(_ZK),
                   tuple(a * sy + grow_mm for a in ay), tuple(a * sx + grow_mm for a in ax),
                   power=power)


def _ribs(cv: Canvas, cage: Section, *, n_ribs: int, z_top_mm: float, pitch_mm: float) -> None:
    """Paint ribs along the cage outline, descending from the spine to the sternum."""
    z = cv.grid.axes_mm()[0][:, None, None]
    excess, theta = cage.polar(cv.grid)
    phi = 180.0 - np.abs(theta)  # angle from the posterior midline
    zs = z + 45.0 * np.clip((phi - 18.0) / 132.0, 0, 1) ** 1.2
    k = np.round((z_top_mm - zs) / pitch_mm)
    near = (np.abs(zs - (z_top_mm - k * pitch_mm)) < 5.5) & (k >= 0) & (k < n_ribs)
    rib = near & (np.abs(excess) < 5.0) & (phi >= 18.0) & (phi <= 160.0)
    cv.paint(rib & (phi <= 128.0), "bone")
    cv.paint(rib & (phi > 128.0), "cartilage")


def _thorax(cv: Canvas, f: Frame, *, fat_mm: float) -> dict:
    """Paint body, chest wall, lungs, mediastinum, spine and arms; return masks and sections."""
    g, rng = cv.grid, cv.rng
    body_sec = _section(f, _BODY_AX, _BODY_AY, _BODY_CY, grow_mm=fat_mm)
    cage = _section(f, _CAGE_AX, _CAGE_AY, _CAGE_CY)
    torso = body_sec.mask(g)
    cv.paint(torso, "fat")
    cv.paint(_section(f, _BODY_AX, _BODY_AY, _BODY_CY).mask(g), "muscle")
    cavity = cage.shrunk(12.0).mask(g)
    cv.paint(cage.shrunk(10.0).mask(g), "soft")  # liver, spleen, intercostal soft tissue

    # heart, mediastinum and lungs
    hs = uniform(rng, 0.9, 1.12)
    h_c = np.asarray(f.p(-48, -25, 18)) + rng.uniform([-8, -6, -5], [8, 6, 8])
    h_ax = axes_from((-0.45, -0.5, 0.74))
    h_r = np.asarray(f.r(58, 44, 40)) * hs
    heart = ellipsoid(g, h_c, h_r, axes=h_ax) & cavity
    medi = ellipsoid(g, f.p(-10, -15, 0), f.r(140, 80, 28), power=3.0)
    spine_block = ellipsoid(g, f.p(0, 52, 0), (1e4, 34.0, 30.0))
    cv.paint(medi & cavity, "fat")
    cv.paint(ellipsoid(g, h_c, h_r + 4.0, axes=h_ax) & cavity, "fat")
    not_lung = medi | spine_block | ellipsoid(g, h_c, h_r + 3.0, axes=h_ax)
    lungs = {}
    for s, lr in ((1, "l"), (-1, "r")):
        dome = ellipsoid(g, f.p(-165 + (12 if s < 0 else 0), 10, 65 * s), f.r(110, 115, 85))
        lungs[f"lung_{lr}"] = (ellipsoid(g, f.p(0, 5, 72 * s), f.r(128, 95, 78))
                               & cavity & ~dome & ~not_lung)
        cv.paint(dome & cavity & ~medi, "soft")
    cv.paint(lungs["lung_l"] | lungs["lung_r"], "lung")
    cv.paint(heart, "blood")
    blood = [
        ([f.p(-20, -20, -2), f.p(40, -15, -5)], 15.0),  # ascending aorta
        ([f.p(40, -15, -5), f.p(55, 5, 5), f.p(48, 30, 22)], 12.0),  # arch
        ([f.p(48, 30, 22), f.p(-160, 32, 16)], 12.0),  # descending aorta
        ([f.p(-15, -40, 15), f.p(15, -20, 20), f.p(20, 0, 35)], 13.0),  # pulmonary trunk
        ([f.p(18, -5, 30), f.p(20, 5, 60)], 8.0), ([f.p(18, -12, 0), f.p(15, 0, -55)], 8.0),
        ([f.p(170, -15, -25), f.p(-10, -10, -25)], 10.0),  # superior vena cava
        ([f.p(48, -8, -4), f.p(95, -5, -15), f.p(170, -5, -22)], 6.0),  # brachiocephalic
        ([f.p(52, 5, 8), f.p(170, 0, 20)], 5.0),  # left common carotid
        ([f.p(50, 18, 18), f.p(110, 15, 45), f.p(135, 20, 90)], 6.0),  # left subclavian
    ]
    for pts, r in blood:
        cv.paint(tube(g, pts, r), "blood")
    cv.paint(tube(g, [f.p(170, -5, 0), f.p(35, 8, 0)], 9.0), "air")  # trachea
    for s in (-1, 1):
        cv.paint(tube(g, [f.p(35, 8, 0), f.p(18, 12, 42 * s)], 6.5), "air")
    eso_pts = [f.p(170, 16, 2), f.p(40, 18, 4), f.p(-60, 14, 10), f.p(-160, 0, 28)]
    esophagus = tube(g, eso_pts, 8.0)
    cv.paint(esophagus, "soft")

    # bones: spine, ribs, sternum, arms
    canal = [f.p(-160, 70, 0), f.p(0, 75, 0), f.p(170, 68, 0)]
    spine(cv, canal=canal, z_range=(-160.0, 170.0), body_offset_mm=27.0 * f.scale[1],
          body_radii=(10.0, 16.0, 18.0), level_mm=25.0, canal_r_mm=8.0, spinous_mm=18.0)
    cord = tube(g, canal, 5.0)
    cv.paint(cord, "soft")
    _ribs(cv, cage.shrunk(5.0), n_ribs=12, z_top_mm=140.0 * f.scale[0],
          pitch_mm=22.0 * f.scale[0])
    cy, _, ay, _ = cage.at(15.0 * f.scale[0])
    cv.paint(ellipsoid(g, (15.0 * f.scale[0], cy - ay + 6.0, 0.0), (85.0, 7.0, 16.0),
                       power=4.0), "bone")
    heads = {}
    for s, lr in ((1, "l"), (-1, "r")):
        zh = 100.0 * f.scale[0]
        xh = s * (float(cage.at(zh)[3]) + 24.0)
        c = (zh, 10.0 * f.scale[1], xh)
        r = 23.0 * uniform(rng, 0.9, 1.08)
        heads[f"humeral_head_{lr}"] = ellipsoid(g, c, (r, r, r))
        cv.paint(tube(g, [c, (zh + 45.0, c[1], xh + s * 12.0)], 12.0), "bone")
        cv.paint(heads[f"humeral_head_{lr}"], "bone")
        cv.paint(ellipsoid(g, c, (r - 4.0,) * 3), "marrow")
    return {"body": torso, "body_sec": body_sec, "cage": cage, "heart": heart,
            "esophagus": esophagus, "spinal_cord": cord, "heads": heads, **lungs,
            "heart_center": tuple(float(v) for v in h_c)}


def _habitus(rng: np.random.Generator, x_range: tuple[float, float]) -> Frame:
    return Frame((uniform(rng, 0.92, 1.06), uniform(rng, 0.9, 1.06), uniform(rng, *x_range)))


def build_lung(cv: Canvas, *, levels_gy: Sequence[float], target_cc: float, fit: Fit) -> dict:
    """Paint a thorax with one lung PTV (central or peripheral, left or right).

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
        ``location`` (``"central"`` or ``"peripheral"``) and ``nodes`` (nodes in the target).
    """
    g, rng = cv.grid, cv.rng
    f = _habitus(rng, (0.9, 1.1))
    th = _thorax(cv, f, fat_mm=uniform(rng, 6.0, 22.0))
    cv.add_roi(BODY, th["body"], "external")
    side = int(rng.choice([-1, 1]))
    lung = th["lung_l" if side > 0 else "lung_r"]
    central = target_cc > 350.0 or rng.uniform() < 0.35
    r_est = (3.0 * target_cc * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
    if central:
        center = f.p(12 + rng.normal(0, 10), rng.normal(0, 8), side * (44 + uniform(rng, 0, 12)))
    else:
        center = None
        for _ in range(60):
            cand = f.p(uniform(rng, -35, 80), uniform(rng, -55, 55), side * uniform(rng, 60, 105))
            probe = [cand] + [tuple(np.add(cand, d)) for d in
                              np.vstack([np.eye(3), -np.eye(3)]) * 0.6 * r_est]
            if all(lung[g.nearest_index(p)] for p in probe):
                center = cand
                break
        if center is None:
            center = tuple(float(v) for v in _centroid_mm(g, lung))
    ratios = rng.uniform(0.8, 1.25, 3)
    ratios /= np.prod(ratios) ** (1 / 3)
    lobe = np.asarray(center) + 0.6 * r_est * _random_unit(rng)
    nodes = central and target_cc > 250.0 and rng.uniform() < 0.7
    node_path = [f.p(55, -2, 12 * side), f.p(30, 8, 8 * side), f.p(18, 10, 30 * side)]
    inner = th["body_sec"].shrunk(SKIN_CROP_MM).mask(g)

    def build(s: float):
        ptv = ellipsoid(g, center, ratios * r_est * s)
        ptv |= ellipsoid(g, lobe, ratios * r_est * s * 0.55)
        if nodes:
            ptv |= tube(g, node_path, 13.0 * s)
        ptv &= inner
        return ptv, ptv

    scale, ptv, _, _ = fit(build, target_cc)
    cv.paint(gtv_core([ptv], g, margin_mm=7.0), "tumour")
    for name in ("lung_l", "lung_r", "heart", "spinal_cord", "esophagus"):
        cv.add_roi(name, th[name], "organ")
    for name, m in _levels(ptv, sorted(levels_gy, reverse=True), g).items():
        cv.add_roi(name, m, "target", anchors=[center])
    return {"laterality": "left" if side > 0 else "right",
            "location": "central" if central else "peripheral", "nodes": bool(nodes),
            "target_scale": round(scale, 4), "body_scale_zyx": [round(v, 4) for v in f.scale]}


def _levels(ptv: np.ndarray, levels: Sequence[float], g) -> dict:
    """One target per level: one level gets ``ptv``; two split it into core and shell."""
    if len(levels) == 1:
        return {ptv_name(levels[0]): ptv}
    if len(levels) > 2:
        raise ValueError(f"this site draws one or two dose levels, not {len(levels)}")
    core = gtv_core([ptv], g, margin_mm=8.0)
    return {ptv_name(levels[0]): core, ptv_name(levels[1]): ptv & ~core}


def _centroid_mm(g, mask: np.ndarray) -> np.ndarray:
    return g.world_mm(np.argwhere(mask).mean(0))


def _random_unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return v / max(np.linalg.norm(v), 1e-9)


def _bump(excess: np.ndarray, theta: np.ndarray, z: np.ndarray, *, side: int, height_mm: float,
          depth_mm: float, theta0_deg: float, half_deg: float, z0_mm: float, half_z_mm: float,
          shrink_mm: float = 0.0) -> np.ndarray:
    """A breast: a mound of ``height_mm`` above the chest skin and ``depth_mm`` below it, over
    an elliptic footprint in (ray angle, z) centred on (``side * theta0_deg``, ``z0_mm``),
    tapering to the skin at the edge; ``shrink_mm`` keeps it inside the skin."""
    q = ((theta - side * theta0_deg) / half_deg) ** 2 + ((z - z0_mm) / half_z_mm) ** 2
    w = np.clip(1.0 - q, 0.0, None)
    return ((q < 1.0) & (excess <= height_mm * w - shrink_mm)
            & (excess > -depth_mm * np.sqrt(w)) & (side * theta > 8.0))


def build_breast(cv: Canvas, *, levels_gy: Sequence[float], target_cc: float, fit: Fit) -> dict:
    """Paint a thorax with two breasts; the PTV is the treated breast (+ regional nodes),
    cropped 5 mm from the skin and off the chest wall.

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
        ``nodes`` (regional nodes included) and ``contralateral_breast_scale``.
    """
    g, rng = cv.grid, cv.rng
    f = _habitus(rng, (0.86, 1.03))
    fat_mm = uniform(rng, 8.0, 25.0)
    th = _thorax(cv, f, fat_mm=fat_mm)
    side = int(rng.choice([-1, 1]))
    height, half_z = 45.0 * uniform(rng, 0.85, 1.15), 62.0 * uniform(rng, 0.9, 1.1)
    z0 = f.scale[0] * uniform(rng, -20.0, 0.0)
    contra_k = uniform(rng, 0.85, 1.1)
    nodes = target_cc > 900.0 or (target_cc > 450.0 and rng.uniform() < 0.5)
    body_sec, torso = th["body_sec"], th["body"]
    excess, theta = body_sec.polar(g)
    z = g.axes_mm()[0][:, None, None].astype(np.float32)
    wall = _section(f, _CAGE_AX, _CAGE_AY, _CAGE_CY, grow_mm=10.0)
    inner5 = body_sec.shrunk(5.0).mask(g)
    keep_out = wall.mask(g) | th["lung_l"] | th["lung_r"] | union(list(th["heads"].values()))

    def breast(sd: int, s: float, shrink_mm: float = 0.0) -> np.ndarray:
        return _bump(excess, theta, z, side=sd, height_mm=height * s, depth_mm=fat_mm,
                     theta0_deg=40.0 + 8.0 * (s - 1.0), half_deg=min(30.0 * s ** 0.4, 55.0),
                     z0_mm=z0, half_z_mm=half_z * s ** 0.4, shrink_mm=shrink_mm) & ~keep_out

    node_path = None
    if nodes:
        ax_at = [float(wall.at(zz * f.scale[0])[3]) for zz in (20, 55)]
        node_path = [(20 * f.scale[0], -20.0, side * (ax_at[0] + 5.0)),
                     (55 * f.scale[0], -10.0, side * (ax_at[1] + 2.0)),
                     f.p(88, -40, 70 * side), f.p(118, -25, 45 * side)]

    def build(s: float):
        ptv = breast(side, s, 5.0)
        if node_path is not None:
            ptv |= tube(g, node_path, 15.0) & inner5 & ~keep_out
        return ptv, None

    scale, ptv, _, _ = fit(build, target_cc)
    b_treat, b_contra = breast(side, scale), breast(-side, scale * contra_k)
    cv.paint(b_treat | b_contra, "breast")
    for sd, k, b in ((side, scale, b_treat), (-side, scale * contra_k, b_contra)):
        core = _bump(excess, theta, z, side=sd, height_mm=height * k * 0.7, depth_mm=4.0,
                     theta0_deg=40.0 + 8.0 * (k - 1.0), half_deg=min(30.0 * k ** 0.4, 55.0) * 0.6,
                     z0_mm=z0, half_z_mm=half_z * k ** 0.4 * 0.6)
        cv.paint(core & b, "gland")
    cv.add_roi(BODY, torso | b_treat | b_contra, "external")
    for name in ("lung_l", "lung_r", "heart", "spinal_cord"):
        cv.add_roi(name, th[name], "organ")
    cv.add_roi(f"breast_{_LR[side]}", b_treat, "organ")
    cv.add_roi(f"breast_{_LR[-side]}", b_contra, "organ")
    for name, m in th["heads"].items():
        cv.add_roi(name, m, "organ")
    for name, m in _levels(ptv, sorted(levels_gy, reverse=True), g).items():
        cv.add_roi(name, m, "target")
    return {"laterality": "left" if side > 0 else "right", "nodes": bool(nodes),
            "target_scale": round(scale, 4), "body_scale_zyx": [round(v, 4) for v in f.scale],
            "contralateral_breast_scale": round(contra_k, 4)}
