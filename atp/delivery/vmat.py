"""VMAT arc sequencing: sector-wise sliding windows over consecutive control points.

The engine samples an arc into static directions (`atp.dose.beams.arc_gantry_angles_deg`:
one direction at the centre of each ``spacing`` wide piece of the arc). After Craft et al.
("Multicriteria VMAT optimization", Med Phys 39:686, 2012), consecutive directions are
grouped into sectors of about ``sector_deg``; the sum of a sector's fluence maps is
delivered by one unidirectional sliding-window sweep (`atp.delivery.sliding_window`)
spread over the sector's control points, and consecutive sectors sweep in opposite
directions so that the leaves end one sector where the next begins. Each interval between
control points lies within one direction's piece of the arc and its fluence goes to that
direction's beamlets; the control points are ``cps_per_direction`` per direction.

Each leaf pair sweeps its own stretch (the beamlets it ever opens on the arc), back and
forth. Within a sector the dose rate and gantry speed are constant, so the MU grows
linearly with the angle. With ``I_k`` the sum of rises of pair ``k``'s sector profile and
``W_k`` its sweep length, the leaves need ``c >= I_k / (v t - W_k)`` MU per mm to sweep in
the time ``t`` of the sector at full gantry speed (``v``: leaf speed): the sector runs at
full gantry speed with the smallest such ``c`` when that dose rate is within the
machine's, else at full dose rate (``c = dose_rate / v``) with the gantry slowed. Its MU is
``max_k(I_k + c W_k)`` (raised to the minimum MU per degree); lighter pairs move slower so
that every pair ends with the sector. Between control points the leaves never exceed
their speed at the interval's time (`atp.delivery.sequence`).
"""

from __future__ import annotations

import numpy as np

from atp.delivery.fluence import BeamletGrid, delivered_pair_fluence
from atp.delivery.machine import Machine
from atp.delivery.sequence import BeamSequence
from atp.delivery.sliding_window import _within, pair_ranges, rises_mu, sample_leaves, sweep_leaves


def arc_geometry(gantry_deg: list[float]) -> tuple[float, float, int]:
    """(start angle, spacing, sign) of an arc from its directions' gantry angles.

    Parameters
    ----------
    gantry_deg : list of float
        Gantry angle (degrees) of each direction, in delivery order, evenly spaced in one
        rotation (ValueError otherwise, or for fewer than two).

    Returns
    -------
    start_deg : float
        Gantry angle where the arc starts: half a spacing before the first direction.
    spacing_deg : float
        Angle between directions (degrees).
    sign : int
        +1 when the gantry angle increases (CW), -1 when it decreases (CC).
    """
    g = np.asarray(gantry_deg, dtype=np.float64)
    if g.size < 2:
        raise ValueError("an arc needs at least two directions")
    steps = (np.diff(g) + 180.0) % 360.0 - 180.0
    sign = 1 if steps.mean() > 0 else -1
    if np.any(np.sign(steps) != sign) or np.ptp(np.abs(steps)) > 1e-3:
        raise ValueError(f"arc directions are not evenly spaced in one rotation: {g.tolist()}")
    spacing = float(np.abs(steps).mean())
    return float(g[0] - sign * spacing / 2), spacing, sign


def sector_chunks(n_dirs: int, spacing_deg: float, sector_deg: float) -> list[list[int]]:
    """Consecutive direction indices of each sector (about ``sector_deg`` each).

    Parameters
    ----------
    n_dirs : int
        Number of directions of the arc.
    spacing_deg : float
        Angle between directions (degrees).
    sector_deg : float
        Wanted sector size (degrees), rounded to whole directions (at least one).

    Returns
    -------
    list of list of int
        Direction indices (0 .. n_dirs - 1) of each sector, in order; the last may be
        shorter.
    """
    per = max(1, round(sector_deg / spacing_deg))
    return [list(range(s, min(n_dirs, s + per))) for s in range(0, n_dirs, per)]


def _sector_design(o: np.ndarray, widths: np.ndarray, active: np.ndarray, angle_deg: float,
                   machine: Machine) -> tuple[float, float, float]:
    """(MU, MU per mm of the busiest pair, time s) of one sector's sweep.

    ``widths`` (mm, per pair, gap included) are the pairs' sweeps, ``active`` the pairs
    that sweep; see the module docstring.
    """
    rises = np.where(active, rises_mu(o), 0.0)
    v, r = machine.max_leaf_speed_mm_s, machine.dose_rate_mu_s
    c_max = machine.mu_per_mm_at_max_speed
    t = angle_deg / machine.max_gantry_speed_deg_s
    room = v * t - widths
    c = c_max
    if np.all(room[active] > 0) and active.any():  # can the leaves sweep at full gantry speed?
        c = float(np.max(rises[active] / room[active]))
    if c >= c_max or not active.any():
        c = c_max
    mu = float(np.max(np.where(active, rises + c * widths, 0.0))) if active.any() else 0.0
    mu = max(mu, machine.min_mu_per_deg * angle_deg, 1e-6)
    return mu, c, max(t, mu / r)


