"""atp.evaluation.plan_store: a case and its plans' doses in one file, read back exactly."""

from __future__ import annotations

import numpy as np
import pytest
from phantoms import toy_case

from atp.cases import CaseError, save_case
from atp.evaluation.plan_store import load_case_plans, save_case_plans


def _doses(case):
    rng = np.random.default_rng(0)
    return {"ATP": rng.uniform(0, 60, case.shape).astype(np.float32),
            "MNL": rng.uniform(0, 60, case.shape).astype(np.float32),
            "prediction": rng.uniform(0, 60, case.shape).astype(np.float32)}


def test_round_trip_keeps_case_doses_and_meta(tmp_path):
    case = toy_case()
    case.metadata = {"laterality": "left"}
    doses = _doses(case)
    path = save_case_plans(tmp_path / "plans" / "toy.npz", case=case, doses_gy=doses,
                           comparator="MNL", meta={"institution": "C", "run": "0_npc_C"})
    back = load_case_plans(path)
    assert back.comparator == "MNL" and back.meta == {"institution": "C", "run": "0_npc_C"}
    assert list(back.doses_gy) == ["ATP", "MNL", "prediction"]
    for label, dose in doses.items():
        np.testing.assert_array_equal(back.doses_gy[label], dose)
    c = back.case
    assert c.patient_id == "toy" and c.site == "npc" and c.metadata == {"laterality": "left"}
    assert c.prescriptions == case.prescriptions and c.spacing_mm == case.spacing_mm
    for name, roi in case.rois.items():
        assert c.rois[name].role == roi.role
        np.testing.assert_array_equal(c.rois[name].mask, roi.mask)
    np.testing.assert_array_equal(c.ct_hu, case.ct_hu)
    assert not list((tmp_path / "plans").glob("*.tmp"))  # atomic: no temporary left


def test_save_refuses_bad_input_naming_the_field(tmp_path):
    case = toy_case()
    doses = _doses(case)
    with pytest.raises(CaseError, match="comparator"):
        save_case_plans(tmp_path / "a.npz", case=case, doses_gy=doses, comparator="clinical")
    bad = {**doses, "MNL": doses["MNL"][:-1]}
    with pytest.raises(CaseError, match=r"doses_gy\['MNL'\].*case grid"):
        save_case_plans(tmp_path / "a.npz", case=case, doses_gy=bad, comparator="MNL")
    bad = {**doses, "ATP": np.full(case.shape, np.nan, np.float32)}
    with pytest.raises(CaseError, match=r"doses_gy\['ATP'\].*NaN"):
        save_case_plans(tmp_path / "a.npz", case=case, doses_gy=bad, comparator="MNL")
    with pytest.raises(CaseError, match="meta"):
        save_case_plans(tmp_path / "a.npz", case=case, doses_gy=doses, comparator="MNL",
                        meta={"x": object()})
    assert not (tmp_path / "a.npz").exists()


def test_load_refuses_other_and_damaged_files(tmp_path):
    case = toy_case()
    plain = save_case(case, tmp_path / "plain.npz")
    with pytest.raises(CaseError, match=r"plain\.npz.*plans_header"):
        load_case_plans(plain)
    good = save_case_plans(tmp_path / "good.npz", case=case, doses_gy=_doses(case),
                           comparator="MNL")
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(CaseError, match=r"cut\.npz.*unreadable"):
        load_case_plans(cut)
    with pytest.raises(CaseError, match="does not exist"):
        load_case_plans(tmp_path / "missing.npz")
