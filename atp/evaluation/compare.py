"""Cohort comparisons of plan endpoints: new (ATP) vs reference plans, plan vs prediction.

Input rows are plain dicts, one per (case, plan, metric)::

    {"case", "site", "institution", "plan", "metric", "value", "unit",
     "higher_is_better", "kind", "endpoint"}

``endpoint`` (optional) marks the study's endpoints, the Bonferroni family; plan labels
are parameters (``new``, ``reference``, ``plan``, ``prediction``).

Relative differences follow `atp.dosimetry.stats.relative_difference_percent`:
positive means the new plan is better (lower organ dose, higher coverage). Every
function returns a list of flat dicts, ready for `write_table` or the HTML report.
Groups are per (site, institution); with ``pooled=True`` each site also gets an
institution ``"all"`` group that pools the cases of every institution.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from atp.dosimetry.stats import (
    bonferroni,
    mean_difference_ci,
    paired_ttest,
    relative_difference_percent,
)
from atp.io.atomic import atomic_open

ALL = "all"
ENDPOINT, SUPPLEMENTARY = "endpoint", "supplementary"

_Key = tuple[str, str, str, str]  # (site, institution, group, metric)


def _groups(site: str, institution: str, pooled: bool) -> tuple[tuple[str, str], ...]:
    return ((site, institution), (site, ALL)) if pooled else ((site, institution),)


def _group_value(r: Mapping, group_by: str | None) -> str | None:
    """The row's value of the grouping column; None leaves the row out of a grouped table."""
    if group_by is None:
        return ""
    v = r.get(group_by)
    return None if v is None or (isinstance(v, float) and math.isnan(v)) or v == "" else str(v)


def _index(rows: Iterable[Mapping], *, pooled: bool, group_by: str | None = None
           ) -> tuple[dict, dict]:
    """values[(site, inst, group, metric)][plan][(institution, case)] = value; meta per key.

    ``meta[key]["endpoint"]`` is True when a row of the key is one of the study's
    endpoints, or when no row says (rows without an ``endpoint`` column: every metric).
    """
    values: dict[_Key, dict[str, dict[tuple[str, str], float]]] = {}
    meta: dict[_Key, dict] = {}
    seen: set[tuple] = set()
    rows = list(rows)
    marked = any("endpoint" in r for r in rows)
    for r in rows:
        ident = (r["institution"], r["case"], r["plan"], r["metric"])
        if ident in seen:
            raise ValueError(f"duplicate endpoint row for {ident}")
        seen.add(ident)
        group = _group_value(r, group_by)
        if group is None:
            continue
        for site, inst in _groups(r["site"], r["institution"], pooled):
            key = (site, inst, group, r["metric"])
            m = meta.setdefault(key, {"unit": r.get("unit", ""), "kind": r.get("kind", ""),
                                      "higher_is_better": bool(r.get("higher_is_better")),
                                      "endpoint": not marked})
            if m["higher_is_better"] != bool(r.get("higher_is_better")):
                raise ValueError(f"inconsistent higher_is_better for metric {r['metric']!r}")
            m["endpoint"] = m["endpoint"] or _true(r.get("endpoint"))
            per_plan = values.setdefault(key, {}).setdefault(r["plan"], {})
            per_plan[(r["institution"], r["case"])] = float(r["value"])
    return values, meta


def _true(v) -> bool:
    return v is True or (isinstance(v, str) and v.strip().lower() == "true")


def _ordered(keys: Iterable[_Key]) -> list[_Key]:
    """Sites and institutions sorted (``"all"`` last in a site), then groups, then metrics
    in first-seen order."""
    keys = list(keys)
    first = {k[3]: i for i, k in reversed(list(enumerate(keys)))}
    return sorted(keys, key=lambda k: (k[0], k[1] == ALL, k[1], k[2], first[k[3]]))


def _paired_arrays(per_plan: Mapping, a: str, b: str) -> tuple[np.ndarray, np.ndarray]:
    """Values of plans ``a`` and ``b`` (float64) over the cases present in both."""
    va, vb = per_plan.get(a, {}), per_plan.get(b, {})
    cases = [c for c in va if c in vb]
    return (np.array([va[c] for c in cases], dtype=np.float64),
            np.array([vb[c] for c in cases], dtype=np.float64))


