"""Priority-1 goals as hard limits (issue 16): met whenever they can be met together,
flagged infeasible with the tightest achievable value when they cannot."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from phantoms import disc, toy_case, toy_influence

from atp.cases import Roi
from atp.planning import GoalList, PlanSettings, plan
from atp.planning.report import MET_RTOL

COVER = [dict(roi="ptv_*", metric="D95%", op=">=", value_pct_rx=100, priority=2),
         dict(roi="ptv_*", metric="Dmax", op="<=", value_pct_rx=107, priority=2)]
#: the parotid lies next to the target (one voxel column apart): a 1 Gy maximum there
#: can only be met by giving up coverage, which is what a hard limit must do
PAROTID_1GY = dict(roi="parotid_l", metric="Dmax", op="<=", value=1.0, priority=1)


@pytest.fixture(scope="module")
def case():
    return toy_case()


@pytest.fixture(scope="module")
def influence(case):
    return toy_influence(case)


def _get(result, metric, roi):
    return next(o for o in result.report if o.metric == metric and o.roi == roi)


@pytest.mark.parametrize("mode", ["weighted", "lexicographic"])
def test_a_feasible_hard_limit_holds_over_target_coverage(case, influence, mode):
    """With the same goals as soft penalties (p1_rounds=0: one weighted solve, the
    planner before issue 16) the limit is broken; as a hard limit it is met."""
    goals = GoalList.from_dicts(COVER + [PAROTID_1GY])
    soft = plan(case, influence, goals, settings=PlanSettings(mode=mode, p1_rounds=0))
    hard = plan(case, influence, goals, settings=PlanSettings(mode=mode))
    if mode == "weighted":
        assert not soft.all_p1_met  # the penalty alone trades the limit for coverage
    assert hard.all_p1_met and hard.p1_feasible
    assert _get(hard, "Dmax", "parotid_l").achieved <= 1.0 * (1 + MET_RTOL)
    assert "all P1 constraints met" in hard.summary()
    # coverage is what gives way, and the report says so
    assert _get(hard, "D95%", "ptv_6000").achieved < 60.0
    assert not _get(hard, "D95%", "ptv_6000").met


def _cord_inside_the_target(case):
    cord = disc(case.shape, (15, 13), 1.5)  # inside the 4-voxel PTV disc at (15, 13)
    assert (cord & case.mask("ptv_6000")).sum() == cord.sum() > 0
    rois = {**case.rois, "spinal_cord": Roi(cord, "organ")}
    return dataclasses.replace(case, rois=rois)


@pytest.mark.parametrize("mode", ["weighted", "lexicographic"])
def test_an_infeasible_hard_set_is_flagged_with_the_achievable_value(case, mode):
    """A cord inside the PTV, a hard 30 Gy cord maximum and a hard 54 Gy PTV minimum
    (90 % of Rx): no fluence meets both. Each is named with the tightest value it can
    reach while the other is met: the cord maximum cannot go below the PTV minimum
    (54 Gy) and the PTV minimum cannot go above the cord maximum (30 Gy)."""
    inside = _cord_inside_the_target(case)
    influence = toy_influence(inside)
    goals = GoalList.from_dicts(COVER + [
        dict(roi="ptv_*", metric="Dmin", op=">=", value_pct_rx=90, priority=1),
        dict(roi="spinal_cord", metric="Dmax", op="<=", value=30, priority=1)])
    r = plan(inside, influence, goals, settings=PlanSettings(mode=mode))
    assert not r.p1_feasible and not r.all_p1_met
    cord = _get(r, "Dmax", "spinal_cord")
    ptv_min = _get(r, "Dmin", "ptv_6000")
    labels = {r.resolved[i].label: a for i, a in r.p1_infeasible.items()}
    assert set(labels) == {cord.label, ptv_min.label}
    assert labels[cord.label] == pytest.approx(54.0, abs=0.5) == cord.achievable
    assert labels[ptv_min.label] == pytest.approx(30.0, abs=0.5) == ptv_min.achievable
    assert "P1 INFEASIBLE" in r.summary() and "Dmax(spinal_cord) <= 30" in r.summary()
    assert "achievable 54" in r.summary()
    # the plan holds both where the solve on the hard goals alone left them, between the
    # two limits, loosened by the lexicographic slack (2 %)
    slack = PlanSettings().lexicographic_slack
    for o in (cord, ptv_min):
        assert 30.0 * (1 - slack) < o.achieved < 54.0, o.label
    assert np.all(np.isfinite(r.dose_gy)) and r.fluence.min() >= 0


def _two_voxel_problem():
    """Organ voxel 0 gets w0 + w1, target voxel 1 gets 0.2 w0 + w1: a 2 Gy target minimum
    and a 1 Gy organ maximum (P1, weight 1000) conflict, and the weighted solve breaks the
    maximum by about (2 - 1) / 1000 of it (a square-penalty balance)."""
    import scipy.sparse as sp

    from atp.planning.objectives import make_term
    from atp.planning.optimizer import FluenceProblem

    problem = FluenceProblem(sp.csc_matrix(np.array([[1.0, 1.0], [0.2, 1.0]], np.float32)))
    organ = make_term("upper_max", rows=np.array([0]), limit_gy=1.0, weight=1000.0,
                      ref_gy=1.0, priority=1, label="organ max")
    target = make_term("lower_min", rows=np.array([1]), limit_gy=2.0, weight=1.0,
                       ref_gy=1.0, priority=2, label="target min")
    return problem, [organ, target]


@pytest.mark.parametrize("scale_rtol", [0.0, 0.005])
def test_a_small_upper_violation_is_met_by_scaling_instead_of_more_rounds(scale_rtol):
    from atp.planning.constrained import solve_hard

    problem, terms = _two_voxel_problem()

    def solve(ts, w):
        return problem.solve(ts, w, max_iter=500)

    w, solves, met = solve_hard(problem, terms, [0], np.array([1.0, 1.0]), solve, rounds=10,
                                boost=4.0, rtol=MET_RTOL, name="weighted",
                                scale_rtol=scale_rtol)
    first = problem.dose(solves[0][1].fluence)
    assert 1.0 + MET_RTOL < first[0] < 1.005  # the weighted solve breaks it a little
    dose = problem.dose(w)
    assert met and dose[0] <= 1.0 + MET_RTOL + 1e-6  # `broken`: rtol of the limit + 1e-6
    if scale_rtol:  # one solve, then every dose falls by the same factor, to the limit
        assert len(solves) == 1
        assert dose[0] > 1.0 - 1e-4
        np.testing.assert_allclose(dose / first, dose[0] / first[0], rtol=1e-5)
    else:  # multiplier rounds
        assert len(solves) > 1


def test_scaling_cannot_meet_a_broken_lower_limit():
    from atp.planning.constrained import scale_to_limits

    problem, (organ, target) = _two_voxel_problem()
    w = np.array([0.0, 1.0], np.float32)  # target 1 Gy < 2 Gy: broken lower limit
    out, met = scale_to_limits(problem, [organ, target], w, MET_RTOL)
    assert not met and np.array_equal(out, w)
    w = np.array([0.0, 1.2], np.float32)  # organ 1.2 Gy > 1 Gy: scaled to 1 Gy
    out, met = scale_to_limits(problem, [organ], w, MET_RTOL)
    assert met and problem.dose(out)[0] == pytest.approx(1.0, rel=2e-4)
