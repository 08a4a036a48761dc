"""The study's statistics (issue 17 item 1): endpoint family and m, V95 %, EQD2 endpoints,
ATP vs prediction p values, grouping. Values are computed by hand in the comments or by
scipy on the same numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from atp.cases import PatientCase, Prescription, Roi
from atp.dosimetry import bonferroni, relative_difference_percent
from atp.evaluation import (
    attach_groups,
    bonferroni_families,
    compare_plans,
    compare_to_prediction,
    goal_pass_rates,
)
from atp.evaluation.endpoints import EndpointSpec, endpoint_spec, plan_endpoints
from atp.names import SITE_ORGANS, SITES
from atp.sites import load_institution_config, load_site_config
from atp.viz import study_endpoint_rows


def _row(case, plan, metric, value, *, inst="A", endpoint=True, hib=False, kind="organ",
         **extra):
    return {"case": case, "site": "lung", "institution": inst, "plan": plan, "metric": metric,
            "value": float(value), "unit": "Gy", "higher_is_better": hib, "kind": kind,
            "endpoint": endpoint, **extra}


def _series(plan, metric, values, **kw):
    return [_row(f"c{i}", plan, metric, v, **kw) for i, v in enumerate(values)]


# --- Bonferroni, relative difference ---------------------------------------------------

def test_bonferroni_with_an_explicit_family_size():
    # Eq. 3 of the study: p' = min(p m, 1)
    out = bonferroni([0.01, 0.2, math.nan], m=4)
    assert out[0] == pytest.approx(0.04) and out[1] == 0.8 and math.isnan(out[2])
    assert bonferroni([0.01, 0.2])[0] == pytest.approx(0.02)  # default m: p values given
    with pytest.raises(ValueError, match="m must be"):
        bonferroni([0.01, 0.2, 0.3], m=2)


def test_v95_sign_in_the_relative_difference():
    # the study: (D_MNL - D_ATP) / D_MNL, sign flipped for V95 % and CI of the PTV
    # V95: MNL 95 %, ATP 98 % -> +3.158 % (ATP better); organ Dmean 20 -> 15 Gy: +25 %
    assert relative_difference_percent(95.0, 98.0, higher_is_better=True) == \
        pytest.approx(300.0 / 95.0)
    assert relative_difference_percent(20.0, 15.0) == pytest.approx(25.0)
    rows = _series("MNL", "V95%(PTV1)", [95, 96, 94], hib=True, kind="target")
    rows += _series("ATP", "V95%(PTV1)", [98, 97, 97], hib=True, kind="target")
    (r,) = compare_plans(rows, new="ATP", reference="MNL", pooled=False)
    rel = np.array([3 / 95, 1 / 96, 3 / 94]) * 100.0
    assert r["mean_rel_diff_pct"] == pytest.approx(rel.mean())
    assert r["mean_rel_diff_pct"] > 0


# --- the endpoint family and m ----------------------------------------------------------

def _family_cohort():
    mnl = {"EQD2 V20Gy(lungs)": [30, 28, 35, 31], "EQD2 Dmean(heart)": [10, 12, 9, 11],
           "V95%(PTV1)": [95, 96, 94, 95.5]}
    atp = {"EQD2 V20Gy(lungs)": [27, 26, 33, 28], "EQD2 Dmean(heart)": [10.5, 11, 9.2, 10.6],
           "V95%(PTV1)": [97, 96.5, 95, 96.5]}
    rows = []
    for metric in mnl:
        hib = metric.startswith("V95")
        rows += _series("MNL", metric, mnl[metric], hib=hib)
        rows += _series("ATP", metric, atp[metric], hib=hib)
    # supplementary metrics: MU, a physical duplicate and a Dmean of another organ
    for metric, a, b in (("MU per fraction", [500, 520, 540, 510], [600, 640, 650, 615]),
                         ("V20Gy(lungs)", [31, 29, 36, 32], [28, 27, 34, 29]),
                         ("Dmean(esophagus)", [20, 22, 18, 21], [19, 22.5, 17, 20])):
        rows += _series("MNL", metric, a, endpoint=False)
        rows += _series("ATP", metric, b, endpoint=False)
    return rows, mnl, atp


def test_m_counts_the_listed_endpoints_only():
    rows, mnl, atp = _family_cohort()
    out = compare_plans(rows, new="ATP", reference="MNL", pooled=False)
    family = [r for r in out if r["family"] == "endpoint"]
    assert {r["metric"] for r in family} == set(mnl)
    assert {r["m_tests"] for r in family} == {3}  # not 6: MU and duplicates are not in m
    for r in family:
        p = stats.ttest_rel(atp[r["metric"]], mnl[r["metric"]]).pvalue
        assert r["p"] == pytest.approx(p, rel=1e-9)
        assert r["p_bonferroni"] == pytest.approx(min(3 * p, 1.0), rel=1e-9)
    supp = [r for r in out if r["family"] == "supplementary"]
    assert {r["m_tests"] for r in supp} == {3} and len(supp) == 3
    # the dot plot draws the endpoint family only
    assert {r["metric"] for r in study_endpoint_rows(out)} == set(mnl)


def test_without_endpoint_marks_every_metric_counts():
    rows, _, _ = _family_cohort()
    for r in rows:
        del r["endpoint"]
    out = compare_plans(rows, new="ATP", reference="MNL", pooled=False)
    assert {r["m_tests"] for r in out} == {6} and {r["family"] for r in out} == {"endpoint"}


def test_atp_against_prediction_p_values():
    # Fig. 5: (D_ATP - D_pred) / D_pred, paired t test of ATP vs prediction, Bonferroni
    # over the listed organ endpoints (2 here; the PTV row is not an organ endpoint)
    pred = {"EQD2 V20Gy(lungs)": [30, 30, 34, 31], "EQD2 Dmean(heart)": [10, 12, 9, 11]}
    atp = {"EQD2 V20Gy(lungs)": [27, 26, 33, 28], "EQD2 Dmean(heart)": [10.5, 11, 9.2, 10]}
    rows = []
    for metric in pred:
        rows += _series("prediction", metric, pred[metric])
        rows += _series("ATP", metric, atp[metric])
    rows += _series("prediction", "V95%(PTV1)", [95] * 4, kind="target", hib=True)
    rows += _series("ATP", "V95%(PTV1)", [96] * 4, kind="target", hib=True)
    out = compare_to_prediction(rows, plan="ATP", prediction="prediction", pooled=False)
    assert {r["metric"] for r in out} == set(pred)
    lungs = next(r for r in out if r["metric"] == "EQD2 V20Gy(lungs)")
    p = stats.ttest_rel(atp["EQD2 V20Gy(lungs)"], pred["EQD2 V20Gy(lungs)"]).pvalue
    assert lungs["p"] == pytest.approx(p, rel=1e-9)
    assert lungs["m_tests"] == 2
    assert lungs["p_bonferroni"] == pytest.approx(min(2 * p, 1.0), rel=1e-9)
    # -10, -13.33, -2.94, -9.68 %: all below the prediction
    rel = (np.array(atp["EQD2 V20Gy(lungs)"]) - pred["EQD2 V20Gy(lungs)"]) / np.array(
        pred["EQD2 V20Gy(lungs)"]) * 100.0
    assert lungs["mean_rel_diff_pct"] == pytest.approx(rel.mean())
    # by hand: differences -3, -4, -1, -3 Gy, mean -2.75, sd sqrt(4.75 / 3), t = -4.37 on
    # 3 df, p = 0.022; corrected 0.044 < 0.05: significantly lower than the prediction
    assert p == pytest.approx(0.0221, abs=5e-4)
    assert lungs["flag"] == "lower"
    heart = next(r for r in out if r["metric"] == "EQD2 Dmean(heart)")
    assert heart["flag"] == "n.s." and heart["p_bonferroni"] >= 0.05


def test_grouping_column_splits_every_table():
    rows, mnl, atp = _family_cohort()
    review = [{"case": "c0", "preferred": "ATP"}, {"case": "c1", "preferred": "MNL"},
              {"case": "c2", "preferred": "ATP"}, {"case": "c3", "preferred": "MNL"},
              {"case": "c9", "preferred": "ATP"}]
    grouped = attach_groups(rows, review, column="preferred")
    assert all(r["preferred"] in ("ATP", "MNL") for r in grouped)
    out = compare_plans(grouped, new="ATP", reference="MNL", pooled=False,
                        group_by="preferred")
    assert {r["preferred"] for r in out} == {"ATP", "MNL"}
    idx = {"ATP": [0, 2], "MNL": [1, 3]}
    for r in out:
        if r["family"] != "endpoint":
            continue
        a = np.array(atp[r["metric"]])[idx[r["preferred"]]]
        b = np.array(mnl[r["metric"]])[idx[r["preferred"]]]
        assert r["n"] == 2
        assert r["p"] == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-9)
        assert r["m_tests"] == 3  # m per group
    fam = bonferroni_families(("ATP vs MNL", out), group_by="preferred")
    assert {(f["preferred"], f["family"], f["m"]) for f in fam} == {
        ("ATP", "endpoint", 3), ("MNL", "endpoint", 3), ("ATP", "supplementary", 3),
        ("MNL", "supplementary", 3)}
    # a case without a group is left out of the grouped tables
    partial = attach_groups(rows, review[:2], column="preferred")
    out = compare_plans(partial, new="ATP", reference="MNL", pooled=False,
                        group_by="preferred")
    assert {r["n"] for r in out} == {1}


def test_grouping_column_splits_the_criteria_table():
    goals = [{"case": f"c{i}", "site": "lung", "institution": "A", "plan": "ATP",
              "p1_met": p1, "goals_met": met, "goals_total": 10}
             for i, (p1, met) in enumerate([(True, 8), (False, 6), (True, 10)])]
    grouped = attach_groups(goals, [{"case": "c0", "preferred": "ATP"},
                                    {"case": "c1", "preferred": "MNL"},
                                    {"case": "c2", "preferred": "ATP"}])
    out = {(r["institution"], r["preferred"]): r
           for r in goal_pass_rates(grouped, group_by="preferred")}
    assert out[("A", "ATP")]["cases"] == 2 and out[("A", "ATP")]["p1_pass_rate"] == 1.0
    assert out[("A", "ATP")]["criteria_pass_rate"] == pytest.approx(0.9)  # (0.8 + 1) / 2
    assert out[("A", "MNL")]["criteria_pass_rate"] == pytest.approx(0.6)
    assert out[("all", "MNL")]["p1_pass_rate"] == 0.0


def test_attach_groups_refuses_conflicting_values():
    with pytest.raises(ValueError, match="two 'preferred' values"):
        attach_groups([], [{"case": "c0", "preferred": "ATP"},
                           {"case": "c0", "preferred": "MNL"}])


def test_group_dot_plot_draws(tmp_path):
    from atp.viz import dot_plot_relative_differences, save_figure

    rows, _, _ = _family_cohort()
    grouped = attach_groups(rows, [{"case": f"c{i}", "preferred": "ATP" if i % 2 else "MNL"}
                                   for i in range(4)])
    out = compare_plans(grouped, new="ATP", reference="MNL", group_by="preferred")
    fig = dot_plot_relative_differences(out, title="t", group_by="preferred")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "institution A, preferred ATP" in labels and "institution all, preferred MNL" in labels
    save_figure(fig, tmp_path / "dots.png")
    assert (tmp_path / "dots.png").stat().st_size > 0


# --- endpoints of one dose: V95 %, EQD2 thresholds ------------------------------------

def _line_case(n_fractions=25):
    """4 x 1 x 10 voxels: a 10-voxel target row and a 4-voxel lung row per slice."""
    shape = (1, 4, 10)
    body = np.ones(shape, bool)
    ptv = np.zeros(shape, bool)
    ptv[0, 0, :] = True
    lung = np.zeros(shape, bool)
    lung[0, 2, :4] = True
    return PatientCase(
        patient_id="line", ct_hu=np.zeros(shape, np.float32), spacing_mm=(3.0, 3.0, 3.0),
        rois={"body": Roi(body, "external"), "ptv_5000": Roi(ptv, "target"),
              "lung_l": Roi(lung, "organ")},
        prescriptions=(Prescription("ptv_5000", 50.0, n_fractions),), site="lung",
        metadata={"laterality": "left"})


def _line_dose():
    dose = np.zeros((1, 4, 10), np.float32)
    # target: 8 of 10 voxels >= 47.5 Gy (95 % of 50 Gy) -> V95 % = 80 %
    dose[0, 0, :] = [50, 50, 50, 50, 50, 50, 48, 47.5, 47, 40]
    dose[0, 2, :4] = [10, 20, 25, 30]  # lung
    return dose


def test_v95_and_eqd2_vx_by_hand():
    case, dose = _line_case(), _line_dose()
    spec = EndpointSpec(metrics=("V95%(PTV1)", "V20Gy(lung_ipsi)", "Dmean(lung_ipsi)"),
                        source="test")
    rows = {r["metric"]: r for r in plan_endpoints(case, dose, plan="ATP", site="lung",
                                                   institution="A", endpoints=spec)}
    assert rows["V95%(PTV1)"]["value"] == pytest.approx(80.0)
    assert rows["V95%(PTV1)"]["higher_is_better"] and rows["V95%(PTV1)"]["endpoint"]
    # physical V20Gy of the lung: 20, 25, 30 Gy >= 20 -> 75 %
    assert rows["V20Gy(lung_ipsi)"]["value"] == pytest.approx(75.0)
    assert not rows["V20Gy(lung_ipsi)"]["endpoint"]
    # EQD2, 25 fx, a/b 3: the 20 Gy EQD2 isodose is the physical 25 Gy (25 Gy at 1 Gy/fx:
    # 25 (1 + 3) / 5 = 20), so only 25 and 30 Gy count -> 50 %
    assert rows["EQD2 V20Gy(lung_ipsi)"]["value"] == pytest.approx(50.0)
    assert rows["EQD2 V20Gy(lung_ipsi)"]["endpoint"]
    # voxel-wise EQD2 mean: 10 -> 6.8, 20 -> 15.2, 25 -> 20, 30 -> 25.2 Gy: mean 16.8 Gy
    assert rows["EQD2 Dmean(lung_ipsi)"]["value"] == pytest.approx(16.8, rel=1e-6)
    assert rows["Dmean(lung_ipsi)"]["value"] == pytest.approx(21.25)
    # physical dose scale: the listed rows are the physical ones
    phys = EndpointSpec(metrics=spec.metrics, dose_scale="physical")
    marked = {r["metric"] for r in plan_endpoints(case, dose, plan="ATP", site="lung",
                                                  institution="A", endpoints=phys)
              if r["endpoint"]}
    assert marked == {"V95%(PTV1)", "V20Gy(lung_ipsi)", "Dmean(lung_ipsi)"}
    # without a list the rows carry no mark, and every metric is in the family
    plain = plan_endpoints(case, dose, plan="ATP", site="lung", institution="A")
    assert not any("endpoint" in r for r in plain)


def test_alpha_beta_per_organ_from_the_spec():
    case, dose = _line_case(), _line_dose()
    # a/b = 10 for the lung, 25 fx: 10 Gy -> 10 (0.4 + 10) / 12 = 8.6667 Gy,
    # 20 -> 20 (0.8 + 10) / 12 = 18, 25 -> 25 (1 + 10) / 12 = 22.9167, 30 -> 30 (1.2 + 10) / 12
    # = 28: mean 77.5833 / 4 = 19.3958 Gy
    spec = EndpointSpec(metrics=("Dmean(lung_ipsi)",), alpha_beta_gy={"lung_l": 10.0})
    rows = {r["metric"]: r["value"] for r in plan_endpoints(
        case, dose, plan="ATP", site="lung", institution="A", endpoints=spec)}
    assert rows["EQD2 Dmean(lung_ipsi)"] == pytest.approx(77.58333333 / 4, rel=1e-6)


@pytest.mark.parametrize("bad", ["V20Gy lungs", "Dfoo(heart)", "Dmax(PTV1)"])
def test_bad_endpoint_names_are_refused_with_the_source(bad):
    with pytest.raises(ValueError, match="site/x.yaml:endpoints"):
        endpoint_spec({"name": "x", "endpoints": {"metrics": [bad]}})


@pytest.mark.parametrize("site", SITES)
def test_site_endpoint_lists(site):
    cfg = load_site_config(site)
    spec = endpoint_spec(cfg, load_institution_config("C"))
    assert spec is not None and spec.dose_scale == "eqd2"
    assert spec.alpha_beta("anything") == 3.0 and spec.alpha_beta("x", role="target") == 10.0
    assert {"V95%(PTV1)", "CI(PTV1)", "HI(PTV1)"} <= set(spec.metrics)
    organs = set(SITE_ORGANS[site]) | {"lungs"}
    for _, roi in spec.organ_endpoints:
        base = roi.removesuffix("_ipsi").removesuffix("_contra")
        assert roi in organs or {f"{base}_l", f"{base}_r"} <= organs, roi
