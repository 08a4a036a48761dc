"""ROI name resolution: rules, PTV dose parsing and the explicit alias table."""

from __future__ import annotations

import pytest

from atp.io.dicom.aliases import (
    aliases_from_config,
    looks_like_target,
    ptv_dose_from_name,
    resolve_roi_name,
    role_of,
)

CASES = {
    "npc": {
        "Parotid_L": "parotid_l", "L Parotid": "parotid_l", "LtParotid": "parotid_l",
        "Left Parotid": "parotid_l", "PAROTID_LT": "parotid_l", "LPAROTID": "parotid_l",
        "parotid-r": "parotid_r", "Rt_Parotid": "parotid_r", "ParotidR": "parotid_r",
        "Parotid Gland Right": "parotid_r",
        "BrainStem": "brainstem", "Brain_Stem": "brainstem", "SpinalCord": "spinal_cord",
        "Spinal Cord": "spinal_cord", "Cord": "spinal_cord", "OpticNerve_L": "optic_nerve_l",
        "Optic Nerve R": "optic_nerve_r", "ON_L": "optic_nerve_l", "Chiasm": "chiasm",
        "OpticChiasm": "chiasm", "Lens_L": "lens_l", "TMJ_R": "tmj_r", "TM_Joint_L": "tmj_l",
        "Oral_Cavity": "oral_cavity", "Mandible": "mandible", "Larynx": "larynx",
        "Oesophagus": "esophagus", "External": "body", "BODY": "body", "Skin": "body",
        "Outline": "body",
        "PTV70": "ptv_7000", "PTV_7000": "ptv_7000", "PTV 70Gy": "ptv_7000",
        "PTV_70.0": "ptv_7000", "ptv 7000cGy": "ptv_7000", "PTV-66": "ptv_6600",
        "PTV54": "ptv_5400",
    },
    "cervix": {
        "Femur_Head_L": "femoral_head_l", "FemoralHead_L": "femoral_head_l",
        "Femoral Head Rt": "femoral_head_r", "SmallBowel": "bowel_small",
        "Bowel_Small": "bowel_small", "Sigmoid": "colon", "Bladder": "bladder",
        "Rectum": "rectum", "PTV50.4": "ptv_5040", "PTV_5040": "ptv_5040",
    },
    "breast": {
        "Lung_L": "lung_l", "Lt Lung": "lung_l", "LungR": "lung_r", "Heart": "heart",
        "Breast_R": "breast_r", "HumeralHead_L": "humeral_head_l", "PTV_4256": "ptv_4256",
        "PTV40.05": "ptv_4005",
    },
}
UNKNOWN = ["Parotids", "Lungs", "Lung", "Cord_PRV", "PTV70_opt", "PTV70-3mm", "PTV",
           "CTV70", "GTVp", "Bladder_L", "Brain", "Couch", "zHelper", "Rectum_PRV"]


@pytest.mark.parametrize("site,name,expected",
                         [(s, n, e) for s, table in CASES.items() for n, e in table.items()])
def test_rules_resolve_common_names(site, name, expected):
    assert resolve_roi_name(name, site=site) == expected


@pytest.mark.parametrize("name", UNKNOWN)
def test_unknown_names_stay_unresolved(name):
    assert resolve_roi_name(name, site="npc") is None


def test_canonical_names_resolve_to_themselves():
    for name in ("parotid_l", "ptv_7000", "ring_0_10", "patch_hotspot", "body", "heart"):
        assert resolve_roi_name(name, site="lung") == name


def test_explicit_table_wins_and_is_normalised():
    table = {"Bowel Bag": "bowel_small", "PTV_high": "ptv_7000", "Cord": "cauda"}
    assert resolve_roi_name("BOWEL_BAG", site="rectum", extra_aliases=table) == "bowel_small"
    assert resolve_roi_name("ptv-high", site="npc", extra_aliases=table) == "ptv_7000"
    assert resolve_roi_name("Cord", site="npc", extra_aliases=table) == "cauda"


def test_site_config_alias_forms():
    cfg = {"aliases": {"Bowel Bag": "bowel_small", "parotid_l": ["Parotide G", "PG"]}}
    table = aliases_from_config(cfg)
    assert table == {"Bowel Bag": "bowel_small", "Parotide G": "parotid_l", "PG": "parotid_l"}
    assert resolve_roi_name("parotide_g", site="npc", extra_aliases=table) == "parotid_l"
    assert aliases_from_config(None) == {} and aliases_from_config({"name": "npc"}) == {}
    with pytest.raises(ValueError, match="aliases"):
        aliases_from_config({"aliases": ["x"]})


def test_ptv_dose_parsing_and_roles():
    assert ptv_dose_from_name("PTV70") == 70.0
    assert ptv_dose_from_name("PTV_7000") == 70.0
    assert ptv_dose_from_name("PTV 50,4 Gy") == pytest.approx(50.4)
    assert ptv_dose_from_name("PTV_high") is None
    assert looks_like_target("PTV_high") and looks_like_target("ptv")
    assert not looks_like_target("zPTV_ring") and not looks_like_target("PTVs")
    assert [role_of(n) for n in ("body", "ptv_7000", "ring_0_10", "patch_a", "heart")] == [
        "external", "target", "control", "control", "organ"]
    with pytest.raises(ValueError, match="unknown site"):
        resolve_roi_name("Heart", site="prostate")
