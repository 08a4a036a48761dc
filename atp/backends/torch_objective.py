"""The fluence objective on torch: sparse CSR products in float32, on the CPU or a GPU.

Selected with ``planner.backend=torch planner.device=cpu|cuda`` (`PlanSettings`); the
planner loads this module by name (`atp.planning.optimizer.BACKENDS`), so the domain
layer never imports torch itself. The same term classes compute the penalties: their
``value_grad`` and ``curvature`` use only operations numpy and torch share, here on float64
tensors of the term's doses (the products stay float32, like the numpy backend's). The
solver (scipy) still runs on the host: each evaluation moves the fluence to the device
and the gradient back (one vector each way).

On the CPU it equals the numpy backend to float32 precision (tests/test_torch_backend.py).
A GPU measurement: ``python -m atp.bench.optimizer --backend torch --device cuda``.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch

from atp.planning.objectives import Term


def _csr(indptr, indices, data, shape, device) -> torch.Tensor:
    idx = torch.int32 if data.size < 2**31 - 1 else torch.int64
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(
            torch.from_numpy(np.asarray(indptr)).to(idx),
            torch.from_numpy(np.asarray(indices)).to(idx),
            torch.from_numpy(np.asarray(data, dtype=np.float32)), size=shape,
            check_invariants=False).to(device)


class TorchObjective:
    """Objective, gradient and Gauss-Newton products of the fluence problem on torch."""

    name = "torch"

    def __init__(self, matrix: sp.spmatrix, *, device: str = "cpu"):
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"planner.device={device}: torch sees no CUDA device")
        self.device = torch.device(device)
        if not sp.issparse(matrix):
            raise TypeError("the dose matrix must be a scipy.sparse matrix")
        self.matrix = matrix  # the host copy (shape, Jacobi preconditioner)
        csc = matrix.tocsc()
        csr = matrix.tocsr()
        self._d = _csr(csr.indptr, csr.indices, csr.data, csr.shape, self.device)
        # the CSC arrays of D are the CSR arrays of D^T
        self._dt = _csr(csc.indptr, csc.indices, csc.data, csc.shape[::-1], self.device)
        self.n_beamlets = matrix.shape[1]
        self._cache: dict[int, tuple[Term, Term, torch.Tensor]] = {}

    def _on_device(self, t: Term) -> tuple[Term, torch.Tensor]:
        """A shallow copy of ``t`` with an array limit as a device tensor, and its rows."""
        hit = self._cache.get(id(t))
        if hit is not None and hit[0] is t:
            return hit[1], hit[2]
        if len(self._cache) > 4096:
            self._cache.clear()
        copy = t
        if isinstance(t.limit_gy, np.ndarray):
            copy = object.__new__(type(t))
            copy.__dict__.update(t.__dict__)
            copy.limit_gy = torch.as_tensor(t.limit_gy, dtype=torch.float64, device=self.device)
        rows = torch.as_tensor(t.rows, device=self.device)
        self._cache[id(t)] = (t, copy, rows)
        return copy, rows

    def _tensor(self, v: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(v, dtype=np.float32), device=self.device)

    def _dose_t(self, w: np.ndarray) -> torch.Tensor:
        return self._d @ self._tensor(w)

    def dose(self, w: np.ndarray) -> np.ndarray:
        """Dose of fluence ``w`` at the matrix rows (float32, numpy)."""
        return self._dose_t(w).cpu().numpy()

    def _terms(self, terms: list[Term]):
        wsum = float(sum(t.weight for t in terms))
        return wsum, [(t.weight / wsum, *self._on_device(t)) for t in terms]

    def evaluate(self, w: np.ndarray, terms: list[Term]):
        """Objective, gradient w.r.t. ``w`` (float64, numpy), per-term values and dose."""
        dose = self._dose_t(w)
        wsum, pairs = self._terms(terms)
        grad = torch.zeros(dose.shape[0], dtype=torch.float64, device=self.device)
        values = []
        for share, td, rows in pairs:
            f, g = td.value_grad(dose[rows].to(torch.float64))
            values.append(f)
            grad.index_add_(0, rows, g * share)
        vals = torch.stack([torch.as_tensor(v, dtype=torch.float64, device=self.device)
                            for v in values]) if values else torch.zeros(0, dtype=torch.float64)
        weights = torch.tensor([t.weight for t in terms], dtype=torch.float64,
                               device=self.device)
        total = (vals * weights).sum() / wsum
        g_w = (self._dt @ grad.to(torch.float32)).to(torch.float64)
        return (float(total), g_w.cpu().numpy(), vals.cpu().numpy(), dose.cpu().numpy())

    def hess_vec(self, dose: np.ndarray, terms: list[Term], v: np.ndarray) -> np.ndarray:
        """Gauss-Newton Hessian at ``dose`` times ``v``: D^T C D v."""
        dose_t = torch.as_tensor(dose, device=self.device)
        dv = (self._d @ self._tensor(v)).to(torch.float64)
        wsum, pairs = self._terms(terms)
        out = torch.zeros(dose_t.shape[0], dtype=torch.float64, device=self.device)
        for share, td, rows in pairs:
            c = td.curvature(dose_t[rows].to(torch.float64), dv[rows])
            out.index_add_(0, rows, c * share)
        return (self._dt @ out.to(torch.float32)).to(torch.float64).cpu().numpy()
