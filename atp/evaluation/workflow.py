"""Planning-time log: wall time of each planning step per case and the optimization rounds.

The study timed every step of real-world planning and counted the optimization rounds of
each ATP plan, cold and warm starts together (its Fig. 7 and 8). `WorkflowLog` records the
same for atp's steps (`STEPS`: prediction, beams and dose-influence matrix, optimization,
leaf sequencing when present, export); every optimization is one round, the first and
each re-optimization after an edit, with its start (``cold`` or ``warm``).
``write`` gives ``workflow.csv`` (atomically); `read_workflow` reads it back;
`summarize_workflow` aggregates logs for the Fig. 7-style stacked bars of
`atp.viz.plot_workflow`
(``python -m atp.sweep_summary`` does this for every ``workflow.csv`` of a sweep).

Columns of ``workflow.csv``: case, site, institution, plan, step, round, start, wall_s
(``round`` and ``start`` only on optimization rows).
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from atp.io.atomic import atomic_open

STEPS = ("prediction", "beams_and_matrix", "optimization", "sequencing", "export")
STARTS = ("cold", "warm")
COLUMNS = ("case", "site", "institution", "plan", "step", "round", "start", "wall_s")
FILENAME = "workflow.csv"


class WorkflowLog:
    """Wall times of the planning steps of one or more cases.

    Parameters
    ----------
    site, institution, plan : str
        Labels written on every row (``plan``: e.g. ``"ATP"``).
    """

    def __init__(self, *, site: str = "", institution: str = "", plan: str = "") -> None:
        self.labels = {"site": str(site), "institution": str(institution), "plan": str(plan)}
        self.rows: list[dict] = []

    def record(self, case: str, step: str, wall_s: float, *, start: str | None = None) -> dict:
        """Add one step of ``case``; an ``optimization`` step is a round (``start``
        ``cold`` or ``warm``, default ``cold`` for the first round, else required).

        Parameters
        ----------
        case : str
            Patient id.
        step : str
            One of `STEPS`.
        wall_s : float
            Wall time of the step (s), finite and >= 0.
        start : str, optional
            ``"cold"`` or ``"warm"``; optimization rounds only.

        Returns
        -------
        dict
            The added row (`COLUMNS`).
        """
        if step not in STEPS:
            raise ValueError(f"step must be one of {STEPS}, got {step!r}")
        t = float(wall_s)
        if not math.isfinite(t) or t < 0.0:
            raise ValueError(f"wall_s must be finite and >= 0, got {wall_s!r}")
        row = {"case": str(case), **self.labels, "step": step, "round": "", "start": "",
               "wall_s": t}
        if step == "optimization":
            n = self.rounds(case) + 1
            start = start or ("cold" if n == 1 else None)
            if start not in STARTS:
                raise ValueError(f"case {case}: re-optimization round {n} needs start='cold' "
                                 f"or 'warm', got {start!r}")
            row.update({"round": n, "start": start})
        elif start is not None:
            raise ValueError(f"start applies to optimization rounds only, not to {step!r}")
        self.rows.append(row)
        return row

    @contextlib.contextmanager
    def timed(self, case: str, step: str, *, start: str | None = None) -> Iterator[None]:
        """Time the body of a ``with`` block as ``step`` of ``case`` (kept only on success).

        Parameters
        ----------
        case : str
            Patient id.
        step : str
            One of `STEPS`.
        start : str, optional
            ``"cold"`` or ``"warm"``; optimization rounds only (see `record`).

        Yields
        ------
        None
            Control to the ``with`` body; its wall time (s) is recorded on exit.
        """
        t0 = time.perf_counter()
        yield
        self.record(case, step, time.perf_counter() - t0, start=start)

    def rounds(self, case: str, *, start: str | None = None) -> int:
        """Optimization rounds of ``case`` so far (of one ``start`` if given).

        Parameters
        ----------
        case : str
            Patient id.
        start : str, optional
            Count only ``"cold"`` or ``"warm"`` rounds; None counts all.

        Returns
        -------
        int
            Number of rounds.
        """
        return sum(r["step"] == "optimization" and r["case"] == str(case)
                   and (start is None or r["start"] == start) for r in self.rows)

    def extend(self, rows: Iterable[Mapping]) -> None:
        """Add rows written by another log (e.g. read from a ``workflow.csv``).

        Parameters
        ----------
        rows : iterable of mapping
            Rows with the `COLUMNS` keys (missing ones become empty); not validated.
        """
        for r in rows:
            self.rows.append({c: r.get(c, "") for c in COLUMNS})

    def write(self, path: str | os.PathLike) -> Path:
        """Write the rows as CSV (``workflow.csv`` in a folder path) atomically.

        Parameters
        ----------
        path : str or os.PathLike
            A ``.csv`` file, or a folder to write ``workflow.csv`` in.

        Returns
        -------
        Path
            The written file.
        """
        path = Path(path)
        if path.suffix.lower() != ".csv":
            path = path / FILENAME
        with atomic_open(path, mode="w") as fh:
            w = csv.DictWriter(fh, fieldnames=COLUMNS, lineterminator="\n")
            w.writeheader()
            for r in self.rows:
                w.writerow({**r, "wall_s": repr(float(r["wall_s"]))})
        return path


def read_workflow(path: str | os.PathLike) -> WorkflowLog:
    """A ``workflow.csv`` (or the one in a folder) as a `WorkflowLog`; a clear error
    naming the file for a missing column or a bad value.

    Parameters
    ----------
    path : str or os.PathLike
        A ``workflow.csv`` or the folder holding one.

    Returns
    -------
    WorkflowLog
        A log with the file's rows (no labels of its own).
    """
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: not a workflow log, missing columns {missing}")
        log = WorkflowLog()
        for i, r in enumerate(reader, start=2):
            try:
                row = {c: r[c] for c in COLUMNS}
                row["wall_s"] = float(r["wall_s"])
                row["round"] = int(r["round"]) if r["round"] else ""
                if row["step"] not in STEPS or (row["start"] and row["start"] not in STARTS):
                    raise ValueError(f"step {row['step']!r}, start {row['start']!r}")
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{path}, line {i}: {exc}") from None
            log.rows.append(row)
    return log


def _group_of(r: Mapping, by: Sequence[str]) -> str:
    return " @ ".join(str(r.get(k, "")) for k in by if str(r.get(k, ""))) or "all"


def summarize_workflow(rows: Iterable[Mapping], *, by: Sequence[str] = ("site", "institution")
                       ) -> list[dict]:
    """Per group (the ``by`` columns) and step: cases, mean, median, IQR of the time per case.

    A case's time of a step is the sum of its rows (every optimization round); a case
    without a step (no sequencing) counts 0 s for it, so the step means stack to the mean
    total. One more row per group, ``step == "rounds"``, gives the mean number of
    optimization rounds per case and the cold and warm rounds in all.

    Parameters
    ----------
    rows : iterable of mapping
        Workflow rows (`COLUMNS`, optionally ``job``), of one or more logs.
    by : sequence of str, optional
        Grouping columns; default (site, institution); empty values are left out of
        the group name (``"all"`` when none).

    Returns
    -------
    list of dict
        Per group and step: ``group, step, cases, mean_s, median_s, q1_s, q3_s`` (s);
        plus a ``rounds`` row per group.
    """
    per_case: dict[str, dict[tuple[str, str], dict[str, float]]] = {}
    rounds: dict[str, dict[tuple[str, str], list[str]]] = {}
    for r in rows:
        g = _group_of(r, by)
        key = (str(r.get("job", "")), str(r.get("institution", "")), str(r["case"]))
        steps = per_case.setdefault(g, {}).setdefault(key, {})
        steps[r["step"]] = steps.get(r["step"], 0.0) + float(r["wall_s"])
        if r["step"] == "optimization":
            rounds.setdefault(g, {}).setdefault(key, []).append(str(r["start"]))
    out = []
    for g, cases in per_case.items():
        for step in STEPS:
            if not any(step in c for c in cases.values()):
                continue
            t = np.array([c.get(step, 0.0) for c in cases.values()], dtype=np.float64)
            q1, med, q3 = (float(v) for v in np.percentile(t, [25, 50, 75]))
            out.append({"group": g, "step": step, "cases": int(t.size),
                        "mean_s": float(t.mean(dtype=np.float64)), "median_s": med,
                        "q1_s": q1, "q3_s": q3})
        starts = [s for lst in rounds.get(g, {}).values() for s in lst]
        n_rounds = np.array([len(rounds.get(g, {}).get(k, [])) for k in cases],
                            dtype=np.float64)
        out.append({"group": g, "step": "rounds", "cases": len(cases),
                    "mean_rounds": float(n_rounds.mean(dtype=np.float64)),
                    "max_rounds": int(n_rounds.max()) if n_rounds.size else 0,
                    "cold_rounds": starts.count("cold"), "warm_rounds": starts.count("warm")})
    return out


def find_workflow_logs(root: str | os.PathLike, *, exclude: Sequence[str] = ("summary",)
                       ) -> list[Path]:
    """Every ``workflow.csv`` under ``root`` (sorted), skipping folders named in ``exclude``.

    Parameters
    ----------
    root : str or os.PathLike
        Folder searched recursively.
    exclude : sequence of str, optional
        Folder names skipped at any depth below ``root``; default ``("summary",)``.

    Returns
    -------
    list of Path
        The log files found.
    """
    root = Path(root)
    return sorted(p for p in root.rglob(FILENAME)
                  if not set(p.relative_to(root).parts[:-1]) & set(exclude))
