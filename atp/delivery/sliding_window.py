"""Sliding-window (dynamic MLC) sequencing of one fluence map: a unidirectional sweep.

For every leaf pair both tips sweep across the field in the same direction; a point is
exposed from the moment the leading tip passes it until the trailing tip does, so the
exposure is the difference of the two passing times. The classical optimal trajectories
(Spirou and Chui, Med Phys 21:1031, 1994; Svensson, Kallman and Brahme, Phys Med Biol
39:37, 1994; Stein et al., Med Phys 21:1001, 1994) move the leading tip at full speed where
the profile rises and the trailing tip at full speed where it falls; on a beamlet profile
(constant within each beamlet) the other tip waits at each beamlet edge for the size of the
step, which gives the least beam-on time: ``c W + sum(max(0, f_i - f_(i-1)))`` with
``c`` the MU delivered while a tip crosses 1 mm at full speed and ``W`` the sweep length.

Each pair sweeps only its own beamlets with fluence, and every pair ends with the beam:
lighter pairs move slower than the busiest, so no pair waits with its gap open. The
minimum gap ``g`` is kept by shifting the leading tip ``g/2`` ahead and the trailing tip
``g/2`` behind the ideal zero-gap trajectory; pairs without fluence stay closed under the
X1 jaw. Control points are spaced evenly in MU; leaf speed never exceeds the limit
between them because the sampled trajectory never does. The gap, the sampling and the leaf
transmission perturb the delivered fluence; they are corrected by iterating on the target
(``o <- o + (f - delivered) / (1 - transmission)``), with the delivered fluence rebuilt
exactly from the control points (`atp.delivery.fluence`).
"""

from __future__ import annotations

import math

import numpy as np

from atp.delivery.fluence import BeamletGrid, delivered_pair_fluence
from atp.delivery.machine import Machine
from atp.delivery.sequence import BeamSequence


