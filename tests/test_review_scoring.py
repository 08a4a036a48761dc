"""Scoring rules, agreement counts, Fleiss' kappa and simulated reviewers (no packets)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from atp.review.answers import ReviewError, load_answer_file, validate_answers
from atp.review.scoring import (
    agreement_kappa,
    agreement_rates,
    case_scores,
    fleiss_kappa,
    score_answers,
)
from atp.review.simulate import expected_rates, simulate_answers

REVIEWERS = ("R1", "R2", "R3")


def _key(new_plans: dict[str, int], *, site="lung", institution="A") -> dict:
    codes = list(new_plans)
    return {"format": "blinded-review-key", "version": 1, "new_label": "ATP",
            "reviewers": [{"id": r, "packet_hash": f"hash-{r}", "order": codes}
                          for r in REVIEWERS],
            "cases": [{"code": c, "new_plan": p, "site": site, "institution": institution,
                       "comparator": "MNL"} for c, p in new_plans.items()]}


def _write(tmp_path, reviewer: str, answers: list[dict], **extra) -> object:
    doc = {"format": "blinded-review-answers", "version": 1, "reviewer": reviewer,
           "packet": f"hash-{reviewer}", "answers": answers, **extra}
    path = tmp_path / f"answers_{reviewer}.json"
    path.write_text(json.dumps(doc))
    return path


def _a(case, acc1, acc2, pref, ai, comment=""):
    return {"case": case, "acceptable_plan1": acc1, "acceptable_plan2": acc2,
            "preferred": pref, "ai_generated": ai, "comment": comment}


# Case 101: ATP is Plan 1; case 202: ATP is Plan 2. Expected scores per reviewer
# (acceptable, preferred, recognized) are written next to each answer.
HAND = {
    "R1": [_a("101", "agree", "agree", "cannot_judge", "cannot_judge"),  # T, T (cj+acc), F
           _a("202", "agree", "agree", "plan2", "plan2")],  # T, T, T
    "R2": [_a("101", "cannot_judge", "agree", "cannot_judge", "plan1"),  # F, F (cj, not acc), T
           _a("202", "disagree", "agree", "plan2", "plan2")],  # T, T, T
    "R3": [_a("101", "agree", "disagree", "plan1", "plan2"),  # T, T, F
           _a("202", "agree", "agree", "plan1", "plan1")],  # T, F, F
}


def _hand_sets(tmp_path):
    key = _key({"101": 1, "202": 2})
    sets = [load_answer_file(_write(tmp_path, r, a)) for r, a in HAND.items()]
    return key, validate_answers(sets, key)


def test_cannot_judge_rules_per_answer(tmp_path):
    key, sets = _hand_sets(tmp_path)
    rows = {(r["reviewer"], r["case"]): r for r in score_answers(sets, key)}
    expect = {("R1", "101"): (True, True, False), ("R1", "202"): (True, True, True),
              ("R2", "101"): (False, False, True), ("R2", "202"): (True, True, True),
              ("R3", "101"): (True, True, False), ("R3", "202"): (True, False, False)}
    for k, (acc, pref, rec) in expect.items():
        assert (rows[k]["acceptable"], rows[k]["preferred"], rows[k]["recognized"]) == \
            (acc, pref, rec), k
    # answers turned round to the ATP plan: in case 202 "plan2" is ATP
    assert rows[("R3", "202")]["preferred_answer"] == "disagree"
    assert rows[("R2", "202")]["comparator_acceptable_answer"] == "disagree"


def test_unanimous_and_majority_counts(tmp_path):
    key, sets = _hand_sets(tmp_path)
    rows = score_answers(sets, key)
    cases = {c["case"]: c for c in case_scores(rows, key)}
    assert (cases["101"]["n_acceptable"], cases["101"]["n_preferred"],
            cases["101"]["n_recognized"]) == (2, 2, 1)
    assert (cases["202"]["n_acceptable"], cases["202"]["n_preferred"],
            cases["202"]["n_recognized"]) == (3, 2, 2)
    rates = {r["question"]: r for r in agreement_rates(list(cases.values()), n_reviewers=3)
             if r["level"] == "overall"}
    acc, pref, rec = rates["acceptable"], rates["preferred"], rates["recognized"]
    assert (acc["cases_k3"], acc["cases_k2"], acc["unanimous"], acc["majority"]) == \
        (1, 1, 0.5, 1.0)
    assert acc["mean_rate"] == pytest.approx(5 / 6)
    assert (pref["cases_k2"], pref["unanimous"], pref["majority"]) == (2, 0.0, 1.0)
    assert (rec["cases_k1"], rec["cases_k2"], rec["majority"]) == (1, 1, 0.5)
    assert rec["mean_rate"] == pytest.approx(0.5)
    # scored acceptance [2 yes, 1 no] and [3, 0]: P = 2/3, Pe = 26/36 -> kappa = -0.2
    kappa = {r["question"]: r for r in agreement_kappa(rows, n_reviewers=3)
             if r["level"] == "overall"}
    assert kappa["acceptable"]["kappa_scored"] == pytest.approx(-0.2)


def test_fleiss_kappa_textbook_example():
    # Wikipedia, "Fleiss' kappa", worked example: 10 subjects, 14 raters, 5 categories;
    # P-bar = 0.378, P-bar_e = 0.213, kappa = 0.210.
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0],
             [2, 2, 8, 1, 1], [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2],
             [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert fleiss_kappa(table) == pytest.approx(0.210, abs=5e-4)
    assert fleiss_kappa([[3, 0], [0, 3], [3, 0]]) == pytest.approx(1.0)  # perfect agreement
    assert math.isnan(fleiss_kappa([[3, 0], [3, 0]]))  # one category only: undefined
    with pytest.raises(ValueError, match="same number of raters"):
        fleiss_kappa([[3, 0], [1, 1]])


def test_answer_values_are_checked(tmp_path):
    bad = [_a("101", "agree", "yes", "plan1", "plan1")]
    with pytest.raises(ReviewError, match=r"answers_R1\.json.*101.*acceptable_plan2.*'yes'"):
        load_answer_file(_write(tmp_path, "R1", bad))


def test_simulated_reviewers_give_the_expected_rates(tmp_path):
    n = 3000  # 4 standard errors (about 0.03) separate "cannot judge" counted or not (0.04)
    key = _key({str(1000 + i): 1 + i % 2 for i in range(n)})
    params = {"atp_acceptable": 0.8, "atp_preferred": 0.55, "recognition": 0.7, "noise": 0.2}
    docs = simulate_answers(key, seed=3, comparator_acceptable=0.9, **params)
    assert all(d["simulated"] and "not a physician" in d["note"] for d in docs)
    sets = []
    for d in docs:
        path = tmp_path / f"answers_{d['reviewer']}.json"
        path.write_text(json.dumps(d))
        sets.append(load_answer_file(path))
    sets = validate_answers(sets, key)
    assert all(s.simulated for s in sets)
    rows = score_answers(sets, key)
    cases = case_scores(rows, key)
    expected = expected_rates(**params)
    for q in ("acceptable", "preferred", "recognized"):
        per_case = np.array([c[f"n_{q}"] / 3 for c in cases])
        se = per_case.std(ddof=1) / math.sqrt(n)  # answers of a case share its truth
        assert abs(per_case.mean() - expected[q]) < 4 * se, (q, per_case.mean(), expected[q])
    # unanimous acceptance: truth acceptable and all three keep it, or not and all three
    # draw "agree" by noise: a q^3 + (1 - a) (e/3)^3 with q = 1 - e + e/3
    a, e = params["atp_acceptable"], params["noise"]
    p_unan = a * (1 - e + e / 3) ** 3 + (1 - a) * (e / 3) ** 3
    observed = np.mean([c["n_acceptable"] == 3 for c in cases])
    assert abs(observed - p_unan) < 4 * math.sqrt(p_unan * (1 - p_unan) / n)


def test_simulated_and_real_answers_are_not_mixed(tmp_path):
    key = _key({"101": 1, "202": 2})
    sim = simulate_answers(key, seed=1)
    paths = [_write(tmp_path, "R1", HAND["R1"]),
             tmp_path / "answers_R2.json"]
    paths[1].write_text(json.dumps(sim[1]))
    with pytest.raises(ReviewError, match="simulated answer files mixed"):
        validate_answers([load_answer_file(p) for p in paths], key)
