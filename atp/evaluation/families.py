"""Bonferroni families of a comparison, and grouping columns joined from a per-case table.

The grouping column (e.g. the preferred plan of the blinded review) splits every table of
`atp.evaluation.compare` (``group_by=``) and every dot plot of `atp.viz.evaluation`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence


def bonferroni_families(*tables: tuple[str, Sequence[Mapping]],
                        group_by: str | None = None) -> list[dict]:
    """Bonferroni's m per comparison, site, institution (and group) and family.

    Parameters
    ----------
    *tables : (name, rows)
        Named outputs of `compare_plans` / `compare_to_prediction`.
    group_by : str, optional
        The grouping column the tables were made with.

    Returns
    -------
    list of dict
        ``comparison``, site, institution, [group], ``family``, ``m`` (the correction
        factor: the family's metrics compared) and ``metrics_with_p`` (those of them
        with a p value).
    """
    out: dict[tuple, dict] = {}
    for name, rows in tables:
        for r in rows:
            group = r.get(group_by, "") if group_by else ""
            key = (name, r["site"], r["institution"], group, r["family"])
            row = out.setdefault(key, {"comparison": name, "site": r["site"],
                                       "institution": r["institution"],
                                       **({group_by: group} if group_by else {}),
                                       "family": r["family"], "m": int(r["m_tests"]),
                                       "metrics_with_p": 0})
            row["metrics_with_p"] += int(not math.isnan(float(r["p"])))
    return list(out.values())


def attach_groups(rows: Iterable[Mapping], groups: Iterable[Mapping], *,
                  column: str = "preferred") -> list[dict]:
    """Endpoint rows with a grouping column taken from a per-case table.

    Parameters
    ----------
    rows : iterable of dict
        Endpoint rows (`plan_endpoints`).
    groups : iterable of dict
        One row per case with ``case``, ``column`` and optionally ``site`` and
        ``institution`` (matched when present), e.g. the blinded review's preferred plan.
    column : str
        The grouping column.

    Returns
    -------
    list of dict
        Copies of ``rows`` with ``column`` set (None for a case without a group).
    """
    lookup: dict[tuple, object] = {}
    for g in groups:
        if column not in g:
            raise ValueError(f"grouping table row {dict(g)!r} has no column {column!r}")
        key = (g.get("site"), g.get("institution"), str(g["case"]))
        if key in lookup and lookup[key] != g[column]:
            raise ValueError(f"case {key} has two {column!r} values: {lookup[key]!r} and "
                             f"{g[column]!r}")
        lookup[key] = g[column]
    out = []
    for r in rows:
        value = None
        for key in ((r.get("site"), r.get("institution"), str(r["case"])),
                    (r.get("site"), None, str(r["case"])), (None, None, str(r["case"]))):
            if key in lookup:
                value = lookup[key]
                break
        out.append({**r, column: value})
    return out
