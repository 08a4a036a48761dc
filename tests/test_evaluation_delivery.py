"""Evaluation on deliverable plans (issue 13, item 5): ATP and the re-plan comparator are
sequenced on the machine and judged on their deliverable dose; both goal values are kept."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from phantoms import toy_case

from atp.delivery import load_machine
from atp.delivery.sequencing import SequencingSettings
from atp.dose import PencilBeamEngine
from atp.evaluation.comparator import clinical_mu
from atp.evaluation.delivery import DeliverySettings, delivery_summary
from atp.evaluation.report import write_evaluation
from atp.evaluation.run import evaluate_case
from atp.planning import PlanSettings
from atp.sites import load_institution_config, load_site_config

FAST = SequencingSettings(merge_sectors=False, reoptimize=False, iterations=1)


@pytest.fixture(scope="module")
def setup():
    site, inst = load_site_config("npc"), load_institution_config("A")
    return site, inst, PencilBeamEngine(bixel_mm=8.0), PlanSettings(
        max_iter=25, p1_rounds=1, **site["conformity"])


def _run(setup, **kw):
    site, inst, engine, settings = setup
    case = toy_case(n=32, nz=10, spacing_mm=4.0)
    pred = np.where(case.body_mask, 25.0, 0.0).astype(np.float32)
    pred[case.target_union()] = 60.0
    return evaluate_case(case, lambda c: pred, site_cfg=site, institution=inst,
                         engine=engine, settings=settings, **kw)


@pytest.fixture(scope="module")
def delivered(setup):
    """ATP and the re-plan, both sequenced (the jaw-rectangle matrix, as evaluate.py)."""
    return _run(setup, comparator="replan",
                delivery=DeliverySettings(load_machine(), FAST, jaw_matrix=True))


def test_atp_and_replan_are_judged_on_their_deliverable_dose(delivered):
    ev = delivered
    opt = ev.atp_optimized
    assert opt is not None and ev.atp is not opt
    # the deliverable dose is another dose than the fluence plan's, the fluence is kept
    assert not np.array_equal(ev.atp.dose_gy, opt.dose_gy)
    np.testing.assert_array_equal(ev.atp.fluence, opt.fluence)
    assert ev.atp.phases[-1]["phase"] == "deliverable"
    by_plan = {d["plan"]: d for d in ev.delivery}
    assert set(by_plan) == {"ATP", "MNL-replan"}
    assert by_plan["ATP"]["machine"] == "atp_mlc120" and by_plan["ATP"]["control_points"] > 0
    # MU rows: the sequenced MU (per fraction on the machine), not the optimizer's estimate
    mu = {r["plan"]: r["value"] for r in ev.rows if r["metric"] == "MU per fraction"}
    n_fx = ev.case.n_fractions or 1
    assert mu["ATP"] == pytest.approx(by_plan["ATP"]["mu_per_fraction_deliverable"], rel=1e-6)
    assert ev.comparator.mu / n_fx == pytest.approx(
        by_plan["MNL-replan"]["mu_per_fraction_deliverable"], rel=1e-6)
    assert mu["MNL-replan"] == pytest.approx(ev.comparator.mu / n_fx, rel=1e-6)
    # the comparator's dose is its deliverable dose
    np.testing.assert_array_equal(ev.comparator.dose_gy, ev.comparator.result.dose_gy)
    assert ev.timing_s["sequencing_s"] > 0
    assert any("deliverable on atp_mlc120" in d["engine"] for d in ev.doses)


def test_goal_values_hold_the_optimized_and_the_deliverable_value(delivered):
    ev = delivered
    atp_rows = [r for r in ev.goal_values if r["plan"] == "ATP"]
    assert len(atp_rows) == len(ev.atp.report) == len(ev.atp_optimized.report)
    for r, o, d in zip(atp_rows, ev.atp_optimized.report, ev.atp.report, strict=True):
        assert r["goal"] == o.label == d.label
        assert (r["optimized"], r["deliverable"]) == (o.achieved, d.achieved)
        assert r["change"] == pytest.approx(d.achieved - o.achieved)
    summary = {s["plan"]: s for s in delivery_summary(ev.goal_values)}
    assert summary["ATP"]["deliverable_met"] == ev.atp.n_goals_met
    assert summary["ATP"]["optimized_met"] == ev.atp_optimized.n_goals_met


def test_report_tables_of_a_deliverable_evaluation(delivered, tmp_path):
    summary = write_evaluation(tmp_path, [delivered], site="npc", institution="A",
                               n_figures=0)
    assert summary["deliverable"] is True
    rows = list(csv.DictReader(open(tmp_path / "tables" / "goal_values.csv")))
    assert {"optimized", "deliverable", "optimized_met", "deliverable_met"} <= set(rows[0])
    table = list(csv.DictReader(open(tmp_path / "tables" / "deliverable.csv")))
    assert {r["plan"] for r in table} == {"ATP", "MNL-replan"}
    assert float(table[0]["mean_mu_per_fraction_deliverable"]) > 0
    assert "deliverable plans" in (tmp_path / "report.html").read_text()


def test_deliverable_false_is_the_fluence_plan(setup, tmp_path):
    ev = _run(setup, comparator="replan")
    assert ev.atp_optimized is None and not ev.delivery and "sequencing_s" not in ev.timing_s
    assert all(r["deliverable"] is None for r in ev.goal_values)
    summary = write_evaluation(tmp_path, [ev], site="npc", institution="A", n_figures=0)
    assert summary["deliverable"] is False


def test_clinical_mu_of_a_sequenced_synthetic_reference_plan():
    case = toy_case(n=16, nz=6, spacing_mm=8.0)
    assert clinical_mu(case) is None
    case.metadata["reference_plan"] = {"mu_per_fraction": 500.0}
    assert clinical_mu(case) == 500.0 * (case.n_fractions or 1)


def test_the_deliverable_replan_is_sequenced_once_per_cache(setup, tmp_path):
    """A sweep's jobs share the re-plan comparator: its deliverable version is cached too."""
    delivery = DeliverySettings(load_machine(), FAST, jaw_matrix=False)
    first = _run(setup, comparator="replan", delivery=delivery, cache_dir=tmp_path)
    again = _run(setup, comparator="replan", delivery=delivery, cache_dir=tmp_path)
    (a,), (b,) = ([d for d in ev.delivery if d["plan"] == "MNL-replan"]
                  for ev in (first, again))
    assert not a["cached"] and b["cached"]
    np.testing.assert_array_equal(first.comparator.dose_gy, again.comparator.dose_gy)
    assert again.comparator.mu == pytest.approx(first.comparator.mu)
    assert [o.met for o in again.comparator.result.report] == \
        [o.met for o in first.comparator.result.report]
    other = DeliverySettings(load_machine(), SequencingSettings(
        mode="step_and_shoot", merge_sectors=False, reoptimize=False), jaw_matrix=False)
    third = _run(setup, comparator="replan", delivery=other, cache_dir=tmp_path)
    assert not [d for d in third.delivery if d["plan"] == "MNL-replan"][0]["cached"]
