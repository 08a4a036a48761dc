"""Write an evaluation run: per-case and summary tables, figures and report.html.

The report is assembled from `ITEMS`, a list of table and figure specs (file name,
report section, caption, builder). Adding a table or a figure to every evaluation is one
entry; a builder receives the `EvaluationContext` (the evaluated cases and the tables
built so far) and returns rows (a table) or a matplotlib figure. Per-case figures are
drawn for the first ``n_figures`` cases.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from atp.dosimetry import cohort_scores, dvh_score
from atp.evaluation.compare import (
    compare_plans,
    compare_to_prediction,
    goal_pass_rates,
    preference_proxy,
    write_table,
)
from atp.evaluation.criteria import criteria_summary
from atp.evaluation.delivery import delivery_summary
from atp.evaluation.families import bonferroni_families
from atp.evaluation.html import write_html_report
from atp.evaluation.plan_store import PLANS_DIR, save_case_plans
from atp.viz import (
    bar_chart,
    dose_difference_slices,
    dot_plot_relative_differences,
    dot_plot_vs_prediction,
    plot_dvh_overlay,
    save_figure,
)

ATP = "ATP"


def tuning_score(goal_rows: Sequence[dict], comparison: Sequence[dict] = (), *,
                 reference: str = "MNL-replan") -> dict:
    """Criteria pass rate of ATP, subject to target coverage (the Optuna objective).

    Both plans are judged on the protocol goal list. The score is ATP's criteria pass
    rate, plus a tie-breaker worth less than half a goal of one case: the mean relative
    organ-dose improvement of ATP over the ``reference`` plan (``comparison`` rows of
    kind ``organ``, clipped to +-100 %), scaled by ``0.5 / goals``. A plan set where ATP
    meets fewer target goals than the reference scores 1 lower, so it ranks below every
    one that keeps coverage.

    Parameters
    ----------
    goal_rows : sequence of dict
        Per (case, plan) goal counts: ``plan, goals_met, goals_total, target_goals_met,
        target_goals_total``.
    comparison : sequence of dict, optional
        `compare_plans` rows of ATP vs ``reference`` (``kind``, ``mean_rel_diff_pct``).
    reference : str, optional
        The comparator's plan label; default ``"MNL-replan"``.

    Returns
    -------
    dict
        ``atp_criteria_pass_rate``, the organ gain (fraction), both target-goal shares and
        ``tuning_score``; empty when ATP has no goals.
    """
    def share(plan: str, key: str) -> float:
        rows = [g for g in goal_rows if g["plan"] == plan]
        met = sum(int(g[f"{key}met"]) for g in rows)
        total = sum(int(g[f"{key}total"]) for g in rows)
        return met / total if total else float("nan")

    atp_rows = [g for g in goal_rows if g["plan"] == ATP and g["goals_total"]]
    if not atp_rows:
        return {}
    rate = float(np.mean([g["goals_met"] / g["goals_total"] for g in atp_rows]))
    organ = [float(r["mean_rel_diff_pct"]) for r in comparison
             if r.get("kind") == "organ" and np.isfinite(float(r["mean_rel_diff_pct"]))]
    gain = float(np.clip(np.mean(organ), -100.0, 100.0)) / 100.0 if organ else 0.0
    tie = 0.5 / sum(int(g["goals_total"]) for g in atp_rows) * gain
    cov_atp, cov_ref = share(ATP, "target_goals_"), share(reference, "target_goals_")
    keeps = not cov_atp < cov_ref - 1e-9
    score = rate + tie
    key = slug(reference)
    return {"atp_criteria_pass_rate": rate, f"atp_organ_gain_vs_{key}": gain,
            "atp_target_goals_met_share": cov_atp, f"{key}_target_goals_met_share": cov_ref,
            "tuning_score": score if keeps else score - 1}


def slug(label: str) -> str:
    """A plan label as a key fragment: ``MNL-replan`` -> ``mnl_replan``.

    Parameters
    ----------
    label : str
        Plan label.

    Returns
    -------
    str
        Lower case, non-alphanumerics as ``_``, no leading or trailing ``_``.
    """
    return "".join(c if c.isalnum() else "_" for c in label.lower()).strip("_")


@dataclass
class EvaluationContext:
    """What the builders see: the evaluated cases and the tables built so far."""

    results: Sequence
    site: str
    institution: str
    comparator: str
    tables: dict[str, list[dict]] = field(default_factory=dict)

    def rows(self) -> list[dict]:
        """Per-case metric rows of every result, in order.

        Returns
        -------
        list of dict
            The ``rows`` of every result, concatenated.
        """
        return [r for ev in self.results for r in ev.rows]

    def goals(self) -> list[dict]:
        """Per-case goal rows of every result, in order.

        Returns
        -------
        list of dict
            The ``goals`` of every result, concatenated.
        """
        return [g for ev in self.results for g in ev.goals]


@dataclass(frozen=True)
class ReportItem:
    """One table or figure of the evaluation report.

    ``name`` is the file stem (``tables/<name>.csv`` or ``figures/<name>.png``; per-case
    items get ``_<patient id>`` appended), ``section`` the report heading it goes under
    and ``caption`` its caption (``{comparator}`` and ``{case}`` are filled in).
    ``build(ctx)`` returns rows (``table``), a figure (``figure``, None to skip) or a
    paragraph (``text``); a per-case item's ``build(ctx, ev)`` gets the `CaseEvaluation`
    too.
    """

    name: str
    section: str
    caption: str
    build: Callable
    kind: str = "table"  # "figure" or "text"
    per_case: bool = False


SECTIONS = ("Summary", "Criteria sets", "ATP vs {comparator}", "ATP vs prediction", "Cases")


def _comparison(ctx):
    return compare_plans(ctx.rows(), new=ATP, reference=ctx.comparator)


def _provenance(ctx) -> str:
    engines = sorted({(d["plan"], d["engine"]) for ev in ctx.results for d in ev.doses})
    text = "Doses and the engines that made them: " + "; ".join(
        f"{plan}: {engine}" for plan, engine in engines) + "."
    mu_known = [d.get("mu_known") for ev in ctx.results for d in ev.doses
                if d["plan"] == ctx.comparator]
    if not all(mu_known):
        text += (f" The {ctx.comparator} plan's MU is unknown for "
                 f"{mu_known.count(False)} of {len(mu_known)} cases (no RTPLAN): MU is "
                 "compared only where it is known.")
    notes = [n for ev in ctx.results for n in ev.notes]
    return "\n\n".join([text, *notes])


def _prediction_scores(ctx):
    scored = [ev for ev in ctx.results if ev.prediction_scores]
    rows = [{"case": ev.case.patient_id,
             "dose_score_gy": ev.prediction_scores["dose_score_gy"],
             "dvh_score_gy": dvh_score(ev.prediction_scores["reference_metrics"],
                                       ev.prediction_scores["predicted_metrics"])}
            for ev in scored]
    if scored:
        pooled = cohort_scores([ev.prediction_scores["dose_score_gy"] for ev in scored],
                               [ev.prediction_scores["reference_metrics"] for ev in scored],
                               [ev.prediction_scores["predicted_metrics"] for ev in scored])
        rows.append({"case": "all", "dose_score_gy": pooled["dose_score"],
                     "dvh_score_gy": pooled["dvh_score"]})
    return rows


def _criteria_summary(ctx):
    rows = [r for ev in ctx.results for r in ev.criteria]
    return criteria_summary(rows, new=ATP, reference=ctx.comparator) + \
        criteria_summary(rows, new=ATP, reference="prediction")


def _criteria_figure(ctx):
    rows = [r for r in ctx.tables["criteria_summary"] if r["reference"] == ctx.comparator]
    if not rows:
        return None
    labels = [f"{r['criteria']} ({r['institution']})" for r in rows]
    return bar_chart(labels, {ATP: [r["new_share"] for r in rows],
                              ctx.comparator: [r["reference_share"] for r in rows]},
                     title=f"{ctx.site}: criteria met, ATP vs {ctx.comparator}",
                     ylabel="share of criteria met")


def _dvh(ctx, ev):
    c = ev.case
    return plot_dvh_overlay(c, {ATP: ev.atp.dose_gy, ctx.comparator: ev.comparator.dose_gy,
                                "prediction": ev.predicted_gy},
                            title=f"{c.patient_id}: ATP (solid), {ctx.comparator}, prediction")


def _dose_difference(ctx, ev):
    c = ev.case
    masks = {n: r.mask for n, r in c.rois.items() if r.role in ("target", "organ")}
    return dose_difference_slices(c.ct_hu, ev.atp.dose_gy, ev.comparator.dose_gy, masks,
                                  spacing_mm=c.spacing_mm, labels=(ATP, ctx.comparator),
                                  title=f"{c.patient_id}: ATP - {ctx.comparator}")


def _goal_values(ctx):
    return [r for ev in ctx.results for r in ev.goal_values]


def _delivery_summary(ctx):
    rows = [r for r in ctx.tables.get("goal_values", []) if r["deliverable"] is not None]
    if not rows:
        return []
    out = delivery_summary(rows)
    for r in out:
        seq = [d for ev in ctx.results for d in ev.delivery if d["plan"] == r["plan"]]
        if seq:
            r.update({f"mean_{k}": float(np.mean([d[k] for d in seq])) for k in (
                "mu_per_fraction_estimate", "mu_per_fraction_deliverable", "delivery_time_s",
                "sequencing_s", "wall_s")})
            r["machine"], r["delivery_mode"] = seq[0]["machine"], seq[0]["delivery_mode"]
    return out


def _timing(ctx):
    return [{"case": ev.case.patient_id, **ev.timing_s} for ev in ctx.results]


ITEMS: list[ReportItem] = [
    ReportItem("criteria_met", "Summary", "criteria met (protocol goal list)",
               lambda ctx: goal_pass_rates(ctx.goals())),
    ReportItem("goal_values", "", "", _goal_values),  # every goal: optimized, deliverable
    ReportItem("deliverable", "Summary", "deliverable plans: goals met on the optimized "
               "fluence and on the deliverable dose (sequenced on the machine), MU per "
               "fraction and times (per case: tables/goal_values.csv)", _delivery_summary),
    ReportItem("sequencing", "", "", lambda ctx: [d for ev in ctx.results
                                                  for d in ev.delivery]),
    ReportItem("endpoints", "", "", lambda ctx: ctx.rows()),
    ReportItem("goals_per_case", "", "", lambda ctx: ctx.goals()),
    ReportItem("criteria", "", "", lambda ctx: [r for ev in ctx.results for r in ev.criteria]),
    ReportItem("criteria_summary", "Criteria sets",
               "share of criteria met per set; p: exact McNemar test on the paired "
               "per-criterion outcomes", _criteria_summary),
    ReportItem("criteria_summary", "Criteria sets", "criteria met per set",
               _criteria_figure, kind="figure"),
    ReportItem("provenance", "ATP vs {comparator}", "", _provenance, kind="text"),
    ReportItem("doses", "", "", lambda ctx: [d for ev in ctx.results for d in ev.doses]),
    ReportItem("engine_gap", "ATP vs {comparator}",
               "engine difference: atp's beamlets fitted to the {comparator} dose voxel by "
               "voxel, |D_fit - D_{comparator}| / D_Rx in the body (%)",
               lambda ctx: [ev.engine_gap for ev in ctx.results if ev.engine_gap]),
    ReportItem("atp_vs_comparator", "ATP vs {comparator}", "paired comparison", _comparison),
    ReportItem("atp_vs_comparator", "ATP vs {comparator}",
               "ATP vs {comparator}: mean relative difference with 95 % CI "
               "(positive = ATP better)",
               lambda ctx: dot_plot_relative_differences(
                   ctx.tables["atp_vs_comparator"],
                   title=f"{ctx.site} @ {ctx.institution}: ATP vs {ctx.comparator}"),
               kind="figure"),
    ReportItem("preference_proxy", "ATP vs {comparator}",
               "preference proxy (not a physician's preference)",
               lambda ctx: preference_proxy(ctx.rows(), new=ATP, reference=ctx.comparator)),
    ReportItem("prediction_scores", "ATP vs prediction",
               "the prediction against the case's own dose: OpenKBP dose and DVH scores (Gy)",
               _prediction_scores),
    ReportItem("atp_vs_prediction", "ATP vs prediction", "organ endpoints",
               lambda ctx: compare_to_prediction(ctx.rows(), plan=ATP)),
    ReportItem("atp_vs_prediction", "ATP vs prediction",
               "ATP vs prediction: (D_ATP - D_pred) / D_pred per organ endpoint",
               lambda ctx: dot_plot_vs_prediction(
                   ctx.tables["atp_vs_prediction"],
                   title=f"{ctx.site} @ {ctx.institution}: ATP vs prediction"),
               kind="figure"),
    ReportItem("voxel_vs_prediction", "ATP vs prediction",
               "voxel-wise |D_ATP - D_pred| / D_Rx", lambda ctx: [ev.voxel for ev in
                                                                  ctx.results]),
    # issue 17: Bonferroni's m per site and institution (the site's endpoints compared)
    ReportItem("bonferroni_m", "Summary", "Bonferroni m per family (the site's endpoints "
               "compared, conf/site/<site>.yaml endpoints)",
               lambda ctx: bonferroni_families(
                   (f"ATP vs {ctx.comparator}", ctx.tables["atp_vs_comparator"]),
                   ("ATP vs prediction", ctx.tables["atp_vs_prediction"]))),
    ReportItem("dvh", "Cases", "{case}: DVH", _dvh, kind="figure", per_case=True),
    ReportItem("dose_difference", "Cases", "{case}: ATP, {comparator} and their difference",
               _dose_difference, kind="figure", per_case=True),
    ReportItem("timing", "Cases", "timing (s)", _timing),
]


MIXED = "comparator (mixed)"


def _relabel(results: Sequence, label: str) -> None:
    """Give every case's comparator one label (the doses table keeps what each was)."""
    for ev in results:
        old = ev.comparator.label
        for r in (*ev.rows, *ev.goals, *ev.criteria, *ev.goal_values, *ev.delivery):
            if r["plan"] == old:
                r["plan"] = label
        for d in ev.doses:
            if d["plan"] == old:
                d["plan"], d["engine"] = label, f"{old}: {d['engine']}"
        ev.comparator.label = label


