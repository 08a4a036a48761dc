"""Planning-time log (issue 17 item 5): WorkflowLog, workflow.csv, the sweep aggregation."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from atp.evaluation.workflow import COLUMNS, WorkflowLog, read_workflow, summarize_workflow
from atp.sweep_summary import read_table, summarize_sweep
from atp.viz import plot_workflow

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _two_cases(institution="A"):
    """Case a: 2 s prediction, 10 s matrix, 30 s cold + 12 s warm optimization;
    case b: 4 s, 20 s, 50 s cold, 6 s sequencing."""
    log = WorkflowLog(site="lung", institution=institution, plan="ATP")
    for case, pred, beams, opts, seq in (("a", 2, 10, [(30, None), (12, "warm")], None),
                                         ("b", 4, 20, [(50, None)], 6)):
        log.record(case, "prediction", pred)
        log.record(case, "beams_and_matrix", beams)
        for t, start in opts:
            log.record(case, "optimization", t, start=start)
        if seq:
            log.record(case, "sequencing", seq)
    return log


def test_rounds_are_numbered_with_their_start():
    log = _two_cases()
    opt = [r for r in log.rows if r["step"] == "optimization"]
    assert [(r["case"], r["round"], r["start"]) for r in opt] == [
        ("a", 1, "cold"), ("a", 2, "warm"), ("b", 1, "cold")]
    assert log.rounds("a") == 2 and log.rounds("a", start="warm") == 1
    with pytest.raises(ValueError, match="round 2 needs start"):
        log.record("b", "optimization", 3.0)  # a re-optimization must say cold or warm
    with pytest.raises(ValueError, match="step must be one of"):
        log.record("b", "tuning", 1.0)
    with pytest.raises(ValueError, match="wall_s"):
        log.record("b", "export", -1.0)
    with pytest.raises(ValueError, match="optimization rounds only"):
        log.record("b", "export", 1.0, start="warm")


def test_timed_records_only_finished_steps():
    log = WorkflowLog()
    with log.timed("c", "export"):
        pass
    with pytest.raises(RuntimeError), log.timed("c", "prediction"):
        raise RuntimeError("failed")
    assert [r["step"] for r in log.rows] == ["export"] and log.rows[0]["wall_s"] >= 0.0


def test_write_and_read_back(tmp_path):
    log = _two_cases()
    path = log.write(tmp_path / "run")  # a folder: workflow.csv inside
    assert path == tmp_path / "run" / "workflow.csv"
    assert path.read_text().splitlines()[0] == ",".join(COLUMNS)
    assert not list((tmp_path / "run").glob(".*tmp"))  # the atomic write left no temp file
    back = read_workflow(tmp_path / "run")
    assert back.rows == log.rows
    path.write_text("case,step\na,prediction\n")
    with pytest.raises(ValueError, match="workflow.csv: not a workflow log"):
        read_workflow(path)
    path.write_text(",".join(COLUMNS) + "\na,lung,A,ATP,tuning,,,1.0\n")
    with pytest.raises(ValueError, match="line 2"):
        read_workflow(path)


def test_summary_by_hand():
    rows = {(r["group"], r["step"]): r for r in summarize_workflow(_two_cases().rows)}
    g = "lung @ A"
    assert rows[(g, "prediction")]["mean_s"] == pytest.approx(3.0)
    assert rows[(g, "beams_and_matrix")]["mean_s"] == pytest.approx(15.0)
    # optimization per case: a 30 + 12 = 42 s, b 50 s -> mean 46, median 46, IQR 44-48
    opt = rows[(g, "optimization")]
    assert (opt["mean_s"], opt["median_s"], opt["q1_s"], opt["q3_s"]) == \
        pytest.approx((46.0, 46.0, 44.0, 48.0))
    assert rows[(g, "sequencing")]["mean_s"] == pytest.approx(3.0)  # 0 s for case a
    assert (g, "export") not in rows  # no case logged an export
    r = rows[(g, "rounds")]
    assert (r["mean_rounds"], r["max_rounds"], r["cold_rounds"], r["warm_rounds"]) == \
        (1.5, 2, 2, 1)


def test_stacked_bar_figure(tmp_path):
    from atp.viz import save_figure

    fig = plot_workflow(summarize_workflow(_two_cases().rows + _two_cases("C").rows))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["lung @ A", "lung @ C"]
    # the stacks end at the mean total per case: 3 + 15 + 46 + 3 = 67 s
    ends = max(p.get_x() + p.get_width() for p in ax.patches)
    assert ends == pytest.approx(67.0)
    save_figure(fig, tmp_path / "w.png")
    assert (tmp_path / "w.png").read_bytes()[:8] == PNG_MAGIC


def _job(root, name, num, overrides, log):
    job = root / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "hydra.yaml").write_text(f"hydra:\n  job:\n    num: {num}\n")
    (job / "job_status.json").write_text(json.dumps(
        {"status": "COMPLETED", "overrides": overrides, "wall_s": 1.0}))
    log.write(job / "plans" / "case_a")  # anywhere under the job folder
    return job


def test_sweep_summary_aggregates_every_workflow_csv(tmp_path):
    sweep = tmp_path / "sweep"
    _job(sweep, "0_lung_A", 0, ["institution=A"], _two_cases("A"))
    _job(sweep, "1_lung_C", 1, ["institution=C"], _two_cases("C"))
    WorkflowLog(site="lung", institution="C").write(sweep / "summary")  # ignored
    result = summarize_sweep(sweep)
    out = result["dir"]
    rows = read_table(out / "workflow.csv")
    assert len(rows) == 2 * len(_two_cases().rows)
    assert {r["job"] for r in rows} == {"institution=A", "institution=C"}
    steps = read_table(out / "workflow_steps.csv")
    opt = {r["group"]: r["mean_s"] for r in steps if r["step"] == "optimization"}
    assert opt == {"lung @ A": pytest.approx(46.0), "lung @ C": pytest.approx(46.0)}
    assert (out / "workflow.png").read_bytes()[:8] == PNG_MAGIC


def test_sweep_summary_command_groups_repeated_settings_by_job(tmp_path):
    sweep = tmp_path / "sweep"  # a tolerance sweep: same site and institution twice
    _job(sweep, "0_lung_C", 0, ["+tolerance.lungs=0"], _two_cases("C"))
    _job(sweep, "1_lung_C", 1, ["+tolerance.lungs=10"], _two_cases("C"))
    res = subprocess.run([sys.executable, "-m", "atp.sweep_summary", str(sweep)],
                         capture_output=True, text=True, check=True)
    assert "2 jobs" in res.stdout
    steps = read_table(sweep / "summary" / "workflow_steps.csv")
    assert {r["group"] for r in steps} == {"tolerance.lungs=0", "tolerance.lungs=10"}
    rounds = [r for r in steps if r["step"] == "rounds"]
    assert [r["cases"] for r in rounds] == [2, 2]  # cases of the two jobs kept apart
