"""The threaded sparse products of the fluence objective (`atp.planning.products`)."""

import pickle

import numpy as np
import pytest
import scipy.sparse as sp

from atp.planning.optimizer import FluenceProblem
from atp.planning.products import ThreadedProducts, column_blocks


def _matrix(seed: int = 0) -> sp.csc_matrix:
    rng = np.random.default_rng(seed)
    return sp.random(3000, 400, density=0.05, format="csc", dtype=np.float32, random_state=rng)


def test_column_blocks_cover_every_column_once_with_balanced_nonzeros():
    m = _matrix()
    blocks = column_blocks(m.indptr, 3)
    assert blocks[0][0] == 0 and blocks[-1][1] == m.shape[1]
    assert all(a[1] == b[0] for a, b in zip(blocks[:-1], blocks[1:], strict=True))
    nnz = [m.indptr[b] - m.indptr[a] for a, b in blocks]
    assert len(blocks) == 3 and max(nnz) - min(nnz) < 0.1 * m.nnz / 3
    assert column_blocks(m.indptr[:3], 8) == [(0, 1), (1, 2)]  # fewer columns than blocks


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_threaded_products_equal_scipy(threads):
    m = _matrix(1)
    prod = ThreadedProducts(m, threads=threads, min_nnz_per_thread=1)
    assert prod.n_threads == threads
    rng = np.random.default_rng(2)
    w = rng.random(m.shape[1], dtype=np.float32)
    g = rng.random(m.shape[0], dtype=np.float32)
    np.testing.assert_allclose(prod.matvec(w), m @ w, rtol=1e-5)
    np.testing.assert_allclose(prod.rmatvec(g), m.T @ g, rtol=1e-5)
    # the blocks are views on the matrix's arrays, not copies
    assert all(np.shares_memory(b[2].data, m.data) and np.shares_memory(b[3].indices, m.indices)
               for b in prod.blocks)
    copy = pickle.loads(pickle.dumps(prod))  # no pool in the copy: serial products
    np.testing.assert_allclose(copy.matvec(w), m @ w, rtol=1e-5)
    prod.close()
    np.testing.assert_allclose(prod.rmatvec(g), m.T @ g, rtol=1e-5)


def test_small_matrices_stay_on_one_thread_and_bad_input_is_refused():
    m = _matrix()
    assert ThreadedProducts(m, threads=4).n_threads == 1  # 60 k nonzeros: not worth a thread
    with pytest.raises(TypeError, match="float32 CSC"):
        ThreadedProducts(m.tocsr(), threads=2)
    with pytest.raises(ValueError, match="threads"):
        ThreadedProducts(m, threads=-1)


def test_problem_threads_do_not_change_the_objective():
    from atp.planning.objectives import make_term

    m = _matrix(3)
    terms = [make_term("upper_max", rows=np.arange(0, 3000, 2), limit_gy=1.0, weight=1.0,
                       ref_gy=1.0, priority=2, label="max"),
             make_term("lower_min", rows=np.arange(1, 3000, 2), limit_gy=2.0, weight=1.0,
                       ref_gy=1.0, priority=1, label="min")]
    w = np.random.default_rng(4).random(m.shape[1]) * 0.5
    one = FluenceProblem(m, threads=1)
    two = FluenceProblem(m, threads=2)
    two.backend.products = ThreadedProducts(two.backend.matrix, threads=2, min_nnz_per_thread=1)
    f1, g1, _ = one.evaluate(w, terms)
    f2, g2, _ = two.evaluate(w, terms)
    assert f1 == pytest.approx(f2, rel=1e-6)
    np.testing.assert_allclose(g1, g2, rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("field, value", [("threads", -1), ("p1_scale_pct", -0.1),
                                          ("p1_scale_pct", 100.0), ("stop_window", 0),
                                          ("solver", "adam"), ("backend", "jax"),
                                          ("lbfgs_memory", 0)])
def test_plan_settings_name_the_bad_field(field, value):
    from atp.planning import PlanSettings

    with pytest.raises(ValueError, match=f"PlanSettings.{field}"):
        PlanSettings(**{field: value})


@pytest.mark.parametrize("solver", ["newton_cg", "newton_cg_jacobi"])
def test_newton_variants_descend_from_the_start_like_lbfgsb(solver):
    """Both Newton-CG entries of `SOLVERS` run and reduce the objective of a small problem
    (their speed is measured by `python -m atp.bench.optimizer`, not here)."""
    from atp.planning.objectives import make_term

    m = _matrix(5)
    terms = [make_term("upper_max", rows=np.arange(0, 3000, 2), limit_gy=1.0, weight=1.0,
                       ref_gy=1.0, priority=2, label="max"),
             make_term("lower_min", rows=np.arange(1, 3000, 2), limit_gy=0.5, weight=1.0,
                       ref_gy=1.0, priority=1, label="min")]
    problem = FluenceProblem(m)
    w0 = np.full(m.shape[1], 0.01)
    f0 = problem.evaluate(w0, terms)[0]
    newton = problem.solve(terms, w0, solver=solver, max_iter=30)
    lbfgs = problem.solve(terms, w0, solver="lbfgsb", max_iter=30)
    assert newton.n_hess_vec > 0
    assert newton.objective < 0.5 * f0 and lbfgs.objective < 0.5 * f0
