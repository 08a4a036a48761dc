"""Re-optimizations around sequencing, against the plan's own objective terms.

`merge_arc_sectors` (before VMAT sequencing): an arc's sector is delivered as one sweep
spread over its directions, so each direction of a sector is given the same fluence (the
sector's map divided by its number of directions) and those sector maps are re-optimized
(variables: one weight per sector and beamlet position, w >= 0). Merging neighbouring
directions' fluence is the approximation of sector-wise VMAT sequencing (Craft et al.,
Med Phys 39:686, 2012); re-optimizing the merged maps lets the plan make up for it
before any leaf moves.

`reoptimize_weights` (after sequencing): the MU of every segment / control-point
interval, with the leaves fixed.

With the leaves fixed, the fluence an interval delivers is proportional to its MU (its
open share and the leaf transmission do not change), so the beamlet weights are linear in
the interval MU, ``w = A x``, and the dose is ``D A x``. The planner's terms
(`atp.planning.build_terms`: the goals, the fall-off and maximum-dose controls) are
minimized over ``x`` with L-BFGS-B under bounds that keep the sequence deliverable:

* static dynamic beams: ``x_j >= dose_rate * travel_j / leaf_speed`` (the leaves keep up at
  full dose rate) and the machine's minimum MU per control point;
* arcs: the MU-per-degree limits, and the leaf-speed bound wherever the leaves could not
  keep up at full gantry speed;
* step-and-shoot: the minimum MU per segment.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize

from atp.delivery.fluence import BeamletGrid, beam_grid, beam_indices, interval_open_mu
from atp.delivery.sequence import DeliverablePlan
from atp.delivery.sequencing import beam_groups
from atp.delivery.vmat import arc_geometry, sector_chunks

#: Relative margin inside a met limit that a held term keeps (a penalty lets a limit be
#: crossed by a little; the margin keeps the goal met).
HOLD_MARGIN = 0.005


def _held(term, dose, *, weight: float):
    """A copy of ``term`` with a large weight and a limit it already meets: a met goal
    may use its room up to ``HOLD_MARGIN`` inside its limit (never crossing it), an unmet
    one may not get worse; None for terms that are not limits (uniformity)."""
    if term.direction is None:
        return None
    a = np.asarray(term.achieved(dose[term.rows]), dtype=np.float64)
    lim = np.asarray(term.limit_gy, dtype=np.float64)
    if term.direction == "upper":
        new = np.where(a <= lim, np.maximum(lim * (1 - HOLD_MARGIN), a), a)
    else:
        new = np.where(a >= lim, np.minimum(lim * (1 + HOLD_MARGIN), a), a)
    new = float(new) if new.ndim == 0 else new
    return term.with_limit(new, weight=weight, label=f"held: {term.label}")


def interval_matrix(plan: DeliverablePlan, influence) -> tuple[sp.csc_matrix, np.ndarray,
                                                               list[tuple[int, np.ndarray]]]:
    """``A`` (n_beamlets x n_variables): beamlet weight (all fractions) per MU of each
    beam-on interval; the intervals' current MU; and, per beam, the interval indices.

    Parameters
    ----------
    plan : DeliverablePlan
        The sequenced plan (leaves fixed).
    influence : DoseInfluence
        The matrix whose beamlets the plan delivers to.

    Returns
    -------
    a : scipy.sparse.csc_matrix
        (n_beamlets, n_variables), transmission included; ``a @ x0`` is the plan's
        beamlet weights.
    x0 : np.ndarray
        Current MU per fraction of each beam-on interval, (n_variables,).
    index : list of (int, np.ndarray)
        Per beam: its index in ``plan.beams`` and its beam-on interval indices, in the
        order of the variables.
    """
    m = plan.machine
    tl, tj = m.leaf_transmission, m.jaw_transmission
    rows, cols, vals, x0, index = [], [], [], [], []
    n_var = 0
    for bi, seq in enumerate(plan.beams):
        grid = BeamletGrid(*seq.grid)
        d_mu = np.diff(seq.cum_mu)
        on = np.flatnonzero(d_mu > 1e-9)
        x1, x2, y1, y2 = seq.jaws_mm
        unit = np.arange(seq.n_cp, dtype=np.float64)  # every interval delivers 1 MU
        share = interval_open_mu(seq.leaves_mm, unit, grid.u_edges_mm, (x1, x2))[on]
        v_lo = np.clip(grid.v_edges_mm[:-1], y1, y2)
        v_hi = np.clip(grid.v_edges_mm[1:], y1, y2)
        e = m.leaf_boundaries_mm
        ov = np.maximum(np.minimum(v_hi[:, None], e[None, 1:])
                        - np.maximum(v_lo[:, None], e[None, :-1]), 0.0) / grid.bixel_mm
        open_f = np.einsum("jpu,vp->juv", share, ov)
        in_u = np.clip(np.minimum(grid.u_edges_mm[1:], x2) - np.maximum(grid.u_edges_mm[:-1], x1),
                       0, None) / grid.bixel_mm
        in_v = np.clip(np.minimum(grid.v_edges_mm[1:], y2) - np.maximum(grid.v_edges_mm[:-1], y1),
                       0, None) / grid.bixel_mm
        in_jaw = np.outer(in_u, in_v)
        per_mu = (1 - tl) * open_f + (tl * in_jaw + tj * (1 - in_jaw))[None]
        for k, j in enumerate(on):
            c, iu, iv = beam_indices(influence, int(seq.interval_beam[j]))
            rows.append(c)
            cols.append(np.full(c.size, n_var + k))
            vals.append(per_mu[k, iu - grid.iu0, iv - grid.iv0])
        x0.append(d_mu[on])
        index.append((bi, on))
        n_var += on.size
    a = sp.csc_matrix((np.concatenate(vals) * (plan.n_fractions * m.mu_calibration_cgy_per_mu),
                       (np.concatenate(rows), np.concatenate(cols))),
                      shape=(influence.n_beamlets, n_var))
    return a, np.concatenate(x0), index


def interval_bounds(plan: DeliverablePlan, index) -> list[tuple[float, float | None]]:
    """Bounds on every beam-on interval's MU that keep the sequence deliverable.

    Parameters
    ----------
    plan : DeliverablePlan
        The sequenced plan (its machine and leaf and gantry moves).
    index : list of (int, np.ndarray)
        Per beam, the beam-on intervals, as `interval_matrix` returns it.

    Returns
    -------
    list of (float, float or None)
        ``(lower, upper)`` MU per fraction for each variable; None: no upper bound.
    """
    m = plan.machine
    r, v, w = m.dose_rate_mu_s, m.max_leaf_speed_mm_s, m.max_gantry_speed_deg_s
    bounds = []
    for bi, on in index:
        seq = plan.beams[bi]
        travel = np.abs(np.diff(seq.leaves_mm, axis=0)).max(axis=(1, 2))[on]
        d_g = np.abs(np.diff(seq.gantry_deg))[on]
        if seq.technique == "step_and_shoot":
            lo = np.full(on.size, m.min_mu_per_segment)
            hi = [None] * on.size
        elif seq.is_arc:
            need = np.where(travel > v * d_g / w, r * travel / v, 0.0)
            lo = np.maximum(np.maximum(need, m.min_mu_per_deg * d_g), m.min_mu_per_control_point)
            hi = list(m.max_mu_per_deg * d_g)
        else:
            lo = np.maximum(r * travel / v, m.min_mu_per_control_point)
            hi = [None] * on.size
        # an interval whose leaf travel needs more MU than the MU-per-degree maximum (or
        # one exactly at both limits) is pinned at the maximum: L-BFGS-B needs lo <= hi
        bounds += [(float(a) * (1 + 1e-6) if b is None else min(float(a) * (1 + 1e-6),
                                                                float(b)),
                    None if b is None else float(b)) for a, b in zip(lo, hi, strict=True)]
    return bounds


def minimize_terms(operator: sp.spmatrix, influence, terms, x0: np.ndarray, bounds, *,
                   max_iter: int) -> tuple[np.ndarray, dict]:
    """Minimize the terms' objective over ``x`` with ``w = operator @ x`` (L-BFGS-B).

    ``operator`` maps the variables to ``influence``'s beamlet weights; variables are
    scaled by their start values so that L-BFGS-B's steps are O(1).

    Parameters
    ----------
    operator : scipy.sparse matrix
        (n_beamlets, n_variables): beamlet weights per unit of each variable.
    influence : DoseInfluence
        Its ``matrix`` gives the dose of the weights.
    terms : list of atp.planning.objectives.Term
        The objective.
    x0 : np.ndarray
        Start values, (n_variables,); raised to the lower bounds.
    bounds : list of (float, float or None)
        ``(lower, upper)`` per variable.
    max_iter : int
        L-BFGS-B iterations.

    Returns
    -------
    x : np.ndarray
        The optimized variables, (n_variables,).
    info : dict
        Objective before and after, iterations, evaluations, variables, wall time (s).
    """
    from atp.planning.objectives import total_objective

    t0 = time.perf_counter()
    d = influence.matrix
    d_t = d.T
    op_t = operator.T.tocsr()
    lo = np.array([b[0] for b in bounds], dtype=np.float64)
    x0 = np.maximum(np.asarray(x0, dtype=np.float64), lo)
    scale = np.maximum(x0, max(float(x0.mean()), 1e-9) * 1e-2)

    def evaluate(x):
        dose = d @ (operator @ x).astype(np.float32)
        f, g_dose, _ = total_objective(terms, dose)
        return f, op_t @ (d_t @ g_dose.astype(np.float32)).astype(np.float64)

    f0 = evaluate(x0)[0]
    norm = 1.0 / f0 if f0 > 0 else 1.0

    def fun(y):
        f, g = evaluate(y * scale)
        return f * norm, g * scale * norm

    sb = [(b[0] / s, None if b[1] is None else b[1] / s)
          for b, s in zip(bounds, scale, strict=True)]
    res = minimize(fun, x0 / scale, jac=True, method="L-BFGS-B", bounds=sb,
                   options={"maxiter": max_iter, "maxcor": 20, "ftol": 0.0, "gtol": 0.0})
    x = np.maximum(res.x * scale, lo)
    return x, {"objective_before": float(f0), "objective_after": float(evaluate(x)[0]),
               "iterations": int(res.nit), "evaluations": int(res.nfev),
               "variables": int(x.size), "wall_s": time.perf_counter() - t0}


def reoptimize_weights(plan: DeliverablePlan, influence, terms, *, max_iter: int = 40,
                       hold_priority: int | None = 2) -> tuple[DeliverablePlan, dict]:
    """Re-optimize the interval MU of ``plan`` against ``terms`` (leaves fixed).

    Parameters
    ----------
    plan : DeliverablePlan
        The sequenced plan (its leaves are kept).
    influence : DoseInfluence
        The matrix the plan's beamlets index.
    terms : list of atp.planning.objectives.Term
        The objective (rows index ``influence``'s rows).
    max_iter : int
        L-BFGS-B iterations.
    hold_priority : int, optional
        Terms of this priority or higher (P1 constraints, P2 targets by default) are held
        (`_held`): a met limit stays met with a margin of ``HOLD_MARGIN``, an unmet one
        may not get worse than in the sequenced plan; None holds nothing.

    Returns
    -------
    plan : DeliverablePlan
        A copy with new cumulative MU.
    info : dict
        Objective before and after, iterations, evaluations, wall time.
    """
    a, x0, index = interval_matrix(plan, influence)
    if hold_priority is not None:
        dose = influence.matrix @ (a @ x0).astype(np.float32)
        big = 100.0 * max(t.weight for t in terms)
        terms = list(terms) + [h for t in terms if t.priority <= hold_priority
                               and (h := _held(t, dose, weight=big)) is not None]
    x, info = minimize_terms(a, influence, terms, x0, interval_bounds(plan, index),
                             max_iter=max_iter)
    out = copy.deepcopy(plan)
    for bi, on in index:
        seq = out.beams[bi]
        d_mu = np.diff(seq.cum_mu)
        d_mu[on] = x[:on.size]
        x = x[on.size:]
        seq.cum_mu = np.concatenate([[0.0], np.cumsum(d_mu)])
    return out, info


def sector_operator(influence, *, sector_deg: float) -> tuple[sp.csc_matrix, list]:
    """The map from per-sector fluence maps to beamlet weights, for every arc.

    Returns the operator (n_beamlets x n_variables) and, per variable block, ``(arc
    directions of the sector, grid)``. Static fields keep one variable per beamlet.

    Parameters
    ----------
    influence : DoseInfluence
        The engine's beams and beamlets.
    sector_deg : float
        Sector size (degrees), as `atp.delivery.vmat.sequence_arc`.

    Returns
    -------
    operator : scipy.sparse.csc_matrix
        (n_beamlets, n_variables); each direction of a sector gets the sector map
        divided by its number of directions.
    blocks : list of (list of int, BeamletGrid or None)
        Per block of variables: its engine directions and its grid (None for a static
        field, whose variables are its own beamlets).
    """
    rows, cols, vals, blocks = [], [], [], []
    n_var = 0
    for _, idx in beam_groups(influence):
        if len(idx) == 1:
            c, _, _ = beam_indices(influence, idx[0])
            rows.append(c)
            cols.append(n_var + np.arange(c.size))
            vals.append(np.ones(c.size))
            blocks.append(([idx[0]], None))
            n_var += c.size
            continue
        grid = BeamletGrid.union([beam_grid(influence, b) for b in idx])
        _, spacing, _ = arc_geometry([influence.beams[b].gantry_deg for b in idx])
        for sector in sector_chunks(len(idx), spacing, sector_deg):
            for k in sector:
                c, iu, iv = beam_indices(influence, idx[k])
                rows.append(c)
                cols.append(n_var + (iu - grid.iu0) * grid.n_v + (iv - grid.iv0))
                vals.append(np.full(c.size, 1.0 / len(sector)))
            blocks.append(([idx[k] for k in sector], grid))
            n_var += grid.n_u * grid.n_v
    op = sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                       shape=(influence.n_beamlets, n_var))
    return op, blocks


def merge_arc_sectors(influence, fluence: np.ndarray, terms, *, sector_deg: float,
                      max_iter: int = 100) -> tuple[np.ndarray, dict]:
    """Beamlet weights in which every arc sector's directions share one re-optimized map.

    Parameters
    ----------
    influence : DoseInfluence
        The engine's beams and beamlets.
    fluence : ndarray (n_beamlets,)
        The optimized weights (all fractions); the sector maps start from their sums.
    terms : list of Term
        The objective (rows index ``influence``'s rows).
    sector_deg : float
        Sector size (degrees), as `atp.delivery.vmat.sequence_arc` (the same sectors).
    max_iter : int
        L-BFGS-B iterations.

    Returns
    -------
    weights : ndarray (n_beamlets,)
        Beamlet weights (MU-equivalent, all fractions); static fields re-optimized too.
    info : dict
        Objective before and after, iterations, evaluations, wall time (s).
    """
    op, _ = sector_operator(influence, sector_deg=sector_deg)
    used = np.flatnonzero(np.diff(op.indptr) > 0)  # positions some direction has
    op = op[:, used].tocsc()
    # start: each sector map is the sum of its directions' maps (each direction then gets
    # their mean); static fields start from their own weights
    share = op.max(axis=0).toarray().ravel()  # 1 / directions of the sector
    x0 = (op.T @ np.asarray(fluence, dtype=np.float64)) / share
    x, info = minimize_terms(op, influence, terms, x0, [(0.0, None)] * used.size,
                             max_iter=max_iter)
    return op @ x, info
