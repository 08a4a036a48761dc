"""Beamlet fluence maps of a plan, and the fluence a leaf sequence delivers.

Maps are indexed ``(iu, iv)``: ``u`` along the leaf travel, ``v`` across the leaf pairs
(`atp.delivery.machine`); a `BeamletGrid` is the rectangle of beamlets a beam (or a whole
arc) uses.

`delivered_fluence` rebuilds, exactly, the MU each beamlet receives from a sequence: between
two control points every leaf tip moves linearly, so the share of an interval during which
a point ``x`` lies between the tips is ``R1(x) - R2(x)``, where ``Rk(x)`` is the share of the
interval during which bank ``k``'s tip lies below ``x``: a ramp from the tip's lower to its
upper position (this holds because bank 1 never passes bank 2). The mean of a ramp over a
beamlet has a closed form, so no sub-sampling is needed. Leaf tips are clipped to the
jaws; the finite leaf widths enter through the overlap of leaf pairs and beamlet rows
(`Machine.row_overlap`); leaves transmit ``leaf_transmission`` of the MU inside the jaws,
jaws ``jaw_transmission`` outside. Not modelled: rounded leaf ends, tongue and groove,
leaf-end penumbra beyond what the engine's beamlet kernel holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from atp.delivery.machine import Machine
from atp.delivery.sequence import BeamSequence


@dataclass(frozen=True)
class BeamletGrid:
    """Beamlets ``iu0 .. iu0 + n_u - 1`` by ``iv0 .. iv0 + n_v - 1`` of size ``bixel_mm``."""

    iu0: int
    iv0: int
    n_u: int
    n_v: int
    bixel_mm: float

    @property
    def u_edges_mm(self) -> np.ndarray:
        """Beamlet column edges along ``u`` (mm, isocentre plane), shape (n_u + 1,)."""
        return (self.iu0 + np.arange(self.n_u + 1)) * self.bixel_mm

    @property
    def v_edges_mm(self) -> np.ndarray:
        """Beamlet row edges along ``v`` (mm, isocentre plane), shape (n_v + 1,)."""
        return (self.iv0 + np.arange(self.n_v + 1)) * self.bixel_mm

    def as_tuple(self) -> tuple[int, int, int, int, float]:
        """The grid as ``BeamSequence.grid`` stores it.

        Returns
        -------
        tuple
            ``(iu0, iv0, n_u, n_v, bixel_mm)``; ``BeamletGrid(*t)`` rebuilds the grid.
        """
        return (self.iu0, self.iv0, self.n_u, self.n_v, self.bixel_mm)

    @classmethod
    def union(cls, grids: list[BeamletGrid]) -> BeamletGrid:
        """The bounding rectangle of several grids.

        Parameters
        ----------
        grids : list of BeamletGrid
            At least one grid, all of the same ``bixel_mm``.

        Returns
        -------
        BeamletGrid
            The smallest grid holding all of them (``bixel_mm`` of the first).
        """
        iu0 = min(g.iu0 for g in grids)
        iv0 = min(g.iv0 for g in grids)
        iu1 = max(g.iu0 + g.n_u for g in grids)
        iv1 = max(g.iv0 + g.n_v for g in grids)
        return cls(iu0, iv0, iu1 - iu0, iv1 - iv0, grids[0].bixel_mm)

    def embed(self, values: np.ndarray, grid: BeamletGrid) -> np.ndarray:
        """``values`` on the sub-grid ``grid`` placed on this grid (zeros elsewhere).

        Parameters
        ----------
        values : np.ndarray
            Values on ``grid``, shape (grid.n_u, grid.n_v).
        grid : BeamletGrid
            A sub-grid of this grid (same ``bixel_mm``).

        Returns
        -------
        np.ndarray
            Shape (n_u, n_v) of this grid, float64.
        """
        out = np.zeros((self.n_u, self.n_v), dtype=np.float64)
        du, dv = grid.iu0 - self.iu0, grid.iv0 - self.iv0
        out[du:du + grid.n_u, dv:dv + grid.n_v] = values
        return out


def beam_indices(influence, beam: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Columns, ``iu`` and ``iv`` of the beamlets of engine direction ``beam``.

    Parameters
    ----------
    influence : DoseInfluence
        The matrix whose beamlets are looked up.
    beam : int
        Engine direction (index into ``influence.beams``).

    Returns
    -------
    cols : np.ndarray
        Column indices of the direction's beamlets in ``influence``.
    iu, iv : np.ndarray
        Their beamlet indices along ``u`` and ``v`` (beamlet ``(iu, iv)`` covers
        ``[iu b, (iu + 1) b] x [iv b, (iv + 1) b]`` mm, ``b = bixel_mm``).
    """
    cols = np.flatnonzero(np.asarray(influence.beamlet_beam) == beam)
    ij = np.rint(np.asarray(influence.beamlet_uv_mm, dtype=np.float64)[cols]
                 / influence.bixel_mm - 0.5).astype(np.int64)
    return cols, ij[:, 0], ij[:, 1]


