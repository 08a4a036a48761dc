"""Find the cases of a review: ``plans/*.npz`` in evaluation runs or multirun job folders."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from atp.evaluation.plan_store import PLANS_DIR, CasePlans, load_case_plans

log = logging.getLogger(__name__)
UNKNOWN = "unknown"


class SourceError(ValueError):
    """A run folder without plans, or a plans file the review cannot use."""


@dataclass(frozen=True)
class SourceCase:
    """Where one case of the review comes from (never shown to a reviewer)."""

    run: str  # the run folder, or "<sweep>/<job>" in a multirun
    patient_id: str
    path: Path  # the plans file
    site: str
    institution: str
    comparator: str

    @property
    def sort_key(self) -> tuple[str, str, str, str]:
        """Order of sources: site, institution, run, patient."""
        return (self.site, self.institution, self.run, self.patient_id)


def _job_config(job: Path) -> dict:
    path = job / ".hydra" / "config.yaml"
    try:
        doc = yaml.safe_load(path.read_text()) if path.is_file() else {}
    except (OSError, yaml.YAMLError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _name(cfg: dict, key: str) -> str | None:
    value = cfg.get(key)
    if isinstance(value, dict):
        value = value.get("name")
    return str(value) if value else None


def _status(job: Path) -> str | None:
    path = job / "job_status.json"
    if not path.is_file():
        return None
    try:
        return str(json.loads(path.read_text()).get("status"))
    except (OSError, ValueError, AttributeError):
        return "UNREADABLE"


def _run_folders(root: Path) -> list[Path]:
    """``root`` itself if it holds plans/, else its job folders that do (in job order)."""
    if (root / PLANS_DIR).is_dir():
        return [root]
    if not root.is_dir():
        raise SourceError(f"{root}: no such run folder")
    jobs = sorted((p for p in root.iterdir() if p.is_dir() and (p / PLANS_DIR).is_dir()),
                  key=lambda p: p.name)
    runs = []
    for job in jobs:
        status = _status(job)
        if status not in (None, "COMPLETED"):
            log.warning("%s: job status %s, its plans are left out", job, status)
            continue
        runs.append(job)
    if not runs:
        raise SourceError(f"{root}: no {PLANS_DIR}/ folder, and no job folder with one "
                          f"(is it an evaluation run that stores its plans?)")
    return runs


def find_cases(runs: Sequence[str | os.PathLike], *, new_label: str = "ATP"
               ) -> list[SourceCase]:
    """Every ``plans/*.npz`` of ``runs`` (run or sweep folders), checked and sorted.

    Each file must hold a ``new_label`` plan and a different comparator plan. Site and
    institution come from the file's ``meta``, else the case (site, metadata), else the
    job's ``.hydra/config.yaml``; ``"unknown"`` when none says. Sorted by (site,
    institution, run, patient id), so a seed alone fixes everything drawn later.

    Parameters
    ----------
    runs : sequence of str or os.PathLike
        Evaluation run folders (holding ``plans/``) or sweep folders of such jobs; jobs
        whose status is not COMPLETED are left out.
    new_label : str, optional
        Plan label of the plan under review; default ``"ATP"``.

    Returns
    -------
    list of SourceCase
        One per plans file; `SourceError` for a bad, duplicate or missing file.
    """
    if not runs:
        raise SourceError("no evaluation run given (runs=[<run or sweep folder>, ...])")
    out: list[SourceCase] = []
    seen: dict[object, Path] = {}
    for root in (Path(r) for r in runs):
        for run in _run_folders(root):
            files = sorted((run / PLANS_DIR).glob("*.npz"))
            if not files:
                raise SourceError(f"{run / PLANS_DIR}: no .npz plans file")
            cfg = _job_config(run)
            label = run.name if run == root else f"{root.name}/{run.name}"
            for f in files:
                if f.resolve() in seen:
                    raise SourceError(f"{f}: given twice (runs overlap)")
                seen[f.resolve()] = f
                out.append(_source_case(load_case_plans(f), f, label, cfg, new_label))
                key = (label, out[-1].patient_id)
                if key in seen:
                    raise SourceError(f"{f}: patient {key[1]!r} also in {seen[key]}")
                seen[key] = f
    return sorted(out, key=lambda c: c.sort_key)


def _source_case(plans: CasePlans, path: Path, run: str, cfg: dict,
                 new_label: str) -> SourceCase:
    if new_label not in plans.doses_gy:
        raise SourceError(f"{path}: field 'labels': no {new_label!r} plan "
                          f"(labels: {list(plans.doses_gy)})")
    if plans.comparator == new_label:
        raise SourceError(f"{path}: field 'comparator': is the plan under review "
                          f"({new_label!r}) itself")
    case = plans.case
    site = (plans.meta.get("site") or case.site or _name(cfg, "site") or UNKNOWN)
    inst = (plans.meta.get("institution") or _name(cfg, "institution")
            or case.metadata.get("institution") or UNKNOWN)
    return SourceCase(run=run, patient_id=case.patient_id, path=path, site=str(site),
                      institution=str(inst), comparator=plans.comparator)
