"""Fluence optimization: w >= 0 minimizing the normalized weighted objective over D @ w.

The default solver is scipy's bound-constrained L-BFGS-B. The dose matrix is used as
given (the engine's float32 CSC) for the forward product and through its free transpose
view (CSR) for the gradient product: no copy of a matrix that may take gigabytes.
Measured on an OpenKBP patient (`python -m atp.bench.optimizer`), a CSR copy would make
the two products about a quarter faster at twice the memory.

Convergence (same benchmark, 9 fields, reference dose as the prediction): every goal and
control can be met there, and the objective reaches exactly 0 (no voxel violates any
term) in about 80 evaluations. L-BFGS-B's own ftol and gtol are therefore 0: a solve ends
at an exact optimum, when `solve`'s relative-progress window stalls, or at ``max_iter``.
On a trade-off that cannot meet every goal (parotids 80 % below the prediction) the tail
is slow (with the fall-off from the target border, a fit gave f - f* ~ 1/k): the
residual lies along fluence modes that the dose blurring makes nearly flat. A convex QP
with the optimum's active set frozen, uniform voxel weights, Jacobi scaling or damped
Gauss-Newton steps converged as slowly, so the cause is the conditioning of the dose
matrix itself, not the priority ladder or the kinks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize

from atp.planning.objectives import Term, total_objective


@dataclass
class SmoothnessTerm:
    """Fluence smoothness: ``strength * ||L w||^2 / (n * w_ref^2)`` over neighbour pairs."""

    pairs: sp.csr_matrix  # one row per neighbour pair: +1 / -1
    strength: float
    w_ref: float

    def value_grad(self, w: np.ndarray) -> tuple[float, np.ndarray]:
        r = self.pairs @ w
        scale = self.strength / (max(self.pairs.shape[0], 1) * self.w_ref ** 2)
        return float(np.dot(r, r)) * scale, 2.0 * scale * (self.pairs.T @ r)


@dataclass
class SolveResult:
    fluence: np.ndarray
    objective: float
    term_values: np.ndarray
    n_iterations: int
    n_evaluations: int
    wall_s: float
    history: list[float] = field(default_factory=list)
    message: str = ""


class FluenceProblem:
    """The dose matrix with its transpose, and the objective evaluation."""

    def __init__(self, matrix: sp.spmatrix):
        if not sp.issparse(matrix):
            raise TypeError("the dose matrix must be a scipy.sparse matrix")
        if matrix.format not in ("csc", "csr"):
            matrix = matrix.tocsc()
        self.matrix = matrix if matrix.dtype == np.float32 else matrix.astype(np.float32)
        self.matrix_t = self.matrix.T  # a view: CSC <-> CSR, no copy
        self.n_beamlets = self.matrix.shape[1]

    def dose(self, w: np.ndarray) -> np.ndarray:
        return self.matrix @ w.astype(np.float32, copy=False)

    def uniform_fluence(self, target_rows: np.ndarray, target_dose_gy: float) -> np.ndarray:
        """A flat fluence scaled so that the target's mean dose equals ``target_dose_gy``."""
        ones = np.ones(self.n_beamlets, dtype=np.float32)
        mean = float(self.dose(ones)[target_rows].mean(dtype=np.float64))
        if not mean > 0:
            raise ValueError("the beams deposit no dose in the target: check beams and isocenter")
        return ones * np.float32(target_dose_gy / mean)

    def evaluate(self, w: np.ndarray, terms: list[Term],
                 smooth: SmoothnessTerm | None = None,
                 extra=None) -> tuple[float, np.ndarray, np.ndarray]:
        """Objective, gradient w.r.t. ``w`` (float64) and per-term values.

        ``extra(dose) -> (f, grad_dose)`` adds a term on the dose (used for the
        lexicographic constraints).
        """
        dose = self.dose(w)
        f, g_dose, values = total_objective(terms, dose)
        if extra is not None:
            fe, ge = extra(dose)
            f += fe
            g_dose = g_dose + ge
        g = (self.matrix_t @ g_dose.astype(np.float32)).astype(np.float64)
        if smooth is not None:
            fs, gs = smooth.value_grad(w)
            f += fs
            g += gs
        return f, g, values

    def solve(self, terms: list[Term], w0: np.ndarray, *, max_iter: int = 200,
              smooth: SmoothnessTerm | None = None, extra=None,
              rtol: float = 1e-3, window: int = 10) -> SolveResult:
        """Minimize from ``w0`` with L-BFGS-B under w >= 0.

        Stops after ``max_iter`` iterations or when the last ``window`` iterations
        improved the objective by less than ``rtol`` of its current value. The test is
        relative to where the solve is, not where it started, so a warm start close to
        the optimum stops early and a cold start runs until it converges.
        """
        history: list[float] = []
        per_iter: list[float] = []
        t0 = time.perf_counter()
        w0 = np.maximum(np.asarray(w0, np.float64), 0.0)
        f0 = self.evaluate(w0, terms, smooth, extra)[0]
        scale = 1.0 / f0 if f0 > 0 else 1.0  # keeps f near 1 for L-BFGS-B's own tests
        # optimize x = w / w_unit so that variables are O(1): L-BFGS-B's first step has
        # unit length, which is nothing for fluences of thousands of MU-equivalents
        w_unit = float(w0.mean()) if w0.mean() > 0 else 1.0

        def fun(x):
            f, g, _ = self.evaluate(x * w_unit, terms, smooth, extra)
            history.append(f)
            return f * scale, g * (scale * w_unit)

        def callback(intermediate_result):
            per_iter.append(float(intermediate_result.fun) / scale)
            if len(per_iter) > window:
                old, new = per_iter[-window - 1], per_iter[-1]
                if old - new <= rtol * new:
                    raise StopIteration

        res = minimize(fun, w0 / w_unit, jac=True, callback=callback,
                       method="L-BFGS-B", bounds=[(0.0, None)] * self.n_beamlets,
                       options={"maxiter": max_iter, "ftol": 0.0, "gtol": 0.0,
                                "maxcor": 20})
        w = np.maximum(res.x * w_unit, 0.0).astype(np.float32)
        f, _, values = self.evaluate(w, terms, smooth, extra)
        return SolveResult(fluence=w, objective=f, term_values=values,
                           n_iterations=int(res.nit), n_evaluations=int(res.nfev),
                           wall_s=time.perf_counter() - t0, history=history,
                           message=str(res.message))


def neighbour_pairs(beamlet_beam: np.ndarray, beamlet_uv_mm: np.ndarray, *,
                    bixel_mm: float) -> sp.csr_matrix:
    """Difference operator over beamlets adjacent in u or v within the same beam."""
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