def sweep_knots(profile: np.ndarray, edges_mm: np.ndarray, *, mu_per_mm: float,
                gap_mm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """Knots (MU, position) of the trailing and leading tip of one pair sweeping ``+u``.

    Parameters
    ----------
    profile : ndarray (n,)
        Open MU wanted on each beamlet between ``edges_mm`` (n + 1 increasing edges).
    edges_mm : ndarray (n + 1,)
        Beamlet edges along ``u`` (mm), increasing.
    mu_per_mm : float
        MU delivered while a tip crosses 1 mm at its maximum speed.
    gap_mm : float
        Minimum gap between the tips.

    Returns
    -------
    t_trail, x_trail, t_lead, x_lead : ndarrays
        Non-decreasing times (MU) and positions (mm) of the knots of each tip.
    total_mu : float
        The sweep's MU (the trailing tip's last knot).
    """
    o = np.maximum(np.asarray(profile, dtype=np.float64), 0.0)
    e = np.asarray(edges_mm, dtype=np.float64)
    h = 0.5 * gap_mm
    x = np.concatenate([[e[0] - h], e, [e[-1] + h]])  # ideal (zero-gap) knot positions
    prof = np.concatenate([[0.0], o, [0.0]])  # profile on the intervals between knots
    before = np.concatenate([[0.0], prof])  # level on the left of each knot
    after = np.concatenate([prof, [0.0]])  # level on the right
    wait_lead = np.maximum(before - after, 0.0)
    wait_trail = np.maximum(after - before, 0.0)
    travel = mu_per_mm * np.diff(x)
    # arrival at knot i: everything before it (waits at knots < i, then travel)
    arr_lead = np.concatenate([[0.0], np.cumsum(wait_lead[:-1] + travel)])
    arr_trail = np.concatenate([[0.0], np.cumsum(wait_trail[:-1] + travel)])
    t_lead = np.stack([arr_lead, arr_lead + wait_lead], axis=1).ravel()
    t_trail = np.stack([arr_trail, arr_trail + wait_trail], axis=1).ravel()
    xx = np.repeat(x, 2)
    return t_trail, xx - h, t_lead, xx + h, float(t_trail[-1])


def pair_ranges(profiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and one-past-last beamlet with fluence, per pair (0, 0 for empty pairs).

    Parameters
    ----------
    profiles : np.ndarray
        Fluence (MU) per leaf pair and beamlet column, (n_pairs, n).

    Returns
    -------
    first, last : np.ndarray
        Per pair, the first beamlet with fluence > 0 and one past the last, (n_pairs,) each.
    """
    nz = np.asarray(profiles) > 0
    has = nz.any(axis=1)
    first = np.where(has, nz.argmax(axis=1), 0)
    last = np.where(has, nz.shape[1] - nz[:, ::-1].argmax(axis=1), 0)
    return first, last


def rises_mu(profiles: np.ndarray) -> np.ndarray:
    """Sum of the positive steps of each pair's profile (from and back to zero).

    Parameters
    ----------
    profiles : np.ndarray
        Fluence (MU) per leaf pair and beamlet column, (n_pairs, n).

    Returns
    -------
    np.ndarray
        Sum of rises (MU) per pair, (n_pairs,): the least beam-on MU of a sweep at
        infinite leaf speed.
    """
    p = np.asarray(profiles, dtype=np.float64)
    padded = np.concatenate([np.zeros((p.shape[0], 1)), p, np.zeros((p.shape[0], 1))], axis=1)
    return np.maximum(np.diff(padded, axis=1), 0.0).sum(axis=1)


def sweep_leaves(profiles: np.ndarray, edges_mm: np.ndarray, *, mu_per_mm: float,
                 gap_mm: float, direction: int, ranges: tuple[np.ndarray, np.ndarray],
                 total_mu: float | None = None) -> tuple[list, float]:
    """Trajectories of every pair for a sweep in ``direction`` (+1 / -1).

    Pair ``k`` sweeps its own beamlets ``ranges[0][k] .. ranges[1][k] - 1`` (none when
    empty: the pair stays parked). Every pair ends at the same MU, ``total_mu`` or the
    least that lets the busiest pair finish at ``mu_per_mm``: lighter pairs move slower
    (their own MU per mm, never less than ``mu_per_mm``), so none waits with its gap open.

    Returns per pair ``(t_bank1, x_bank1, t_bank2, x_bank2)`` (None for parked pairs) and
    the sweep's MU.

    Parameters
    ----------
    profiles : np.ndarray
        Open MU wanted per leaf pair and beamlet column, (n_pairs, n).
    edges_mm : np.ndarray
        Beamlet column edges along ``u`` (mm), (n + 1,).
    mu_per_mm : float
        MU delivered while a tip crosses 1 mm at its maximum speed.
    gap_mm : float
        Minimum gap between the tips (mm).
    direction : int
        +1: sweep towards ``+u`` (bank 2 leads); -1: towards ``-u`` (bank 1 leads).
    ranges : tuple of np.ndarray
        ``(first, last)`` swept beamlets per pair, as `pair_ranges` returns them.
    total_mu : float, optional
        MU of the sweep; None: the least the busiest pair needs.

    Returns
    -------
    trajectories : list
        Per pair, knot times (MU) and positions (mm) of both banks, or None.
    total_mu : float
        The sweep's MU (per fraction).
    """
    e = np.asarray(edges_mm, dtype=np.float64)
    first, last = ranges
    active = last > first
    widths = np.where(active, e[last] - e[first] + gap_mm, 0.0)
    need = np.where(active, rises_mu(profiles) + mu_per_mm * widths, 0.0)
    total = float(need.max()) if total_mu is None else float(total_mu)
    trajectories: list = []
    for k in range(profiles.shape[0]):
        if not active[k]:
            trajectories.append(None)
            continue
        o = profiles[k, first[k]:last[k]]
        ek = e[first[k]:last[k] + 1]
        c_k = max(mu_per_mm, (total - (need[k] - mu_per_mm * widths[k])) / widths[k])
        if direction > 0:
            tt, xt, tl, xl, _ = sweep_knots(o, ek, mu_per_mm=c_k, gap_mm=gap_mm)
            trajectories.append((tt, xt, tl, xl))
        else:  # mirror: sweep -u; bank 1 leads
            tt, xt, tl, xl, _ = sweep_knots(o[::-1], -ek[::-1], mu_per_mm=c_k, gap_mm=gap_mm)
            trajectories.append((tl, -xl, tt, -xt))
    return trajectories, total


def sample_leaves(trajectories: list, mu_samples: np.ndarray, parked: np.ndarray
                  ) -> np.ndarray:
    """Leaf tips (n_samples, 2, n_pairs) of the trajectories at ``mu_samples``; pairs
    without a trajectory stay at ``parked`` (2, n_pairs).

    Parameters
    ----------
    trajectories : list
        Per pair ``(t_bank1, x_bank1, t_bank2, x_bank2)`` knots (MU, mm) or None, as
        `sweep_leaves` returns them.
    mu_samples : np.ndarray
        Cumulative MU at which to sample, (n_samples,).
    parked : np.ndarray
        Tip positions (mm) of pairs without a trajectory, (2, n_pairs).

    Returns
    -------
    np.ndarray
        Leaf tips (mm), (n_samples, 2, n_pairs), linear between knots.
    """
    out = np.repeat(np.asarray(parked, dtype=np.float64)[None], mu_samples.size, axis=0)
    for k, tr in enumerate(trajectories):
        if tr is not None:
            t1, x1, t2, x2 = tr
            out[:, 0, k] = np.interp(mu_samples, t1, x1)
            out[:, 1, k] = np.interp(mu_samples, t2, x2)
    return out


def sequence_sliding_window(target: np.ndarray, grid: BeamletGrid, machine: Machine, *,
                            name: str, beam_index: int, mu_per_control_point: float = 1.0,
                            max_control_points: int = 600, iterations: int = 4,
                            geometry: dict | None = None) -> BeamSequence:
    """Sliding-window sequence of one beam.

    Parameters
    ----------
    target : ndarray (n_pairs, n_u)
        MU per fraction each leaf pair should deliver (transmission included), on the
        beamlet columns of ``grid`` (see `atp.delivery.fluence.pair_targets`).
    grid : BeamletGrid
        The beam's beamlets; the jaws are set to its rectangle.
    machine : Machine
        The machine's limits and transmission.
    name : str
        Beam name.
    beam_index : int
        Engine direction of the beam (index into ``DoseInfluence.beams``).
    mu_per_control_point : float
        Control-point spacing (MU): finer spacing follows the ideal trajectory closer.
    max_control_points : int
        Cap on the control points of the beam (the spacing widens to respect it).
    iterations : int
        Correction passes on the target (0: the ideal trajectories as they are).
    geometry : dict
        ``gantry_deg``, ``couch_deg``, ``isocenter_mm``, ``sad_mm`` of the beam.

    Returns
    -------
    BeamSequence
        The control points with the least largest pair error of the passes (MU, in
        ``info["max_pair_error_mu"]``).
    """
    geometry = geometry or {}
    f = np.maximum(np.asarray(target, dtype=np.float64), 0.0)
    if f.shape != (machine.n_pairs, grid.n_u):
        raise ValueError(f"beam {name}: target shape {f.shape}, expected "
                         f"({machine.n_pairs}, {grid.n_u})")
    edges = grid.u_edges_mm
    jaws = (float(edges[0]), float(edges[-1]), float(grid.v_edges_mm[0]),
            float(grid.v_edges_mm[-1]))
    gap = machine.min_leaf_gap_mm
    c = machine.mu_per_mm_at_max_speed
    tau = machine.leaf_transmission
    ranges = pair_ranges(f)
    parked = np.stack([np.full(machine.n_pairs, edges[0] - gap), np.full(machine.n_pairs,
                                                                          edges[0])])
    o = np.maximum(f - c * gap, 0.0)
    # first guess of the transmitted part: from the ideal beam-on time
    _, total = sweep_leaves(o, edges, mu_per_mm=c, gap_mm=gap, direction=1, ranges=ranges)
    o = np.maximum((f - tau * total) / (1 - tau) - c * gap, 0.0)
    best = None
    for it in range(iterations + 1):
        o = _within(o, ranges)
        traj, total = sweep_leaves(o, edges, mu_per_mm=c, gap_mm=gap, direction=1,
                                   ranges=ranges)
        n_cp = int(min(max(math.ceil(total / mu_per_control_point) + 1, 2), max_control_points))
        mu = np.linspace(0.0, total, n_cp)
        seq = BeamSequence(name=name, technique="sliding_window",
                           gantry_deg=np.full(n_cp, float(geometry.get("gantry_deg", 0.0))),
                           cum_mu=mu, leaves_mm=sample_leaves(traj, mu, parked), jaws_mm=jaws,
                           interval_beam=np.full(n_cp - 1, beam_index),
                           couch_deg=float(geometry.get("couch_deg", 0.0)),
                           isocenter_mm=tuple(geometry.get("isocenter_mm", (0.0, 0.0, 0.0))),
                           sad_mm=float(geometry.get("sad_mm", machine.sad_mm)),
                           grid=grid.as_tuple())
        delivered = delivered_pair_fluence(seq, machine, grid)[0][0]
        err = _within(f - delivered, ranges)
        score = float(np.abs(err).max()) if err.size else 0.0
        if best is None or score < best[0]:
            best = (score, seq)
        if it == iterations:
            break
        o = np.maximum(o + err / (1 - tau), 0.0)
    best[1].info.update({"max_pair_error_mu": best[0], "mu_per_mm": c})
    return best[1]


def _within(values: np.ndarray, ranges: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """``values`` inside each pair's swept beamlets, 0 outside."""
    idx = np.arange(values.shape[1])[None, :]
    return np.where((idx >= ranges[0][:, None]) & (idx < ranges[1][:, None]), values, 0.0)
