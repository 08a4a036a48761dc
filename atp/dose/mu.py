"""Monitor units (MU) from beamlet weights.

Calibration: the engine is commissioned so that a 10 cm x 10 cm field of unit-weight
beamlets at SSD 100 cm in water gives 1 cGy at dmax on the central axis, the usual
linac calibration of 1 MU = 1 cGy at dmax for that field. A beamlet weight is therefore
the fluence of an open reference field per MU ("MU-equivalent fluence") and an open,
unmodulated beam of weight ``w`` needs ``w`` MU.

A modulated beam needs more: the estimate here is that of a unidirectional sliding-window
MLC delivery (Stein et al. 1994, Spirou and Chui 1994). Along one leaf pair (a row of
beamlets along the leaf direction ``u`` at fixed ``v``) the beam must be on for the sum of
the positive fluence increments, ``sum_k max(0, f_k - f_{k-1})`` with ``f_{-1} = 0``; all
leaf pairs move while the beam is on, so the beam's MU is the maximum over its leaf
pairs. For VMAT each direction is treated as one such segment and the arc's MU is the sum
over its directions: an approximation (real VMAT sequencing trades MU against leaf
speed), good for comparing plans, not for delivery.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from atp.dose.influence import DoseInfluence


def fluence_map(influence: DoseInfluence, weights: Sequence[float] | np.ndarray, beam: int
                ) -> tuple[np.ndarray, tuple[int, int]]:
    """Fluence of ``beam`` as a 2-D array indexed (iu, iv) and the (iu, iv) of its [0, 0].

    Parameters
    ----------
    influence : DoseInfluence
        The plan's influence matrix.
    weights : sequence of float or np.ndarray
        Beamlet weights (MU-equivalent), (n_beamlets,).
    beam : int
        Index into ``influence.beams``.

    Returns
    -------
    fmap : np.ndarray
        Fluence (MU-equivalent, float64), (n_u, n_v); 0 where the beam has no beamlet.
    origin : tuple of 2 int
        Beamlet indices (iu, iv) of ``fmap[0, 0]``.
    """
    w = influence.check_weights(weights).astype(np.float64)
    cols = influence.beam_columns(beam)
    uv = influence.beamlet_uv_mm[cols].astype(np.float64)
    ij = np.rint(uv / influence.bixel_mm - 0.5).astype(np.int64)
    lo = ij.min(axis=0) if ij.size else np.zeros(2, dtype=np.int64)
    shape = tuple(ij.max(axis=0) - lo + 1) if ij.size else (0, 0)
    fmap = np.zeros(shape, dtype=np.float64)
    fmap[ij[:, 0] - lo[0], ij[:, 1] - lo[1]] = w[cols]
    return fmap, (int(lo[0]), int(lo[1]))


def sliding_window_mu(fmap: np.ndarray) -> float:
    """MU of one fluence map (rows along u = leaf travel): max over leaf pairs (columns v)
    of the sum of positive increments along u.

    Parameters
    ----------
    fmap : np.ndarray
        Fluence (MU-equivalent), (n_u, n_v) as from `fluence_map`; negatives count as 0.

    Returns
    -------
    float
        Estimated MU; 0 for an empty map.
    """
    if fmap.size == 0:
        return 0.0
    f = np.maximum(np.asarray(fmap, dtype=np.float64), 0.0)
    steps = np.diff(f, axis=0, prepend=0.0)
    return float(np.maximum(steps, 0.0).sum(axis=0).max())


def beam_mu(influence: DoseInfluence, weights: Sequence[float] | np.ndarray) -> np.ndarray:
    """Estimated MU of every beam (float64, ``len(influence.beams)``).

    Parameters
    ----------
    influence : DoseInfluence
        The plan's influence matrix.
    weights : sequence of float or np.ndarray
        Beamlet weights (MU-equivalent), (n_beamlets,).

    Returns
    -------
    np.ndarray
        MU per beam (or VMAT direction), float64 (n_beams,).
    """
    return np.array([sliding_window_mu(fluence_map(influence, weights, i)[0])
                     for i in range(len(influence.beams))], dtype=np.float64)


def total_mu(influence: DoseInfluence, weights: Sequence[float] | np.ndarray) -> float:
    """Estimated total MU of the plan (sum over beams / VMAT directions).

    Parameters
    ----------
    influence : DoseInfluence
        The plan's influence matrix.
    weights : sequence of float or np.ndarray
        Beamlet weights (MU-equivalent), (n_beamlets,).

    Returns
    -------
    float
        Total MU.
    """
    return float(beam_mu(influence, weights).sum())
