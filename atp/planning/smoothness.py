"""Fluence smoothness: a penalty on differences between neighbouring beamlets of a beam."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass
class SmoothnessTerm:
    """Fluence smoothness: ``strength * ||L w||^2 / (n * w_ref^2)`` over neighbour pairs."""

    pairs: sp.csr_matrix  # one row per neighbour pair: +1 / -1
    strength: float
    w_ref: float

    def _scale(self) -> float:
        return self.strength / (max(self.pairs.shape[0], 1) * self.w_ref ** 2)

    def value_grad(self, w: np.ndarray) -> tuple[float, np.ndarray]:
        """Penalty on neighbouring beamlet differences and its gradient w.r.t. ``w``.

        Parameters
        ----------
        w : np.ndarray
            Fluence (beamlet weights), (n_beamlets,).

        Returns
        -------
        value : float
            The dimensionless penalty.
        grad : np.ndarray
            Its gradient w.r.t. ``w``, (n_beamlets,).
        """
        r = self.pairs @ w
        scale = self._scale()
        return float(np.dot(r, r)) * scale, 2.0 * scale * (self.pairs.T @ r)

    def hess_vec(self, v: np.ndarray) -> np.ndarray:
        """The penalty's Hessian times ``v``.

        Parameters
        ----------
        v : np.ndarray
            A direction in fluence space, (n_beamlets,).

        Returns
        -------
        np.ndarray
            The product, (n_beamlets,).
        """
        return 2.0 * self._scale() * (self.pairs.T @ (self.pairs @ v))


def neighbour_pairs(beamlet_beam: np.ndarray, beamlet_uv_mm: np.ndarray, *,
                    bixel_mm: float) -> sp.csr_matrix:
    """Difference operator over beamlets adjacent in u or v within the same beam.

    Parameters
    ----------
    beamlet_beam : np.ndarray
        Beam index of every beamlet, (n_beamlets,).
    beamlet_uv_mm : np.ndarray
        Beamlet centre (u, v) in the isocentre plane (mm), (n_beamlets, 2).
    bixel_mm : float
        Beamlet size at the isocentre (mm).

    Returns
    -------
    scipy.sparse.csr_matrix
        One row per adjacent pair (+1 and -1), (n_pairs, n_beamlets).
    """
    beam = np.asarray(beamlet_beam)
    # floor(x + 1/2), not rint: bixel centres sit at half-integer multiples of the size,
    # where rint's round-half-to-even would split neighbours two cells apart
    ij = np.floor(np.asarray(beamlet_uv_mm, dtype=np.float64) / bixel_mm + 0.5).astype(np.int64)
    index = {(int(b), int(i), int(j)): k for k, (b, (i, j)) in enumerate(zip(beam, ij,
                                                                              strict=True))}
    rows, cols, vals = [], [], []
    for (b, i, j), k in index.items():
        for di, dj in ((1, 0), (0, 1)):
            m = index.get((b, i + di, j + dj))
            if m is not None:
                r = len(rows) // 2
                rows += [r, r]
                cols += [k, m]
                vals += [1.0, -1.0]
    n_pairs = len(rows) // 2
    return sp.csr_matrix((vals, (rows, cols)), shape=(n_pairs, beam.size))
