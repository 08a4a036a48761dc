"""Leaf sequences: control points of a beam, machine-limit checks and delivery time.

A `BeamSequence` is what a linac runs for one DICOM beam: at each control point the
gantry angle, the cumulative MU (per fraction) and the leaf tips of both banks; the jaws
are fixed per beam. Between two control points the leaves, the gantry and the MU move
linearly (DICOM RT semantics). Each interval between control points delivers to one of the
engine's static directions (``interval_beam``): the field itself for IMRT, the arc
direction whose sector holds the interval for VMAT.

Timing model (what `check_limits` and `delivery_time_s` use): an interval takes
``t = max(dMU / dose_rate_max, dgantry / gantry_speed_max)`` when the beam is on, as a
Varian linac runs it (it maximizes the dose rate or the gantry speed in each interval);
the leaves must keep up, ``max |dx| <= leaf_speed_max * t``. With the beam off (the leaf
moves between step-and-shoot segments) the interval takes ``max |dx| / leaf_speed_max``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from atp.delivery.machine import Machine

#: Slack on position limits (mm) and relative slack on speeds: DICOM stores positions
#: as decimal strings, so a sequence read back may exceed a limit by rounding alone.
POSITION_TOL_MM = 0.01
SPEED_RTOL = 1e-3
TECHNIQUES = ("sliding_window", "step_and_shoot", "vmat")


@dataclass
class BeamSequence:
    """Control points of one beam (see the module docstring).

    Attributes
    ----------
    name : str
        Beam name (the engine's label: ``field3``, ``arc1``).
    technique : {"sliding_window", "step_and_shoot", "vmat"}
    gantry_deg : ndarray (n_cp,)
        Gantry angle at each control point, unwrapped along the rotation (may leave
        [0, 360); `gantry_iec_deg` gives IEC values).
    cum_mu : ndarray (n_cp,)
        Cumulative MU per fraction, from 0, non-decreasing.
    leaves_mm : ndarray (n_cp, 2, n_pairs)
        Leaf tips of bank 1 (``-u`` side) and bank 2 at the isocentre plane.
    jaws_mm : (x1, x2, y1, y2)
    interval_beam : ndarray (n_cp - 1,) int
        Engine direction (index into ``DoseInfluence.beams``) of each interval.
    couch_deg, isocenter_mm, sad_mm
        Geometry; ``isocenter_mm`` in world (z, y, x).
    rotation : {"NONE", "CW", "CC"}
    grid : (iu0, iv0, n_u, n_v, bixel_mm)
        The beamlet grid the sequence was made for (beamlet ``(iu, iv)`` covers
        ``[iu b, (iu + 1) b] x [iv b, (iv + 1) b]``).
    """

    name: str
    technique: str
    gantry_deg: np.ndarray
    cum_mu: np.ndarray
    leaves_mm: np.ndarray
    jaws_mm: tuple[float, float, float, float]
    interval_beam: np.ndarray
    couch_deg: float = 0.0
    isocenter_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    sad_mm: float = 1000.0
    rotation: str = "NONE"
    grid: tuple[int, int, int, int, float] = (0, 0, 0, 0, 5.0)
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.technique not in TECHNIQUES:
            raise ValueError(f"beam {self.name}: technique {self.technique!r} not in "
                             f"{TECHNIQUES}")
        self.gantry_deg = np.asarray(self.gantry_deg, dtype=np.float64)
        self.cum_mu = np.asarray(self.cum_mu, dtype=np.float64)
        self.leaves_mm = np.asarray(self.leaves_mm, dtype=np.float64)
        self.interval_beam = np.asarray(self.interval_beam, dtype=np.int64)
        n = self.cum_mu.size
        if n < 2 or self.gantry_deg.shape != (n,) or self.leaves_mm.ndim != 3 \
                or self.leaves_mm.shape[:2] != (n, 2) or self.interval_beam.shape != (n - 1,):
            raise ValueError(f"beam {self.name}: inconsistent control points (cum_mu "
                             f"{self.cum_mu.shape}, gantry {self.gantry_deg.shape}, leaves "
                             f"{self.leaves_mm.shape}, interval_beam {self.interval_beam.shape})")
        self.jaws_mm = tuple(float(j) for j in self.jaws_mm)  # type: ignore[assignment]

    @property
    def n_cp(self) -> int:
        """Number of control points."""
        return int(self.cum_mu.size)

    @property
    def mu(self) -> float:
        """Beam MU per fraction."""
        return float(self.cum_mu[-1])

    @property
    def is_arc(self) -> bool:
        """True for a rotating beam (``rotation`` CW or CC)."""
        return self.rotation in ("CW", "CC")

    @property
    def gantry_iec_deg(self) -> np.ndarray:
        """Gantry angle at each control point in IEC [0, 360) degrees, (n_cp,)."""
        return np.mod(self.gantry_deg, 360.0)

    @property
    def meterset_weights(self) -> np.ndarray:
        """Cumulative meterset weights (0 .. 1)."""
        return self.cum_mu / self.mu if self.mu > 0 else np.zeros_like(self.cum_mu)

    @property
    def n_segments(self) -> int:
        """Beam-on intervals (step-and-shoot segments; dynamic control-point intervals)."""
        return int(np.count_nonzero(np.diff(self.cum_mu) > 0))

    def interval_times_s(self, machine: Machine) -> np.ndarray:
        """Duration of every interval (see the module docstring).

        Parameters
        ----------
        machine : Machine
            Gives the dose rate, gantry and leaf speed limits.

        Returns
        -------
        np.ndarray
            Seconds per interval between control points, (n_cp - 1,).
        """
        d_mu = np.diff(self.cum_mu)
        d_g = np.abs(np.diff(self.gantry_deg))
        travel = np.abs(np.diff(self.leaves_mm, axis=0)).max(axis=(1, 2))
        on = np.maximum(d_mu / machine.dose_rate_mu_s, d_g / machine.max_gantry_speed_deg_s)
        return np.maximum(on, travel / machine.max_leaf_speed_mm_s)

    def delivery_time_s(self, machine: Machine) -> float:
        """Beam-on plus leaf-travel time of the beam (no set-up or beam-hold overhead).

        Parameters
        ----------
        machine : Machine
            Gives the dose rate, gantry and leaf speed limits.

        Returns
        -------
        float
            Time per fraction (s).
        """
        return float(self.interval_times_s(machine).sum())


@dataclass
class DeliverablePlan:
    """The sequenced beams of a plan, on one machine, for ``n_fractions`` fractions."""

    machine: Machine
    beams: list[BeamSequence]
    n_fractions: int
    mode: str = "sliding_window"

    @property
    def mu_per_fraction(self) -> float:
        """Total MU per fraction of all beams."""
        return float(sum(b.mu for b in self.beams))

    @property
    def n_control_points(self) -> int:
        """Control points of all beams."""
        return sum(b.n_cp for b in self.beams)

    @property
    def n_segments(self) -> int:
        """Beam-on intervals of all beams (see `BeamSequence.n_segments`)."""
        return sum(b.n_segments for b in self.beams)

    def delivery_time_s(self) -> float:
        """Estimated time per fraction (beam on + leaf travel, no overheads).

        Returns
        -------
        float
            Seconds per fraction, summed over the beams.
        """
        return float(sum(b.delivery_time_s(self.machine) for b in self.beams))

    def violations(self) -> list[str]:
        """Machine limits the plan's beams break (`check_limits` of each beam).

        Returns
        -------
        list of str
            One sentence per violation; empty when the plan is deliverable.
        """
        return [v for b in self.beams for v in check_limits(b, self.machine)]


def check_limits(seq: BeamSequence, machine: Machine, *, max_items: int = 5) -> list[str]:
    """Every machine limit that ``seq`` breaks, as sentences naming beam, control point,
    value and limit (at most ``max_items`` per kind); empty when the sequence is valid.

    Parameters
    ----------
    seq : BeamSequence
        The beam to check.
    machine : Machine
        Its limits (positions, speeds, dose rate, minimum MU, MU per degree).
    max_items : int
        Most violations listed per kind (the rest are counted in one line).

    Returns
    -------
    list of str
        One sentence per violation; empty when ``seq`` is deliverable on ``machine``.
    """
    out: list[str] = []
    tag = f"beam {seq.name}"
    mu, lv = seq.cum_mu, seq.leaves_mm
    tol = POSITION_TOL_MM

    def add(kind: str, idx: np.ndarray, fmt) -> None:
        for i in idx[:max_items]:
            out.append(f"{tag}: {kind}: {fmt(int(i))}")
        if idx.size > max_items:
            out.append(f"{tag}: {kind}: ... {idx.size - max_items} more")

    if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(lv)) and np.all(
            np.isfinite(seq.gantry_deg))):
        return [f"{tag}: control points hold NaN or infinite values"]
    if abs(mu[0]) > 1e-9 or mu[-1] <= 0:
        out.append(f"{tag}: meterset: cumulative MU must start at 0 and end > 0 "
                   f"(got {mu[0]:g} .. {mu[-1]:g})")
    d_mu = np.diff(mu)
    add("meterset decreases", np.flatnonzero(d_mu < -1e-9),
        lambda i: f"control point {i + 1}: {mu[i]:.4g} -> {mu[i + 1]:.4g} MU")
    x1, x2, y1, y2 = seq.jaws_mm
    for name, val, (lo, hi) in (("X1", x1, machine.jaw_x1_mm), ("X2", x2, machine.jaw_x2_mm),
                                ("Y1", y1, machine.jaw_y1_mm), ("Y2", y2, machine.jaw_y2_mm)):
        if not lo - tol <= val <= hi + tol:
            out.append(f"{tag}: jaw {name} at {val:.2f} mm outside its range [{lo:g}, {hi:g}]")
    if not (x1 < x2 and y1 < y2):
        out.append(f"{tag}: jaws closed or crossed (X {x1:g}..{x2:g}, Y {y1:g}..{y2:g} mm)")
    if lv.shape[2] != machine.n_pairs:
        return out + [f"{tag}: {lv.shape[2]} leaf pairs, machine {machine.name} has "
                      f"{machine.n_pairs}"]
    lo, hi = machine.leaf_range_mm
    bad = np.flatnonzero(((lv < lo - tol) | (lv > hi + tol)).any(axis=(1, 2)))
    add("leaf outside its range", bad,
        lambda i: f"control point {i}: {lv[i].min():.2f}..{lv[i].max():.2f} mm "
                  f"(range {lo:g}..{hi:g})")
    gap = lv[:, 1, :] - lv[:, 0, :]
    bad = np.flatnonzero((gap < machine.min_leaf_gap_mm - tol).any(axis=1))
    add("leaf gap below the minimum", bad,
        lambda i: f"control point {i}: pair {int(np.argmin(gap[i])) + 1} gap "
                  f"{gap[i].min():.3f} mm < {machine.min_leaf_gap_mm:g} mm")
    if out and any("range" in v or "NaN" in v for v in out):
        return out
    travel = np.abs(np.diff(lv, axis=0)).max(axis=(1, 2))
    d_g = np.abs(np.diff(seq.gantry_deg))
    t_on = np.maximum(d_mu / machine.dose_rate_mu_s, d_g / machine.max_gantry_speed_deg_s)
    on = d_mu > 1e-9
    allowed = machine.max_leaf_speed_mm_s * t_on * (1 + SPEED_RTOL) + tol
    bad = np.flatnonzero(on & (travel > allowed))
    add("leaf speed above the maximum", bad,
        lambda i: f"interval {i}-{i + 1}: {travel[i]:.2f} mm in {t_on[i]:.3f} s = "
                  f"{travel[i] / max(t_on[i], 1e-12):.1f} mm/s > "
                  f"{machine.max_leaf_speed_mm_s:g} mm/s")
    if seq.technique == "step_and_shoot":
        bad = np.flatnonzero(on & (d_mu < machine.min_mu_per_segment * (1 - SPEED_RTOL)))
        add("segment below the minimum MU", bad,
            lambda i: f"segment {i}-{i + 1}: {d_mu[i]:.3f} MU < {machine.min_mu_per_segment:g}")
        bad = np.flatnonzero(on & (travel > tol))
        add("leaves move while the beam is on", bad,
            lambda i: f"segment {i}-{i + 1}: {travel[i]:.2f} mm")
    else:
        bad = np.flatnonzero(on & (d_mu < machine.min_mu_per_control_point * (1 - SPEED_RTOL)))
        add("control point below the minimum MU", bad,
            lambda i: f"interval {i}-{i + 1}: {d_mu[i]:.4f} MU < "
                      f"{machine.min_mu_per_control_point:g}")
    if seq.is_arc:
        moving = d_g > 1e-9
        per_deg = np.where(moving, d_mu / np.maximum(d_g, 1e-12), 0.0)
        bad = np.flatnonzero(moving & ((per_deg < machine.min_mu_per_deg * (1 - SPEED_RTOL))
                                       | (per_deg > machine.max_mu_per_deg * (1 + SPEED_RTOL))))
        add("MU per degree outside the limits", bad,
            lambda i: f"interval {i}-{i + 1}: {per_deg[i]:.3f} MU/deg (limits "
                      f"{machine.min_mu_per_deg:g}..{machine.max_mu_per_deg:g})")
        speed = d_g / np.maximum(seq.interval_times_s(machine), 1e-12)
        bad = np.flatnonzero(speed > machine.max_gantry_speed_deg_s * (1 + SPEED_RTOL))
        add("gantry speed above the maximum", bad,
            lambda i: f"interval {i}-{i + 1}: {speed[i]:.2f} deg/s")
    elif np.any(d_g > 1e-6):
        out.append(f"{tag}: the gantry moves in a static beam")
    return out