def write_evaluation(out_dir: str | Path, results: Sequence, *, site: str, institution: str,
                     n_figures: int = 4, items: Sequence[ReportItem] = ITEMS) -> dict:
    """Tables, figures and the HTML report of ``results`` (`CaseEvaluation` objects).

    Parameters
    ----------
    out_dir : str or Path
        The run folder; ``tables/``, ``figures/``, ``plans/`` (each case with its doses,
        `atp.evaluation.plan_store`) and ``report.html`` go there.
    results : sequence of CaseEvaluation
        The evaluated cases; when their comparators differ (a clinical evaluation where
        some cases had no dose) they are compared under one label, ``MIXED``.
    site, institution : str
        Names for titles and the summary.
    n_figures : int, optional
        Per-case figures for the first N cases; default 4.
    items : sequence of ReportItem, optional
        The report's tables and figures (default `ITEMS`).

    Returns
    -------
    dict
        The run summary (also the report's first table).

    Everything is written under ``out_dir/.staging`` and moved into place at the end, so
    an interrupted run leaves the previous outputs or none, never a partial set.
    """
    final = Path(out_dir)
    out = final / ".staging"
    shutil.rmtree(out, ignore_errors=True)
    labels = {ev.comparator.label for ev in results}
    if len(labels) > 1:  # some cases had no clinical dose and fell back to the re-plan
        _relabel(results, MIXED)
        labels = {MIXED}
    ctx = EvaluationContext(results, site, institution,
                            comparator=labels.pop() if labels else "comparator")
    fill = {"comparator": ctx.comparator}
    placed: dict[str, list] = {s.format(**fill): [] for s in SECTIONS}
    texts: dict[str, list[str]] = {}
    for item in items:
        section = item.section.format(**fill)
        if item.kind == "text":
            texts.setdefault(section, []).append(item.build(ctx))
            continue
        if item.kind == "table":
            rows = ctx.tables[item.name] = item.build(ctx)
            write_table(rows, out / "tables" / f"{item.name}.csv")
            if section and rows:
                placed[section].append(("table", item.caption.format(**fill), rows))
            continue
        todo = [(f"{item.name}_{ev.case.patient_id}", (ctx, ev), ev.case.patient_id)
                for ev in list(results)[:n_figures]] if item.per_case else \
            [(item.name, (ctx,), "")]
        for name, args, case in todo:
            fig = item.build(*args)
            if fig is None:
                continue
            path = out / "figures" / f"{name}.png"
            save_figure(fig, path)
            placed[section].append(("figure", item.caption.format(case=case, **fill), path))
    timing = ctx.tables.get("timing") or _timing(ctx)
    mean_t = {k: float(np.mean([t[k] for t in timing])) for k in timing[0] if k != "case"} \
        if timing else {}
    goals = ctx.goals()
    summary = {"site": site, "institution": institution, "comparator": ctx.comparator,
               "cases": len(results),
               "atp_p1_met_share": float(np.mean([g["p1_met"] for g in goals
                                                  if g["plan"] == ATP])) if goals else None,
               **tuning_score(goals, [r for r in ctx.tables.get("atp_vs_comparator", [])
                                      if r["institution"] == institution],
                              reference=ctx.comparator),
               **{f"mean_{k}": v for k, v in mean_t.items()},
               "deliverable": any(ev.delivery for ev in results)}
    pooled = [r for r in ctx.tables.get("prediction_scores", []) if r["case"] == "all"]
    if pooled:
        summary["prediction_dose_score_gy"] = pooled[0]["dose_score_gy"]
        summary["prediction_dvh_score_gy"] = pooled[0]["dvh_score_gy"]
    for r in ctx.tables.get("criteria_summary", []):
        if r["institution"] == institution and r["reference"] == ctx.comparator:
            summary[f"{r['criteria']}_atp_share"] = r["new_share"]
            summary[f"{r['criteria']}_{slug(ctx.comparator)}_share"] = r["reference_share"]
    placed["Summary"].insert(0, ("table", "run", [summary]))
    for ev in results:  # every case with its doses, for the blinded review (review.py)
        save_case_plans(out / PLANS_DIR / f"{ev.case.patient_id}.npz", case=ev.case,
                        doses_gy={ATP: ev.atp.dose_gy, ctx.comparator: ev.comparator.dose_gy,
                                  "prediction": ev.predicted_gy},
                        comparator=ctx.comparator,
                        meta={"site": site, "institution": institution,
                              "comparator_engine": ev.comparator.engine})
    sections = [{"heading": heading, "text": "\n\n".join(texts.get(heading, [])),
                 "tables": [(c, rows) for kind, c, rows in entries if kind == "table"],
                 "figures": [(c, p) for kind, c, p in entries if kind == "figure"]}
                for heading, entries in placed.items()]
    write_html_report(out / "report.html", title=f"ATP evaluation: {site} at institution "
                      f"{institution}", sections=sections)
    for name in ("tables", "figures", PLANS_DIR, "report.html"):
        target = final / name
        if target.is_dir():
            shutil.rmtree(target)
        if (out / name).exists():
            os.replace(out / name, target)
    shutil.rmtree(out, ignore_errors=True)
    return summary
