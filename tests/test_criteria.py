"""Criteria sets: config parsing, judging known doses, the exact McNemar test."""

from __future__ import annotations

import math

import numpy as np
import pytest
from phantoms import toy_case

from atp.evaluation.criteria import criteria_sets, criteria_summary, judge, mcnemar_exact
from atp.sites import load_institution_config, load_site_config


def test_mcnemar_exact_known_values():
    # 1 pair met by the new plan only, 7 by the reference only: two-sided exact binomial
    # p = 2 * P(X <= 1 | n = 8, 1/2) = 2 * (1 + 8) / 256 (hand computation)
    assert mcnemar_exact(1, 7) == pytest.approx(18 / 256)
    assert mcnemar_exact(4, 4) == pytest.approx(1.0)
    assert math.isnan(mcnemar_exact(0, 0))


def test_criteria_sets_from_config_apply_per_site():
    config = {"protocol": {"source": "x"},
              "openkbp_opt": {"source": "OpenKBP-Opt", "sites": ["npc"],
                              "criteria": [{"roi": "parotid_l", "metric": "Dmean",
                                            "op": "<=", "value": 26}]}}
    lung, npc = load_site_config("lung"), load_site_config("npc")
    inst = load_institution_config("A")
    assert [c.name for c in criteria_sets(config, site_cfg=lung, institution=inst)] == \
        ["protocol"]
    sets = criteria_sets(config, site_cfg=npc, institution=inst)
    assert [c.name for c in sets] == ["protocol", "openkbp_opt"]
    assert len(sets[0].goals.goals) == len(npc["goals"])  # the site list (A adds none)
    with pytest.raises(ValueError, match="criteria/bad"):
        criteria_sets({"bad": {"source": "?"}}, site_cfg=npc)


def test_judge_and_summary_on_known_doses():
    case = toy_case()
    sets = criteria_sets({"okbp": {"criteria": [
        {"roi": "parotid_l", "metric": "Dmean", "op": "<=", "value": 26},
        {"roi": "ptv_*", "metric": "D99%", "op": ">=", "value_pct_rx": 95},
        {"roi": "larynx", "metric": "Dmean", "op": "<=", "value": 45}]}},  # absent: skipped
        site_cfg=load_site_config("npc"))
    flat = lambda organ, ptv: np.where(case.target_union(), ptv,  # noqa: E731
                                       np.where(case.body_mask, organ, 0.0)).astype(np.float32)
    # parotid mean 20 Gy (met) and PTV D99 = 58 Gy >= 0.95 x 60 = 57 Gy (met)
    good = judge(case, flat(20.0, 58.0), sets[0], plan="ATP", site="npc", institution="A")
    # parotid mean 30 Gy (not met), PTV 56 Gy < 57 Gy (not met)
    bad = judge(case, flat(30.0, 56.0), sets[0], plan="clinical", site="npc",
                institution="A")
    assert [r["met"] for r in good] == [True, True] and [r["met"] for r in bad] == [False,
                                                                                    False]
    assert good[1]["threshold"] == pytest.approx(57.0)
    assert good[0]["value"] == pytest.approx(20.0, abs=1e-4)
    (row,) = criteria_summary(good + bad, new="ATP", reference="clinical")
    assert (row["new_share"], row["reference_share"]) == (1.0, 0.0)
    assert (row["new_only"], row["reference_only"]) == (2, 0)
    assert row["p_mcnemar"] == pytest.approx(0.5)  # 2 * (1/2)^2
