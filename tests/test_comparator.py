"""The comparator switch: the clinical dose, the protocol re-plan, the fallback, the
engine-gap fit."""

from __future__ import annotations

import numpy as np
import pytest
from phantoms import toy_case

from atp.dose import PencilBeamEngine, beams_from_config, default_isocenter_mm
from atp.evaluation.comparator import engine_gap
from atp.evaluation.report import write_evaluation
from atp.evaluation.run import evaluate_case
from atp.planning import PlanSettings
from atp.planning.setup import beam_config_for
from atp.sites import load_institution_config, load_site_config


@pytest.fixture(scope="module")
def setup():
    site, inst = load_site_config("npc"), load_institution_config("A")
    case = toy_case(n=32, nz=10, spacing_mm=4.0)
    return case, site, inst, PencilBeamEngine(bixel_mm=8.0), PlanSettings(
        max_iter=25, p1_rounds=1, **site["conformity"])


def _run(case, setup, **kw):
    _, site, inst, engine, settings = setup
    pred = np.where(case.body_mask, 25.0, 0.0).astype(np.float32)
    pred[case.target_union()] = 60.0
    return evaluate_case(case, lambda c: pred, site_cfg=site, institution=inst,
                         engine=engine, settings=settings, **kw)


def test_clinical_dose_is_the_comparator_when_the_case_has_one(setup, tmp_path):
    case = toy_case(n=32, nz=10, spacing_mm=4.0)
    case.dose_gy = np.where(case.body_mask, 20.0, 0.0).astype(np.float32)
    case.dose_gy[case.target_union()] = 61.0
    case.metadata["reference_plan"] = {}  # as the synthetic cohort marks its plans
    ev = _run(case, setup)
    assert ev.comparator.label == "clinical" and ev.comparator.result is None
    np.testing.assert_array_equal(ev.comparator.dose_gy, case.dose_gy)
    assert "synthetic reference plan" in ev.comparator.engine and not ev.engine_gap
    assert {r["plan"] for r in ev.rows} == {"ATP", "clinical", "prediction"}
    # MU of the clinical plan is unknown (no RTPLAN): no MU row for it
    assert not any(r["plan"] == "clinical" and r["kind"] == "delivery" for r in ev.rows)
    assert any(r["plan"] == "ATP" and r["kind"] == "delivery" for r in ev.rows)
    replan = _run(case, setup, comparator="replan")
    assert replan.comparator.label == "MNL-replan" and replan.comparator.result is not None
    with pytest.raises(ValueError, match="comparator"):
        _run(case, setup, comparator="manual")
    summary = write_evaluation(tmp_path, [ev], site="npc", institution="A", n_figures=0)
    assert summary["comparator"] == "clinical"
    assert "clinical" in (tmp_path / "report.html").read_text()


def test_case_without_dose_falls_back_to_the_replan_with_a_note(setup, tmp_path):
    case = toy_case(n=32, nz=10, spacing_mm=4.0)
    ev = _run(case, setup)
    assert ev.comparator.label == "MNL-replan"
    assert ev.notes and "no clinical dose" in ev.notes[0]
    write_evaluation(tmp_path, [ev], site="npc", institution="A", n_figures=0)
    html = (tmp_path / "report.html").read_text()
    assert "no clinical dose" in html and "ATP vs MNL-replan" in html


def test_engine_gap_reproduces_a_dose_of_atps_own_engine(setup):
    case, site, inst, engine, _ = setup
    beams = beams_from_config(beam_config_for(site, inst),  # A's first NPC technique
                              isocenter_mm=default_isocenter_mm(case))
    influence = engine.influence(case, beams)
    rng = np.random.default_rng(2020)
    dose = influence.dose_ct(rng.uniform(50, 150, influence.n_beamlets), case)
    mimic = engine_gap(case, influence, dose, max_iter=500)
    body = case.body_mask
    # a dose atp's engine made is within its reach: the fit error is small
    rel = np.abs(mimic[body] - dose[body]).mean() / dose[body].mean()
    assert rel < 0.02
