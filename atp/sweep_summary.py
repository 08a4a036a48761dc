"""One table and one figure per sweep, from the per-job outputs of a Hydra multirun.

A job folder is a sub-folder of the sweep folder with a ``.hydra/`` folder. Its status
comes from ``job_status.json`` (see `atp.sweeps`); a job without one never finished.
Only ``COMPLETED`` jobs contribute results:

- evaluation jobs (``tables/endpoints.csv``): endpoints, goals and timing of every job
  are pooled, and the ATP-vs-comparator statistics and criteria pass rates are recomputed per
  job group (the institution, or the job's varying overrides when institutions repeat,
  e.g. in a tolerance sweep), with a Fig. 4-style dot plot and an HTML report;
- training jobs (``metrics.json``): one row of final metrics per job and a bar chart;
- planning jobs (``goal_report.csv``): every goal of every job and goals met per job;
- planning-time logs (``workflow.csv`` anywhere under the sweep, written by ``plan.py``
  and ``evaluate.py``): pooled with their job, the mean time per step per case and the
  optimization rounds per group, and a Fig. 7-style stacked bar chart.

Everything lands in ``<sweep_dir>/summary/``. This module reads files only (no Hydra).
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from atp.evaluation.compare import (
    compare_plans,
    compare_to_prediction,
    goal_pass_rates,
    write_table,
)
from atp.evaluation.families import bonferroni_families
from atp.viz import bar_chart, save_figure

SUMMARY_DIR = "summary"
_TEXT_COLUMNS = {"case", "patient_id", "site", "institution", "plan", "metric", "unit",
                 "kind", "label", "roi", "op", "source", "role", "job"}


def _cell(key: str, text: str):
    if key in _TEXT_COLUMNS or text == "":
        return text
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_table(path: str | Path) -> list[dict]:
    """Rows of a CSV written by `write_table`, with booleans and numbers parsed.

    Parameters
    ----------
    path : str or Path
        The CSV file.

    Returns
    -------
    list of dict
        One dict per row; text columns (case, site, plan, ...) and empty cells stay str.
    """
    with open(path, newline="") as fh:
        return [{k: _cell(k, v) for k, v in row.items()} for row in csv.DictReader(fh)]


def job_folders(sweep_dir: str | Path) -> list[Path]:
    """Job folders of a sweep (those with a ``.hydra`` folder), in job order.

    Parameters
    ----------
    sweep_dir : str or Path
        The multirun's sweep folder.

    Returns
    -------
    list of Path
        Sorted by Hydra job number (unreadable ones last), then name; ``summary/`` left out.
    """
    root = Path(sweep_dir)
    jobs = [p for p in root.iterdir() if p.is_dir() and (p / ".hydra").is_dir()
            and p.name != SUMMARY_DIR]
    return sorted(jobs, key=lambda p: (_job_num(p), p.name))


def _job_num(path: Path) -> int:
    try:
        return int(yaml.safe_load((path / ".hydra" / "hydra.yaml").read_text())
                   ["hydra"]["job"]["num"])
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError):
        return sys.maxsize


def _job_record(path: Path) -> dict:
    status_path = path / "job_status.json"
    status = json.loads(status_path.read_text()) if status_path.is_file() else {}
    overrides = status.get("overrides")
    if overrides is None:
        ov = path / ".hydra" / "overrides.yaml"
        overrides = yaml.safe_load(ov.read_text()) if ov.is_file() else []
    return {"job": path.name, "dir": str(path), "status": status.get("status", "UNFINISHED"),
            "overrides": list(overrides or []), "wall_s": status.get("wall_s"),
            "error": status.get("error") or ""}


def _labels(jobs: Sequence[dict]) -> None:
    """Label each job by the overrides that differ between jobs (``k=v,...``)."""
    keyed = [dict(o.split("=", 1) for o in j["overrides"] if "=" in o) for j in jobs]
    keys = sorted({k for d in keyed for k in d})
    varying = [k for k in keys if len({d.get(k) for d in keyed}) > 1]
    for j, d in zip(jobs, keyed, strict=True):
        parts = [f"{k.lstrip('+')}={d[k]}" for k in varying if k in d]
        j["label"] = ",".join(parts) or j["job"]


def summarize_sweep(sweep_dir: str | Path) -> dict:
    """Write ``<sweep_dir>/summary/`` and return ``{"dir", "jobs", "kind"}``.

    Parameters
    ----------
    sweep_dir : str or Path
        The multirun's sweep folder.

    Returns
    -------
    dict
        ``dir`` (the summary folder), ``jobs`` (one record per job folder) and ``kind``
        (``"evaluation"``, ``"training"``, ``"planning"`` or ``"none"``).
    """
    root = Path(sweep_dir)
    out = root / SUMMARY_DIR
    jobs = [_job_record(p) for p in job_folders(root)]
    _labels(jobs)
    write_table([{k: (" ".join(v) if k == "overrides" else v) for k, v in j.items()}
                 for j in jobs], out / "jobs.csv")
    done = [j for j in jobs if j["status"] == "COMPLETED"]
    workflow = summarize_workflow_logs(root, jobs, out)
    kind = "none"
    if any((Path(j["dir"]) / "tables" / "endpoints.csv").is_file() for j in done):
        kind = "evaluation"
        _summarize_evaluations(done, jobs, out, workflow=workflow)
    elif any((Path(j["dir"]) / "metrics.json").is_file() for j in done):
        kind = "training"
        _summarize_training(done, out)
    elif any((Path(j["dir"]) / "goal_report.csv").is_file() for j in done):
        kind = "planning"
        _summarize_plans(done, out)
    return {"dir": out, "jobs": jobs, "kind": kind}


def summarize_workflow_logs(root: Path, jobs: Sequence[dict], out: Path) -> dict | None:
    """Pool every ``workflow.csv`` under ``root`` into ``out/workflow*.csv`` and a figure.

    Rows get their job's label (the folder's first part under ``root`` when it is a job);
    groups are (site, institution), or the job labels when those repeat. Returns a report
    section, or None when the sweep has no log.

    Parameters
    ----------
    root : Path
        The sweep folder, searched recursively (``summary/`` left out).
    jobs : sequence of dict
        Job records (``dir``, ``job``, optional ``label``).
    out : Path
        The summary folder written to.

    Returns
    -------
    dict or None
        A `write_html_report` section (heading, figures, tables), or None.
    """
    from atp.evaluation.workflow import find_workflow_logs, read_workflow, summarize_workflow
    from atp.viz import plot_workflow

    logs = find_workflow_logs(root, exclude=(SUMMARY_DIR,))
    if not logs:
        return None
    label = {Path(j["dir"]).name: j.get("label", j["job"]) for j in jobs}
    rows = []
    for path in logs:
        job = path.relative_to(root).parts[0] if len(path.relative_to(root).parts) > 1 else ""
        rows += [{"job": label.get(job, job), **r} for r in read_workflow(path).rows]
    keys = {(r["site"], r["institution"]) for r in rows}
    per_job = {(r["job"], r["site"], r["institution"]) for r in rows}
    by = ("job",) if len(per_job) > len(keys) else ("site", "institution")
    summary = summarize_workflow(rows, by=by)
    write_table(rows, out / "workflow.csv")
    write_table(summary, out / "workflow_steps.csv")
    save_figure(plot_workflow(summary, title="mean planning time per case and step"),
                out / "workflow.png")
    return {"heading": "Planning time", "figures": [(
        "mean wall time per case and step (stacked), optimization rounds", out /
        "workflow.png")], "tables": [("time per step per case (s) and rounds", summary)]}


def _summarize_evaluations(done: Sequence[dict], jobs: Sequence[dict], out: Path, *,
                           workflow: dict | None = None) -> None:
    from atp.evaluation.html import write_html_report
    from atp.viz.evaluation import dot_plot_relative_differences

    tables = [{name: read_table(Path(j["dir"]) / "tables" / f"{name}.csv")
               for name in ("endpoints", "goals_per_case", "timing")} for j in done]
    insts = [str(t["goals_per_case"][0]["institution"]) if t["goals_per_case"] else j["job"]
             for j, t in zip(done, tables, strict=True)]
    by_label = len(set(insts)) < len(insts)  # e.g. a tolerance sweep at one institution
    endpoints, goals, timing = [], [], []
    for j, inst, t in zip(done, insts, tables, strict=True):
        group = j["label"] if by_label else inst
        for row in t["endpoints"] + t["goals_per_case"]:
            row["institution"] = group
        endpoints += [{"job": j["label"], **r} for r in t["endpoints"]]
        goals += [{"job": j["label"], **r} for r in t["goals_per_case"]]
        timing += [{"job": j["label"], **r} for r in t["timing"]]
    plans = {str(g["plan"]) for g in goals}
    comparator = next(iter(sorted(plans - {"ATP"})), "comparator")
    summary = {"atp_vs_comparator": compare_plans(endpoints, new="ATP", reference=comparator),
               "atp_vs_prediction": compare_to_prediction(endpoints, plan="ATP"),
               "criteria_met": goal_pass_rates(goals), "endpoints": endpoints,
               "timing": timing}
    summary["bonferroni_m"] = bonferroni_families(
        (f"ATP vs {comparator}", summary["atp_vs_comparator"]),
        ("ATP vs prediction", summary["atp_vs_prediction"]))
    for name, rows in summary.items():
        write_table(rows, out / f"{name}.csv")
    groups = list(dict.fromkeys(str(r["institution"]) for r in goals))
    rates = {plan: [_rate(summary["criteria_met"], g, plan) for g in groups]
             for plan in ("ATP", comparator)}
    save_figure(bar_chart(groups, rates, title="criteria met per job (protocol goal list)",
                           ylabel="criteria pass rate"), out / "criteria_met.png")
    dots = [r for r in summary["atp_vs_comparator"] if r["institution"] != "all"]
    save_figure(dot_plot_relative_differences(dots, title=f"ATP vs {comparator} per job "
                                                          "group"),
                out / "atp_vs_comparator.png")
    write_html_report(out / "report.html", title="ATP evaluation sweep", sections=[
        {"heading": "Jobs", "tables": [("jobs", [{k: j[k] for k in (
            "job", "label", "status", "wall_s", "error")} for j in jobs])]},
        {"heading": "Criteria met", "figures": [("criteria pass rate per group",
                                                 out / "criteria_met.png")],
         "tables": [("criteria met (both plans judged on the protocol goal list)",
                     summary["criteria_met"])]},
        {"heading": f"ATP vs {comparator}", "figures": [(
            "mean relative difference with 95 % CI (positive = ATP better)",
            out / "atp_vs_comparator.png")],
         "tables": [("paired comparison", summary["atp_vs_comparator"])]},
        {"heading": "ATP vs prediction", "tables": [
            ("organ endpoints (p values corrected over the site's endpoints)",
             summary["atp_vs_prediction"]),
            ("Bonferroni m per family", summary["bonferroni_m"])]},
        *([workflow] if workflow else []),
    ])


def _rate(rows: Sequence[Mapping], group: str, plan: str) -> float:
    for r in rows:
        if r["institution"] == group and r["plan"] == plan:
            return float(r["criteria_pass_rate"])
    return math.nan


def _summarize_training(done: Sequence[dict], out: Path) -> None:
    rows = []
    for j in done:
        path = Path(j["dir"]) / "metrics.json"
        if path.is_file():
            rows.append({"job": j["label"], **json.loads(path.read_text())})
    write_table(rows, out / "metrics.csv")
    keys = [k for k in dict.fromkeys(k for r in rows for k in r)
            if ("mae" in k or "score" in k) and k != "job"][:4]
    if keys:
        save_figure(bar_chart([r["job"] for r in rows],
                               {k: [r.get(k, math.nan) for r in rows] for k in keys},
                               title="final metrics per job", ylabel="Gy"),
                    out / "metrics.png")


def _summarize_plans(done: Sequence[dict], out: Path) -> None:
    rows, per_job = [], {}
    for j in done:
        path = Path(j["dir"]) / "goal_report.csv"
        if path.is_file():
            report = read_table(path)
            rows += [{"job": j["label"], **r} for r in report]
            per_job[j["label"]] = sum(bool(r["met"]) for r in report) / max(len(report), 1)
    write_table(rows, out / "goals.csv")
    save_figure(bar_chart(list(per_job), {"goals met": list(per_job.values())},
                           title="share of goals met per job", ylabel="share"),
                out / "goals_met.png")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m atp.sweep_summary <sweep_dir>")
    result = summarize_sweep(sys.argv[1])
    print(f"{result['kind']} sweep, {len(result['jobs'])} jobs -> {result['dir']}")
