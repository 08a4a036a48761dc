"""Write an evaluation run: per-case and summary tables, figures and report.html."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from atp.evaluation.compare import (
    compare_plans,
    compare_to_prediction,
    goal_pass_rates,
    preference_proxy,
    write_table,
)
from atp.evaluation.figures import (
    dose_difference_slices,
    dot_plot_relative_differences,
    dot_plot_vs_prediction,
)
from atp.evaluation.html import write_html_report
from atp.viz import plot_dvh_overlay, save_figure


def tuning_score(goal_rows: Sequence[dict], comparison: Sequence[dict] = ()) -> dict:
    """Criteria pass rate of ATP, subject to target coverage (the Optuna objective).

    Both plans are judged on the protocol goal list. The score is ATP's criteria pass
    rate, plus a tie-breaker worth less than half a goal of one case: the mean relative
    organ-dose improvement of ATP over MNL (``comparison`` rows of kind ``organ``, clipped
    to +-100 %), scaled by ``0.5 / goals``. A plan set where ATP meets fewer target goals
    than MNL scores 1 lower, so it ranks below every one that keeps coverage.
    """
    def share(plan: str, key: str) -> float:
        rows = [g for g in goal_rows if g["plan"] == plan]
        met = sum(int(g[f"{key}met"]) for g in rows)
        total = sum(int(g[f"{key}total"]) for g in rows)
        return met / total if total else float("nan")

    atp_rows = [g for g in goal_rows if g["plan"] == "ATP" and g["goals_total"]]
    if not atp_rows:
        return {}
    rate = float(np.mean([g["goals_met"] / g["goals_total"] for g in atp_rows]))
    organ = [float(r["mean_rel_diff_pct"]) for r in comparison
             if r.get("kind") == "organ" and np.isfinite(float(r["mean_rel_diff_pct"]))]
    gain = float(np.clip(np.mean(organ), -100.0, 100.0)) / 100.0 if organ else 0.0
    tie = 0.5 / sum(int(g["goals_total"]) for g in atp_rows) * gain
    cov_atp, cov_mnl = share("ATP", "target_goals_"), share("MNL", "target_goals_")
    keeps = not cov_atp < cov_mnl - 1e-9
    score = rate + tie
    return {"atp_criteria_pass_rate": rate, "atp_organ_gain_vs_mnl": gain,
            "atp_target_goals_met_share": cov_atp, "mnl_target_goals_met_share": cov_mnl,
            "tuning_score": score if keeps else score - 1}


def write_evaluation(out_dir: str | Path, results: Sequence, *, site: str, institution: str,
                     n_figures: int = 4) -> dict:
    """Tables, figures and the HTML report of ``results`` (`CaseEvaluation` objects).

    They are written under ``out_dir/.staging`` and moved into place at the end, so an
    interrupted run leaves the previous outputs or none, never a partial set.
    """
    final = Path(out_dir)
    out = final / ".staging"  # everything lands at once, so a failed run leaves nothing
    shutil.rmtree(out, ignore_errors=True)
    rows = [r for ev in results for r in ev.rows]
    goals = [g for ev in results for g in ev.goals]
    voxel = [ev.voxel for ev in results]
    timing = [{"case": ev.case.patient_id, **ev.timing_s} for ev in results]
    tables = {
        "endpoints": rows,
        "atp_vs_mnl": compare_plans(rows, new="ATP", reference="MNL"),
        "atp_vs_prediction": compare_to_prediction(rows, plan="ATP"),
        "criteria_met": goal_pass_rates(goals),
        "goals_per_case": goals,
        "preference_proxy": preference_proxy(rows, new="ATP", reference="MNL"),
        "voxel_vs_prediction": voxel,
        "timing": timing,
    }
    for name, table in tables.items():
        write_table(table, out / "tables" / f"{name}.csv")
    figs = []
    fig_dir = out / "figures"
    path = fig_dir / "atp_vs_mnl.png"
    save_figure(dot_plot_relative_differences(
        tables["atp_vs_mnl"], title=f"{site} @ {institution}: ATP vs MNL"), path)
    figs.append(("ATP vs MNL: mean relative difference with 95 % CI (positive = ATP better)",
                 path))
    path = fig_dir / "atp_vs_prediction.png"
    save_figure(dot_plot_vs_prediction(
        tables["atp_vs_prediction"], title=f"{site} @ {institution}: ATP vs prediction"), path)
    figs.append(("ATP vs prediction: (D_ATP - D_pred) / D_pred per organ endpoint", path))
    case_figs = []
    for ev in list(results)[:n_figures]:
        c = ev.case
        p = fig_dir / f"dvh_{c.patient_id}.png"
        save_figure(plot_dvh_overlay(c, {"ATP": ev.atp.dose_gy, "MNL": ev.mnl.dose_gy,
                                         "prediction": ev.predicted_gy},
                                     title=f"{c.patient_id}: ATP (solid), MNL, prediction"), p)
        case_figs.append((f"{c.patient_id}: DVH", p))
        masks = {n: r.mask for n, r in c.rois.items() if r.role in ("target", "organ")}
        p = fig_dir / f"dose_difference_{c.patient_id}.png"
        save_figure(dose_difference_slices(c.ct_hu, ev.atp.dose_gy, ev.mnl.dose_gy, masks,
                                           spacing_mm=c.spacing_mm, labels=("ATP", "MNL"),
                                           title=f"{c.patient_id}: ATP - MNL"), p)
        case_figs.append((f"{c.patient_id}: ATP, MNL and their difference", p))
    mean_t = {k: float(np.mean([t[k] for t in timing])) for k in timing[0] if k != "case"} \
        if timing else {}
    summary = {"site": site, "institution": institution, "cases": len(results),
               "atp_p1_met_share": float(np.mean([g["p1_met"] for g in goals
                                                  if g["plan"] == "ATP"])) if goals else None,
               **tuning_score(goals, [r for r in tables["atp_vs_mnl"]
                                      if r["institution"] == institution]),
               **{f"mean_{k}": v for k, v in mean_t.items()}}
    write_html_report(out / "report.html", title=f"ATP evaluation: {site} at institution "
                      f"{institution}", sections=[
                          {"heading": "Summary", "tables": [("run", [summary]),
                                                            ("criteria met",
                                                             tables["criteria_met"])]},
                          {"heading": "ATP vs MNL", "figures": figs[:1],
                           "tables": [("paired comparison", tables["atp_vs_mnl"]),
                                      ("preference proxy (not a physician's preference)",
                                       tables["preference_proxy"])]},
                          {"heading": "ATP vs prediction", "figures": figs[1:],
                           "tables": [("organ endpoints", tables["atp_vs_prediction"]),
                                      ("voxel-wise |D_ATP - D_pred| / D_Rx", voxel)]},
                          {"heading": "Cases", "figures": case_figs,
                           "tables": [("timing (s)", timing)]},
                      ])
    for name in ("tables", "figures", "report.html"):
        target = final / name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(out / name, target)
    out.rmdir()
    return summary
