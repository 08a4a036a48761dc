"""`python -m atp.io.import_dicom`: one case file and one log line per patient."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import yaml
from conftest import REPO_ROOT
from dicom_factory import write_phantom
from pydicom.uid import generate_uid

from atp.cases import load_case
from atp.io import import_dicom


def _two_patients(root):
    write_phantom(root / "a" / "p1", patient_id="PAT 1")
    write_phantom(root / "b", patient_id="PAT2", technique=None, with_dose=False,
                  struct_series_uid=generate_uid())  # its RTSTRUCT is on another CT
    return root


def test_cli_writes_cases_and_logs_each_patient(tmp_path, caplog):
    root = _two_patients(tmp_path / "in")
    cfg = tmp_path / "npc.yaml"
    cfg.write_text(yaml.safe_dump({"name": "npc", "aliases": {"zHelper": "patch_helper"}}))
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO):
        rc = import_dicom.main([str(root), "--site", "npc", "--out", str(out), "--no-progress",
                                "--site-config", str(cfg)])
    assert rc == 1  # one of two patients skipped
    assert sorted(p.name for p in out.iterdir()) == ["PAT_1.npz", "manifest.json"]
    manifest = json.loads((out / "manifest.json").read_text())  # written last, see ensure_imported
    assert manifest["cases"] == {"PAT 1": "PAT_1.npz"}
    assert manifest["outcome"]["PAT2"].startswith("patient PAT2: field 'RTSTRUCT'")
    case = load_case(out / "PAT_1.npz")
    assert case.patient_id == "PAT 1" and case.site == "npc" and case.spacing_mm == (3.0,) * 3
    assert case.rois["patch_helper"].role == "control"  # the explicit alias table
    assert case.metadata["beam_config"]["technique"] == "imrt"
    lines = [r.getMessage() for r in caplog.records if r.name == "atp.io.import_dicom"]
    assert any(m.startswith("imported PAT 1 -> ") and "ptv_7000 70 Gy/35 fx" in m for m in lines)
    assert any(m.startswith("skipped PAT2: ") and "references CT series" in m for m in lines)


def test_module_entry_point_and_default_site_config(tmp_path):
    assert import_dicom.load_site_config("npc")["name"] == "npc"
    root = tmp_path / "in"
    write_phantom(root, patient_id="P9", with_dose=False)
    res = subprocess.run([sys.executable, "-m", "atp.io.import_dicom", str(root), "--site", "npc",
                          "--out", str(tmp_path / "out"), "--spacing-mm", "4", "--no-progress"],
                         cwd=REPO_ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "imported P9" in res.stderr and "1 of 1 patient(s) imported" in res.stderr
    assert load_case(tmp_path / "out" / "P9.npz").spacing_mm == (4.0, 4.0, 4.0)
