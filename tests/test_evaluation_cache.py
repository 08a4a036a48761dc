"""Evaluation caches: the influence matrix and the comparator re-plan are computed once.

A tolerance sweep or an Optuna search changes only the ATP goals, so the second
evaluation of a case must reuse the influence matrix and rebuild the comparator from its
cached fluence (same dose, no optimization); other planner settings must re-plan it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from fake_engine import CountingEngine
from phantoms import toy_case

from atp.evaluation.run import evaluate_case
from atp.planning import PlanSettings
from atp.sites import load_institution_config, load_site_config


def test_second_evaluation_reuses_influence_and_comparator(tmp_path):
    case = toy_case(n=32, nz=10, spacing_mm=4.0)
    site, inst = load_site_config("npc"), load_institution_config("A")
    engine = CountingEngine(bixel_mm=8.0)
    settings = PlanSettings(max_iter=25, p1_rounds=1, **site["conformity"])
    pred = np.where(case.body_mask, 25.0, 0.0).astype(np.float32)
    pred[case.target_union()] = 60.0
    CountingEngine.CALLS.clear()

    def run(tol, s=settings):
        return evaluate_case(case, lambda c: pred, site_cfg=site, institution=inst,
                             engine=engine, settings=s, tolerances={"parotid_l": tol},
                             cache_dir=tmp_path)

    first, second = run(0.0), run(-30.0)
    assert CountingEngine.CALLS == ["toy"]  # the matrix was computed once, then loaded
    assert not first.comparator.cached and second.comparator.cached
    np.testing.assert_array_equal(first.comparator.dose_gy, second.comparator.dose_gy)
    assert [o.achieved for o in first.comparator.result.report] == \
        [o.achieved for o in second.comparator.result.report]
    # the ATP plan did change with the tolerance: stricter parotid goal
    assert second.atp.report != first.atp.report
    third = run(0.0, dataclasses.replace(settings, ladder=5.0))  # other settings: re-plan
    assert not third.comparator.cached
    CountingEngine.CALLS.clear()