def sequence_arc(targets: np.ndarray, grid: BeamletGrid, machine: Machine, *, name: str,
                 beam_indices: list[int], gantry_deg: list[float], sector_deg: float = 24.0,
                 cps_per_direction: int = 2, iterations: int = 4,
                 geometry: dict | None = None) -> BeamSequence:
    """Sequence one arc.

    Parameters
    ----------
    targets : ndarray (n_dirs, n_pairs, n_u)
        MU per fraction each leaf pair should deliver in each direction (transmission
        included), on the beamlet columns of ``grid`` (the arc's beamlet rectangle).
    grid : BeamletGrid
        The arc's beamlet rectangle; the jaws are set to it.
    machine : Machine
        The machine's limits and transmission.
    name : str
        Arc name.
    beam_indices : list of int
        The engine directions of the arc, in delivery order.
    gantry_deg : list of float
        Their gantry angles (degrees), evenly spaced.
    sector_deg : float
        Sector size (rounded to whole directions).
    cps_per_direction : int
        Control-point intervals per direction.
    iterations : int
        Correction passes on each sector's target.
    geometry : dict
        ``couch_deg``, ``isocenter_mm``, ``sad_mm``.

    Returns
    -------
    BeamSequence
        Rotation CW or CC; sectors, sector times (s) and the largest pair error (MU) in
        ``info``.
    """
    geometry = geometry or {}
    f = np.maximum(np.asarray(targets, dtype=np.float64), 0.0)
    n_dirs = len(beam_indices)
    if f.shape != (n_dirs, machine.n_pairs, grid.n_u):
        raise ValueError(f"arc {name}: targets shape {f.shape}, expected "
                         f"({n_dirs}, {machine.n_pairs}, {grid.n_u})")
    start, spacing, sign = arc_geometry(gantry_deg)
    sectors = sector_chunks(n_dirs, spacing, sector_deg)
    n_sub = max(1, int(cps_per_direction))
    edges = grid.u_edges_mm
    gap = machine.min_leaf_gap_mm
    tau = machine.leaf_transmission
    ranges = pair_ranges(f.max(axis=0))
    active = ranges[1] > ranges[0]
    widths = np.where(active, edges[ranges[1]] - edges[ranges[0]] + gap, 0.0)
    parked = np.stack([np.full(machine.n_pairs, edges[0] - gap),
                       np.full(machine.n_pairs, edges[0])])
    jaws = (float(edges[0]), float(edges[-1]), float(grid.v_edges_mm[0]),
            float(grid.v_edges_mm[-1]))
    leaves, cum, angles, owner, times, errors = [], [0.0], [start], [], [], []
    direction = 1
    for dirs in sectors:
        target = f[dirs].sum(axis=0)
        angle = spacing * len(dirs)
        n_int = len(dirs) * n_sub
        frac = np.arange(n_int + 1) / n_int
        mu, c, t = _sector_design(target, widths, active, angle, machine)
        o = _within(np.maximum((target - tau * mu) / (1 - tau) - c * gap, 0.0), ranges)
        best = None
        for it in range(iterations + 1):
            mu, c, t = _sector_design(o, widths, active, angle, machine)
            traj, _ = sweep_leaves(o, edges, mu_per_mm=c, gap_mm=gap, direction=direction,
                                   ranges=ranges, total_mu=mu)
            lv = sample_leaves(traj, mu * frac, parked)  # parked pairs never move
            probe = BeamSequence(name=name, technique="vmat", gantry_deg=np.zeros(n_int + 1),
                                 cum_mu=mu * frac, leaves_mm=lv, jaws_mm=jaws,
                                 interval_beam=np.zeros(n_int, np.int64), grid=grid.as_tuple())
            delivered = delivered_pair_fluence(probe, machine, grid)[0][0]
            err = _within(target - delivered, ranges)
            score = float(np.abs(err).max())
            if best is None or score < best[0]:
                best = (score, lv, mu, t)
            if it == iterations:
                break
            o = _within(np.maximum(o + err / (1 - tau), 0.0), ranges)
        score, lv, mu, t = best
        errors.append(score)
        leaves.append(lv if not leaves else lv[1:])
        cum += list(cum[-1] + mu * frac[1:])
        angles += list(angles[-1] + sign * angle * frac[1:])
        owner += [beam_indices[d] for d in dirs for _ in range(n_sub)]
        times.append(t)
        direction = -direction
    seq = BeamSequence(name=name, technique="vmat", gantry_deg=np.asarray(angles),
                       cum_mu=np.asarray(cum), leaves_mm=np.concatenate(leaves, axis=0),
                       jaws_mm=jaws, interval_beam=np.asarray(owner),
                       couch_deg=float(geometry.get("couch_deg", 0.0)),
                       isocenter_mm=tuple(geometry.get("isocenter_mm", (0.0, 0.0, 0.0))),
                       sad_mm=float(geometry.get("sad_mm", machine.sad_mm)),
                       rotation="CW" if sign > 0 else "CC", grid=grid.as_tuple())
    seq.info.update({"sectors": len(sectors), "directions_per_sector": len(sectors[0]),
                     "sector_times_s": times, "max_pair_error_mu": max(errors)})
    return seq
