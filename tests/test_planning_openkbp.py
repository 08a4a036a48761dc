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
