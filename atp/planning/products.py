"""The two sparse products of the fluence objective, split over threads.

Every evaluation of the objective costs a forward product ``D @ w`` (dose) and a
transposed one ``D^T @ g`` (gradient); on the 2-core machine they are 90 % of a solve's
time (``python -m atp.bench.optimizer``). scipy's sparse kernels release the GIL, so the
columns of the CSC matrix are cut into contiguous blocks of about equal nonzeros, each
block a view on the matrix's own arrays (no copy), and the blocks' products run on a
thread pool: the forward product adds the blocks' partial doses, the transposed one
concatenates the blocks' gradients. Matrices under ``MIN_NNZ_PER_THREAD`` nonzeros per
thread stay in one block (a thread hand-off costs more than their product).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp

#: below this many nonzeros per thread the products run on the calling thread
MIN_NNZ_PER_THREAD = 2_000_000


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity set where the OS tells it).

    Returns
    -------
    int
        At least 1.
    """
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return max(os.cpu_count() or 1, 1)


def column_blocks(indptr: np.ndarray, n_blocks: int) -> list[tuple[int, int]]:
    """Cut the columns of a CSC matrix into contiguous blocks of about equal nonzeros.

    Parameters
    ----------
    indptr : np.ndarray
        The CSC column pointer, (n_columns + 1,).
    n_blocks : int
        The number of blocks wanted (fewer when there are fewer columns).

    Returns
    -------
    list of (int, int)
        ``(first column, end column)`` of each nonempty block, covering every column.
    """
    n_cols = indptr.size - 1
    targets = np.linspace(0, indptr[-1], max(min(n_blocks, n_cols), 1) + 1)[1:-1]
    right = np.clip(np.searchsorted(indptr, targets), 1, max(n_cols - 1, 1))
    left = np.maximum(right - 1, 1)
    nearest = np.where(np.abs(indptr[left] - targets) <= np.abs(indptr[right] - targets),
                       left, right)  # the column pointer nearest each target
    cuts = np.unique(np.concatenate([[0], nearest, [n_cols]]))
    return [(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:], strict=True) if b > a]


class ThreadedProducts:
    """``D @ w`` and ``D^T @ g`` of a float32 CSC matrix on up to ``threads`` threads.

    Parameters
    ----------
    matrix : scipy.sparse.csc_matrix
        The dose-influence matrix, float32 CSC (its arrays are shared, not copied).
    threads : int
        Threads to use; 0: every available CPU (`available_cpus`).
    min_nnz_per_thread : int, optional
        Fewer threads when the matrix has fewer nonzeros than this per thread.
    """

    def __init__(self, matrix: sp.csc_matrix, *, threads: int = 0,
                 min_nnz_per_thread: int = MIN_NNZ_PER_THREAD):
        if matrix.format != "csc" or matrix.dtype != np.float32:
            raise TypeError("ThreadedProducts needs a float32 CSC matrix")
        if threads < 0:
            raise ValueError(f"threads must be >= 0, not {threads}")
        wanted = threads or available_cpus()
        n = int(min(wanted, max(matrix.nnz // max(min_nnz_per_thread, 1), 1)))
        self.shape = matrix.shape
        self.blocks: list[tuple[int, int, sp.csc_matrix, sp.csr_matrix]] = []
        for a, b in column_blocks(matrix.indptr, n):
            lo, hi = matrix.indptr[a], matrix.indptr[b]
            data, indices = matrix.data[lo:hi], matrix.indices[lo:hi]
            block = sp.csc_matrix((data, indices, matrix.indptr[a:b + 1] - lo),
                                  shape=(matrix.shape[0], b - a), copy=False)
            transposed = block.T  # CSR on the same arrays
            # scipy copies ("prunes") a view much smaller than its base, here and in every
            # `.T`: give both the views back, and keep the transpose (a copy per product
            # made the threaded products 3x slower than one thread)
            for m in (block, transposed):
                m.data, m.indices = data, indices
            self.blocks.append((a, b, block, transposed))
        self._pool = ThreadPoolExecutor(len(self.blocks)) if len(self.blocks) > 1 else None

    @property
    def n_threads(self) -> int:
        """The number of blocks (threads) the products run on."""
        return len(self.blocks)

    def _map(self, fn) -> list[np.ndarray]:
        if self._pool is None:
            return [fn(blk) for blk in self.blocks]
        return list(self._pool.map(fn, self.blocks))

    def matvec(self, w: np.ndarray) -> np.ndarray:
        """The dose ``D @ w``.

        Parameters
        ----------
        w : np.ndarray
            Fluence (beamlet weights), float32, (n_beamlets,).

        Returns
        -------
        np.ndarray
            Dose (Gy) at the matrix rows, float32, (n_rows,).
        """
        parts = self._map(lambda blk: blk[2] @ w[blk[0]:blk[1]])
        out = parts[0]
        for p in parts[1:]:
            out += p
        return out

    def rmatvec(self, g: np.ndarray) -> np.ndarray:
        """The transposed product ``D^T @ g``.

        Parameters
        ----------
        g : np.ndarray
            One value per matrix row, float32, (n_rows,).

        Returns
        -------
        np.ndarray
            One value per beamlet, float32, (n_beamlets,).
        """
        parts = self._map(lambda blk: blk[3] @ g)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def close(self) -> None:
        """Stop the thread pool (the products then run on the calling thread)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_pool"] = None  # a pool does not pickle; the copy computes serially
        return state
