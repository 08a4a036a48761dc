"""`python review.py` end to end: prepare -> simulate -> analyze on a one-case run."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO_ROOT
from review_helpers import write_run


def _run(*args, tmp_path):
    cmd = [sys.executable, "review.py", *args, f"paths.log_dir={tmp_path / 'logs'}"]
    return subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)


def test_review_py_three_steps(tmp_path):
    run = write_run(tmp_path / "eval", site="lung", institution="A", n=1)
    (run / "report.html").write_text("<html><body><h1>evaluation</h1></body></html>")
    rv = tmp_path / "rv"
    common = [f"review_dir={rv}", "review.figure_dpi=40"]
    res = _run("step=prepare", f"runs={run}", "review.reviewers=[A1,B2]", *common,
               tmp_path=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert sorted(p.name for p in (rv / "packets").iterdir()) == ["review_A1.html",
                                                                  "review_B2.html"]
    key = json.loads((rv / "key" / "key.json").read_text())
    assert key["seed"] == 2020 and [r["id"] for r in key["reviewers"]] == ["A1", "B2"]
    res = _run("step=simulate", *common, tmp_path=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    res = _run("step=analyze", f"answers_dir={rv / 'answers_simulated'}", *common,
               tmp_path=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((rv / "analysis_simulated" / "summary.json").read_text())
    assert summary["simulated"] and summary["reviewers"] == 2 and summary["cases"] == 1
    assert "SIMULATED REVIEWERS" in (run / "report.html").read_text()
