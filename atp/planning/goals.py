"""Prioritized clinical goal lists and how each goal gets its value.

A goal says ``<metric>(<roi>) <op> <value>`` with a priority (1 = highest). Its value
comes from one of four sources (``ResolvedGoal.source``):

- ``user``: priority-1 hard constraints and control structures (rings, patches,
  normal tissue): the list's ``value``;
- ``prescription``: target goals: ``value_pct_rx`` percent of the target's prescription;
- ``predicted``: organ goals with priority >= the targets' priority: the metric read off
  the predicted dose, times ``1 + tolerance_pct / 100`` (t = -10: 10 % stricter);
- ``protocol``: the same organ goals when no prediction is given (the manual / MNL plan):
  the list's ``value``.

ROI names may be patterns: ``ptv_*`` expands to every target of the case (each with its
own prescription), ``ptv_high`` is the target with the highest prescription, and
``*_ipsi`` / ``*_contra`` resolve through the case's laterality.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from atp.planning.metrics import Metric, parse_metric

OPS = ("<=", ">=")
_FIELDS = {"roi", "metric", "op", "value", "value_pct_rx", "priority", "tolerance_pct",
           "role", "weight", "name"}


class GoalError(ValueError):
    """A bad goal list. The message names the goal (list source and index or name)."""


@dataclass(frozen=True)
class Goal:
    """One entry of a goal list (before it is applied to a case)."""

    roi: str
    metric: Metric
    op: str
    priority: int
    role: str | None = None  # target / organ / control; inferred from the case when None
    value: float | None = None
    value_pct_rx: float | None = None
    tolerance_pct: float = 0.0
    weight: float = 1.0
    name: str = ""

    @property
    def label(self) -> str:
        """The goal as written, e.g. ``D0.03cc(spinal_cord) <=`` (or its ``name``)."""
        return self.name or f"{self.metric.name}({self.roi}) {self.op}"


def goal_from_dict(d: Mapping[str, Any], *, where: str) -> Goal:
    """Build and validate one goal; ``where`` names it in error messages.

    Parameters
    ----------
    d : Mapping
        The goal's fields (``roi``, ``metric``, ``op``, ``priority`` required; ``value``,
        ``value_pct_rx`` (% of Rx), ``tolerance_pct`` (%), ``role``, ``weight``, ``name``).
    where : str
        Where the goal comes from (list source and index), for error messages.

    Returns
    -------
    Goal
        The validated goal; GoalError on a bad field.
    """
    if not isinstance(d, Mapping):
        raise GoalError(f"{where}: expected a mapping, got {type(d).__name__}")
    unknown = set(d) - _FIELDS
    if unknown:
        raise GoalError(f"{where}: unknown field(s) {sorted(unknown)} (known: {sorted(_FIELDS)})")
    for key in ("roi", "metric", "op", "priority"):
        if key not in d:
            raise GoalError(f"{where}: missing field '{key}'")
    try:
        metric = parse_metric(d["metric"])
    except ValueError as exc:
        raise GoalError(f"{where}: {exc}") from None
    op = str(d["op"]).strip()
    if op not in OPS:
        raise GoalError(f"{where}: op '{op}' is not one of {OPS}")
    prio = d["priority"]
    if not isinstance(prio, int) or isinstance(prio, bool) or prio < 1:
        raise GoalError(f"{where}: priority must be an integer >= 1, got {prio!r}")
    tol = float(d.get("tolerance_pct", 0.0))
    if tol < -100.0:
        raise GoalError(f"{where}: tolerance_pct {tol} < -100 would ask for a negative value")
    pct = d.get("value_pct_rx")
    if pct is not None and not 0.0 <= float(pct) <= 200.0:
        raise GoalError(f"{where}: value_pct_rx {pct} outside [0, 200]")
    value = d.get("value")
    if value is not None and float(value) < 0.0:
        raise GoalError(f"{where}: value {value} is negative")
    if metric.kind == "vgy" and value is not None and float(value) > 100.0:
        raise GoalError(f"{where}: {metric.name} is a percentage; value {value} > 100")
    role = d.get("role")
    if role is not None and role not in ("target", "organ", "control"):
        raise GoalError(f"{where}: role '{role}' is not target, organ or control")
    weight = float(d.get("weight", 1.0))
    if not weight > 0:
        raise GoalError(f"{where}: weight must be > 0")
    return Goal(roi=str(d["roi"]), metric=metric, op=op, priority=prio, role=role,
                value=None if value is None else float(value),
                value_pct_rx=None if pct is None else float(pct), tolerance_pct=tol,
                weight=weight, name=str(d.get("name", "")))


@dataclass(frozen=True)
class GoalList:
    """An ordered, validated list of goals with the source it was read from."""

    goals: tuple[Goal, ...]
    source: str = "<memory>"

    @classmethod
    def from_dicts(cls, items: Iterable[Mapping[str, Any]], *, source: str = "<memory>"
                   ) -> GoalList:
        """A goal list from mappings (site YAML); an error names ``source`` and the goal.

        Parameters
        ----------
        items : Iterable of Mapping
            One mapping per goal (see `goal_from_dict`).
        source : str, optional
            Where the list comes from (a file name), kept for error messages.

        Returns
        -------
        GoalList
            The validated goals, in the given order.
        """
        goals = tuple(goal_from_dict(d, where=f"{source}: goal {i} "
                                     f"({d.get('metric', '?')} {d.get('roi', '?')})"
                                     if isinstance(d, Mapping) else f"{source}: goal {i}")
                      for i, d in enumerate(items))
        return cls(goals, source)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, *, key: str = "goals") -> GoalList:
        """Read the list under ``key`` of a YAML file (e.g. ``conf/site/lung.yaml``).

        Parameters
        ----------
        path : str or os.PathLike
            The YAML file.
        key : str, optional
            Top-level key holding the list of goals; default ``goals``.

        Returns
        -------
        GoalList
            The validated goals, with ``path`` as their source.
        """
        path = Path(path)
        try:
            doc = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise GoalError(f"{path}: cannot read goal list ({exc})") from None
        items = doc.get(key) if isinstance(doc, Mapping) else None
        if not isinstance(items, list):
            raise GoalError(f"{path}: no list under '{key}'")
        return cls.from_dicts(items, source=str(path))

    def with_tolerances(self, tolerances: Mapping[str, float]) -> GoalList:
        """Override tolerances by ROI name or goal name (institution/patient overlays).

        Parameters
        ----------
        tolerances : Mapping of str to float
            Tolerance (%) by goal name or ROI name; a goal's name wins over its ROI.

        Returns
        -------
        GoalList
            A new list; goals not named keep their tolerance.
        """
        out = []
        for g in self.goals:
            t = tolerances.get(g.name) if g.name in tolerances else tolerances.get(g.roi)
            if t is not None:
                if float(t) < -100.0:
                    raise GoalError(f"{self.source}: tolerance {t} for {g.label} < -100")
                g = replace(g, tolerance_pct=float(t))
            out.append(g)
        return GoalList(tuple(out), self.source)

    def extended(self, other: GoalList) -> GoalList:
        """This list followed by ``other``'s goals.

        Parameters
        ----------
        other : GoalList
            The goals to append.

        Returns
        -------
        GoalList
            The concatenation, with source ``<this source>+<other source>``.
        """
        return GoalList(self.goals + other.goals, f"{self.source}+{other.source}")


def expand_roi(pattern: str, available: Iterable[str], *, laterality: str | None) -> list[str]:
    """ROI names a goal applies to: wildcard patterns and ipsi/contra resolution.

    Parameters
    ----------
    pattern : str
        A ROI name or fnmatch pattern (``ptv_*``), possibly ending in ``_ipsi``/``_contra``.
    available : Iterable of str
        The case's ROI names, matched against a wildcard pattern.
    laterality : str or None
        ``left`` or ``right``; needed only for ``_ipsi``/``_contra`` names.

    Returns
    -------
    list of str
        The sorted matches of a wildcard pattern (possibly none), else the one resolved
        name (not checked against ``available``).
    """
    name = pattern
    if name.endswith(("_ipsi", "_contra")):
        if laterality not in ("left", "right"):
            raise GoalError(f"ROI '{pattern}' needs the case's laterality (metadata "
                            f"'laterality' = left/right), got {laterality!r}")
        ipsi = name.endswith("_ipsi")
        side = "l" if (laterality == "left") == ipsi else "r"
        name = name.rsplit("_", 1)[0] + f"_{side}"
    if any(c in name for c in "*?["):
        return sorted(n for n in available if fnmatch.fnmatchcase(n, name))
    return [name]
