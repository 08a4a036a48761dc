"""The torch backend (atp.backends.torch_objective) against the numpy one, on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
from phantoms import toy_case, toy_influence

from atp.planning import GoalList, PlanSettings, plan, resolve_goals
from atp.planning.optimizer import FluenceProblem
from atp.planning.planner import build_terms

pytest.importorskip("torch")

#: every built-in term kind: max, min, mean (both ways), dose-volume (both ways),
#: uniformity (HI), plus the fall-off and maximum-dose controls build_terms adds
GOALS = [
    dict(roi="ptv_*", metric="D95%", op=">=", value_pct_rx=100, priority=2),
    dict(roi="ptv_*", metric="Dmin", op=">=", value_pct_rx=95, priority=2),
    dict(roi="ptv_*", metric="D2%", op="<=", value_pct_rx=105, priority=2),
    dict(roi="ptv_*", metric="HI", op="<=", value=0.1, priority=3),
    dict(roi="ptv_*", metric="Dmean", op=">=", value_pct_rx=101, priority=3),
    dict(roi="spinal_cord", metric="Dmax", op="<=", value=5, priority=1),
    dict(roi="parotid_l", metric="Dmean", op="<=", value=20, priority=3),
    dict(roi="parotid_l", metric="V30Gy", op="<=", value=20, priority=3),
]


@pytest.fixture(scope="module")
def setup():
    case = toy_case()
    influence = toy_influence(case)
    resolved, _ = resolve_goals(case, GoalList.from_dicts(GOALS))
    terms = build_terms(case, influence, resolved, PlanSettings())
    return case, influence, terms


def test_torch_cpu_equals_numpy_on_random_fluences(setup):
    """Objective and gradient to 1e-5 relative (issue 16), per-term values and the
    Gauss-Newton product too (float32 products in both; sums in another order)."""
    case, influence, terms = setup
    assert {type(t).kind for t in terms} >= {"upper_max", "lower_min", "upper_mean",
                                             "lower_mean", "upper_dvh", "lower_dvh",
                                             "falloff", "uniformity"}
    ref = FluenceProblem(influence.matrix)
    tor = FluenceProblem(influence.matrix, backend="torch", device="cpu")
    rng = np.random.default_rng(7)
    w_flat = ref.uniform_fluence(np.flatnonzero(case.target_union().ravel()[
        influence.voxel_index]), 60.0)
    for scale in (0.5, 1.0, 1.5):
        w = (w_flat * scale * rng.uniform(0.0, 2.0, w_flat.size)).astype(np.float32)
        f_n, g_n, v_n = ref.evaluate(w, terms)
        f_t, g_t, v_t = tor.evaluate(w, terms)
        assert f_n > 0
        assert f_t == pytest.approx(f_n, rel=1e-5)
        assert np.linalg.norm(g_t - g_n) <= 1e-5 * np.linalg.norm(g_n)
        np.testing.assert_allclose(v_t, v_n, rtol=1e-4, atol=1e-12)
        v = rng.standard_normal(w.size)
        h_n, h_t = ref.hess_vec(w, terms, v), tor.hess_vec(w, terms, v)
        assert np.linalg.norm(h_t - h_n) <= 1e-5 * np.linalg.norm(h_n)


def test_plan_with_the_torch_backend_matches_numpy(setup):
    case, influence, _ = setup
    goals = GoalList.from_dicts(GOALS)
    a = plan(case, influence, goals, settings=PlanSettings(max_iter=30))
    b = plan(case, influence, goals, settings=PlanSettings(max_iter=30, backend="torch"))
    assert b.all_p1_met == a.all_p1_met
    for x, y in zip(a.report, b.report, strict=True):
        assert y.achieved == pytest.approx(x.achieved, abs=0.05), x.label


def test_backend_and_device_are_checked():
    with pytest.raises(ValueError, match="backend"):
        PlanSettings(backend="jax")
    with pytest.raises(ValueError, match="numpy backend runs on the cpu"):
        PlanSettings(device="cuda")
    PlanSettings(backend="torch", device="cuda:0")  # valid; checked for a GPU at plan time
