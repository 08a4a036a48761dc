"""The synthetic cohort: ROIs, reference plans, splits, determinism, interrupted runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from atp.cases import load_case
from atp.dose import PencilBeamEngine
from atp.names import SITE_ORGANS, SITES
from atp.planning import PlanSettings
from atp.sites import load_institution_config, load_site_config
from atp.synth import cohort as cohort_mod


def _dir(root, site):
    return root / "synthetic" / site / "A_12mm_seed2020"


@pytest.mark.parametrize("site", SITES)
def test_tiny_cohort_per_site(site, tiny_cohorts):
    manifest = json.loads((_dir(tiny_cohorts, site) / "manifest.json").read_text())
    assert manifest["site"] == site and len(manifest["patients"]) == 3
    assert sorted(p["split"] for p in manifest["patients"]) == ["test", "train", "val"]
    for entry in manifest["patients"]:
        case = load_case(_dir(tiny_cohorts, site) / entry["file"])
        assert set(case.organs) == set(SITE_ORGANS[site])
        assert case.targets and case.dose_gy is not None and "body" in case.rois
        # every target level's mean dose within 2 % of its own prescription (the
        # reference plan's mean band and normalization; also on this 12 mm grid)
        for rx in case.prescriptions:
            mean = float(case.dose_gy[case.mask(rx.target)].mean(dtype=np.float64))
            assert abs(mean / rx.dose_gy - 1.0) < 0.02, (case.patient_id, rx, mean)
            assert entry["reference_plan"]["target_mean_over_rx"][rx.target] == \
                pytest.approx(mean / rx.dose_gy, rel=1e-5)
    stats = cohort_mod.reference_plan_stats(manifest)
    print(site, "reference plans meeting every P1 goal:", stats["p1_all_met"], "of",
          stats["n"])
    assert stats["p1_rate_pct"] >= 90.0, stats


def _build(tmp_path, n, **kw):
    site = load_site_config("lung")
    return cohort_mod.build_cohort(
        tmp_path, site_cfg=site, institution=load_institution_config("A"), n=n, seed=5,
        spacing_mm=12.0, engine=PencilBeamEngine(),
        settings=PlanSettings(max_iter=20, p1_rounds=0, **site["conformity"]),
        progress=False, **kw)


def test_deterministic_for_a_seed(tmp_path):
    _build(tmp_path / "a", 1)
    _build(tmp_path / "b", 1)
    a = load_case(tmp_path / "a" / "lung_5_0000.npz")
    b = load_case(tmp_path / "b" / "lung_5_0000.npz")
    np.testing.assert_array_equal(a.ct_hu, b.ct_hu)
    np.testing.assert_array_equal(a.dose_gy, b.dose_gy)
    assert a.prescriptions == b.prescriptions


def test_interrupted_run_leaves_no_half_case_and_resumes(tmp_path, monkeypatch):
    real = cohort_mod.reference_plan
    calls = {"n": 0}

    def dies_on_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(cohort_mod, "reference_plan", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        _build(tmp_path, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lung_5_0000.npz"]
    monkeypatch.setattr(cohort_mod, "reference_plan", real)
    result = _build(tmp_path, 3)
    assert result.skipped == ["lung_5_0000"] and len(result.built) == 2
    # a corrupted case is detected on load and regenerated on the next run
    path = tmp_path / "lung_5_0001.npz"
    path.write_bytes(path.read_bytes()[:100])
    result = _build(tmp_path, 3)
    assert result.regenerated == ["lung_5_0001"]
    load_case(path)


def test_beamlets_scale_with_the_grid():
    assert cohort_mod.bixel_mm_for_grid(5.0, spacing_mm=3.0) == 5.0
    assert cohort_mod.bixel_mm_for_grid(5.0, spacing_mm=2.0) == 5.0  # never finer
    assert cohort_mod.bixel_mm_for_grid(5.0, spacing_mm=6.0) == pytest.approx(10.0)
    engine = PencilBeamEngine()
    assert cohort_mod.engine_for_grid(engine, spacing_mm=3.0) is engine
    assert cohort_mod.engine_for_grid(engine, spacing_mm=6.0).settings.bixel_mm == \
        pytest.approx(10.0)
    assert cohort_mod.engine_for_grid(engine, spacing_mm=6.0, bixel_mm=7.0) \
        .settings.bixel_mm == 7.0


def test_normalization_raises_coverage_within_the_mean_band_and_keeps_p1(tiny_cohorts):
    from atp.planning import GoalList, goal_report, resolve_goals
    from atp.synth.reference import (
        normalization_factor,
        target_d95_over_rx,
        target_mean_over_rx,
    )

    case = load_case(_dir(tiny_cohorts, "lung") / "lung_2020_0000.npz")  # one level
    for scale in (0.9, 1.0, 1.05):
        dose = case.dose_gy * np.float32(scale)
        factor, wanted = normalization_factor(case, dose, [])
        assert factor == wanted
        mean = next(iter(target_mean_over_rx(case, dose * np.float32(factor)).values()))
        d95 = next(iter(target_d95_over_rx(case, dose * np.float32(factor)).values()))
        # D95 on Rx unless that would push the mean past 1.8 % of Rx
        assert abs(mean - 1.0) <= 0.018 + 1e-6
        assert d95 == pytest.approx(1.0, abs=1e-4) or mean == pytest.approx(1.018, abs=1e-5)
    # a cold plan is scaled up, but never so far that a met priority-1 goal fails
    cold = case.dose_gy * np.float32(0.9)
    cord_max = float(cold[case.mask("spinal_cord")].max())
    limit = 1.04 * cord_max
    p1, _ = resolve_goals(case, GoalList.from_dicts(
        [{"roi": "spinal_cord", "metric": "Dmax", "op": "<=", "value": limit,
          "priority": 1}]))
    factor, wanted = normalization_factor(case, cold, p1)
    assert wanted > 1.08 and factor == pytest.approx(1.04, abs=0.002)
    assert goal_report(case, cold * np.float32(factor), p1)[0].met


def test_reference_plan_stats():
    manifest = {"patients": [
        {"reference_plan": {"p1_met": [True, True], "target_mean_over_rx": {"a": 1.01}}},
        {"reference_plan": {"p1_met": [True, False], "target_mean_over_rx": {"a": 0.99,
                                                                             "b": 1.0}}}]}
    stats = cohort_mod.reference_plan_stats(manifest)
    assert stats["n"] == 2 and stats["p1_all_met"] == 1 and stats["p1_rate_pct"] == 50.0
    assert stats["target_mean_over_rx_min"] == 0.99
    assert stats["target_mean_over_rx_max"] == 1.01
    assert stats["deliverable"] == stats["p1_lost_in_delivery"] == 0  # not sequenced
    manifest["patients"][0]["reference_plan"].update(deliverable=True,
                                                     p1_lost_in_delivery=["D0.03cc(x)"])
    stats = cohort_mod.reference_plan_stats(manifest)
    assert stats["deliverable"] == stats["p1_lost_in_delivery"] == 1


def test_other_settings_do_not_mix_into_an_existing_cohort(tiny_cohorts):
    from atp.cases import CaseError

    cfg = load_site_config("lung")
    with pytest.raises(CaseError, match="sparing_pct"):  # the manifest is named
        cohort_mod.build_cohort(_dir(tiny_cohorts, "lung"), site_cfg=cfg,
                                institution=load_institution_config("A"), n=3, seed=2020,
                                spacing_mm=12.0, engine=PencilBeamEngine(),
                                settings=PlanSettings(max_iter=5), sparing_pct=20.0,
                                progress=False)


def test_other_planner_settings_do_not_mix_into_an_existing_cohort(tiny_cohorts):
    from dataclasses import replace

    from atp.cases import CaseError

    manifest = cohort_mod.read_manifest(_dir(tiny_cohorts, "lung"))
    built = PlanSettings(**manifest["planner"])
    with pytest.raises(CaseError, match="planner.*falloff_offset_mm"):
        cohort_mod.build_cohort(_dir(tiny_cohorts, "lung"), site_cfg=load_site_config("lung"),
                                institution=load_institution_config(manifest["institution"]),
                                n=manifest["n"], seed=manifest["seed"],
                                spacing_mm=manifest["spacing_mm"], engine=PencilBeamEngine(),
                                settings=replace(built, falloff_offset_mm=0.0),
                                sparing_pct=manifest["sparing_pct"],
                                sparing_max_iter=manifest["sparing_max_iter"], progress=False)


def test_a_cohort_without_recorded_planner_settings_is_not_completed(tiny_cohorts, tmp_path):
    """A manifest from an older atp has no 'planner' entry: refuse rather than guess."""
    import json

    from atp.cases import CaseError

    manifest = cohort_mod.read_manifest(_dir(tiny_cohorts, "lung"))
    planner = manifest.pop("planner")
    (tmp_path / cohort_mod.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(CaseError, match="planner.*not recorded"):
        cohort_mod.build_cohort(tmp_path, site_cfg=load_site_config("lung"),
                                institution=load_institution_config(manifest["institution"]),
                                n=manifest["n"], seed=manifest["seed"],
                                spacing_mm=manifest["spacing_mm"], engine=PencilBeamEngine(),
                                settings=PlanSettings(**planner),
                                sparing_pct=manifest["sparing_pct"],
                                sparing_max_iter=manifest["sparing_max_iter"], progress=False)


def test_deliverable_reference_plans_record_the_machine_and_their_mu(tiny_cohorts):
    """tiny_cohorts sequences the lung cohort on the default machine (as cohort.py)."""
    manifest = cohort_mod.read_manifest(_dir(tiny_cohorts, "lung"))
    assert manifest["machine"]["name"] == "atp_mlc120"
    assert manifest["sequencer"]["mode"] == "sliding_window"
    assert manifest["goal_list"] and {"roi", "metric"} <= set(manifest["goal_list"][0])
    for entry in manifest["patients"]:
        ref = entry["reference_plan"]
        assert ref["deliverable"] and ref["machine"] == "atp_mlc120"
        assert ref["mu_per_fraction"] > 0 and ref["control_points"] > 0
    from atp.evaluation.comparator import clinical_mu

    case = load_case(_dir(tiny_cohorts, "lung") / manifest["patients"][0]["file"])
    assert clinical_mu(case) == pytest.approx(
        manifest["patients"][0]["reference_plan"]["mu_per_fraction"] * case.n_fractions)
    # a fluence-plan cohort records no machine
    assert cohort_mod.read_manifest(_dir(tiny_cohorts, "npc"))["machine"] is None


def _rebuild(root, manifest, **kw):
    return cohort_mod.build_cohort(
        root, site_cfg=kw.pop("site_cfg", load_site_config("lung")),
        institution=load_institution_config(manifest["institution"]), n=manifest["n"],
        seed=manifest["seed"], spacing_mm=manifest["spacing_mm"], engine=PencilBeamEngine(),
        settings=PlanSettings(**manifest["planner"]), sparing_pct=manifest["sparing_pct"],
        sparing_max_iter=manifest["sparing_max_iter"], progress=False, **kw)


def test_a_cohort_of_another_machine_or_goal_list_is_refused(tiny_cohorts):
    from dataclasses import replace

    from atp.cases import CaseError
    from atp.delivery import load_machine

    root = _dir(tiny_cohorts, "lung")
    manifest = cohort_mod.read_manifest(root)
    before = (root / cohort_mod.MANIFEST).read_text()
    slower = replace(load_machine(), max_leaf_speed_mm_s=20.0)
    with pytest.raises(CaseError, match="machine.*sequenced on another machine"):
        _rebuild(root, manifest, machine=slower)
    with pytest.raises(CaseError, match="machine.*or not sequenced"):
        _rebuild(root, manifest)  # fluence plans into a deliverable cohort
    site = load_site_config("lung")
    site["goals"] = [{**g, "priority": 2} if i == 0 else g
                     for i, g in enumerate(site["goals"])]
    with pytest.raises(CaseError, match="goal_list.*goal list changed"):
        _rebuild(root, manifest, machine=load_machine(), site_cfg=site)
    assert (root / cohort_mod.MANIFEST).read_text() == before  # nothing rewritten


def test_a_p1_limit_broken_by_sequencing_is_planned_again(tmp_path):
    """NPC at 12 mm: sequencing raises the serial organs' maxima over their P1 limits
    (patient 0 of seed 2020 loses four in the first sequencing, measured); the reference
    plan lowers those limits by their rise, plans once more and sequences again."""
    from atp.delivery import load_machine

    site = load_site_config("npc")
    cohort_mod.build_cohort(tmp_path, site_cfg=site, institution=load_institution_config("A"),
                            n=1, seed=2020, spacing_mm=12.0, engine=PencilBeamEngine(),
                            settings=PlanSettings(max_iter=40, p1_rounds=1,
                                                  **site["conformity"]),
                            machine=load_machine(), progress=False)
    ref = cohort_mod.read_manifest(tmp_path)["patients"][0]["reference_plan"]
    assert ref["delivery_rounds"] == 2 and ref["deliverable"]
    assert all(ref["p1_met"]), ref  # after the second round and the normalization