def _mean(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    return float(x.mean(dtype=np.float64)) if x.size else math.nan


def _mean_ci(x: np.ndarray, *, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``x`` (NaN dropped) and its two-sided t confidence interval."""
    return mean_difference_ci(x, np.zeros_like(x), confidence=confidence)


def _head(key: _Key, group_by: str | None) -> dict:
    site, inst, group, metric = key
    out = {"site": site, "institution": inst}
    if group_by is not None:
        out[group_by] = group
    out["metric"] = metric
    return out


def _correct(out: list[dict], *, alpha: float, labels: tuple[str, str, str],
             group_by: str | None) -> None:
    """Bonferroni within each (site, institution, group, family); flags from the result.

    ``m_tests`` = the number of the family's metrics compared (at least one pair) in that
    group: for the ``endpoint`` family the study's m, the number of its dosimetric
    endpoints compared; for the ``supplementary`` family the other metrics, corrected
    among themselves. A metric without a p value (under 2 pairs, zero variance) still
    counts: it was compared.
    """
    positive, negative, _ = labels
    families: dict[tuple, list[dict]] = {}
    for row in out:
        key = (row["site"], row["institution"], row.get(group_by) if group_by else "",
               row["family"])
        families.setdefault(key, []).append(row)
    for members in families.values():
        p = np.array([r["p"] for r in members], dtype=np.float64)
        m = len(members)
        adjusted = bonferroni(p, m=m)
        for r, p_adj in zip(members, adjusted, strict=True):
            r["p_bonferroni"] = float(p_adj)
            r["m_tests"] = m
            significant = bool(p_adj < alpha) and not math.isnan(r["mean_rel_diff_pct"])
            if significant and r["mean_rel_diff_pct"] > 0:
                r["flag"] = positive
            elif significant and r["mean_rel_diff_pct"] < 0:
                r["flag"] = negative
            else:
                r["flag"] = "n.s."


def compare_plans(rows: Iterable[Mapping], *, new: str = "ATP", reference: str = "MNL",
                  alpha: float = 0.05, pooled: bool = True,
                  group_by: str | None = None) -> list[dict]:
    """Paired new-vs-reference statistics per (site, institution, metric).

    Per metric: ``n`` paired cases, the plan means, the mean relative difference (%,
    positive = new better, also for V95 % and CI where higher is better: the study's
    sign rule) with its 95 % t interval, the two-tailed paired t-test ``p`` of new vs
    reference, and Bonferroni's ``p_bonferroni`` = min(p * m, 1) within the metric's
    ``family``: ``endpoint`` (the site's listed endpoints, rows with ``endpoint=True``;
    every metric when no row has that column) or ``supplementary`` (the other metrics,
    corrected among themselves). ``m_tests`` is that family's number of metrics compared
    in the same (site, institution[, group]). ``flag``: ``"better"``/``"worse"``
    when ``p_bonferroni < alpha`` (sign of the mean relative difference), else
    ``"n.s."``. Fewer than 2 pairs or zero-variance differences give ``p`` NaN and
    ``"n.s."``.

    ``group_by`` names a column of ``rows`` (e.g. the preferred plan of a blinded
    review, see `attach_groups`) that splits every (site, institution) into groups,
    each with its own statistics and m; rows without a value are left out.

    Parameters
    ----------
    rows : iterable of mapping
        Endpoint rows, one per (case, plan, metric) (see the module docstring).
    new, reference : str, optional
        Plan labels of the new and the reference plan; default ``"ATP"``, ``"MNL"``.
    alpha : float, optional
        Significance level for ``flag`` after the Bonferroni correction; default 0.05.
    pooled : bool, optional
        Also give each site an institution ``"all"`` group pooling its institutions.
    group_by : str, optional
        Row column that splits each (site, institution) into groups; None: no split.

    Returns
    -------
    list of dict
        One row per (site, institution[, group], metric) with at least one pair.
    """
    values, meta = _index(rows, pooled=pooled, group_by=group_by)
    out: list[dict] = []
    for key in _ordered(values):
        v_new, v_ref = _paired_arrays(values[key], new, reference)
        if v_new.size == 0:
            continue
        hib = meta[key]["higher_is_better"]
        rel = np.asarray(relative_difference_percent(v_ref, v_new, higher_is_better=hib),
                         dtype=np.float64)
        mean_rel, lo, hi = _mean_ci(rel)
        out.append({
            **_head(key, group_by),
            "unit": meta[key]["unit"], "kind": meta[key]["kind"], "higher_is_better": hib,
            "family": ENDPOINT if meta[key]["endpoint"] else SUPPLEMENTARY,
            "new": new, "reference": reference, "n": int(v_new.size),
            "mean_new": _mean(v_new), "mean_reference": _mean(v_ref),
            "mean_rel_diff_pct": mean_rel, "ci_lo_pct": lo, "ci_hi_pct": hi,
            "p": paired_ttest(v_new, v_ref),
        })
    _correct(out, alpha=alpha, labels=("better", "worse", "n.s."), group_by=group_by)
    return out


def compare_to_prediction(rows: Iterable[Mapping], *, plan: str = "ATP",
                          prediction: str = "prediction", alpha: float = 0.05,
                          pooled: bool = True, group_by: str | None = None) -> list[dict]:
    """Plan organ doses against the predicted dose, per (site, institution, metric) (Fig. 5).

    Per case ``(D_plan - D_pred) / D_pred * 100`` (positive = plan dose above the
    prediction); cases with ``D_pred == 0`` are skipped. Only ``kind == "organ"`` rows.
    Returns ``n``, the means, the mean relative difference with its 95 % t interval, the
    two-tailed paired t-test ``p`` of plan vs prediction over the same cases, and
    ``p_bonferroni``, ``m_tests``, ``family`` as in `compare_plans` (the endpoint family
    is the site's listed organ endpoints). ``flag``: ``"higher"``/``"lower"`` than the
    prediction when ``p_bonferroni < alpha``, else ``"n.s."``.

    Parameters
    ----------
    rows : iterable of mapping
        Endpoint rows, one per (case, plan, metric); only organ rows are used.
    plan, prediction : str, optional
        Plan labels of the plan and of the predicted dose; default ``"ATP"``,
        ``"prediction"``.
    alpha : float, optional
        Significance level for ``flag`` after the Bonferroni correction; default 0.05.
    pooled : bool, optional
        Also give each site an institution ``"all"`` group pooling its institutions.
    group_by : str, optional
        Row column that splits each (site, institution) into groups; None: no split.

    Returns
    -------
    list of dict
        One row per (site, institution[, group], metric) with at least one usable case.
    """
    organ = [r for r in rows if r.get("kind") == "organ" and r["plan"] in (plan, prediction)]
    values, meta = _index(organ, pooled=pooled, group_by=group_by)
    out: list[dict] = []
    for key in _ordered(values):
        d_plan, d_pred = _paired_arrays(values[key], plan, prediction)
        keep = (d_pred != 0.0) & ~np.isnan(d_pred) & ~np.isnan(d_plan)
        d_plan, d_pred = d_plan[keep], d_pred[keep]
        if d_plan.size == 0:
            continue
        rel = (d_plan - d_pred) / d_pred * 100.0
        mean_rel, lo, hi = _mean_ci(rel)
        out.append({
            **_head(key, group_by), "unit": meta[key]["unit"], "kind": meta[key]["kind"],
            "family": ENDPOINT if meta[key]["endpoint"] else SUPPLEMENTARY,
            "plan": plan, "prediction": prediction, "n": int(d_plan.size),
            "mean_plan": _mean(d_plan), "mean_prediction": _mean(d_pred),
            "mean_rel_diff_pct": mean_rel, "ci_lo_pct": lo, "ci_hi_pct": hi,
            "p": paired_ttest(d_plan, d_pred),
        })
    _correct(out, alpha=alpha, labels=("higher", "lower", "n.s."), group_by=group_by)
    return out


def goal_pass_rates(goal_rows: Iterable[Mapping], *, pooled: bool = True,
                    group_by: str | None = None) -> list[dict]:
    """Per (site, institution, [group,] plan): cases, P1 pass rate and criteria pass rate.

    ``p1_pass_rate`` is the share of cases meeting every priority-1 goal;
    ``criteria_pass_rate`` the mean over cases of ``goals_met / goals_total`` (cases
    without goals are left out of that mean). Both are fractions in [0, 1].
    ``group_by`` splits the rows by a grouping column as in `compare_plans`.

    Parameters
    ----------
    goal_rows : iterable of mapping
        One row per (case, plan) with ``site, institution, plan, p1_met, goals_met,
        goals_total``.
    pooled : bool, optional
        Also give each site an institution ``"all"`` group pooling its institutions.
    group_by : str, optional
        Row column that splits the groups further; None: no split.

    Returns
    -------
    list of dict
        ``site, institution, [group_by,] plan, cases, p1_pass_rate, criteria_pass_rate``.
    """
    acc: dict[tuple[str, str, str, str], dict[str, list]] = {}
    for r in goal_rows:
        group = _group_value(r, group_by)
        if group is None:
            continue
        for site, inst in _groups(r["site"], r["institution"], pooled):
            a = acc.setdefault((site, inst, group, r["plan"]), {"p1": [], "share": []})
            a["p1"].append(bool(r["p1_met"]))
            total = int(r["goals_total"])
            if total > 0:
                a["share"].append(int(r["goals_met"]) / total)
    out = []
    for key in sorted(acc, key=lambda k: (k[0], k[1] == ALL, k[1], k[2], k[3])):
        site, inst, group, plan = key
        a = acc[key]
        share = np.array(a["share"], dtype=np.float64)
        out.append({
            "site": site, "institution": inst, **({group_by: group} if group_by else {}),
            "plan": plan, "cases": len(a["p1"]),
            "p1_pass_rate": float(np.mean(a["p1"], dtype=np.float64)),
            "criteria_pass_rate": float(share.mean(dtype=np.float64)) if share.size
            else math.nan,
        })
    return out


def preference_proxy(rows: Iterable[Mapping], *, new: str = "ATP", reference: str = "MNL",
                     pooled: bool = True) -> list[dict]:
    """Metric-count proxy for plan preference. NOT a physician's preference.

    A stand-in for a blinded physician choice: per case it counts the metrics where
    ``new`` beats ``reference`` (higher value when ``higher_is_better``, lower
    otherwise; ties count for neither) out of the metrics both plans have. Rows with
    ``level == "case"`` hold those counts and ``new_wins_majority`` (more than half of
    the compared metrics); rows with ``level == "group"`` hold, per (site,
    institution), the share of cases where ``new`` wins the majority. All metrics
    weigh the same, which no clinician would do: read it as a summary of the
    endpoint table, not as a judgement of plan quality.

    Parameters
    ----------
    rows : iterable of mapping
        Endpoint rows, one per (case, plan, metric); other plans are ignored.
    new, reference : str, optional
        Plan labels compared; default ``"ATP"``, ``"MNL"``.
    pooled : bool, optional
        Also give each site an institution ``"all"`` group row.

    Returns
    -------
    list of dict
        The ``level == "case"`` rows, then the ``level == "group"`` rows.
    """
    per_case: dict[tuple[str, str, str], dict[str, dict[str, tuple[float, bool]]]] = {}
    for r in rows:
        if r["plan"] not in (new, reference):
            continue
        plans = per_case.setdefault((r["site"], r["institution"], r["case"]), {})
        plans.setdefault(r["plan"], {})[r["metric"]] = (float(r["value"]),
                                                         bool(r["higher_is_better"]))
    case_rows: list[dict] = []
    for (site, inst, case) in sorted(per_case):
        a, b = per_case[(site, inst, case)].get(new, {}), per_case[(site, inst, case)].get(
            reference, {})
        wins = losses = ties = 0
        for metric, (v_new, hib) in a.items():
            if metric not in b or math.isnan(v_new) or math.isnan(b[metric][0]):
                continue
            diff = (v_new - b[metric][0]) * (1.0 if hib else -1.0)
            wins, losses, ties = wins + (diff > 0), losses + (diff < 0), ties + (diff == 0)
        compared = wins + losses + ties
        if compared == 0:
            continue
        case_rows.append({
            "level": "case", "site": site, "institution": inst, "case": case,
            "new": new, "reference": reference, "metrics_compared": compared,
            "new_better": wins, "reference_better": losses, "ties": ties,
            "new_wins_majority": wins > compared / 2,
        })
    groups: dict[tuple[str, str], list[bool]] = {}
    for r in case_rows:
        for g in _groups(r["site"], r["institution"], pooled):
            groups.setdefault(g, []).append(r["new_wins_majority"])
    group_rows = [{
        "level": "group", "site": site, "institution": inst, "new": new,
        "reference": reference, "cases": len(groups[(site, inst)]),
        "new_majority_share": float(np.mean(groups[(site, inst)], dtype=np.float64)),
    } for (site, inst) in sorted(groups, key=lambda g: (g[0], g[1] == ALL, g[1]))]
    return case_rows + group_rows


def _columns(rows: Sequence[Mapping]) -> list[str]:
    cols: dict[str, None] = {}
    for r in rows:
        cols.update(dict.fromkeys(r))
    return list(cols)


def write_table(rows: Sequence[Mapping], path: str | os.PathLike) -> Path:
    """Write rows as CSV (or Parquet for a ``.parquet`` path, needs pyarrow) atomically.

    Columns are the union of the row keys in first-seen order; missing cells are
    empty. Floats are written with ``repr`` so they read back exactly.

    Parameters
    ----------
    rows : sequence of mapping
        The table rows.
    path : str or os.PathLike
        Output file; ``.parquet`` writes Parquet, anything else CSV.

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    rows = list(rows)
    cols = _columns(rows)
    if path.suffix.lower() == ".parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise ImportError("writing Parquet needs pyarrow; use a .csv path") from exc
        table = pa.Table.from_pylist([{c: r.get(c) for c in cols} for r in rows])
        with atomic_open(path, mode="wb") as fh:
            pq.write_table(table, fh)
        return path
    with atomic_open(path, mode="w") as fh:
        writer = csv.DictWriter(fh, fieldnames=cols, restval="", lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: repr(v) if isinstance(v, float) else v for k, v in r.items()})
    return path
