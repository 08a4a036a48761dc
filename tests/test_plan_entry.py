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