def beam_grid(influence, beam: int) -> BeamletGrid:
    """The bounding rectangle of the beamlets of direction ``beam``.

    Parameters
    ----------
    influence : DoseInfluence
        The matrix whose beamlets are used.
    beam : int
        Engine direction (index into ``influence.beams``); ValueError when it has none.

    Returns
    -------
    BeamletGrid
        The smallest grid holding all of the direction's beamlets.
    """
    _, iu, iv = beam_indices(influence, beam)
    if iu.size == 0:
        raise ValueError(f"beam {beam} has no beamlet")
    return BeamletGrid(int(iu.min()), int(iv.min()), int(iu.max() - iu.min() + 1),
                       int(iv.max() - iv.min() + 1), float(influence.bixel_mm))


def fluence_on_grid(influence, weights: np.ndarray, beam: int, grid: BeamletGrid
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Beamlet weights of ``beam`` on ``grid`` (n_u, n_v) and where beamlets exist.

    Parameters
    ----------
    influence : DoseInfluence
        The matrix ``weights`` index.
    weights : np.ndarray
        Beamlet weights (MU-equivalent), shape (n_beamlets,).
    beam : int
        Engine direction (index into ``influence.beams``).
    grid : BeamletGrid
        A grid holding every beamlet of ``beam``.

    Returns
    -------
    values : np.ndarray
        Weights on ``grid``, (n_u, n_v), float64; 0 where no beamlet exists.
    exists : np.ndarray
        Bool (n_u, n_v): True where the direction has a beamlet.
    """
    cols, iu, iv = beam_indices(influence, beam)
    vals = np.zeros((grid.n_u, grid.n_v), dtype=np.float64)
    exists = np.zeros((grid.n_u, grid.n_v), dtype=bool)
    vals[iu - grid.iu0, iv - grid.iv0] = np.asarray(weights, dtype=np.float64)[cols]
    exists[iu - grid.iu0, iv - grid.iv0] = True
    return vals, exists


def pair_targets(values: np.ndarray, exists: np.ndarray, grid: BeamletGrid,
                 machine: Machine) -> np.ndarray:
    """The fluence each leaf pair should deliver along ``u``, shape (n_pairs, n_u).

    A pair gets the overlap-weighted mean of the beamlet rows under it, counting only
    beamlets that exist (a missing beamlet has no dose column, so it gets no say).

    Parameters
    ----------
    values : np.ndarray
        Beamlet fluence on ``grid`` (MU), shape (n_u, n_v).
    exists : np.ndarray
        Bool (n_u, n_v): where beamlets exist.
    grid : BeamletGrid
        The grid of ``values``.
    machine : Machine
        Its leaf boundaries give the rows' overlap with each pair.

    Returns
    -------
    np.ndarray
        Fluence per leaf pair and beamlet column (MU), (n_pairs, n_u); 0 for pairs over
        no existing beamlet.
    """
    ov = machine.row_overlap(grid.iv0, grid.n_v, grid.bixel_mm)  # (n_v, n_pairs)
    w = exists.astype(np.float64)  # (n_u, n_v)
    num = (values * w) @ ov  # (n_u, n_pairs)
    den = w @ ov
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0).T


def _ramp_integral(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Integral from -inf to ``x`` of the ramp that is 0 below ``lo``, 1 above ``hi``."""
    width = hi - lo
    inside = (x - lo) ** 2 / (2.0 * np.where(width > 0, width, 1.0))
    return np.where(x <= lo, 0.0, np.where(x >= hi, x - 0.5 * (lo + hi), inside))


def interval_open_mu(leaves_mm: np.ndarray, cum_mu: np.ndarray, u_edges_mm: np.ndarray,
                     x_jaws_mm: tuple[float, float]) -> np.ndarray:
    """Open MU per interval, leaf pair and beamlet column: (n_cp - 1, n_pairs, n_u).

    ``leaves_mm`` (n_cp, 2, n_pairs); tips are clipped to the X jaws.

    Parameters
    ----------
    leaves_mm : np.ndarray
        Leaf tips (mm) of bank 1 and bank 2 at each control point, (n_cp, 2, n_pairs).
    cum_mu : np.ndarray
        Cumulative MU at each control point, (n_cp,).
    u_edges_mm : np.ndarray
        Beamlet column edges along ``u`` (mm), (n_u + 1,).
    x_jaws_mm : tuple of float
        (X1, X2) jaw positions (mm).

    Returns
    -------
    np.ndarray
        MU each interval delivers open (no transmission) to each pair's beamlet columns,
        (n_cp - 1, n_pairs, n_u).
    """
    x1, x2 = x_jaws_mm
    lv = np.clip(np.asarray(leaves_mm, dtype=np.float64), x1, x2)
    a, b = lv[:-1], lv[1:]  # (n_int, 2, n_pairs)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    e = np.asarray(u_edges_mm, dtype=np.float64)
    ramp = _ramp_integral(e[None, None, None, :], lo[..., None], hi[..., None])
    per_bank = np.diff(ramp, axis=-1) / np.diff(e)  # mean of the ramp over each beamlet
    open_share = np.clip(per_bank[:, 0] - per_bank[:, 1], 0.0, 1.0)  # (n_int, n_pairs, n_u)
    return open_share * np.diff(cum_mu)[:, None, None]


def jaw_fraction(edges_mm: np.ndarray, lo_mm: float, hi_mm: float) -> np.ndarray:
    """Share of each interval between ``edges_mm`` that lies between the jaws.

    Parameters
    ----------
    edges_mm : np.ndarray
        Increasing beamlet edges (mm), (n + 1,).
    lo_mm, hi_mm : float
        Jaw positions (mm), ``lo_mm <= hi_mm``.

    Returns
    -------
    np.ndarray
        Fraction (0..1) of each of the n intervals inside ``[lo_mm, hi_mm]``.
    """
    e = np.asarray(edges_mm, dtype=np.float64)
    inside = np.clip(np.minimum(e[1:], hi_mm) - np.maximum(e[:-1], lo_mm), 0.0, None)
    return inside / np.diff(e)


def delivered_pair_fluence(seq: BeamSequence, machine: Machine, grid: BeamletGrid, *,
                           transmission: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """MU per fraction each leaf pair delivers along ``u``, per engine direction.

    Returns ``(fluence, directions)``: fluence (n_dirs, n_pairs, n_u), ``directions`` the
    engine direction of each. Transmission here is the leaves' only (inside the X jaws);
    `delivered_fluence` adds the Y jaws and the rows.

    Parameters
    ----------
    seq : BeamSequence
        The beam's control points.
    machine : Machine
        Gives the leaf transmission.
    grid : BeamletGrid
        Its ``u`` edges are the beamlet columns.
    transmission : bool
        Include leaf transmission inside the X jaws (False: open fluence only).

    Returns
    -------
    fluence : np.ndarray
        MU per fraction per direction, leaf pair and beamlet column, (n_dirs, n_pairs, n_u).
    directions : np.ndarray
        Engine direction of each, (n_dirs,), sorted.
    """
    x1, x2 = seq.jaws_mm[:2]
    open_mu = interval_open_mu(seq.leaves_mm, seq.cum_mu, grid.u_edges_mm, (x1, x2))
    dirs, inv = np.unique(seq.interval_beam, return_inverse=True)
    out = np.zeros((dirs.size, open_mu.shape[1], grid.n_u))
    np.add.at(out, inv, open_mu)
    if transmission and machine.leaf_transmission > 0:
        mu_dir = np.zeros(dirs.size)
        np.add.at(mu_dir, inv, np.diff(seq.cum_mu))
        in_x = jaw_fraction(grid.u_edges_mm, x1, x2)
        tau = machine.leaf_transmission
        out = (1 - tau) * out + tau * mu_dir[:, None, None] * in_x[None, None, :]
    return out, dirs


def delivered_fluence(seq: BeamSequence, machine: Machine, grid: BeamletGrid | None = None,
                      *, transmission: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """MU per fraction each beamlet of ``grid`` receives, per engine direction.

    Parameters
    ----------
    seq : BeamSequence
        The beam's control points.
    machine : Machine
        Leaf boundaries and transmissions.
    grid : BeamletGrid, optional
        Default: the grid the sequence was made for.
    transmission : bool
        Include leaf and jaw transmission (False: open fluence only).

    Returns
    -------
    fluence : np.ndarray
        MU per fraction per direction and beamlet, (n_dirs, n_u, n_v).
    directions : np.ndarray
        Engine direction index of each, (n_dirs,), sorted.
    """
    grid = grid or BeamletGrid(*seq.grid)
    x1, x2, y1, y2 = seq.jaws_mm
    pair_open, dirs = delivered_pair_fluence(seq, machine, grid, transmission=False)
    v_lo = np.clip(grid.v_edges_mm[:-1], y1, y2)
    v_hi = np.clip(grid.v_edges_mm[1:], y1, y2)
    e = machine.leaf_boundaries_mm
    ov = np.maximum(np.minimum(v_hi[:, None], e[None, 1:]) - np.maximum(v_lo[:, None],
                                                                         e[None, :-1]), 0.0)
    rows = ov / grid.bixel_mm  # (n_v, n_pairs): share of each row under each pair
    open_f = np.einsum("dpu,vp->duv", pair_open, rows)
    if not transmission:
        return open_f, dirs
    mu_dir = np.zeros(dirs.size)
    np.add.at(mu_dir, np.unique(seq.interval_beam, return_inverse=True)[1],
              np.diff(seq.cum_mu))
    in_jaw = np.outer(jaw_fraction(grid.u_edges_mm, x1, x2),
                      jaw_fraction(grid.v_edges_mm, y1, y2))
    tl, tj = machine.leaf_transmission, machine.jaw_transmission
    return ((1 - tl) * open_f + mu_dir[:, None, None] * (tl * in_jaw + tj * (1 - in_jaw))[None],
            dirs)


def plan_weights(plan, influence, *, transmission: bool = True) -> np.ndarray:
    """Beamlet weights (MU-equivalent, all fractions) that ``plan`` delivers: the
    vector to multiply the influence matrix with.

    Parameters
    ----------
    plan : DeliverablePlan
        The sequenced plan (its machine and number of fractions).
    influence : DoseInfluence
        The matrix whose beamlets receive the fluence (beamlets it lacks are left out).
    transmission : bool
        Include leaf and jaw transmission (False: open fluence only).

    Returns
    -------
    np.ndarray
        Weights, shape (influence.n_beamlets,), float64, scaled by the number of
        fractions and the machine's calibration (cGy/MU).
    """
    w = np.zeros(influence.n_beamlets, dtype=np.float64)
    for seq in plan.beams:
        grid = BeamletGrid(*seq.grid)
        flu, dirs = delivered_fluence(seq, plan.machine, grid, transmission=transmission)
        for f, d in zip(flu, dirs, strict=True):
            cols, iu, iv = beam_indices(influence, int(d))
            w[cols] += f[iu - grid.iu0, iv - grid.iv0]
    return w * (plan.n_fractions * plan.machine.mu_calibration_cgy_per_mu)
