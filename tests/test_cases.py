"""PatientCase: validation, the case file format and atomic writes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from atp.cases import CaseError, PatientCase, Prescription, Roi, load_case, save_case, store


def make_case(shape=(6, 8, 10)) -> PatientCase:
    rng = np.random.default_rng(0)
    ct = rng.normal(0.0, 50.0, size=shape).astype(np.float32)
    body = np.zeros(shape, bool)
    body[1:-1, 1:-1, 1:-1] = True
    ptv = np.zeros(shape, bool)
    ptv[2:4, 3:5, 4:7] = True
    cord = np.zeros(shape, bool)
    cord[:, 6, 5] = True
    return PatientCase(
        patient_id="p1",
        ct_hu=ct,
        spacing_mm=(2.5, 3.0, 4.0),
        origin_mm=(-10.0, 5.0, 0.0),
        rois={"body": Roi(body, "external"), "ptv_7000": Roi(ptv, "target"),
              "spinal_cord": Roi(cord, "organ")},
        prescriptions=(Prescription("ptv_7000", 70.0, 35),),
        dose_gy=rng.uniform(0, 70, size=shape).astype(np.float32),
        site="npc",
        metadata={"source": "test", "laterality": "left"},
    )


def test_roundtrip_preserves_everything(tmp_path):
    case = make_case()
    path = save_case(case, tmp_path / "p1.npz")
    back = load_case(path)
    assert back.patient_id == "p1" and back.site == "npc"
    assert back.spacing_mm == (2.5, 3.0, 4.0) and back.origin_mm == (-10.0, 5.0, 0.0)
    np.testing.assert_array_equal(back.ct_hu, case.ct_hu)
    np.testing.assert_array_equal(back.dose_gy, case.dose_gy)
    assert list(back.rois) == list(case.rois)
    for name, roi in case.rois.items():
        assert back.rois[name].role == roi.role
        np.testing.assert_array_equal(back.rois[name].mask, roi.mask)
    assert back.prescriptions == case.prescriptions
    assert back.metadata == case.metadata
    assert back.dose_mask is None


def test_derived_properties():
    case = make_case()
    # 2.5 * 3 * 4 mm^3 = 30 mm^3 = 0.03 cc
    assert case.voxel_volume_cc == pytest.approx(0.03)
    assert case.targets == ["ptv_7000"] and case.organs == ["spinal_cord"]
    rx = case.prescribed_dose_map_gy()
    assert rx.max() == 70.0 and int((rx > 0).sum()) == 2 * 2 * 3
    assert case.n_fractions == 35 and case.max_prescription_gy == 70.0
    with pytest.raises(KeyError, match="no ROI 'heart'"):
        case.mask("heart")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda c: dataclasses.replace(c, spacing_mm=(0.0, 3.0, 4.0)), "spacing_mm"),
        (lambda c: dataclasses.replace(c, spacing_mm=(2.0, -1.0, 4.0)), "spacing_mm"),
        (lambda c: dataclasses.replace(c, dose_gy=np.full(c.shape, np.nan, np.float32)),
         "dose_gy"),
        (lambda c: dataclasses.replace(c, dose_gy=np.full(c.shape, -1.0, np.float32)), "dose_gy"),
        (lambda c: dataclasses.replace(c, dose_gy=np.zeros((2, 2, 2), np.float32)), "dose_gy"),
        (lambda c: dataclasses.replace(c, ct_hu=np.zeros((4, 4), np.float32)), "ct_hu"),
        (lambda c: dataclasses.replace(
            c, rois={**c.rois, "heart": Roi(np.zeros((3, 3, 3), bool), "organ")}), "rois.heart"),
        (lambda c: dataclasses.replace(
            c, rois={**c.rois, "heart": Roi(np.zeros(c.shape, np.uint8), "organ")}), "rois.heart"),
        (lambda c: dataclasses.replace(
            c, rois={**c.rois, "heart": Roi(np.zeros(c.shape, bool), "oar")}), "rois.heart"),
        (lambda c: dataclasses.replace(c, prescriptions=(Prescription("ptv_6000", 60, 30),)),
         "prescriptions[0]"),
        (lambda c: dataclasses.replace(c, prescriptions=(Prescription("ptv_7000", 70, 0),)),
         "prescriptions[0]"),
        (lambda c: dataclasses.replace(c, site="liver"), "site"),
    ],
)
def test_validation_names_the_field(change, field):
    with pytest.raises(CaseError) as info:
        change(make_case()).validate(source="somefile.npz")
    assert info.value.field == field
    assert "somefile.npz" in str(info.value) and field in str(info.value)


def test_invalid_case_is_not_written(tmp_path):
    bad = dataclasses.replace(make_case(), spacing_mm=(0.0, 1.0, 1.0))
    with pytest.raises(CaseError):
        save_case(bad, tmp_path / "bad.npz")
    assert list(tmp_path.iterdir()) == []


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "p1.npz"
    save_case(make_case(), target)
    before = target.read_bytes()

    def boom(*args, **kwargs):
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(store.np, "savez_compressed", boom)
    with pytest.raises(KeyboardInterrupt):
        save_case(make_case(), target)
    # the old file is intact and no temporary file is left behind
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["p1.npz"]


def test_truncated_file_is_a_clear_error(tmp_path):
    path = save_case(make_case(), tmp_path / "p1.npz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CaseError, match="p1.npz") as info:
        load_case(path)
    assert info.value.field == "file"


def test_missing_file_and_foreign_archive(tmp_path):
    with pytest.raises(CaseError, match="does not exist"):
        load_case(tmp_path / "nope.npz")
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, a=np.zeros(3))
    with pytest.raises(CaseError) as info:
        load_case(foreign)
    assert info.value.field == "header"


def test_schema_version_is_checked(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "SCHEMA_VERSION", 99)
    path = save_case(make_case(), tmp_path / "p1.npz")
    monkeypatch.undo()
    with pytest.raises(CaseError) as info:
        load_case(path)
    assert info.value.field == "schema_version"


def test_tampered_dose_is_rejected_on_load(tmp_path):
    path = save_case(make_case(), tmp_path / "p1.npz")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["dose_gy"][0, 0, 0] = -5.0
    np.savez_compressed(path, **arrays)
    with pytest.raises(CaseError) as info:
        load_case(path)
    assert info.value.field == "dose_gy" and "p1.npz" in str(info.value)


def test_written_files_get_the_usual_permissions(tmp_path):
    import os
    import stat

    path = save_case(make_case(), tmp_path / "p1.npz")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
