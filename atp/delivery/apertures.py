"""The engine's beamlets on each beam's jaw rectangle, for the dose of a deliverable plan.

The optimizer's beamlets cover the targets' beam's-eye view plus a margin, which is not a
rectangle, and differs between the directions of an arc. A leaf sequence, though, delivers
fluence anywhere between its jaws: leaves sweep the whole rectangle, transmission reaches
every point of it, and an arc's sweep crosses the union of its directions' views. The
"delivery influence" is the same engine's matrix with every direction's beamlets filling
its beam's (or its arc's) rectangle (`atp.dose.Beam.aperture_mm`), so that ``D @ w`` holds
every beamlet the sequence delivers to. Its columns on the optimizer's beamlets are the
optimizer's columns (same engine, same beamlet lattice); rows are the same voxels.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from atp.delivery.fluence import BeamletGrid, beam_grid, beam_indices
from atp.delivery.sequencing import beam_groups


def rectangle_beams(influence) -> list:
    """The beams of ``influence`` with ``aperture_mm`` set to their group's rectangle.

    Parameters
    ----------
    influence : DoseInfluence
        The plan's matrix; its beamlets give each beam's (or arc's) bounding rectangle.

    Returns
    -------
    list of Beam
        One per engine direction, ``aperture_mm`` = (u_min, u_max, v_min, v_max) in mm
        (shared by all directions of an arc).
    """
    beams = list(influence.beams)
    for _, idx in beam_groups(influence):
        g = BeamletGrid.union([beam_grid(influence, b) for b in idx])
        ap = (float(g.u_edges_mm[0]), float(g.u_edges_mm[-1]), float(g.v_edges_mm[0]),
              float(g.v_edges_mm[-1]))
        for b in idx:
            beams[b] = replace(beams[b], aperture_mm=ap)
    return beams


def delivery_influence(engine, case, influence, *, cache_dir=None):
    """The engine's influence matrix on the rectangles of `rectangle_beams` (cached in
    ``cache_dir`` when given); rows are the body's, as for the plan's own matrix.

    Parameters
    ----------
    engine : DoseEngine
        The dose engine that made ``influence``.
    case : PatientCase
        The case the matrix is computed on.
    influence : DoseInfluence
        The plan's own matrix (its beams and beamlets).
    cache_dir : str or Path, optional
        Influence cache folder (`atp.dose.cached_influence`); None: compute, no cache.

    Returns
    -------
    DoseInfluence
        The matrix on every beamlet of each beam's jaw rectangle.
    """
    beams = rectangle_beams(influence)
    if cache_dir is not None:
        from atp.dose import cached_influence

        return cached_influence(engine, case, beams, cache_dir=cache_dir)
    return engine.influence(case, beams)


def transfer_weights(src, weights: np.ndarray, dst) -> np.ndarray:
    """Beamlet weights of ``src`` placed on the beamlets of ``dst`` (same directions);
    beamlets ``src`` lacks get 0. Raises ValueError when a beamlet of ``src`` is missing
    from ``dst`` or the directions differ.

    Parameters
    ----------
    src : DoseInfluence
        The matrix ``weights`` index.
    weights : np.ndarray
        Beamlet weights (MU-equivalent) of ``src``, shape (src.n_beamlets,).
    dst : DoseInfluence
        The matrix to place them on (same beams and ``bixel_mm``).

    Returns
    -------
    np.ndarray
        Weights on ``dst``'s beamlets, shape (dst.n_beamlets,), float64.
    """
    if len(src.beams) != len(dst.beams) or src.bixel_mm != dst.bixel_mm:
        raise ValueError("transfer_weights: the two matrices have different beams or bixels")
    w = np.asarray(weights, dtype=np.float64)
    out = np.zeros(dst.n_beamlets, dtype=np.float64)
    for b in range(len(src.beams)):
        cs, ius, ivs = beam_indices(src, b)
        cd, iud, ivd = beam_indices(dst, b)
        g = BeamletGrid.union([BeamletGrid(int(iud.min()), int(ivd.min()), 1, 1, 1.0),
                               BeamletGrid(int(iud.max()), int(ivd.max()), 1, 1, 1.0)])
        lut = -np.ones((g.n_u, g.n_v), dtype=np.int64)
        lut[iud - g.iu0, ivd - g.iv0] = cd
        iu, iv = ius - g.iu0, ivs - g.iv0
        ok = (iu >= 0) & (iu < g.n_u) & (iv >= 0) & (iv < g.n_v)
        cols = np.where(ok, lut[np.clip(iu, 0, g.n_u - 1), np.clip(iv, 0, g.n_v - 1)], -1)
        if np.any(cols < 0):
            raise ValueError(f"transfer_weights: direction {b} has beamlets outside the "
                             "destination matrix")
        out[cols] = w[cs]
    return out
