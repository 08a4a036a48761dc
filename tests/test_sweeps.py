"""Multiruns of `evaluate.py` and `plan.py`: launchers, a failing job, Optuna, summaries.

Each test runs the real command line in a subprocess (Hydra's launchers and sweepers
live outside ``compose``) on the tiny lung cohort with one validation case per job.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import yaml
from conftest import REPO_ROOT

from atp.sweep_summary import read_table


def _run(script: str, overrides: list[str], *, timeout: int = 420):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled",
           "HYDRA_FULL_ERROR": "1"}
    return subprocess.run([sys.executable, script, "-m", *overrides], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)


def _evaluate_args(ckpt, data_dir, tmp_path) -> list[str]:
    return ["site=lung", "institution=A", f"ckpt_path={ckpt}", "grid_spacing_mm=12.0",
            "n_patients=3", "max_cases=1", "split=val", "planner.max_iter=25",
            "dvh_figures=0", f"paths.data_dir={data_dir}", f"paths.log_dir={tmp_path}",
            f"hydra.sweep.dir={tmp_path / 'sweep'}"]


def _status(job_dir) -> dict:
    return json.loads((job_dir / "job_status.json").read_text())


def _finite(x) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def test_joblib_two_jobs_and_sweep_summary(tiny_checkpoint, tiny_cohorts, tmp_path):
    res = _run("evaluate.py", [*_evaluate_args(tiny_checkpoint, tiny_cohorts, tmp_path),
                               "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                               "+tolerance.lungs=-20,0"])
    assert res.returncode == 0, res.stderr[-3000:]
    sweep = tmp_path / "sweep"
    jobs = read_table(sweep / "summary" / "jobs.csv")
    assert [j["status"] for j in jobs] == ["COMPLETED", "COMPLETED"]
    assert {j["label"] for j in jobs} == {"tolerance.lungs=-20", "tolerance.lungs=0"}
    rates = read_table(sweep / "summary" / "criteria_met.csv")
    assert {"site", "institution", "plan", "cases", "p1_pass_rate",
            "criteria_pass_rate"} <= set(rates[0])
    groups = {r["institution"] for r in rates}
    assert {"tolerance.lungs=-20", "tolerance.lungs=0"} <= groups
    assert all(_finite(r["criteria_pass_rate"]) for r in rates)
    diffs = read_table(sweep / "summary" / "atp_vs_comparator.csv")
    assert {"metric", "mean_rel_diff_pct", "flag"} <= set(diffs[0])
    assert any(_finite(r["mean_rel_diff_pct"]) for r in diffs)
    for name in ("atp_vs_comparator.png", "criteria_met.png", "report.html"):
        assert (sweep / "summary" / name).is_file(), name
    for job in jobs:  # each job's own evaluation is complete
        assert (sweep / job["job"] / "tables" / "endpoints.csv").is_file()
        assert not (sweep / job["job"] / ".staging").exists()


def test_failing_job_leaves_the_others_complete(tiny_checkpoint, tiny_cohorts, tmp_path):
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(tiny_checkpoint.read_bytes()[:2000])  # a truncated checkpoint
    args = _evaluate_args(f"{tiny_checkpoint},{corrupt}", tiny_cohorts, tmp_path)
    res = _run("evaluate.py", args)
    assert res.returncode != 0  # the sweep reports the failure...
    assert "1 of 2 jobs failed" in res.stdout + res.stderr, res.stderr[-3000:]
    sweep = tmp_path / "sweep"
    good, bad = sorted(p for p in sweep.iterdir() if (p / ".hydra").is_dir())
    assert _status(good)["status"] == "COMPLETED"  # ...after the good job completed
    assert (good / "report.html").is_file() and (good / "tables" / "timing.csv").is_file()
    status = _status(bad)
    assert status["status"] == "FAILED" and "not a readable checkpoint" in status["error"]
    assert not (bad / "tables").exists() and not (bad / "report.html").exists()
    jobs = read_table(sweep / "summary" / "jobs.csv")
    assert [j["status"] for j in jobs] == ["COMPLETED", "FAILED"]
    rates = read_table(sweep / "summary" / "criteria_met.csv")  # from the good job only
    assert {r["cases"] for r in rates} == {1}


def test_submitit_local_job(tiny_checkpoint, tiny_cohorts, tmp_path):
    # institution C (VMAT) re-plans institution A's patients: no cohort is built for C
    args = [a for a in _evaluate_args(tiny_checkpoint, tiny_cohorts, tmp_path)
            if a != "institution=A"]
    res = _run("evaluate.py", [*args, "institution=C", "patients_from=A",
                               "hydra/launcher=submitit_local",
                               "hydra.launcher.timeout_min=10"])
    assert res.returncode == 0, res.stderr[-3000:]
    jobs = read_table(tmp_path / "sweep" / "summary" / "jobs.csv")
    assert [j["status"] for j in jobs] == ["COMPLETED"]
    assert not (tiny_cohorts / "synthetic" / "lung" / "C_12mm_seed2020").exists()
    rates = read_table(tmp_path / "sweep" / "summary" / "criteria_met.csv")
    assert {r["institution"] for r in rates} >= {"C"}
    timing = read_table(tmp_path / "sweep" / jobs[0]["job"] / "tables" / "timing.csv")
    assert all(_finite(timing[0][k]) for k in ("prediction_s", "influence_s",
                                                "optimization_s", "end_to_end_s"))


def test_tune_tolerances_with_optuna(tiny_checkpoint, tiny_cohorts, tmp_path):
    res = _run("evaluate.py", [*_evaluate_args(tiny_checkpoint, tiny_cohorts, tmp_path),
                               "evaluation=tune_tolerances", "hydra.sweeper.n_trials=2"])
    assert res.returncode == 0, res.stderr[-3000:]
    best = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert set(best["best_params"]) == {"tolerance.lungs", "tolerance.heart",
                                        "tolerance.esophagus"}
    assert -2.0 <= float(best["best_value"]) <= 1.0  # a pass rate, minus 1 if infeasible
    jobs = read_table(tmp_path / "sweep" / "summary" / "jobs.csv")
    assert len(jobs) == 2 and all(j["status"] == "COMPLETED" for j in jobs)
    for j in jobs:
        result = _status(tmp_path / "sweep" / j["job"])["result"]
        assert _finite(result)
