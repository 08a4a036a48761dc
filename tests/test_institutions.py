"""Institution configs against the study's Table 1, technique mixes and their assignment
(issue 17 item 2)."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from atp.dose import beams_from_config
from atp.names import INSTITUTIONS, SITES
from atp.planning.setup import beam_config_for, goal_list_for, tolerances_for
from atp.planning.techniques import (
    apportion,
    assign_by_share,
    assign_variants,
    technique_for_case,
    technique_group,
    technique_variants,
)
from atp.sites import load_institution_config, load_site_config
from atp.synth import cohort as cohort_mod

# The study's Table 1 ("Characteristics of the enrolled patient cohorts across different
# institutions"), transcribed by hand: per site and institution, the patients, the
# treatment techniques as (kind, field or arc counts allowed, patients) and the prescribed
# doses as (dose levels Gy, fractions, patients). "9/11-field" = 9 or 11 fields,
# "7 ~ 10-field" = 7 to 10 fields, "2/4-arc" = 2 or 4 arcs.
TABLE_1 = {
    "npc": {
        "A": (30, [("dIMRT", {9, 11}, 30)],
              [((66, 60, 54), 30, 8), ((70.4, 66, 60, 54), 32, 15),
               ((70, 66, 63, 56), 35, 7)]),
        "B": (10, [("VMAT", {2, 3}, 10)], [((70, 66, 60, 56), 35, 10)]),
        "C": (10, [("VMAT", {2, 4}, 10)],
              [((69.96, 66, 61.05, 54.45), 33, 7), ((69.96, 62.7, 60.06, 54.45), 33, 3)]),
    },
    "lung": {
        "A": (30, [("sIMRT", {7, 8, 9, 10}, 3), ("dIMRT", {7, 8, 9, 10}, 27)],
              [((50,), 25, 20), ((60,), 30, 10)]),
        "B": (10, [("VMAT", {2}, 10)], [((60,), 30, 10)]),
        "C": (10, [("VMAT", {4, 6}, 10)], [((60,), 30, 10)]),
    },
    "breast": {
        "A": (30, [("sIMRT", {8, 9}, 4), ("dIMRT", {8, 9}, 13), ("VMAT", {4}, 13)],
              [((50,), 25, 13), ((42.56,), 16, 6), ((40.05,), 15, 11)]),
        "B": (10, [("VMAT", {2, 4}, 10)], [((50,), 25, 10)]),
        "C": (10, [("VMAT", {4, 6}, 10)], [((43.5,), 15, 1), ((50,), 25, 9)]),
    },
    "rectum": {
        "A": (30, [("sIMRT", {9}, 10), ("dIMRT", {9}, 3), ("VMAT", {2}, 17)],
              [((50,), 25, 22), ((25,), 5, 8)]),
        "B": (10, [("VMAT", {2}, 10)], [((50, 45), 25, 10)]),
        "C": (10, [("VMAT", {2}, 10)], [((25,), 5, 10)]),
    },
    "cervix": {
        "A": (30, [("dIMRT", {9}, 30)], [((50.4,), 28, 13), ((58.8, 50.4), 28, 17)]),
        "B": (10, [("VMAT", {2}, 10)], [((45,), 25, 10)]),
        "C": (10, [("VMAT", {2}, 10)], [((45,), 25, 10)]),
    },
}
KIND = {("imrt", "static"): "sIMRT", ("imrt", "dynamic"): "dIMRT", ("vmat", ""): "VMAT"}


def _count(variant) -> int:
    """Fields of an IMRT variant, arcs of a VMAT one."""
    return len(variant["gantry_deg"]) if variant["technique"] == "imrt" else len(variant["arcs"])


@pytest.mark.parametrize(("site", "inst"), [(s, i) for s in SITES for i in INSTITUTIONS])
def test_institution_configs_match_table_1(site, inst):
    cases, techniques, prescriptions = TABLE_1[site][inst]
    site_cfg, inst_cfg = load_site_config(site), load_institution_config(inst)
    assert inst_cfg["cases"][site] == cases
    variants = technique_variants(site_cfg, inst_cfg)
    by_kind: dict[str, list[dict]] = {}
    for v in variants:
        by_kind.setdefault(KIND[technique_group(v)], []).append(v)
    assert set(by_kind) == {kind for kind, _, _ in techniques}
    for kind, counts, n in techniques:
        assert sum(float(v["cases"]) for v in by_kind[kind]) == pytest.approx(n), kind
        assert {_count(v) for v in by_kind[kind]} == counts, kind
    got = Counter((tuple(float(x) for x in p["levels_gy"]), p["n_fractions"], p["cases"])
                  for p in inst_cfg["prescriptions"][site])
    want = Counter((tuple(float(x) for x in levels), fx, n) for levels, fx, n in prescriptions)
    assert got == want
    # a cohort of Table 1's size gets exactly Table 1's counts
    names = assign_variants(variants, cases, seed=[2020, 1])
    per_kind = Counter(KIND[technique_group(next(v for v in variants if v["name"] == nm))]
                       for nm in names)
    assert per_kind == Counter({kind: n for kind, _, n in techniques})
    _, schemes = cohort_mod.assignments(site_cfg, inst_cfg, n=cases, seed=2020)
    assert Counter(schemes) == Counter({i: p["cases"] for i, p in
                                        enumerate(inst_cfg["prescriptions"][site])})
    for v in variants:  # every variant makes beams, for both sides
        for laterality in ("left", "right"):
            beams = beams_from_config(beam_config_for(site_cfg, inst_cfg, technique=v["name"]),
                                      isocenter_mm=(0.0, 0.0, 0.0), laterality=laterality)
            assert len(beams) >= _count(v)


def test_c_isodose_controls_are_priority_1_and_lung_sparing_is_relaxed():
    inst = load_institution_config("C")
    for site in ("cervix", "rectum"):  # the study's Methods: C's isodose controls at P1
        rings = [g for g in goal_list_for(load_site_config(site), inst).goals
                 if g.roi.startswith("ring_")]
        assert rings and all(g.priority == 1 for g in rings)
    # "reduced lung sparing" at C (breast and lung): with the study's -t % rule a
    # negative tolerance lowers the predicted objective (more sparing), so C's are > 0
    assert tolerances_for(load_site_config("lung"), inst)["lungs"] > 0
    breast = tolerances_for(load_site_config("breast"), inst)
    assert breast["lung_ipsi"] > 0 and breast["lung_contra"] > 0


def test_apportionment_by_hand():
    # 40 patients over 2 : 2 : 6.5 : 6.5 : 13 (A's breast): exact 2.667, 2.667, 8.667,
    # 8.667, 17.333; floors 37, the 3 left to the largest remainders (0.667, ties to the
    # earlier) -> 3, 3, 9, 8, 17
    assert apportion([2, 2, 6.5, 6.5, 13], 40) == [3, 3, 9, 8, 17]
    assert apportion([15, 15], 30) == [15, 15] and apportion([1], 0) == [0]
    a = assign_by_share([17, 13], 30, seed=[7, 1])
    assert Counter(a) == {0: 17, 1: 13}
    assert a == assign_by_share([17, 13], 30, seed=[7, 1])  # deterministic
    assert a != assign_by_share([17, 13], 30, seed=[8, 1])  # and seeded
    with pytest.raises(ValueError, match="shares"):
        apportion([1, 0], 3)


def test_two_level_assignment_keeps_table_groups():
    # lung at A: per-variant rounding would give dIMRT 28 / sIMRT 2 of 30; per group 27 / 3
    variants = technique_variants(load_site_config("lung"), load_institution_config("A"))
    assert sum(apportion([float(v["cases"]) for v in variants], 30)[4:]) == 2
    names = assign_variants(variants, 30, seed=[1, 1])
    assert sum(n.startswith("simrt") for n in names) == 3


def test_technique_for_case():
    site, a, c = (load_site_config("breast"), load_institution_config("A"),
                  load_institution_config("C"))
    meta = {"technique": {"institution": "A", "name": "vmat_4arc"}}
    assert technique_for_case(site, a, patient_id="p1", metadata=meta) == "vmat_4arc"
    # a patient of A planned at C: a stable draw among C's variants, in C's proportions
    first = technique_for_case(site, c, patient_id="p1", metadata=meta)
    assert first in ("vmat_4arc", "vmat_6arc")
    assert technique_for_case(site, c, patient_id="p1", metadata=meta) == first
    from_c = {"technique": {"institution": "C", "name": "vmat_6arc"}}
    draws = Counter(technique_for_case(site, a, patient_id=f"p{i}", metadata=from_c)
                    for i in range(3000))
    assert draws["vmat_4arc"] / 3000 == pytest.approx(13 / 30, abs=0.03)
    assert draws["simrt_9f"] / 3000 == pytest.approx(2 / 30, abs=0.02)
    # a case without a stored technique (OpenKBP, DICOM) gets the institution's default:
    # for A's NPC the 9 equispaced fields of OpenKBP's reference plans
    assert technique_for_case(site, a, patient_id="p1") == "dimrt_8f"
    npc = load_site_config("npc")
    assert {technique_for_case(npc, a, patient_id=f"pt_{i}", metadata={"source": "openkbp"})
            for i in range(200, 210)} == {"dimrt_9f"}
    # no patient: the first variant; an unknown name is refused with the known ones
    assert beam_config_for(site, a)["name"] == "dimrt_8f"
    with pytest.raises(ValueError, match="known: .*vmat_4arc"):
        beam_config_for(site, a, technique="vmat_9arc")


def test_malformed_mix_is_refused_with_the_file():
    site = load_site_config("lung")
    bad = {"name": "X", "beams": {"lung": [{"name": "a", "technique": "imrt",
                                            "gantry_deg": [0, 90]}]}}
    with pytest.raises(ValueError, match=r"institution/X.yaml:beams.lung\[0\].*cases"):
        technique_variants(site, bad)


def test_tiny_cohort_records_and_stores_the_assignment(tiny_cohorts):
    from atp.cases import load_case

    root = tiny_cohorts / "synthetic" / "breast" / "A_12mm_seed2020"
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["assignment_seed"] == 2020
    assert sum(manifest["techniques"].values()) == 3
    names = {v["name"] for v in technique_variants(load_site_config("breast"),
                                                   load_institution_config("A"))}
    schemes = {(tuple(p["levels_gy"]), p["n_fractions"])
               for p in load_institution_config("A")["prescriptions"]["breast"]}
    for entry in manifest["patients"]:
        case = load_case(root / entry["file"])
        assert case.metadata["technique"] == entry["technique"]
        assert entry["technique"]["institution"] == "A" and entry["technique"]["name"] in names
        scheme = case.metadata["rx_scheme"]
        assert (tuple(scheme["levels_gy"]), scheme["n_fractions"]) in schemes
        # the reference plan used the stored technique's beams
        n_beams = len(beams_from_config(
            beam_config_for(load_site_config("breast"), load_institution_config("A"),
                            case=case), isocenter_mm=(0, 0, 0),
            laterality=case.metadata.get("laterality")))
        assert case.metadata["reference_plan"]["beams"] == n_beams


def test_a_cohort_with_older_institution_settings_is_refused(tiny_cohorts, tmp_path):
    """The manifest guard compares the institution's facts: a cohort built before they
    changed (or by an atp that did not record them) is not completed."""
    from atp.cases import CaseError
    from atp.dose import PencilBeamEngine
    from atp.planning import PlanSettings

    src = tiny_cohorts / "synthetic" / "lung" / "A_12mm_seed2020" / "manifest.json"
    manifest = json.loads(src.read_text())
    kw = dict(site_cfg=load_site_config("lung"), institution=load_institution_config("A"),
              n=manifest["n"], seed=manifest["seed"], spacing_mm=manifest["spacing_mm"],
              engine=PencilBeamEngine(), settings=PlanSettings(**manifest["planner"]),
              sparing_pct=manifest["sparing_pct"],
              sparing_max_iter=manifest["sparing_max_iter"], progress=False)
    old = dict(manifest)
    old["institution_settings"] = dict(old["institution_settings"],
                                       beams={"technique": "imrt", "gantry_deg": [0, 51]})
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "manifest.json").write_text(json.dumps(old))
    with pytest.raises(CaseError, match="manifest.json.*institution_settings"):
        cohort_mod.build_cohort(tmp_path / "a", **kw)
    older = {k: v for k, v in manifest.items()
             if k not in ("institution_settings", "assignment_seed")}
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "manifest.json").write_text(json.dumps(older))
    with pytest.raises(CaseError, match="institution_settings.*not recorded"):
        cohort_mod.build_cohort(tmp_path / "b", **kw)
    assert not list((tmp_path / "a").glob("*.npz")) and not list((tmp_path / "b").glob("*.npz"))


def test_scheme_index_keeps_the_anatomy():
    from atp.synth.anatomy import generate_anatomy

    cfg = cohort_mod.effective_site_config(load_site_config("rectum"),
                                           load_institution_config("A"))
    a = generate_anatomy("rectum", seed=3, site_cfg=cfg, spacing_mm=12.0)
    b = generate_anatomy("rectum", seed=3, site_cfg=cfg, spacing_mm=12.0,
                         scheme_index=1 - a.metadata["rx_scheme"]["index"])
    np.testing.assert_array_equal(a.ct_hu, b.ct_hu)
    assert a.prescriptions != b.prescriptions
