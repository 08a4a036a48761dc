"""Sequence a whole plan: every IMRT field and every VMAT arc of an influence matrix.

The engine's directions come in runs that share a label (`atp.dose.beams.beams_from_config`:
``field1``, ``field2``, ... for IMRT; ``arc1`` for every direction of the first arc). A run
of one direction is a static field, sequenced by sliding window or step-and-shoot
(``SequencingSettings.mode``); a longer run is an arc (`atp.delivery.vmat`).

Fluence is per fraction on the machine: a plan's beamlet weights are MU-equivalents over
all fractions (`atp.dose.mu`), so they are divided by the number of fractions first (and
by the machine's calibration in cGy/MU, 1 for the engine's own).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

import numpy as np

from atp.delivery.fluence import BeamletGrid, beam_grid, fluence_on_grid, pair_targets
from atp.delivery.machine import Machine
from atp.delivery.sequence import DeliverablePlan
from atp.delivery.sliding_window import sequence_sliding_window
from atp.delivery.step_and_shoot import sequence_step_and_shoot
from atp.delivery.vmat import sequence_arc

MODES = ("sliding_window", "step_and_shoot")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SequencingSettings:
    """How plans are sequenced (code choices; the machine's facts are in `Machine`).

    Parameters
    ----------
    mode : {"sliding_window", "step_and_shoot"}
        IMRT delivery; arcs are always VMAT.
    mu_per_control_point, max_control_points : sliding-window control-point spacing (MU)
        and cap per beam.
    n_levels, max_segments : step-and-shoot intensity levels and segment cap per beam.
    sector_deg, cps_per_direction : VMAT sector size and control-point intervals per
        engine direction.
    merge_sectors, merge_max_iter : re-optimize each VMAT sector's merged fluence map
        before sequencing (`atp.delivery.reoptimize.merge_arc_sectors`) and its
        L-BFGS-B iterations.
    iterations : correction passes on the sequenced fluence.
    reoptimize : re-optimize the segment / control-point MU after sequencing.
    reoptimize_max_iter : L-BFGS-B iterations of that re-optimization.
    """

    mode: str = "sliding_window"
    mu_per_control_point: float = 1.0
    max_control_points: int = 600
    n_levels: int = 10
    max_segments: int | None = None
    sector_deg: float = 24.0
    cps_per_direction: int = 4
    merge_sectors: bool = True
    merge_max_iter: int = 60
    iterations: int = 4
    reoptimize: bool = True
    reoptimize_max_iter: int = 30

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"SequencingSettings.mode: {self.mode!r} is not one of {MODES}")
        for name in ("mu_per_control_point", "sector_deg"):
            if not getattr(self, name) > 0:
                raise ValueError(f"SequencingSettings.{name} must be > 0")
        for name in ("max_control_points", "n_levels", "cps_per_direction"):
            if not int(getattr(self, name)) >= 1:
                raise ValueError(f"SequencingSettings.{name} must be >= 1")
        if self.max_control_points < 2:
            raise ValueError("SequencingSettings.max_control_points must be >= 2")

    def to_dict(self) -> dict:
        """The settings as plain data (for logs and reports).

        Returns
        -------
        dict
            Field name to value.
        """
        return asdict(self)


def beam_groups(influence) -> list[tuple[str, list[int]]]:
    """Runs of consecutive engine directions sharing a label: ``(label, indices)``.

    Parameters
    ----------
    influence : DoseInfluence
        Its ``beams`` (engine directions) in order.

    Returns
    -------
    list of (str, list of int)
        Per run: the label (``beam<i>`` for an unlabelled direction) and its direction
        indices; a run of one is a static field, a longer one an arc.
    """
    groups: list[tuple[str, list[int]]] = []
    for i, beam in enumerate(influence.beams):
        if groups and groups[-1][0] == beam.label and beam.label:
            groups[-1][1].append(i)
        else:
            groups.append((beam.label or f"beam{i + 1}", [i]))
    return groups


def _geometry(beam) -> dict:
    return {"gantry_deg": beam.gantry_deg, "couch_deg": beam.couch_deg,
            "isocenter_mm": beam.isocenter_mm, "sad_mm": beam.sad_mm}


def sequence_plan(influence, fluence: np.ndarray, machine: Machine,
                  settings: SequencingSettings | None = None, *, n_fractions: int = 1
                  ) -> DeliverablePlan:
    """Leaf sequences of every beam of a plan.

    Parameters
    ----------
    influence : DoseInfluence
        The engine's beams and beamlets.
    fluence : ndarray (n_beamlets,)
        The optimized beamlet weights (MU-equivalent, all fractions).
    machine : Machine
        The machine to sequence for.
    settings : SequencingSettings, optional
        Sequencing options; default `SequencingSettings()`.
    n_fractions : int
        Number of fractions (the fluence is divided by it); >= 1.

    Returns
    -------
    DeliverablePlan
        With ``info`` per beam (errors, levels, sectors) and the wall time in
        ``plan.beams[i].info["sequencing_s"]``.
    """
    settings = settings or SequencingSettings()
    if n_fractions < 1:
        raise ValueError(f"n_fractions must be >= 1, got {n_fractions}")
    # beamlet weight 1 = 1 cGy at the reference point of the engine's calibration
    # (`atp.dose.mu`); the machine gives mu_calibration_cgy_per_mu there per MU
    w = influence.check_weights(fluence).astype(np.float64) / (
        n_fractions * machine.mu_calibration_cgy_per_mu)
    note = machine.alignment_note(influence.bixel_mm)
    if "do not line up" in note:
        log.warning("machine %s: %s", machine.name, note)
    beams = []
    for label, idx in beam_groups(influence):
        t0 = time.perf_counter()
        if len(idx) == 1:
            b = idx[0]
            grid = beam_grid(influence, b)
            vals, exists = fluence_on_grid(influence, w, b, grid)
            target = pair_targets(vals, exists, grid, machine)
            geo = _geometry(influence.beams[b])
            if settings.mode == "sliding_window":
                seq = sequence_sliding_window(
                    target, grid, machine, name=label, beam_index=b, geometry=geo,
                    mu_per_control_point=settings.mu_per_control_point,
                    max_control_points=settings.max_control_points,
                    iterations=settings.iterations)
            else:
                seq = sequence_step_and_shoot(
                    target, grid, machine, name=label, beam_index=b, geometry=geo,
                    n_levels=settings.n_levels, max_segments=settings.max_segments)
        else:
            grid = BeamletGrid.union([beam_grid(influence, b) for b in idx])
            targets = np.stack([pair_targets(*fluence_on_grid(influence, w, b, grid), grid,
                                             machine) for b in idx])
            seq = sequence_arc(targets, grid, machine, name=label, beam_indices=idx,
                               gantry_deg=[influence.beams[b].gantry_deg for b in idx],
                               sector_deg=settings.sector_deg,
                               cps_per_direction=settings.cps_per_direction,
                               iterations=settings.iterations,
                               geometry=_geometry(influence.beams[idx[0]]))
        seq.info["sequencing_s"] = time.perf_counter() - t0
        seq.info["target_map"] = sum(fluence_on_grid(influence, w, b, grid)[0] for b in idx)
        beams.append(seq)
    kinds = {"vmat" if s.is_arc else settings.mode for s in beams}
    return DeliverablePlan(machine=machine, beams=beams, n_fractions=int(n_fractions),
                           mode="+".join(sorted(kinds)))
