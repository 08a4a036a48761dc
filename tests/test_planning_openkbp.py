"""Goal-guided planning on a real OpenKBP patient (acceptance of the planning issue).

The patient's reference dose stands in for the prediction; beams are the 9 coplanar
fields (0, 40, ..., 320 degrees) used to make the OpenKBP reference plans.
"""

from __future__ import annotations

import pytest

from atp.dose import PencilBeamEngine, beams_from_config, default_isocenter_mm
from atp.planning import PlanSettings, plan
from atp.planning.setup import goal_list_for
from atp.planning.structures import structure_mask
from atp.sites import load_site_config

PAROTIDS = ("parotid_l", "parotid_r")


@pytest.fixture(scope="module")
def setup(openkbp_cases):
    case = next(c for c in openkbp_cases if c.patient_id == "pt_1")
    site = load_site_config("npc")
    beams = beams_from_config({"technique": "imrt", "gantry_deg": list(range(0, 360, 40))},
                              isocenter_mm=default_isocenter_mm(case))
    influence = PencilBeamEngine().influence(case, beams)
    return case, influence, goal_list_for(site), PlanSettings(**site["conformity"])


@pytest.fixture(scope="module")
def plans(setup):
    case, influence, goals, settings = setup
    return {t: plan(case, influence, goals, predicted_dose_gy=case.dose_gy,
                    tolerances={p: t for p in PAROTIDS}, settings=settings)
            for t in (-20, 0, 20)}


def _mean(case, dose, roi):
    return float(dose[structure_mask(case, roi)].mean())


def test_tolerance_zero_reproduces_the_reference(plans):
    result = plans[0]
    assert result.all_p1_met
    for o in result.report:
        if o.source == "predicted":  # organ endpoints: at most a few Gy above the reference
            assert o.achieved <= o.predicted + 3.0, o.label
        if o.metric == "D95%":  # target coverage within 2 % of the prescription
            assert o.achieved >= 0.98 * o.requested, o.label


def test_parotid_tolerance_moves_the_parotid_dose(setup, plans):
    case = setup[0]
    for roi in PAROTIDS:
        means = {t: _mean(case, plans[t].dose_gy, roi) for t in plans}
        assert means[-20] < means[0] < means[20], (roi, means)
    for t, result in plans.items():
        assert result.all_p1_met, t
        d95 = [o.achieved / o.requested for o in result.report if o.metric == "D95%"]
        assert min(d95) >= 0.98, (t, d95)


#: the P1 cord limit at which the planner before issue 16 (penalties, three weight
#: boosts) ends "P1 VIOLATED" on pt_1: 1.001 Gy achieved, D95 55.54 / 62.74 / 66.67 Gy
#: (measured with main at 7ee6919; at 1.5 Gy it still met the limit); with main's goal
#: list of 450f99e (17 goals, D99 added): 1.003 Gy, D95 56.77 / 63.68 / 67.98 Gy
CORD_GY = 1.0


@pytest.mark.slow
def test_hard_p1_holds_the_cord_limit_the_penalty_planner_broke(setup, plans):
    from dataclasses import replace

    from atp.planning import GoalList

    case, influence, goals, settings = setup
    tight = GoalList(tuple(replace(g, value=CORD_GY) if g.roi == "spinal_cord"
                           and g.priority == 1 else g for g in goals.goals), goals.source)
    r = plan(case, influence, tight, predicted_dose_gy=case.dose_gy, settings=settings)
    assert r.p1_feasible and r.all_p1_met, r.summary()
    for o in r.report:
        if o.priority == 1:  # every P1 goal met to 0.1 %
            assert o.achieved <= o.requested * 1.001, o.label
    # the targets give way: their D95 falls below the plan without the tightened limit
    d95 = {o.roi: o.achieved for o in r.report if o.metric == "D95%"}
    before = {o.roi: o.achieved for o in plans[0].report if o.metric == "D95%"}
    print("D95 (Gy) with the cord at", CORD_GY, "Gy:", d95, "without:", before)
    assert d95.keys() == before.keys() and min(d95[k] - before[k] for k in d95) < 0
