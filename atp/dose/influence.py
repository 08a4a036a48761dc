"""The dose-influence matrix and the engine interface every dose engine implements.

``dose = D @ w``: ``D`` (rows = dose-grid voxels inside the body or a given mask, columns =
beamlets) is a `scipy.sparse` CSC matrix with float32 values and int32 indices, in Gy per
unit beamlet weight; weights are MU-equivalent fluence (see `atp.dose.mu`).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from atp.cases.case import PatientCase
from atp.cases.grid import Grid
from atp.dose.beams import Beam
from atp.dose.grid import to_ct_grid


@dataclass
class DoseInfluence:
    """A beamlet dose-influence matrix and the maps that give it meaning.

    Attributes
    ----------
    matrix : scipy.sparse.csc_matrix, float32, (n_rows, n_beamlets)
        Gy per unit beamlet weight.
    voxel_index : ndarray, int64, (n_rows,)
        Flat (C-order) index into ``grid.shape`` of every row.
    grid : Grid
        The dose grid (the CT grid or a coarser one).
    beamlet_beam : ndarray, int32, (n_beamlets,)
        Index into ``beams`` of every beamlet; beamlets of one beam are contiguous.
    beamlet_uv_mm : ndarray, float32, (n_beamlets, 2)
        Beamlet centre (u, v) in the isocentre plane (BEV axes of `atp.dose.geometry`).
    beams : tuple of Beam
    bixel_mm : float
        Beamlet size at the isocentre.
    engine : dict
        Engine name, version and settings (also the cache key's ingredients).
    case_id : str
    """

    matrix: sp.csc_matrix
    voxel_index: np.ndarray
    grid: Grid
    beamlet_beam: np.ndarray
    beamlet_uv_mm: np.ndarray
    beams: tuple[Beam, ...]
    bixel_mm: float
    engine: dict[str, Any] = field(default_factory=dict)
    case_id: str = ""

    @property
    def n_beamlets(self) -> int:
        """Number of beamlets (matrix columns)."""
        return int(self.matrix.shape[1])

    @property
    def n_rows(self) -> int:
        """Number of dose points (matrix rows)."""
        return int(self.matrix.shape[0])

    @property
    def nnz(self) -> int:
        """Number of stored nonzero matrix entries."""
        return int(self.matrix.nnz)

    @property
    def matrix_mb(self) -> float:
        """Memory held by the sparse matrix (MiB)."""
        m = self.matrix
        return (m.data.nbytes + m.indices.nbytes + m.indptr.nbytes) / 2**20

    def beam_columns(self, beam: int) -> slice:
        """Columns of beam ``beam`` (they are contiguous).

        Parameters
        ----------
        beam : int
            Index into ``beams``.

        Returns
        -------
        slice
            The beam's column range; an empty slice when it has no beamlet.
        """
        cols = np.flatnonzero(self.beamlet_beam == beam)
        return slice(int(cols[0]), int(cols[-1]) + 1) if cols.size else slice(0, 0)

    def check_weights(self, weights: Sequence[float] | np.ndarray) -> np.ndarray:
        """Beamlet weights as float32, checked for shape and finiteness.

        Parameters
        ----------
        weights : sequence of float or np.ndarray
            Beamlet weights (MU-equivalent), shape (n_beamlets,).

        Returns
        -------
        np.ndarray
            The weights, float32 (n_beamlets,); a bad shape or NaN raises ValueError.
        """
        w = np.asarray(weights, dtype=np.float32)
        if w.shape != (self.n_beamlets,):
            raise ValueError(f"weights: expected shape ({self.n_beamlets},), got {w.shape}")
        if not np.all(np.isfinite(w)):
            raise ValueError("weights: contains NaN or infinite values")
        return w

    def dose_rows(self, weights: Sequence[float] | np.ndarray) -> np.ndarray:
        """``D @ w`` (float32, one value per row).

        Parameters
        ----------
        weights : sequence of float or np.ndarray
            Beamlet weights (MU-equivalent), shape (n_beamlets,).

        Returns
        -------
        np.ndarray
            Dose (Gy, float32) of every row, (n_rows,).
        """
        return np.asarray(self.matrix @ self.check_weights(weights), dtype=np.float32)

    def dose(self, weights: Sequence[float] | np.ndarray) -> np.ndarray:
        """Dose (Gy, float32) on the dose grid, (z, y, x); zero outside the rows.

        Parameters
        ----------
        weights : sequence of float or np.ndarray
            Beamlet weights (MU-equivalent), shape (n_beamlets,).

        Returns
        -------
        np.ndarray
            Dose (Gy, float32), ``grid.shape`` (z, y, x).
        """
        out = np.zeros(self.grid.size, dtype=np.float32)
        out[self.voxel_index] = self.dose_rows(weights)
        return out.reshape(self.grid.shape)

    def dose_ct(self, weights: Sequence[float] | np.ndarray, case: PatientCase) -> np.ndarray:
        """Dose on the case's CT grid (trilinear from a coarse grid, see `to_ct_grid`).

        Parameters
        ----------
        weights : sequence of float or np.ndarray
            Beamlet weights (MU-equivalent), shape (n_beamlets,).
        case : PatientCase
            The case whose CT grid receives the dose.

        Returns
        -------
        np.ndarray
            Dose (Gy, float32) on the CT grid, (z, y, x).
        """
        return to_ct_grid(self.dose(weights), self.grid, case)


class DoseEngine(abc.ABC):
    """Interface of a dose engine: an influence matrix and a forward dose calculation."""

    name: str = "engine"
    version: str = "0"

    @abc.abstractmethod
    def influence(self, case: PatientCase, beams: Sequence[Beam], *,
                  mask: np.ndarray | None = None,
                  target_mask: np.ndarray | None = None) -> DoseInfluence:
        """The beamlet dose-influence matrix of ``beams`` on ``case``.

        ``mask`` (CT grid, bool) selects the rows (default: the body); ``target_mask``
        (default: the union of the case's targets) sets the beamlets.

        Parameters
        ----------
        case : PatientCase
            The case (CT, body and targets).
        beams : sequence of Beam
            The beams, in order.
        mask : np.ndarray, optional
            Rows: boolean mask on the CT grid, (z, y, x); default the body.
        target_mask : np.ndarray, optional
            Boolean mask on the CT grid that sets the beamlets; default the case's targets.

        Returns
        -------
        DoseInfluence
            The matrix (Gy per unit beamlet weight) and its maps.
        """

    def forward(self, case: PatientCase, beams: Sequence[Beam], weights: np.ndarray, *,
                mask: np.ndarray | None = None,
                target_mask: np.ndarray | None = None) -> np.ndarray:
        """Dose (Gy, float32) on the CT grid for beamlet ``weights``.

        Parameters
        ----------
        case : PatientCase
            The case (CT, body and targets).
        beams : sequence of Beam
            The beams, in order.
        weights : np.ndarray
            Beamlet weights (MU-equivalent), one per beamlet of the influence matrix.
        mask : np.ndarray, optional
            Rows: boolean mask on the CT grid, (z, y, x); default the body.
        target_mask : np.ndarray, optional
            Boolean mask on the CT grid that sets the beamlets; default the case's targets.

        Returns
        -------
        np.ndarray
            Dose (Gy, float32) on the CT grid, (z, y, x).
        """
        infl = self.influence(case, beams, mask=mask, target_mask=target_mask)
        return infl.dose_ct(weights, case)

    def cache_token(self) -> dict[str, Any]:
        """Everything about the engine that changes its matrices (for cache keys).

        Returns
        -------
        dict
            JSON-ready; here ``name`` and ``version`` (engines add settings, data digests).
        """
        return {"name": self.name, "version": self.version}
