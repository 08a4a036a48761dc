"""Known-value tests of atp.evaluation.compare (statistics computed by hand)."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from scipy import stats

from atp.evaluation import (
    compare_plans,
    compare_to_prediction,
    goal_pass_rates,
    preference_proxy,
    write_table,
)

META = {  # metric -> (unit, higher_is_better, kind)
    "D95%(ptv_7000)": ("Gy", True, "target"),
    "Dmean(parotid_l)": ("Gy", False, "organ"),
    "MU": ("MU", False, "delivery"),
}


def _rows(inst, plan, metric, values, *, site="HN", prefix="c"):
    unit, hib, kind = META[metric]
    return [{"case": f"{prefix}{i}", "site": site, "institution": inst, "plan": plan,
             "metric": metric, "value": float(v), "unit": unit, "higher_is_better": hib,
             "kind": kind} for i, v in enumerate(values)]


def _cohort():
    rows = []
    # institution A, 4 cases, 3 metrics
    rows += _rows("A", "MNL", "Dmean(parotid_l)", [20, 25, 30, 22])
    rows += _rows("A", "ATP", "Dmean(parotid_l)", [18, 22, 27, 20])
    rows += _rows("A", "MNL", "D95%(ptv_7000)", [68, 67, 69, 68])
    rows += _rows("A", "ATP", "D95%(ptv_7000)", [69, 68, 70.2, 68.8])
    rows += _rows("A", "MNL", "MU", [500, 600, 550, 520])
    rows += _rows("A", "ATP", "MU", [600, 700, 650, 640])
    # institution B, same case ids (must not collide in the pooled group), 2 metrics
    rows += _rows("B", "MNL", "Dmean(parotid_l)", [24, 26, 21])
    rows += _rows("B", "ATP", "Dmean(parotid_l)", [23, 27, 20])
    rows += _rows("B", "MNL", "MU", [500, 510, 520])
    rows += _rows("B", "ATP", "MU", [490, 530, 515])
    # institution C, a single case
    rows += _rows("C", "MNL", "Dmean(parotid_l)", [30])
    rows += _rows("C", "ATP", "Dmean(parotid_l)", [20])
    return rows


def _find(out, inst, metric):
    (row,) = [r for r in out if r["institution"] == inst and r["metric"] == metric]
    return row


def test_compare_plans_known_values_and_signs():
    out = compare_plans(_cohort())
    par = _find(out, "A", "Dmean(parotid_l)")
    # ATP - MNL = [-2, -3, -3, -2]: mean -2.5, sd sqrt(1/3), t = -2.5 / (sd / 2) = -8.660
    t = -2.5 / (math.sqrt(1.0 / 3.0) / 2.0)
    assert t == pytest.approx(-8.6603, abs=1e-4)
    p_par = 2.0 * stats.t.sf(abs(t), 3)
    assert par["p"] == pytest.approx(p_par, rel=1e-9)
    assert par["n"] == 4
    assert par["mean_new"] == pytest.approx(21.75)
    assert par["mean_reference"] == pytest.approx(24.25)
    # organ dose: lower is better, (MNL - ATP) / MNL: 10, 12, 10, 9.0909 %
    rel = np.array([10.0, 12.0, 10.0, 2.0 / 22.0 * 100.0])
    assert par["mean_rel_diff_pct"] == pytest.approx(rel.mean())
    half = stats.t.ppf(0.975, 3) * rel.std(ddof=1) / 2.0
    assert par["ci_lo_pct"] == pytest.approx(rel.mean() - half)
    assert par["ci_hi_pct"] == pytest.approx(rel.mean() + half)
    # Bonferroni with m = 3 metrics in (HN, A)
    assert par["m_tests"] == 3
    assert par["p_bonferroni"] == pytest.approx(3.0 * p_par)
    assert par["flag"] == "better"

    ptv = _find(out, "A", "D95%(ptv_7000)")
    # coverage: higher is better, so ATP above MNL is positive
    assert ptv["mean_rel_diff_pct"] > 0.0
    # diffs [1, 1, 1.2, 0.8]: mean 1, sd sqrt(0.08 / 3)
    t_ptv = 1.0 / (math.sqrt(0.08 / 3.0) / 2.0)
    assert ptv["p"] == pytest.approx(2.0 * stats.t.sf(t_ptv, 3), rel=1e-6)
    assert ptv["flag"] == "better"

    mu = _find(out, "A", "MU")
    assert mu["mean_rel_diff_pct"] < 0.0  # more MU is worse
    assert mu["flag"] == "worse"


def test_bonferroni_per_group_and_small_n():
    out = compare_plans(_cohort())
    b = [r for r in out if r["institution"] == "B"]
    assert {r["m_tests"] for r in b} == {2}
    for r in b:
        assert r["p_bonferroni"] == pytest.approx(min(2.0 * r["p"], 1.0))
        assert r["flag"] == "n.s."
    c = _find(out, "C", "Dmean(parotid_l)")
    assert c["n"] == 1 and math.isnan(c["p"]) and c["flag"] == "n.s."
    assert c["mean_rel_diff_pct"] == pytest.approx(100.0 / 3.0)
    assert math.isnan(c["ci_lo_pct"])
    pooled = _find(out, "all", "Dmean(parotid_l)")
    assert pooled["n"] == 4 + 3 + 1
    assert _find(out, "all", "D95%(ptv_7000)")["n"] == 4
    # order: per site, institutions sorted with "all" last
    assert [r["institution"] for r in out][-1] == "all"


def test_zero_variance_is_not_significant():
    rows = _rows("A", "MNL", "MU", [500, 600, 550]) + _rows("A", "ATP", "MU", [400, 500, 450])
    (r,) = [x for x in compare_plans(rows, pooled=False)]
    # compared but not testable: no p value, still one of the m endpoints compared
    assert math.isnan(r["p"]) and r["flag"] == "n.s." and r["m_tests"] == 1


def test_compare_to_prediction_by_hand():
    rows = _rows("A", "ATP", "Dmean(parotid_l)", [18, 22, 27, 20, 5])
    rows += _rows("A", "prediction", "Dmean(parotid_l)", [20, 20, 30, 20, 0])  # last skipped
    rows += _rows("A", "ATP", "D95%(ptv_7000)", [70, 70, 70, 70, 70])  # not an organ
    rows += _rows("A", "prediction", "D95%(ptv_7000)", [69, 69, 69, 69, 69])
    out = compare_to_prediction(rows, pooled=False)
    (r,) = out
    # (D_plan - D_pred) / D_pred: -10, +10, -10, 0 %
    rel = np.array([-10.0, 10.0, -10.0, 0.0])
    assert r["n"] == 4
    assert r["mean_rel_diff_pct"] == pytest.approx(-2.5)
    half = stats.t.ppf(0.975, 3) * math.sqrt(275.0 / 3.0) / 2.0
    assert rel.std(ddof=1) == pytest.approx(math.sqrt(275.0 / 3.0))
    assert r["ci_lo_pct"] == pytest.approx(-2.5 - half)
    assert r["ci_hi_pct"] == pytest.approx(-2.5 + half)


def test_goal_pass_rates_by_hand():
    g = [{"case": f"c{i}", "site": "HN", "institution": "A", "plan": "ATP", "p1_met": p1,
          "goals_met": met, "goals_total": 10}
         for i, (p1, met) in enumerate([(True, 8), (True, 10), (False, 5)])]
    g.append({"case": "c0", "site": "HN", "institution": "B", "plan": "ATP", "p1_met": True,
              "goals_met": 4, "goals_total": 4})
    out = goal_pass_rates(g)
    (a,) = [r for r in out if r["institution"] == "A"]
    assert a["cases"] == 3
    assert a["p1_pass_rate"] == pytest.approx(2.0 / 3.0)
    assert a["criteria_pass_rate"] == pytest.approx((0.8 + 1.0 + 0.5) / 3.0)
    (pooled,) = [r for r in out if r["institution"] == "all"]
    assert pooled["cases"] == 4 and pooled["p1_pass_rate"] == pytest.approx(0.75)
    assert pooled["criteria_pass_rate"] == pytest.approx((0.8 + 1.0 + 0.5 + 1.0) / 4.0)


def test_preference_proxy_by_hand():
    out = preference_proxy(_cohort())
    cases = {(r["institution"], r["case"]): r for r in out if r["level"] == "case"}
    # A/c0: parotid 18 < 20 (win), D95 69 > 68 (win), MU 600 > 500 (loss)
    a0 = cases[("A", "c0")]
    assert (a0["metrics_compared"], a0["new_better"], a0["reference_better"]) == (3, 2, 1)
    assert a0["new_wins_majority"] is True
    # B/c1: parotid 27 > 26 (loss), MU 530 > 510 (loss)
    b1 = cases[("B", "c1")]
    assert (b1["new_better"], b1["new_wins_majority"]) == (0, False)
    # B/c0: parotid win, MU 490 < 500 win; B/c2: parotid win, MU 515 < 520 win
    groups = {r["institution"]: r for r in out if r["level"] == "group"}
    assert groups["B"]["new_majority_share"] == pytest.approx(2.0 / 3.0)
    assert groups["A"]["new_majority_share"] == pytest.approx(1.0)
    assert groups["all"]["cases"] == 8
    assert groups["all"]["new_majority_share"] == pytest.approx(7.0 / 8.0)


def test_preference_proxy_tie_is_not_a_win():
    rows = _rows("A", "MNL", "MU", [500]) + _rows("A", "ATP", "MU", [500])
    rows += _rows("A", "MNL", "Dmean(parotid_l)", [20]) + _rows("A", "ATP",
                                                                "Dmean(parotid_l)", [19])
    (case,) = [r for r in preference_proxy(rows) if r["level"] == "case"]
    assert (case["new_better"], case["ties"], case["new_wins_majority"]) == (1, 1, False)


def test_write_table_csv_round_trip(tmp_path):
    out = compare_plans(_cohort())
    path = write_table(out, tmp_path / "sub" / "summary.csv")
    with open(path, newline="") as fh:
        back = list(csv.DictReader(fh))
    assert len(back) == len(out)
    assert list(back[0]) == list(out[0])
    for r, b in zip(out, back, strict=True):
        assert b["metric"] == r["metric"] and b["flag"] == r["flag"]
        for k in ("mean_rel_diff_pct", "p", "p_bonferroni"):
            v = float(b[k])
            assert (math.isnan(v) and math.isnan(r[k])) or v == r[k]
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_write_table_union_of_columns(tmp_path):
    path = write_table([{"a": 1}, {"b": 2.5, "a": 3}], tmp_path / "t.csv")
    assert path.read_text().splitlines() == ["a,b", "1,", "3,2.5"]
