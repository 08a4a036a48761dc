"""The machine and sequencer config groups, and `plan.py` with deliverable plans."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from phantoms import toy_case

from atp.cases import save_case
from atp.config import CONF_DIR, register_resolvers
from atp.delivery import Machine, load_machine
from atp.delivery.sequencing import SequencingSettings


def _compose(overrides):
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="plan", overrides=["case=x", *overrides])


@pytest.mark.parametrize("machine", sorted(p.stem for p in (CONF_DIR / "machine").glob("*.yaml")))
def test_machine_group_instantiates_like_the_plain_loader(machine):
    m = instantiate(_compose([f"machine={machine}"]).machine)
    assert isinstance(m, Machine) and m == load_machine(machine)
    assert np.array_equal(m.leaf_boundaries_mm, load_machine(machine).leaf_boundaries_mm)


@pytest.mark.parametrize("sequencer", sorted(p.stem for p in (CONF_DIR / "sequencer")
                                             .glob("*.yaml")))
def test_sequencer_group_instantiates(sequencer):
    s = instantiate(_compose([f"sequencer={sequencer}"]).sequencer)
    assert isinstance(s, SequencingSettings) and s.mode == sequencer


def _run(tmp_path, name, *extra):
    case = toy_case(n=32, nz=12, spacing_mm=4.0)
    path = save_case(case, tmp_path / "toy.npz")
    pred = np.where(case.body_mask, 30.0, 0.0).astype(np.float32)
    pred[case.target_union()] = 60.0
    np.save(tmp_path / "pred.npy", pred)
    run_dir = tmp_path / name
    cmd = [sys.executable, "plan.py", f"case={path}", "site=npc", "institution=A",
           f"prediction={tmp_path / 'pred.npy'}", f"paths.log_dir={tmp_path / 'logs'}",
           f"paths.data_dir={tmp_path / 'data'}", f"hydra.run.dir={run_dir}",
           "planner.max_iter=60", *extra]
    res = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
    return res, run_dir


def test_plan_py_deliverable_report_and_dicom(tmp_path):
    res, run = _run(tmp_path, "dlv", "export_dicom=true", "sequencer=step_and_shoot",
                    "force_export=true")
    assert res.returncode == 0, res.stderr[-3000:]
    with open(run / "goal_report.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and {"achieved", "met", "optimized_achieved", "optimized_met",
                     "sequenced_achieved"} <= set(rows[0])
    doc = json.loads((run / "goal_report.json").read_text())
    dlv = doc["deliverable"]
    assert dlv["delivery_mode"] == "step_and_shoot" and dlv["machine"] == "atp_mlc120"
    assert dlv["mu_per_fraction_sequenced"] > 0 and dlv["violations"] == []
    names = sorted(p.name for p in (run / "dicom").iterdir())
    assert names == ["CT", "RD_toy.dcm", "RP_toy.dcm", "RS_toy.dcm"]
    with np.load(run / "plan.npz") as z:
        assert {"fluence", "dose_gy", "optimized_dose_gy", "deliverable_fluence"} <= set(z)
    seq = json.loads((run / "sequence.json").read_text())
    assert len(seq["beams"]) == 9 and all(b["technique"] == "step_and_shoot"
                                          for b in seq["beams"])
    for png in ("dvh.png", "fluence.png"):
        assert (run / png).read_bytes()[:4] == b"\x89PNG"
    assert "clinically acceptable" not in (run / "goal_report.json").read_text().lower()


def test_plan_py_fluence_only(tmp_path):
    res, run = _run(tmp_path, "flu", "deliverable=false")
    assert res.returncode == 0, res.stderr[-3000:]
    assert (run / "goal_report.csv").is_file() and not (run / "sequence.json").exists()
    with open(run / "goal_report.csv") as fh:
        assert "optimized_achieved" not in next(csv.DictReader(fh))


def test_plan_py_refuses_the_export_of_a_plan_that_breaks_a_p1_goal(tmp_path):
    # the NPC list's second goal is the cord's P1 limit: 1 Gy cannot be met
    res, run = _run(tmp_path, "refused", "export_dicom=true", "site.goals.1.value=1")
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "export refused" in out and "spinal_cord" in out
    assert (run / "goal_report.csv").is_file()  # the report says why
    assert not (run / "dicom").exists()
    assert not [p for p in run.iterdir() if p.name.startswith(".dicom")]
