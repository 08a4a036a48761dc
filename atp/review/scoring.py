"""The study's scoring rules, agreement counts and Fleiss' kappa.

Answers are first turned round to the new (ATP) plan with the key: for acceptability,
the answer given for the plan that is ATP (and for the other one, the comparator); for
preference and AI generation, ``agree`` when the reviewer chose ATP's plan number,
``disagree`` for the other plan, ``cannot_judge`` as given. Then, per reviewer and case
(the study's Methods, "subjective evaluation"):

- *acceptable*: ``agree`` only ("cannot judge" is not an acceptance);
- *preferred*: ``agree``, or ``cannot_judge`` when that reviewer found the ATP plan
  acceptable ("cannot judge" means the plans are equivalent);
- *recognized* as AI-generated: ``agree`` only; ``cannot_judge`` is a misidentification.

Per case, the number of agreeing reviewers k (0..R) gives the Fig. 3 bars; *unanimous*
is k = R and *majority* k > R / 2 (k >= 2 of 3).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from atp.review.answers import AnswerSet

QUESTIONS = ("acceptable", "preferred", "recognized", "comparator_acceptable")
#: question -> the `new_perspective` answer it is scored from
QUESTION_FIELDS = {"acceptable": "acceptable_answer", "preferred": "preferred_answer",
                   "recognized": "ai_generated_answer",
                   "comparator_acceptable": "comparator_acceptable_answer"}
CATEGORIES = ("agree", "disagree", "cannot_judge")
ALL = "all"


def new_perspective(answer: Mapping[str, str], new_plan: int) -> dict[str, str]:
    """One reviewer's answers on one case, as statements about the new (ATP) plan
    (``agree`` / ``disagree`` / ``cannot_judge`` for each ``*_answer``).

    Parameters
    ----------
    answer : mapping of str to str
        The raw answers (``acceptable_plan1``, ``acceptable_plan2``, ``preferred``,
        ``ai_generated``).
    new_plan : int
        Which plan number (1 or 2) is the new plan in this case.

    Returns
    -------
    dict of str to str
        ``acceptable_answer``, ``comparator_acceptable_answer``, ``preferred_answer``,
        ``ai_generated_answer``.
    """
    other = 3 - new_plan

    def choice(value: str) -> str:
        if value == "cannot_judge":
            return value
        return "agree" if value == f"plan{new_plan}" else "disagree"

    return {"acceptable_answer": answer[f"acceptable_plan{new_plan}"],
            "comparator_acceptable_answer": answer[f"acceptable_plan{other}"],
            "preferred_answer": choice(answer["preferred"]),
            "ai_generated_answer": choice(answer["ai_generated"])}


def score(turned: Mapping[str, str]) -> dict[str, bool]:
    """The scoring rules (module docstring) on `new_perspective` answers.

    Parameters
    ----------
    turned : mapping of str to str
        One reviewer's answers on one case from `new_perspective`.

    Returns
    -------
    dict of str to bool
        Per question of `QUESTIONS`, whether the reviewer's answer counts as agreeing.
    """
    acceptable = turned["acceptable_answer"] == "agree"
    pref = turned["preferred_answer"]
    return {"acceptable": acceptable,
            "preferred": pref == "agree" or (pref == "cannot_judge" and acceptable),
            "recognized": turned["ai_generated_answer"] == "agree",
            "comparator_acceptable": turned["comparator_acceptable_answer"] == "agree"}


def score_answers(sets: Sequence[AnswerSet], key: Mapping) -> list[dict]:
    """One row per (reviewer, case): raw answers, answers about ATP, scores, comment.

    Parameters
    ----------
    sets : sequence of AnswerSet
        Validated answer sets (`validate_answers`).
    key : mapping
        The answer key (``cases`` with ``code, new_plan, site, institution``).

    Returns
    -------
    list of dict
        Rows in reviewer order, then the key's case order.
    """
    rows = []
    for s in sets:
        for case in key["cases"]:
            raw = s.answers[case["code"]]
            turned = new_perspective(raw, int(case["new_plan"]))
            rows.append({"case": case["code"], "reviewer": s.reviewer, "site": case["site"],
                         "institution": case["institution"], "new_plan": case["new_plan"],
                         **{k: raw[k] for k in raw if k != "comment"}, **turned,
                         **score(turned), "comment": raw.get("comment", "")})
    return rows


def case_scores(rows: Iterable[Mapping], key: Mapping) -> list[dict]:
    """Per case: reviewers and, per question, how many reviewers agree (k).

    Parameters
    ----------
    rows : iterable of mapping
        `score_answers` rows.
    key : mapping
        The answer key; gives the cases and their order.

    Returns
    -------
    list of dict
        One row per key case with ``reviewers`` and ``n_<question>`` counts.
    """
    per_case: dict[str, list[Mapping]] = {}
    for r in rows:
        per_case.setdefault(r["case"], []).append(r)
    out = []
    for case in key["cases"]:
        rs = per_case.get(case["code"], [])
        out.append({"case": case["code"], "site": case["site"],
                    "institution": case["institution"], "run": case.get("run", ""),
                    "patient_id": case.get("patient_id", ""),
                    "comparator": case.get("comparator", ""), "new_plan": case["new_plan"],
                    "reviewers": len(rs),
                    **{f"n_{q}": sum(bool(r[q]) for r in rs) for q in QUESTIONS}})
    return out


def group_keys(site: str, institution: str) -> list[tuple[str, str, str]]:
    """(level, site, institution) of every group a case of (site, institution) is in.

    Parameters
    ----------
    site, institution : str
        The case's site and institution.

    Returns
    -------
    list of tuple of str
        The overall, site, institution and site-institution groups (``"all"`` for any).
    """
    return [("overall", ALL, ALL), ("site", site, ALL), ("institution", ALL, institution),
            ("site_institution", site, institution)]


def _groups(items: Iterable[Mapping]) -> dict[tuple[str, str, str], list[Mapping]]:
    out: dict[tuple[str, str, str], list[Mapping]] = {}
    for it in items:
        for g in group_keys(it["site"], it["institution"]):
            out.setdefault(g, []).append(it)
    order = {"overall": 0, "site": 1, "institution": 2, "site_institution": 3}
    return dict(sorted(out.items(), key=lambda kv: (order[kv[0][0]], kv[0][1], kv[0][2])))


def agreement_rates(cases: Sequence[Mapping], *, n_reviewers: int) -> list[dict]:
    """Per group and question: cases with k = 0..R agreeing reviewers (counts, shares),
    the unanimous and majority shares and the mean rate over cases and reviewers.

    Parameters
    ----------
    cases : sequence of mapping
        `case_scores` rows.
    n_reviewers : int
        Number of reviewers R.

    Returns
    -------
    list of dict
        Per group and question: ``cases_k<j>``, ``share_k<j>`` (j = 0..R), ``unanimous``,
        ``majority`` and ``mean_rate`` (fractions in [0, 1]).
    """
    out = []
    for (level, site, inst), members in _groups(cases).items():
        for q in QUESTIONS:
            k = np.array([m[f"n_{q}"] for m in members], dtype=np.int64)
            n = len(members)
            row = {"level": level, "site": site, "institution": inst, "question": q,
                   "cases": n, "reviewers": n_reviewers}
            for j in range(n_reviewers + 1):
                row[f"cases_k{j}"] = int(np.count_nonzero(k == j))
            for j in range(n_reviewers + 1):
                row[f"share_k{j}"] = row[f"cases_k{j}"] / n
            row["unanimous"] = float(np.count_nonzero(k == n_reviewers)) / n
            row["majority"] = float(np.count_nonzero(2 * k > n_reviewers)) / n
            row["mean_rate"] = float(k.sum(dtype=np.float64)) / (n * n_reviewers)
            out.append(row)
    return out


def fleiss_kappa(counts) -> float:
    """Fleiss' kappa of an (N subjects x k categories) table of rater counts.

    Every row must sum to the same number of raters n >= 2 (Fleiss 1971, Psychol. Bull.
    76:378). NaN when the expected agreement is 1 (every rating in one category).

    Parameters
    ----------
    counts : array_like, (N, k)
        Per subject and category, the number of raters choosing it.

    Returns
    -------
    float
        Fleiss' kappa; NaN as above.
    """
    table = np.asarray(counts, dtype=np.float64)
    if table.ndim != 2 or table.shape[0] < 1:
        raise ValueError(f"expected an (N, k) count table, got shape {table.shape}")
    n = table.sum(axis=1)
    if np.any(n != n[0]) or n[0] < 2:
        raise ValueError("every subject needs the same number of raters (at least 2)")
    n = float(n[0])
    p_i = (np.sum(table * table, axis=1) - n) / (n * (n - 1.0))
    p_bar = float(p_i.mean())
    p_j = table.sum(axis=0) / (table.shape[0] * n)
    p_e = float(np.sum(p_j * p_j))
    if math.isclose(p_e, 1.0):
        return math.nan
    return (p_bar - p_e) / (1.0 - p_e)


def agreement_kappa(rows: Sequence[Mapping], *, n_reviewers: int) -> list[dict]:
    """Fleiss' kappa per group and question, of the answers about the ATP plan (three
    categories) and of the scored outcome (two categories).

    Parameters
    ----------
    rows : sequence of mapping
        `score_answers` rows.
    n_reviewers : int
        Number of reviewers; under 2 gives no rows.

    Returns
    -------
    list of dict
        Per group and question: ``kappa_answers`` and ``kappa_scored``.
    """
    per_case: dict[str, list[Mapping]] = {}
    for r in rows:
        per_case.setdefault(r["case"], []).append(r)
    cases = [{"site": rs[0]["site"], "institution": rs[0]["institution"], "rows": rs}
             for rs in per_case.values()]
    out = []
    if n_reviewers < 2:
        return out
    for (level, site, inst), members in _groups(cases).items():
        for q in QUESTIONS:
            field = QUESTION_FIELDS[q]
            answers = [[sum(r[field] == c for r in m["rows"]) for c in CATEGORIES]
                       for m in members]
            scored = [[sum(bool(r[q]) for r in m["rows"]),
                       sum(not r[q] for r in m["rows"])] for m in members]
            out.append({"level": level, "site": site, "institution": inst, "question": q,
                        "cases": len(members), "reviewers": n_reviewers,
                        "kappa_answers": fleiss_kappa(answers),
                        "kappa_scored": fleiss_kappa(scored)})
    return out
