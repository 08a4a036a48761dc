"""`data=dicom`: a folder of DICOM exports becomes training data through the import."""

from __future__ import annotations

import shutil

import pytest
from dicom_factory import write_phantom

from atp.cases import CaseError
from atp.data import datamodule_for_site
from atp.sites import load_site_config


def test_dicom_folder_is_imported_once_and_split(tmp_path):
    dicom = tmp_path / "dicom"
    for pid in ("P1", "P2", "P3"):
        write_phantom(dicom / pid, patient_id=pid)
    cases = tmp_path / "cases"
    dm = datamodule_for_site(site=load_site_config("npc"), source="dicom", root=str(dicom),
                             cases_dir=str(cases), spacing_mm=4.0, patch_size=(16, 16, 16))
    dm.prepare_data()
    assert sorted(p.stem for p in cases.glob("*.npz")) == ["P1", "P2", "P3"]
    mtimes = {p: p.stat().st_mtime_ns for p in cases.glob("*.npz")}
    dm.prepare_data()  # already imported: nothing is rewritten
    assert mtimes == {p: p.stat().st_mtime_ns for p in cases.glob("*.npz")}
    dm.setup("fit")
    assert len(dm.splits["train"]) == 2 and len(dm.splits["val"]) == 1
    sample = dm.dataset("train")[0]
    assert sample["image"].shape[0] == dm.layout.n_channels
    assert sample["rois"].shape[0] == len(dm.layout.roi_names)
    # another data.root with the same cases_dir: refused, not silently reused
    other = tmp_path / "other"
    shutil.copytree(dicom, other)
    dm2 = datamodule_for_site(site=load_site_config("npc"), source="dicom", root=str(other),
                              cases_dir=str(cases), spacing_mm=4.0, patch_size=(16, 16, 16))
    with pytest.raises(CaseError, match=r"manifest\.json: field 'source_root'"):
        dm2.prepare_data()
