"""`python plan.py` end to end on a small phantom, with the real configs and engine."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO_ROOT
from phantoms import toy_case

from atp.cases import save_case


def test_plan_py_writes_plan_report_and_figure(tmp_path):
    case = toy_case(n=32, nz=12, spacing_mm=4.0)
    path = save_case(case, tmp_path / "toy.npz")
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "plan.py", f"case={path}", "site=npc", "institution=A",
           f"paths.log_dir={tmp_path / 'logs'}", f"paths.data_dir={tmp_path / 'data'}",
           f"hydra.run.dir={run_dir}", "+tolerance.parotid_l=-10", "planner.max_iter=60",
           "prediction=null"]
    # the toy case has no dose: plan.py must refuse to invent a prediction
    res = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
    assert res.returncode != 0 and "no prediction" in (res.stderr + res.stdout)

    import numpy as np

    pred = np.where(case.body_mask, 30.0, 0.0).astype(np.float32)
    pred[case.target_union()] = 60.0
    np.save(tmp_path / "pred.npy", pred)
    cmd[-1] = f"prediction={tmp_path / 'pred.npy'}"
    res = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    for name in ("plan.npz", "goal_report.csv", "goal_report.json", "dvh.png"):
        assert (run_dir / name).is_file(), name
    report = json.loads((run_dir / "goal_report.json").read_text())
    assert report["institution"] == "A" and report["tolerances"] == {"parotid_l": -10.0}
    parotid = next(g for g in report["goals"] if g["roi"] == "parotid_l")
    # predicted mean 30 Gy x (1 - 10 %) = 27 Gy
    assert parotid["source"] == "predicted" and abs(parotid["requested"] - 27.0) < 1e-6
    assert report["mu_per_fraction"] > 0
    assert (run_dir / "dvh.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "clinically acceptable" not in (run_dir / "goal_report.json").read_text().lower()
    # the influence matrix was cached for the next run
    assert list((tmp_path / "data" / "cache").glob("influence_toy_*.npz"))


def _toy_with_prediction(tmp_path):
    import numpy as np

    case = toy_case(n=32, nz=12, spacing_mm=4.0)
    path = save_case(case, tmp_path / "toy.npz")
    pred = np.where(case.body_mask, 30.0, 0.0).astype(np.float32)
    pred[case.target_union()] = 60.0
    np.save(tmp_path / "pred.npy", pred)
    return [sys.executable, "plan.py", f"case={path}", "site=npc", "institution=A",
            f"prediction={tmp_path / 'pred.npy'}", f"paths.log_dir={tmp_path / 'logs'}",
            f"paths.data_dir={tmp_path / 'data'}", "planner.max_iter=60"]


def test_plan_py_warm_starts_from_a_previous_run_folder(tmp_path):
    base = _toy_with_prediction(tmp_path)
    first, second = tmp_path / "first", tmp_path / "second"
    res = subprocess.run([*base, f"hydra.run.dir={first}"], cwd=REPO_ROOT,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    # the refinement loop: a stricter parotid goal, re-optimized from the first plan
    res = subprocess.run([*base, f"hydra.run.dir={second}", "+tolerance.parotid_l=-10",
                          f"warm_start={first}"], cwd=REPO_ROOT, capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads((second / "goal_report.json").read_text())
    assert report["warm_start"] == str(first) and report["evaluations"] > 0
    # the planning-time log continues the series: round 1 cold, round 2 warm (Fig. 7)
    from atp.evaluation.workflow import read_workflow

    rounds = [r for r in read_workflow(second).rows if r["step"] == "optimization"]
    assert [(r["round"], r["start"]) for r in rounds] == [(1, "cold"), (2, "warm")]
    assert {r["step"] for r in read_workflow(first).rows} == {
        "prediction", "beams_and_matrix", "optimization", "sequencing"}  # deliverable=true
    assert json.loads((second / "job_status.json").read_text())["status"] == "COMPLETED"
    # a plan of other beams (institution B: VMAT) cannot seed this one: the file is named
    res = subprocess.run([*base, f"hydra.run.dir={tmp_path / 'third'}", "institution=B",
                          f"warm_start={first}"], cwd=REPO_ROOT, capture_output=True,
                         text=True)
    assert res.returncode != 0 and "plan.npz" in res.stderr and "beamlets" in res.stderr


def test_plan_py_tolerance_sweep_is_summarized(tmp_path):
    from atp.sweep_summary import read_table

    sweep = tmp_path / "sweep"
    cmd = _toy_with_prediction(tmp_path)
    res = subprocess.run([*cmd[:2], "-m", *cmd[2:], f"hydra.sweep.dir={sweep}",
                          "+tolerance.parotid_l=-20,0"], cwd=REPO_ROOT, capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    goals = read_table(sweep / "summary" / "goals.csv")
    assert {g["job"] for g in goals} == {"tolerance.parotid_l=-20", "tolerance.parotid_l=0"}
    parotid = {g["job"]: g["requested"] for g in goals if g["roi"] == "parotid_l"}
    # predicted mean 30 Gy: x 0.8 = 24 Gy and x 1.0 = 30 Gy
    assert parotid == {"tolerance.parotid_l=-20": 24.0, "tolerance.parotid_l=0": 30.0}
    assert (sweep / "summary" / "goals_met.png").is_file()
