"""Synthetic anatomy generator (`atp.synth`): ROI sets, volumes, laterality, anatomy, figures.

Expectations come from the site configs (``conf/site/<site>.yaml``: organs, prescription
schemes, target volume range), the shared conventions (``/work/shared/DESIGN.md``: ROI
names, DICOM patient axes x left / y posterior / z superior, arrays (z, y, x)) and the
generator's documented contract (`generate_anatomy`). Cases are drawn on 10-12 mm grids
to stay fast.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml
from conftest import REPO_ROOT

from atp.cases import CaseError, load_case, save_case
from atp.names import BODY, SITE_ORGANS, SITES, ptv_name
from atp.synth import generate_anatomy
from atp.viz import plot_case

SPACING_MM = 12.0
SEEDS = (0, 1, 2)
VOLUME_SEEDS = tuple(range(12))
#: Accepted relative error of a target volume: the generator aims at 2 %, the rest is
#: the quantisation of a coarse grid (a 50 cc lung PTV is ~30 voxels of 1.7 cc).
VOLUME_TOL = 0.15


def _cfg(site: str) -> dict:
    with open(REPO_ROOT / "conf" / "site" / f"{site}.yaml") as fh:
        return yaml.safe_load(fh)


@pytest.fixture(scope="module")
def cfgs() -> dict[str, dict]:
    return {s: _cfg(s) for s in SITES}


@pytest.fixture(scope="module")
def cases(cfgs):
    return {(s, seed): generate_anatomy(s, seed=seed, site_cfg=cfgs[s], spacing_mm=SPACING_MM)
            for s in SITES for seed in SEEDS}


def _centroid_mm(case, mask: np.ndarray) -> np.ndarray:
    """World centroid (z, y, x) of a mask, in mm."""
    idx = np.argwhere(mask).mean(axis=0)
    return np.asarray(case.origin_mm) + idx * np.asarray(case.spacing_mm)


def _c(case, name: str) -> np.ndarray:
    return _centroid_mm(case, case.mask(name))


# ---------------------------------------------------------------------------- contents
@pytest.mark.parametrize("site", SITES)
def test_roi_set_roles_and_prescriptions_follow_the_site_config(cases, cfgs, site):
    # Source: conf/site/<site>.yaml (organs, prescriptions) and DESIGN.md names.
    cfg = cfgs[site]
    for seed in SEEDS:
        case = cases[site, seed]
        scheme = case.metadata["rx_scheme"]
        cfg_scheme = cfg["prescriptions"][scheme["index"]]
        levels = sorted(cfg_scheme["levels_gy"], reverse=True)
        assert scheme["levels_gy"] == levels
        targets = {ptv_name(v) for v in levels}
        assert set(case.rois) == {BODY, *cfg["organs"], *targets}
        assert set(cfg["organs"]) == set(SITE_ORGANS[site])
        assert case.rois[BODY].role == "external"
        assert set(case.organs) == set(cfg["organs"]) and set(case.targets) == targets
        assert [(p.target, p.dose_gy, p.n_fractions) for p in case.prescriptions] == [
            (ptv_name(v), v, cfg_scheme["n_fractions"]) for v in levels]
        assert case.site == site and case.dose_gy is None


@pytest.mark.parametrize("site", SITES)
def test_every_roi_is_non_empty_and_targets_lie_in_the_body(cases, site):
    # Source: the brief (every ROI drawn; targets inside the body).
    for seed in SEEDS:
        case = cases[site, seed]
        for name, roi in case.rois.items():
            assert roi.mask.any(), f"{site} seed {seed}: {name} is empty"
        assert not (case.target_union() & ~case.body_mask).any()


@pytest.mark.parametrize("site", SITES)
def test_targets_are_disjoint_dose_levels(cases, site):
    # Source: generate_anatomy docstring: a lower level never contains a higher one.
    for seed in SEEDS:
        case = cases[site, seed]
        total = sum(int(case.mask(t).sum()) for t in case.targets)
        assert total == int(case.target_union().sum())


@pytest.mark.parametrize("site", SITES)
def test_ct_numbers_are_plausible(cases, site):
    # Source: the brief's CT numbers (air -1000 outside, fat ~ -100, soft ~ 40, lung ~ -800,
    # bone ~ 700).
    case = cases[site, 0]
    ct, body = case.ct_hu, case.body_mask
    assert ct.dtype == np.float32
    assert np.all(ct[~body] == -1000.0)
    assert -1024.0 <= ct.min() and ct.max() <= 3000.0
    assert np.any(np.abs(ct[body] + 100.0) < 30.0)  # fat
    assert np.any(ct[body] > 500.0)  # bone
    bone = {"npc": "mandible", "cervix": "femoral_head_l", "rectum": "femoral_head_r",
            "breast": "humeral_head_l"}.get(site)
    if bone:
        assert float(np.median(ct[case.mask(bone)])) > 200.0
    if site in ("lung", "breast"):
        lung = case.mask("lung_l") & ~case.target_union()
        assert float(np.median(ct[lung])) < -600.0


# ---------------------------------------------------------------------------- volumes
@pytest.mark.parametrize("site", SITES)
def test_target_volume_in_configured_range(cfgs, site):
    # Source: target_volume_cc in conf/site/<site>.yaml, for the union of the PTVs;
    # tolerance VOLUME_TOL (grid quantisation), over a sample of seeds.
    lo, hi = cfgs[site]["target_volume_cc"]
    vols = []
    for seed in VOLUME_SEEDS:
        case = generate_anatomy(site, seed=seed, site_cfg=cfgs[site], spacing_mm=10.0)
        vol = float(case.target_union().sum()) * case.voxel_volume_cc
        asked = case.metadata["target_volume_requested_cc"]
        assert lo <= asked <= hi
        assert abs(vol / asked - 1.0) <= VOLUME_TOL, (seed, vol, asked)
        assert lo * (1 - VOLUME_TOL) <= vol <= hi * (1 + VOLUME_TOL)
        assert case.metadata["target_volume_cc"] == pytest.approx(vol, rel=1e-3)
        vols.append(vol)
    # log-uniform draws over the range: the sample is not stuck at one end
    assert max(vols) / min(vols) > 1.5


# ---------------------------------------------------------------------------- laterality
@pytest.mark.parametrize("site", ["lung", "breast"])
def test_laterality_matches_the_side_of_the_target(cfgs, site):
    # Source: DICOM patient axes (x to the patient's left): left target = larger x than the
    # body centre.
    sides = set()
    for seed in VOLUME_SEEDS:
        case = generate_anatomy(site, seed=seed, site_cfg=cfgs[site], spacing_mm=SPACING_MM)
        lat = case.metadata["laterality"]
        dx = _centroid_mm(case, case.target_union())[2] - _centroid_mm(case, case.body_mask)[2]
        assert lat == ("left" if dx > 0 else "right"), (seed, lat, dx)
        sides.add(lat)
        if site == "lung":
            ipsi, contra = ("lung_l", "lung_r") if lat == "left" else ("lung_r", "lung_l")
            ptv = case.target_union()
            assert (ptv & case.mask(ipsi)).sum() > (ptv & case.mask(contra)).sum()
        else:
            ipsi = "breast_l" if lat == "left" else "breast_r"
            ptv = case.target_union()
            assert (ptv & case.mask(ipsi)).sum() >= 0.6 * ptv.sum()
    assert sides == {"left", "right"}


@pytest.mark.parametrize("site", ["npc", "cervix", "rectum"])
def test_midline_sites_have_no_laterality(cases, site):
    assert cases[site, 0].metadata["laterality"] is None


# ---------------------------------------------------------------------------- anatomy
def test_npc_anatomy(cases):
    # Source: head and neck anatomy: the brainstem continues as the cord superiorly, the
    # mandible and larynx lie anterior to the cord, lenses above the mandible; patient left
    # = larger x; nodal levels extend below the nasopharynx.
    for seed in SEEDS:
        c = cases["npc", seed]
        assert _c(c, "brainstem")[0] > _c(c, "spinal_cord")[0]
        assert _c(c, "mandible")[1] < _c(c, "spinal_cord")[1]
        assert _c(c, "larynx")[1] < _c(c, "esophagus")[1] < _c(c, "spinal_cord")[1]
        assert _c(c, "lens_l")[0] > _c(c, "mandible")[0]
        assert _c(c, "chiasm")[0] > _c(c, "oral_cavity")[0]
        for organ in ("parotid", "tmj", "lens", "optic_nerve"):
            assert _c(c, f"{organ}_l")[2] > 0 > _c(c, f"{organ}_r")[2]
        levels = [p.target for p in c.prescriptions]
        assert _c(c, levels[0])[0] > _c(c, levels[-1])[0]


@pytest.mark.parametrize("site", ["lung", "breast"])
def test_thorax_anatomy(cases, site):
    # Source: thoracic anatomy: heart anterior to the cord and left of the midline, lungs
    # on their sides, humeral heads lateral and superior to the heart.
    for seed in SEEDS:
        c = cases[site, seed]
        heart = _c(c, "heart")
        assert heart[1] < _c(c, "spinal_cord")[1]
        assert heart[2] > 0
        assert _c(c, "lung_l")[2] > 0 > _c(c, "lung_r")[2]
        if site == "breast":
            assert _c(c, "breast_l")[2] > 0 > _c(c, "breast_r")[2]
            assert _c(c, "breast_l")[1] < heart[1]
            assert _c(c, "humeral_head_l")[2] > 0 > _c(c, "humeral_head_r")[2]
            assert _c(c, "humeral_head_l")[0] > heart[0]


@pytest.mark.parametrize("site", ["cervix", "rectum"])
def test_pelvis_anatomy(cases, site):
    # Source: pelvic anatomy: bladder anterior to the rectum / rectal target, bowel above
    # the bladder, femoral heads on their sides.
    for seed in SEEDS:
        c = cases[site, seed]
        posterior = _c(c, "rectum") if site == "cervix" else _centroid_mm(c, c.target_union())
        assert _c(c, "bladder")[1] < posterior[1]
        assert _c(c, "bowel_small")[0] > _c(c, "bladder")[0]
        assert _c(c, "femoral_head_l")[2] > 0 > _c(c, "femoral_head_r")[2]
        if site == "cervix":
            assert _c(c, "spinal_cord")[0] > _c(c, "bladder")[0]


def test_world_origin_is_near_the_body_centre(cases):
    # Source: the brief (origin_mm puts the world origin near the body centre).
    for site in SITES:
        c = cases[site, 0]
        centre = _centroid_mm(c, c.body_mask)
        assert np.all(np.abs(centre) < (60.0, 40.0, 20.0)), (site, centre)


# ---------------------------------------------------------------------------- contract
@pytest.mark.parametrize("site", SITES)
def test_same_seed_same_case_other_seed_other_case(cfgs, site):
    # Source: generate_anatomy contract (deterministic for a seed).
    a = generate_anatomy(site, seed=7, site_cfg=cfgs[site], spacing_mm=SPACING_MM)
    b = generate_anatomy(site, seed=7, site_cfg=cfgs[site], spacing_mm=SPACING_MM)
    other = generate_anatomy(site, seed=8, site_cfg=cfgs[site], spacing_mm=SPACING_MM)
    np.testing.assert_array_equal(a.ct_hu, b.ct_hu)
    assert a.metadata == b.metadata and list(a.rois) == list(b.rois)
    for name in a.rois:
        np.testing.assert_array_equal(a.mask(name), b.mask(name))
    assert not np.array_equal(a.ct_hu, other.ct_hu)
    assert a.metadata["target_volume_requested_cc"] != other.metadata[
        "target_volume_requested_cc"]


def test_metadata_validation_and_case_file_roundtrip(cases, tmp_path):
    # Source: PatientCase contract (validate, JSON metadata, case files) and the brief's
    # metadata keys.
    case = cases["npc", 0]
    assert case.validate() is case
    md = case.metadata
    for key in ("source", "seed", "generator_version", "laterality", "target_volume_cc",
                "rx_scheme"):
        assert key in md
    assert md["source"] == "synthetic" and md["seed"] == 0
    json.dumps(md)
    assert case.patient_id == "synth_npc_0" and case.spacing_mm == (12.0, 12.0, 12.0)
    back = load_case(save_case(case, tmp_path / "c.npz"))
    np.testing.assert_array_equal(back.ct_hu, case.ct_hu)
    assert back.metadata == md and back.prescriptions == case.prescriptions


def test_anisotropic_spacing_and_patient_id(cfgs):
    # Source: generate_anatomy signature (spacing as (z, y, x), explicit patient_id).
    c = generate_anatomy("cervix", seed=3, site_cfg=cfgs["cervix"], spacing_mm=(10.0, 8.0, 12.0),
                         patient_id="p42")
    assert c.spacing_mm == (10.0, 8.0, 12.0) and c.patient_id == "p42"
    assert all(r.mask.any() for r in c.rois.values())
    # the grid covers the same box as an isotropic one: extent / spacing voxels per axis
    iso = generate_anatomy("cervix", seed=3, site_cfg=cfgs["cervix"], spacing_mm=10.0)
    ext = np.asarray(c.shape) * c.spacing_mm
    assert np.allclose(ext, np.asarray(iso.shape) * iso.spacing_mm, atol=12.0)


def test_bad_inputs_are_rejected(cfgs):
    with pytest.raises(ValueError, match="unknown site"):
        generate_anatomy("brain", seed=0, site_cfg=cfgs["npc"])
    with pytest.raises(ValueError, match="seed"):
        generate_anatomy("npc", seed=-1, site_cfg=cfgs["npc"])
    with pytest.raises(CaseError, match="prescriptions"):
        generate_anatomy("npc", seed=0, site_cfg={**cfgs["npc"], "prescriptions": []})
    with pytest.raises(CaseError, match="name"):
        generate_anatomy("lung", seed=0, site_cfg=cfgs["npc"])
    with pytest.raises(CaseError, match="cannot draw"):
        generate_anatomy("lung", seed=0, site_cfg={**cfgs["lung"], "organs": ["kidney_l"]},
                         spacing_mm=SPACING_MM)


# ---------------------------------------------------------------------------- figures
def test_plot_case_writes_a_png(cases, tmp_path):
    # Source: PNG signature (RFC 2083): 89 50 4E 47 0D 0A 1A 0A.
    case = cases["breast", 0]
    dose = (case.prescribed_dose_map_gy() * 0.9).astype(np.float32)
    for name, d in (("plain.png", None), ("dose.png", dose)):
        path = tmp_path / "figs" / name
        plot_case(case, dose_gy=d, path=path)
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["dose.png", "plain.png"]
    with pytest.raises(ValueError, match="shape"):
        plot_case(case, dose_gy=np.zeros((2, 2, 2), np.float32), path=tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_synth_never_imports_the_dl_stack():
    # Source: DESIGN.md layer rule (domain layer is numpy/scipy only).
    code = ("import sys, atp.synth, atp.viz, atp.synth.sites\n"
            "bad = {'torch', 'pytorch_lightning', 'lightning', 'hydra', 'omegaconf', 'monai'}\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO_ROOT, check=True).stdout.strip()
    assert out == "[]"
