"""OpenKBP reader/writer on the real 12-patient sample and on deliberately broken copies."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest

from atp.cases import CaseError
from atp.io import openkbp
from atp.names import OPENKBP_ROIS


def test_reads_all_twelve_patients(openkbp_cases, openkbp_dir):
    assert len(openkbp_cases) == 12
    for case in openkbp_cases:
        folder = openkbp_dir / ("train-pats" if int(case.patient_id[3:]) < 200
                                else "validation-pats") / case.patient_id
        files = {p.stem for p in folder.glob("*.csv")}
        expected = {OPENKBP_ROIS[s] for s in files if s in OPENKBP_ROIS} | {"body"}
        assert set(case.rois) == expected
        assert case.shape == (128, 128, 128)
        assert case.site == "npc"
        assert all(p.n_fractions == 35 for p in case.prescriptions)
        assert case.prescriptions[0].dose_gy == 70.0  # every sample patient has PTV70
        # the dose lives exactly on the possible-dose mask (dose.csv and the mask list the
        # same voxels in the sample), and the body holds the whole mask
        assert not np.any(case.dose_gy[~case.dose_mask])
        assert np.all(case.body_mask[case.dose_mask])


def test_voxel_counts_match_the_files(openkbp_cases, openkbp_dir):
    case = openkbp_cases[0]
    folder = openkbp_dir / "train-pats" / case.patient_id
    n_rows = sum(1 for _ in open(folder / "PTV70.csv")) - 1
    assert int(case.mask("ptv_7000").sum()) == n_rows
    # spacing: the file lists axes 0,1,2 = (3.906, 3.906, 2.5); we store (z, y, x)
    assert case.spacing_mm == pytest.approx((2.5, 3.906, 3.906))


def test_axes_are_zyx_patient_coordinates(openkbp_cases):
    """Anatomy fixes the orientation: y posterior, x to the patient's left, z superior."""
    for case in openkbp_cases:
        def centroid(name, case=case):
            return np.argwhere(case.mask(name)).mean(axis=0)  # (z, y, x)

        if "mandible" in case.rois:
            assert centroid("mandible")[1] < centroid("spinal_cord")[1]  # mandible anterior
        if "parotid_l" in case.rois and "parotid_r" in case.rois:
            assert centroid("parotid_l")[2] > centroid("parotid_r")[2]  # left = +x
        if "brainstem" in case.rois:
            assert centroid("brainstem")[0] > centroid("spinal_cord")[0]  # brainstem superior


def test_ct_is_in_hounsfield_units(openkbp_cases):
    case = openkbp_cases[0]
    assert case.ct_hu.min() == -1024.0  # unlisted voxels are air (stored value 0)
    soft = case.ct_hu[case.mask("brainstem")]
    assert -100 < float(np.median(soft)) < 100  # brain tissue is near water


def test_submission_roundtrip_reproduces_the_reference_file(openkbp_cases, openkbp_dir,
                                                            tmp_path):
    case = openkbp_cases[0]
    out = openkbp.write_openkbp_dose(case.dose_gy, tmp_path / f"{case.patient_id}.csv")
    ref_idx, ref_val = openkbp.read_sparse_csv(
        openkbp_dir / "train-pats" / case.patient_id / "dose.csv", with_values=True)
    idx, val = openkbp.read_sparse_csv(out, with_values=True)
    order = np.argsort(ref_idx)
    np.testing.assert_array_equal(idx, ref_idx[order])
    np.testing.assert_array_equal(val, ref_val[order])
    assert out.read_text().startswith(",data\n")


def test_writer_rejects_wrong_grid(tmp_path):
    with pytest.raises(ValueError, match="not the OpenKBP grid"):
        openkbp.write_openkbp_dose(np.zeros((10, 10, 10)), tmp_path / "pt_1.csv")
    assert not (tmp_path / "pt_1.csv").exists()


@pytest.fixture()
def broken_root(openkbp_dir, tmp_path):
    """Four copies of pt_1: one intact and three broken in different ways."""
    src = openkbp_dir / "train-pats" / "pt_1"
    root = tmp_path / "train-pats"
    for name in ("pt_1", "pt_2", "pt_3", "pt_4", "pt_5"):
        shutil.copytree(src, root / name)
    (root / "pt_2" / "possible_dose_mask.csv").unlink()
    ct = (root / "pt_3" / "ct.csv").read_text()
    (root / "pt_3" / "ct.csv").write_text(ct[: len(ct) // 2])  # cut mid-line
    with open(root / "pt_4" / "PTV70.csv", "a") as fh:
        fh.write(f"{128 ** 3},\n")
    with open(root / "pt_5" / "dose.csv", "a") as fh:
        fh.write("12,abc\n")
    return tmp_path


@pytest.mark.parametrize(
    ("patient", "file", "words"),
    [
        ("pt_2", "possible_dose_mask.csv", "missing"),
        ("pt_3", "ct.csv", "truncated"),
        ("pt_4", "PTV70.csv", "outside the 128^3 grid"),
        ("pt_5", "dose.csv", "non-numeric"),
    ],
)
def test_broken_patient_gives_a_clear_error(broken_root, patient, file, words):
    with pytest.raises(CaseError) as info:
        openkbp.load_openkbp_patient(broken_root / "train-pats" / patient)
    assert file in str(info.value) and words in str(info.value)


def test_batch_loader_skips_broken_patients_with_one_warning_each(broken_root, caplog):
    with caplog.at_level(logging.WARNING, logger="atp.io.openkbp"):
        report = openkbp.load_openkbp_dataset(broken_root, progress=False)
    assert [c.patient_id for c in report.cases] == ["pt_1"]
    assert sorted(p.split("/")[-1] for p in report.skipped) == ["pt_2", "pt_3", "pt_4", "pt_5"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 4


def test_a_test_phase_folder_without_dose_loads(openkbp_dir, tmp_path):
    """The challenge's test-phase folders have no dose.csv: the case has no dose."""
    folder = tmp_path / "test-pats" / "pt_1"
    shutil.copytree(openkbp_dir / "train-pats" / "pt_1", folder)
    (folder / "dose.csv").unlink()
    case = openkbp.load_openkbp_patient(folder)
    assert case.dose_gy is None and case.dose_mask is not None and case.prescriptions
