"""Step-and-shoot sequencing of one fluence map: intensity levels, then static segments.

1. The map (open MU per fraction, transmission taken out) is quantized to ``n`` equal
   intensity levels of ``max / n`` MU (fewer when a level would fall under the machine's
   minimum MU per segment, or when the segments exceed ``max_segments``).
2. Each leaf pair's integer profile is split into unit-level openings by the sweep
   technique of Bortfeld et al. (Int J Radiat Oncol Biol Phys 28:723, 1994): the k-th
   opening runs from the k-th rising edge to the k-th falling edge of the profile, which
   uses the fewest level units a unidirectional decomposition can (the largest sum of
   rises over the pairs). Segment k opens every pair's k-th opening (pairs with fewer
   stay closed); identical consecutive segments are merged.
3. Each segment becomes two control points with the same leaves (the beam on from the
   first to the second); the leaves move between segments with the beam off.

Quantizing to ``n`` levels leaves an error of at most half a level, ``max / (2 n)``, on
each beamlet's open MU.
"""

from __future__ import annotations

import math

import numpy as np

from atp.delivery.fluence import BeamletGrid, delivered_pair_fluence
from atp.delivery.machine import Machine
from atp.delivery.sequence import BeamSequence


def unit_openings(levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sweep decomposition of integer profiles (n_pairs, n) into unit openings.

    Returns ``(left, right)`` of shape (n_pairs, K): the k-th opening of pair p covers
    beamlets ``left[p, k] <= i < right[p, k]``; ``left == right == -1`` marks no opening.
    ``K`` is the largest number of openings of any pair.

    Parameters
    ----------
    levels : np.ndarray
        Integer intensity levels (>= 0) per leaf pair and beamlet column, (n_pairs, n).

    Returns
    -------
    left, right : np.ndarray
        Int64 (n_pairs, K): first beamlet and one past the last of each unit opening.
    """
    q = np.asarray(levels, dtype=np.int64)
    n_pairs, n = q.shape
    padded = np.concatenate([np.zeros((n_pairs, 1), np.int64), q,
                             np.zeros((n_pairs, 1), np.int64)], axis=1)
    step = np.diff(padded, axis=1)  # step[p, i] at edge i (left of beamlet i), i = 0..n
    rises = [np.repeat(np.arange(n + 1), np.maximum(s, 0)) for s in step]
    falls = [np.repeat(np.arange(n + 1), np.maximum(-s, 0)) for s in step]
    k_max = max((r.size for r in rises), default=0)
    left = -np.ones((n_pairs, k_max), np.int64)
    right = -np.ones((n_pairs, k_max), np.int64)
    for p in range(n_pairs):
        left[p, :rises[p].size] = rises[p]
        right[p, :falls[p].size] = falls[p]
    return left, right


def segments(levels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct consecutive segments of the unit openings and their units of level.

    Returns ``(left, right, units)`` with left/right (n_seg, n_pairs) and units (n_seg,).

    Parameters
    ----------
    levels : np.ndarray
        Integer intensity levels (>= 0) per leaf pair and beamlet column, (n_pairs, n).

    Returns
    -------
    left, right : np.ndarray
        Int64 (n_seg, n_pairs): first beamlet and one past the last opened by each pair
        in each segment (-1: the pair is closed).
    units : np.ndarray
        Int64 (n_seg,): levels each segment delivers.
    """
    left, right = unit_openings(levels)
    if left.shape[1] == 0:
        return np.zeros((0, left.shape[0]), np.int64), np.zeros((0, left.shape[0]), np.int64), \
            np.zeros(0, np.int64)
    lt, rt = left.T, right.T  # (K, n_pairs)
    new = np.ones(lt.shape[0], bool)
    new[1:] = np.any(lt[1:] != lt[:-1], axis=1) | np.any(rt[1:] != rt[:-1], axis=1)
    starts = np.flatnonzero(new)
    units = np.diff(np.append(starts, lt.shape[0]))
    return lt[starts], rt[starts], units


def sequence_step_and_shoot(target: np.ndarray, grid: BeamletGrid, machine: Machine, *,
                            name: str, beam_index: int, n_levels: int = 10,
                            max_segments: int | None = None, iterations: int = 3,
                            geometry: dict | None = None) -> BeamSequence:
    """Step-and-shoot sequence of one beam.

    Parameters
    ----------
    target : ndarray (n_pairs, n_u)
        MU per fraction each leaf pair should deliver (transmission included).
    grid : BeamletGrid
        The beam's beamlets; the jaws are set to its rectangle.
    machine : Machine
        The machine's limits and transmission.
    name : str
        Beam name.
    beam_index : int
        Engine direction of the beam (index into ``DoseInfluence.beams``).
    n_levels : int
        Intensity levels (the most; see the module docstring).
    max_segments : int, optional
        Largest number of segments; levels are reduced until it holds.
    iterations : int
        Passes that re-estimate the transmitted MU (it depends on the beam's MU).
    geometry : dict
        ``gantry_deg``, ``couch_deg``, ``isocenter_mm``, ``sad_mm``.

    Returns
    -------
    BeamSequence
        Two control points per segment; levels, level MU and the largest pair error (MU)
        in ``info``.
    """
    geometry = geometry or {}
    if n_levels < 1:
        raise ValueError(f"n_levels must be >= 1, got {n_levels}")
    f = np.maximum(np.asarray(target, dtype=np.float64), 0.0)
    if f.shape != (machine.n_pairs, grid.n_u):
        raise ValueError(f"beam {name}: target shape {f.shape}, expected "
                         f"({machine.n_pairs}, {grid.n_u})")
    edges = grid.u_edges_mm
    tau = machine.leaf_transmission
    total = 0.0
    best = None
    for _ in range(iterations + 1):
        o = np.maximum(f - tau * total, 0.0) / (1 - tau)
        peak = float(o.max())
        if peak <= 0:
            raise ValueError(f"beam {name}: nothing to deliver (the fluence is zero)")
        n = max(1, min(n_levels, math.floor(peak / machine.min_mu_per_segment + 1e-9)))
        while True:
            step = peak / n
            lt, rt, units = segments(np.rint(o / step).astype(np.int64))
            if max_segments is None or units.size <= max_segments or n == 1:
                break
            n -= 1
        total = step * float(units.sum())
        seq = _build(lt, rt, units * step, edges, grid, machine, name, beam_index, geometry)
        delivered = delivered_pair_fluence(seq, machine, grid)[0][0]
        score = float(np.abs(delivered - f)[f.max(axis=1) > 0].max())
        if best is None or score < best[0]:
            best = (score, seq, n, step)
    score, seq, n, step = best
    seq.info.update({"levels": n, "level_mu": step, "max_pair_error_mu": score})
    return seq


def _build(left, right, seg_mu, edges, grid: BeamletGrid, machine: Machine, name: str,
           beam_index: int, geometry: dict) -> BeamSequence:
    n_seg, n_pairs = left.shape
    gap = machine.min_leaf_gap_mm
    leaves = np.empty((2 * n_seg, 2, n_pairs))
    # closed pairs hide their gap under a jaw: pairs that open in some segment close
    # after their last opening (the sweep moves every opening to +u), so under X2; pairs
    # that never open stay under X1
    closed = left < 0
    ever = (~closed).any(axis=0)[None, :]
    park1 = np.where(ever, edges[-1], edges[0] - gap)
    bank1 = np.where(closed, park1, edges[np.maximum(left, 0)])
    bank2 = np.where(closed, park1 + gap, edges[np.maximum(right, 0)])
    leaves[0::2, 0], leaves[1::2, 0] = bank1, bank1
    leaves[0::2, 1], leaves[1::2, 1] = bank2, bank2
    ends = np.cumsum(seg_mu)
    cum = np.zeros(2 * n_seg)
    cum[1::2] = ends
    cum[2::2] = ends[:-1]  # the same numbers: no beam between segments
    jaws = (float(edges[0]), float(edges[-1]), float(grid.v_edges_mm[0]),
            float(grid.v_edges_mm[-1]))
    return BeamSequence(name=name, technique="step_and_shoot",
                        gantry_deg=np.full(2 * n_seg, float(geometry.get("gantry_deg", 0.0))),
                        cum_mu=cum, leaves_mm=leaves, jaws_mm=jaws,
                        interval_beam=np.full(2 * n_seg - 1, beam_index),
                        couch_deg=float(geometry.get("couch_deg", 0.0)),
                        isocenter_mm=tuple(geometry.get("isocenter_mm", (0.0, 0.0, 0.0))),
                        sad_mm=float(geometry.get("sad_mm", machine.sad_mm)),
                        grid=grid.as_tuple())
