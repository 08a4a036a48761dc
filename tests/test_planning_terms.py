"""The objective-term registry: a term kind defined and registered here, in a test file,
is used by both planners without touching atp.planning."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
from phantoms import toy_case, toy_influence

from atp.planning import GoalError, GoalList, PlanSettings, plan, resolve_goals
from atp.planning.objectives import (
    GOAL_TERMS,
    TERMS,
    Term,
    UpperMax,
    make_term,
    register,
    unregister,
)
from atp.planning.planner import HOLD_RTOL, build_terms

BASE = [
    dict(roi="ptv_*", metric="D95%", op=">=", value_pct_rx=100, priority=2),
    dict(roi="ptv_*", metric="Dmax", op="<=", value_pct_rx=107, priority=2),
    dict(roi="spinal_cord", metric="Dmax", op="<=", value=5, priority=1),
]
#: a goal no built-in term serves: at least one parotid voxel at 50 Gy or more (a toy;
#: without it the plans below leave the parotid's hottest voxel at about 40 and 18 Gy)
HOT_SPOT = dict(roi="parotid_l", metric="Dmax", op=">=", value=50, priority=2)


@dataclass(kw_only=True, eq=False)
class LowerMax(Term):
    """``Dmax >= v``: the hottest voxel is pulled up to the limit."""

    kind: ClassVar[str] = "toy_lower_max"
    direction: ClassVar[str | None] = "lower"
    goals: ClassVar[tuple[tuple[str, str], ...]] = (("dmax", ">="),)

    def value_grad(self, d):
        i = int(np.argmax(d))
        r = min(float(d[i]) - self.limit_gy, 0.0)
        g = np.zeros_like(d)
        g[i] = 2.0 * r / self.ref_gy ** 2
        return r * r / self.ref_gy ** 2, g

    def curvature(self, d, v):
        i = int(np.argmax(d))
        out = np.zeros_like(d)
        if float(d[i]) < self.limit_gy:
            out[i] = 2.0 * v[i] / self.ref_gy ** 2
        return out

    def achieved(self, d):
        return float(np.max(d))


@pytest.fixture()
def toy_kind():
    register(LowerMax)
    yield LowerMax
    unregister(LowerMax)


@pytest.fixture(scope="module")
def case():
    return toy_case()


@pytest.fixture(scope="module")
def influence(case):
    return toy_influence(case)


def _hottest(result, case):
    return float(result.dose_gy[case.mask("parotid_l")].max())


def test_an_unregistered_goal_metric_cannot_be_optimized(case, influence):
    assert ("dmax", ">=") not in GOAL_TERMS
    with pytest.raises(GoalError, match="cannot be optimized"):
        plan(case, influence, GoalList.from_dicts(BASE + [HOT_SPOT]))


def test_the_weighted_planner_uses_a_registered_toy_term(case, influence, toy_kind):
    goals = GoalList.from_dicts(BASE + [HOT_SPOT])
    resolved, _ = resolve_goals(case, goals)
    terms = build_terms(case, influence, resolved, PlanSettings())
    assert [type(t) for t in terms if t.goal_index == 3] == [LowerMax]
    without = plan(case, influence, GoalList.from_dicts(BASE))
    with_toy = plan(case, influence, goals)
    assert _hottest(without, case) < 45.0
    assert _hottest(with_toy, case) >= 0.99 * 50.0
    assert with_toy.all_p1_met


def test_the_lexicographic_planner_holds_a_registered_toy_term(case, influence, toy_kind):
    """Priority 2 asks for the hot spot; priority 3 pushes the parotid mean to 5 Gy, which
    would cool it (to about 18 Gy without the hot-spot goal). The finished level holds."""
    push = dict(roi="parotid_l", metric="Dmean", op="<=", value=5, priority=3)
    lex = PlanSettings(mode="lexicographic")
    result = plan(case, influence, GoalList.from_dicts(BASE + [HOT_SPOT, push]), settings=lex)
    only_push = plan(case, influence, GoalList.from_dicts(BASE + [push]), settings=lex)
    assert _hottest(only_push, case) < 45.0
    hot = next(o for o in result.report if o.metric == "Dmax" and o.op == ">=")
    assert hot.achieved >= 50.0 * (1 - HOLD_RTOL) - 1e-6
    # the toy term's generic hold: met -> the goal's own limit, held in the later phase
    t = LowerMax(rows=np.arange(3), limit_gy=45.0, label="x")
    assert t.held(np.array([10.0, 46.0, 3.0]), slack=0.02, weight=5.0).limit_gy == 45.0
    assert t.held(np.array([10.0, 40.0]), slack=0.02, weight=5.0).limit_gy == pytest.approx(
        40.0 * 0.98)


def test_the_registry_refuses_clashes_and_names_unknown_kinds():
    @dataclass(kw_only=True, eq=False)
    class Clash(UpperMax):
        kind: ClassVar[str] = "upper_max"

    with pytest.raises(ValueError, match="already"):
        register(Clash)
    assert TERMS["upper_max"] is UpperMax
    with pytest.raises(ValueError, match="unknown objective kind 'nope'"):
        make_term("nope", rows=[0], limit_gy=1.0)
