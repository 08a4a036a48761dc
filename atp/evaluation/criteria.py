"""Criteria sets: fixed pass/fail standards every plan of a case is judged on.

A criteria set is a list of ``metric(roi) op threshold`` entries in the goal-list syntax
(`atp.planning.goals`: ``value`` in the metric's unit, or ``value_pct_rx`` for targets,
``ptv_*`` for every target), with a citation. ``protocol`` is special: its criteria are
the site's goal list with the institution's overlay, at their protocol values. Sets come
from the ``criteria`` config group (``conf/criteria``):

- ``protocol``: the goal list the plans were made with, at protocol values;
- ``openkbp_opt``: the ten criteria of the OpenKBP-Opt benchmark (head and neck);
- ``rtog``: one file per site, the RTOG-based endpoints the study cites.

`judge` gives one row per (plan, criterion); `criteria_summary` gives, per set, the
share met by the new plan and by the reference, with an exact McNemar (sign) test on the
paired per-criterion outcomes. Criteria met is not clinical acceptability.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from atp.cases import PatientCase
from atp.planning import GoalList, goal_report, resolve_goals
from atp.planning.setup import goal_list_for

PROTOCOL = "protocol"


@dataclass(frozen=True)
class CriteriaSet:
    """A named list of criteria and where its values come from."""

    name: str
    source: str
    goals: GoalList


def criteria_sets(config: Mapping | None, *, site_cfg: Mapping,
                  institution: Mapping | None = None) -> list[CriteriaSet]:
    """The criteria sets of a ``criteria`` config node, for one site.

    Parameters
    ----------
    config : mapping or None
        Set name -> ``{source, sites (optional), criteria}``; the entry ``protocol``
        takes the site's goal list with the institution overlay. None: no sets.
    site_cfg : mapping
        The site facts (``name``, goal list).
    institution : mapping, optional
        The institution overlay.

    Returns
    -------
    list of CriteriaSet
        The sets that apply to the site (a set with ``sites:`` applies to those only).
    """
    out = []
    for name, spec in (config or {}).items():
        spec = dict(spec or {})
        where = f"criteria/{name}"
        sites = spec.get("sites")
        if sites is not None and site_cfg["name"] not in sites:
            continue
        if name == PROTOCOL:
            out.append(CriteriaSet(name, "the site's goal list and the institution overlay, "
                                   "protocol values", goal_list_for(site_cfg, institution)))
            continue
        items = spec.get("criteria")
        if not items:
            raise ValueError(f"{where}: no 'criteria' list")
        # criteria are user values: resolve them like priority-1 goals
        goals = GoalList.from_dicts([{"priority": 1, **dict(c)} for c in items],
                                    source=where)
        out.append(CriteriaSet(name, str(spec.get("source", "")), goals))
    return out


def judge(case: PatientCase, dose_gy: np.ndarray, criteria: CriteriaSet, *, plan: str,
          site: str, institution: str) -> list[dict]:
    """One row per criterion of ``criteria`` on ``dose_gy`` (criteria on absent ROIs skipped).

    Parameters
    ----------
    case : PatientCase
        The patient (ROIs, grid, prescription).
    dose_gy : np.ndarray
        The plan's dose (Gy) on the case grid, (z, y, x).
    criteria : CriteriaSet
        The criteria to judge.
    plan, site, institution : str
        Labels copied into every row.

    Returns
    -------
    list of dict
        ``case, site, institution, plan, criteria, criterion, roi, role, threshold,
        value, unit, met``.
    """
    resolved, _ = resolve_goals(case, criteria.goals)
    rows = []
    for o in goal_report(case, dose_gy, resolved):
        rows.append({"case": case.patient_id, "site": site, "institution": institution,
                     "plan": plan, "criteria": criteria.name,
                     "criterion": f"{o.metric}({o.roi}) {o.op} {o.requested:.4g}",
                     "roi": o.roi, "role": o.role, "threshold": o.requested,
                     "value": o.achieved, "unit": o.unit, "met": bool(o.met)})
    return rows


def mcnemar_exact(new_only: int, reference_only: int) -> float:
    """Two-sided exact McNemar p value from the discordant pair counts.

    Under the null hypothesis each discordant pair is equally likely to favour either
    plan, so ``new_only`` is Binomial(b + c, 1/2) (the sign test). NaN without
    discordant pairs.

    Parameters
    ----------
    new_only : int
        Pairs met by the new plan alone.
    reference_only : int
        Pairs met by the reference plan alone.

    Returns
    -------
    float
        Two-sided p value; NaN when both counts are 0.
    """
    n = int(new_only) + int(reference_only)
    if n == 0:
        return math.nan
    return float(stats.binomtest(int(new_only), n, 0.5).pvalue)


def criteria_summary(rows: Iterable[Mapping], *, new: str, reference: str,
                     group: Sequence[str] = ("site", "institution")) -> list[dict]:
    """Per criteria set (and ``group``): share met by each plan and the paired test.

    A pair is one (case, criterion) judged on both plans. ``new_only`` counts pairs met
    by ``new`` alone, ``reference_only`` by ``reference`` alone; ``p_mcnemar`` is the
    exact two-sided test on them (`mcnemar_exact`).

    Parameters
    ----------
    rows : iterable of mapping
        `judge` rows.
    new, reference : str
        Plan labels compared.
    group : sequence of str, optional
        Row columns grouped by, before the criteria set; default (site, institution).

    Returns
    -------
    list of dict
        One row per group and criteria set with pairs: counts, shares (fractions in
        [0, 1]) and ``p_mcnemar``.
    """
    by: dict[tuple, dict[str, dict[tuple, bool]]] = {}
    for r in rows:
        if r["plan"] not in (new, reference):
            continue
        key = (*(r[g] for g in group), r["criteria"])
        by.setdefault(key, {}).setdefault(r["plan"], {})[(r["case"], r["criterion"])] = \
            bool(r["met"])
    out = []
    for key in sorted(by):
        a, b = by[key].get(new, {}), by[key].get(reference, {})
        pairs = [k for k in a if k in b]
        if not pairs:
            continue
        met_a = np.array([a[k] for k in pairs])
        met_b = np.array([b[k] for k in pairs])
        only_a = int(np.sum(met_a & ~met_b))
        only_b = int(np.sum(~met_a & met_b))
        out.append({**dict(zip(group, key[:-1], strict=True)), "criteria": key[-1],
                    "new": new, "reference": reference, "pairs": len(pairs),
                    "cases": len({k[0] for k in pairs}),
                    "new_met": int(met_a.sum()), "reference_met": int(met_b.sum()),
                    "new_share": float(met_a.mean()), "reference_share": float(met_b.mean()),
                    "new_only": only_a, "reference_only": only_b,
                    "p_mcnemar": mcnemar_exact(only_a, only_b)})
    return out
