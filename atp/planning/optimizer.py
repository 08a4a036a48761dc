"""Fluence optimization: w >= 0 minimizing the normalized weighted objective over D @ w.

The objective and its gradient come from a backend: `NumpyObjective` (scipy.sparse, the
default, domain layer) or the torch backend (`atp.backends.torch_objective`, torch sparse
CSR in float32 on the CPU or a GPU), chosen by name (`BACKENDS`). The numpy backend uses
the dose matrix as given (the engine's float32 CSC), split into column blocks that are views
on its arrays, and runs the forward and the transposed product of the blocks on a thread
each (`atp.planning.products`): no copy of a matrix that may take gigabytes.

Solvers (`atp.planning.solvers`): scipy's bound-constrained L-BFGS-B (the default) and a
projected truncated Newton-CG on the free beamlets whose Hessian-vector product is two
sparse products (D^T C D v, C the Gauss-Newton curvature of the terms). A solve stops at
an exact optimum (every term met), at ``max_iter``, or when no goal metric (the achieved
value of every term with a scalar limit, in Gy) moved more than ``stop_gy`` over the last
``stop_window`` iterations. `python -m atp.bench.optimizer` measures both solvers.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from atp.planning.objectives import Term, total_curvature, total_objective
from atp.planning.products import ThreadedProducts
from atp.planning.smoothness import SmoothnessTerm, neighbour_pairs

__all__ = ["BACKENDS", "FluenceProblem", "NumpyObjective", "SmoothnessTerm", "SolveResult",
           "StopRule", "make_backend", "neighbour_pairs"]

#: backend name -> class, or "module:Class" imported on first use (keeps the domain
#: layer free of torch unless a user asks for the torch backend)
BACKENDS: dict[str, object] = {"torch": "atp.backends.torch_objective:TorchObjective"}


@dataclass
class SolveResult:
    """One solve: fluence (beamlet weights), final objective, per-term values, counts,
    wall time (s) and the objective (and goal-metric) history."""

    fluence: np.ndarray
    objective: float
    term_values: np.ndarray
    n_iterations: int
    n_evaluations: int  # objective + gradient evaluations (two sparse products each)
    wall_s: float
    history: list[float] = field(default_factory=list)
    message: str = ""
    n_hess_vec: int = 0  # Hessian-vector products (two sparse products each)
    metric_history: list[np.ndarray] = field(default_factory=list)


class NumpyObjective:
    """Objective, gradient and Gauss-Newton Hessian products with scipy.sparse.

    The two products of each evaluation run on ``threads`` threads over column blocks of
    the matrix (`atp.planning.products`).

    Parameters
    ----------
    matrix : scipy.sparse matrix
        Dose-influence matrix (Gy per unit beamlet weight), (n_rows, n_beamlets); kept
        as is when CSC float32, else converted.
    device : str, optional
        Must be ``cpu`` (ValueError otherwise).
    threads : int, optional
        Threads for the products; 0 (default): every available CPU.
    """

    name = "numpy"

    def __init__(self, matrix: sp.spmatrix, *, device: str = "cpu", threads: int = 0):
        if device != "cpu":
            raise ValueError(f"the numpy backend runs on the CPU, not on '{device}'")
        if not sp.issparse(matrix):
            raise TypeError("the dose matrix must be a scipy.sparse matrix")
        if matrix.format != "csc":
            matrix = matrix.tocsc()
        self.matrix = matrix if matrix.dtype == np.float32 else matrix.astype(np.float32)
        self.products = ThreadedProducts(self.matrix, threads=threads)
        self.n_beamlets = self.matrix.shape[1]

    def dose(self, w: np.ndarray) -> np.ndarray:
        """Dose of fluence ``w`` at the matrix rows (float32).

        Parameters
        ----------
        w : np.ndarray
            Fluence (beamlet weights), (n_beamlets,).

        Returns
        -------
        np.ndarray
            Dose (Gy) at the matrix rows, float32, (n_rows,).
        """
        return self.products.matvec(np.asarray(w).astype(np.float32, copy=False))

    def evaluate(self, w: np.ndarray, terms: list[Term]) -> tuple[float, np.ndarray,
                                                                  np.ndarray, np.ndarray]:
        """Objective, gradient w.r.t. ``w`` (float64), per-term values and the dose.

        Parameters
        ----------
        w : np.ndarray
            Fluence (beamlet weights), (n_beamlets,).
        terms : list of Term
            The objective terms (rows index the matrix rows).

        Returns
        -------
        f : float
            The normalized weighted objective (`total_objective`).
        grad : np.ndarray
            Its gradient w.r.t. ``w``, float64, (n_beamlets,).
        values : np.ndarray
            Each term's unweighted penalty, (len(terms),).
        dose : np.ndarray
            Dose (Gy) at the matrix rows, float32, (n_rows,).
        """
        dose = self.dose(w)
        f, g_dose, values = total_objective(terms, dose)
        g = self.products.rmatvec(g_dose.astype(np.float32)).astype(np.float64)
        return float(f), g, values, dose

    def hess_vec(self, dose: np.ndarray, terms: list[Term], v: np.ndarray) -> np.ndarray:
        """Gauss-Newton Hessian at ``dose`` times ``v``: D^T C D v (two sparse products).

        Parameters
        ----------
        dose : np.ndarray
            Dose (Gy) at the matrix rows, (n_rows,), where the curvature is taken.
        terms : list of Term
            The objective terms (rows index the matrix rows).
        v : np.ndarray
            A direction in fluence space, (n_beamlets,).

        Returns
        -------
        np.ndarray
            The product, float64, (n_beamlets,).
        """
        dv = self.products.matvec(v.astype(np.float32))
        c = total_curvature(terms, dose, dv.astype(np.float64))
        return self.products.rmatvec(c.astype(np.float32)).astype(np.float64)


def make_backend(name: str, matrix, *, device: str = "cpu", threads: int = 0):
    """The objective backend ``name`` (see `BACKENDS`) for ``matrix`` on ``device``.

    Parameters
    ----------
    name : str
        ``numpy`` or a key of `BACKENDS` (``torch``).
    matrix : scipy.sparse matrix
        Dose-influence matrix (Gy per unit beamlet weight), (n_rows, n_beamlets).
    device : str, optional
        ``cpu``, or ``cuda[:n]`` for the torch backend.
    threads : int, optional
        Threads for the numpy backend's products (0: every available CPU).

    Returns
    -------
    NumpyObjective or the backend class's instance
        An object with ``matrix``, ``n_beamlets``, ``dose``, ``evaluate``, ``hess_vec``.
    """
    if name == "numpy":
        return NumpyObjective(matrix, device=device, threads=threads)
    if name not in BACKENDS:
        raise ValueError(f"planner backend '{name}' is not one of {['numpy', *BACKENDS]}")
    cls = BACKENDS[name]
    if isinstance(cls, str):
        module, _, attr = cls.partition(":")
        cls = getattr(importlib.import_module(module), attr)
    return cls(matrix, device=device)


class FluenceProblem:
    """The dose matrix on a backend, the objective evaluation and the solvers.

    Parameters
    ----------
    matrix : scipy.sparse matrix
        Dose-influence matrix (Gy per unit beamlet weight), (n_rows, n_beamlets).
    backend : str, optional
        Objective backend by name (`make_backend`); default ``numpy``.
    device : str, optional
        ``cpu``, or ``cuda[:n]`` for the torch backend.
    threads : int, optional
        Threads for the numpy backend's products (0: every available CPU).
    """

    def __init__(self, matrix, *, backend: str = "numpy", device: str = "cpu",
                 threads: int = 0):
        self.backend = make_backend(backend, matrix, device=device, threads=threads)
        self.n_beamlets = self.backend.n_beamlets
        self._last: tuple[np.ndarray, np.ndarray] | None = None  # (w, dose) last evaluated

    @property
    def matrix(self):
        """The dose-influence matrix (scipy sparse) the backend was built from."""
        return self.backend.matrix

    def dose(self, w: np.ndarray) -> np.ndarray:
        """Dose of fluence ``w`` at the matrix rows (float32, numpy).

        Parameters
        ----------
        w : np.ndarray
            Fluence (beamlet weights), (n_beamlets,).

        Returns
        -------
        np.ndarray
            Dose (Gy) at the matrix rows, float32, (n_rows,).
        """
        if self._last is not None and np.array_equal(self._last[0], w):
            return self._last[1]
        return np.asarray(self.backend.dose(w))

    def uniform_fluence(self, target_rows: np.ndarray, target_dose_gy: float) -> np.ndarray:
        """A flat fluence scaled so that the target's mean dose equals ``target_dose_gy``.

        Parameters
        ----------
        target_rows : np.ndarray
            Indices of the matrix rows inside the targets.
        target_dose_gy : float
            The mean target dose (Gy) to reach.

        Returns
        -------
        np.ndarray
            Equal beamlet weights, float32, (n_beamlets,); ValueError when the beams
            give the target no dose.
        """
        ones = np.ones(self.n_beamlets, dtype=np.float32)
        mean = float(self.dose(ones)[target_rows].mean(dtype=np.float64))
        if not mean > 0:
            raise ValueError("the beams deposit no dose in the target: check beams and isocenter")
        return ones * np.float32(target_dose_gy / mean)

    def evaluate(self, w: np.ndarray, terms: list[Term],
                 smooth: SmoothnessTerm | None = None) -> tuple[float, np.ndarray, np.ndarray]:
        """Objective, gradient w.r.t. ``w`` (float64) and per-term values.

        Parameters
        ----------
        w : np.ndarray
            Fluence (beamlet weights), (n_beamlets,).
        terms : list of Term
            The objective terms (rows index the matrix rows).
        smooth : SmoothnessTerm, optional
            A fluence smoothness penalty added to the objective.

        Returns
        -------
        f : float
            The objective (normalized weighted sum plus smoothness).
        grad : np.ndarray
            Its gradient w.r.t. ``w``, float64, (n_beamlets,).
        values : np.ndarray
            Each term's unweighted penalty, (len(terms),).
        """
        f, g, values, dose = self.backend.evaluate(w, terms)
        self._last = (np.array(w, copy=True), np.asarray(dose))
        if smooth is not None:
            fs, gs = smooth.value_grad(np.asarray(w, np.float64))
            f += fs
            g = g + gs
        return f, g, values

    def hess_vec(self, w: np.ndarray, terms: list[Term], v: np.ndarray,
                 smooth: SmoothnessTerm | None = None) -> np.ndarray:
        """Gauss-Newton Hessian of the objective at ``w`` times ``v``.

        Parameters
        ----------
        w : np.ndarray
            Fluence (beamlet weights), (n_beamlets,).
        terms : list of Term
            The objective terms (rows index the matrix rows).
        v : np.ndarray
            A direction in fluence space, (n_beamlets,).
        smooth : SmoothnessTerm, optional
            A fluence smoothness penalty added to the objective.

        Returns
        -------
        np.ndarray
            The product, (n_beamlets,).
        """
        hv = np.asarray(self.backend.hess_vec(self.dose(w), terms, v))
        return hv + smooth.hess_vec(v) if smooth is not None else hv

    def solve(self, terms: list[Term], w0: np.ndarray, *, max_iter: int = 200,
              smooth: SmoothnessTerm | None = None, solver: str = "lbfgsb",
              stop_gy: float = 0.0, stop_window: int = 10, rtol: float = 1e-3,
              memory: int = 100) -> SolveResult:
        """Minimize from ``w0`` under w >= 0 with ``solver`` (see `atp.planning.solvers`).

        Stops after ``max_iter`` iterations, at an exact optimum, or, when ``stop_gy`` >
        0, once no goal metric moved more than ``stop_gy`` Gy over the last
        ``stop_window`` iterations; with ``stop_gy`` = 0, once the last ``stop_window``
        iterations improved the objective by less than ``rtol`` of its current value.

        Parameters
        ----------
        terms : list of Term
            The objective terms (rows index the matrix rows).
        w0 : np.ndarray
            Start fluence (beamlet weights), (n_beamlets,).
        max_iter : int, optional
            Iteration cap.
        smooth : SmoothnessTerm, optional
            A fluence smoothness penalty added to the objective.
        solver : str, optional
            A key of `atp.planning.solvers.SOLVERS`; default ``lbfgsb``.
        stop_gy : float, optional
            Goal-metric movement (Gy) below which the solve stops; 0: objective rule.
        stop_window : int, optional
            Iterations the stop rule looks back over.
        rtol : float, optional
            Relative objective improvement of the rule used when ``stop_gy`` is 0.
        memory : int, optional
            L-BFGS-B's correction pairs (unused by the Newton-CG solvers).

        Returns
        -------
        SolveResult
            Fluence, objective, per-term values, counts and history of the solve.
        """
        from atp.planning.solvers import SOLVERS

        if solver not in SOLVERS:
            raise ValueError(f"planner solver '{solver}' is not one of {sorted(SOLVERS)}")
        watch = StopRule(terms, stop_gy=stop_gy, window=stop_window, rtol=rtol)
        # one BLAS thread: OpenBLAS's workers spin after each vector operation of the terms
        # and of L-BFGS-B and take the cores the sparse products run on (an evaluation on
        # 9 fields went from 75 to 46 ms with this limit; `atp.planning.products`)
        with threadpool_limits(limits=1, user_api="blas"):
            return SOLVERS[solver](self, terms, w0, max_iter=max_iter, smooth=smooth,
                                   watch=watch, memory=memory)

    def goal_metrics(self, terms: list[Term], w: np.ndarray, indices: list[int]
                     ) -> np.ndarray:
        """Achieved value of ``terms[i]`` for each ``i`` in ``indices`` at fluence ``w``.

        Parameters
        ----------
        terms : list of Term
            The objective terms (rows index the matrix rows).
        w : np.ndarray
            Fluence (beamlet weights), (n_beamlets,).
        indices : list of int
            Indices into ``terms`` of terms with a scalar ``achieved``.

        Returns
        -------
        np.ndarray
            The achieved values (Gy), (len(indices),).
        """
        dose = self.dose(w)
        return np.array([terms[i].achieved(dose[terms[i].rows]) for i in indices])


class StopRule:
    """When to stop a solve: goal metrics that stopped moving, or a stalled objective.

    Parameters
    ----------
    terms : list of Term
        The solve's terms; those with a direction and a scalar value are watched.
    stop_gy : float
        Stop once no watched metric moved more than this (Gy) over ``window``
        iterations; 0 (or nothing to watch): use the objective rule.
    window : int
        Iterations to look back over.
    rtol : float
        Objective rule: stop once ``window`` iterations improved the objective by
        less than this fraction of its current value.
    """

    def __init__(self, terms: list[Term], *, stop_gy: float, window: int, rtol: float):
        self.stop_gy, self.window, self.rtol = stop_gy, window, rtol
        self.indices = [i for i, t in enumerate(terms)
                        if t.direction is not None and not t.voxelwise]
        self.objective: list[float] = []
        self.metrics: list[np.ndarray] = []

    def done(self, problem: FluenceProblem, terms: list[Term], w: np.ndarray,
             f: float) -> bool:
        """Record iteration ``w`` (objective ``f``); True when the solve should stop.

        Parameters
        ----------
        problem : FluenceProblem
            The problem being solved (for the goal metrics).
        terms : list of Term
            The solve's terms.
        w : np.ndarray
            Fluence (beamlet weights), (n_beamlets,).
        f : float
            The objective at ``w``.

        Returns
        -------
        bool
            Whether the solve should stop.
        """
        self.objective.append(f)
        k = self.window
        if self.stop_gy > 0 and self.indices:
            self.metrics.append(problem.goal_metrics(terms, w, self.indices))
            if len(self.metrics) > k:
                moved = np.max(np.abs(self.metrics[-1] - self.metrics[-k - 1]))
                return bool(moved <= self.stop_gy)
            return False
        if len(self.objective) > k:
            old, new = self.objective[-k - 1], self.objective[-1]
            return old - new <= self.rtol * new
        return False
