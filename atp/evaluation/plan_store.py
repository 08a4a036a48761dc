"""One ``.npz`` per evaluated case: the case itself and every plan's dose on its grid.

An evaluation run writes ``plans/<patient_id>.npz`` with `save_case_plans`; the blinded
review (`atp.review`) reads them back with `load_case_plans`. The archive holds the
members of an `atp.cases` case file (CT, ROI masks and roles, spacing/origin,
prescriptions, site, metadata; see `atp.cases.store`) plus:

- ``plans_header``: JSON ``{"plans_version", "labels", "comparator", "meta"}``;
- ``plan_dose_<i>``: float32 dose (Gy) of ``labels[i]`` on the case grid.

Labels name the plans, e.g. ``{"ATP": ..., "MNL": ...}`` or ``{"ATP": ..., "clinical":
...}``, optionally ``"prediction"``; ``comparator`` says which label the new plan is
compared with. ``meta`` is free JSON (institution, run, settings).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from atp.cases import CaseError, PatientCase
from atp.cases.store import case_from_arrays, case_to_arrays, read_archive
from atp.io.atomic import atomic_open

PLANS_VERSION = 1
PLANS_DIR = "plans"
_HEADER = "plans_header"
_DOSE = "plan_dose_"


@dataclass
class CasePlans:
    """A case with the doses of its plans (label -> Gy array on the case grid)."""

    case: PatientCase
    doses_gy: dict[str, np.ndarray]
    comparator: str
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def _check_dose(src: str, label: str, dose: Any, shape: tuple[int, ...]) -> np.ndarray:
    where = f"doses_gy[{label!r}]"
    if not isinstance(label, str) or not label.strip():
        raise CaseError(src, "doses_gy", f"plan labels must be non-empty strings, got {label!r}")
    if not isinstance(dose, np.ndarray) or dose.shape != tuple(shape):
        got = dose.shape if isinstance(dose, np.ndarray) else type(dose).__name__
        raise CaseError(src, where, f"expected an array of the case grid {tuple(shape)}, "
                        f"got {got}")
    if not (np.issubdtype(dose.dtype, np.floating) or np.issubdtype(dose.dtype, np.integer)):
        raise CaseError(src, where, f"expected a numeric dtype, got {dose.dtype}")
    if not np.all(np.isfinite(dose)):
        raise CaseError(src, where, "contains NaN or infinite values")
    if dose.size and float(dose.min()) < 0.0:
        raise CaseError(src, where, f"negative dose ({float(dose.min()):.4g} Gy)")
    return np.asarray(dose, dtype=np.float32)


def save_case_plans(path: str | os.PathLike, *, case: PatientCase,
                    doses_gy: Mapping[str, np.ndarray], comparator: str,
                    meta: Mapping[str, Any] | None = None) -> Path:
    """Write ``case`` and its plans' doses to ``path`` atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Target ``.npz`` file (conventionally ``<run>/plans/<patient_id>.npz``).
    case : PatientCase
        The evaluated case (validated; stored as `atp.cases.save_case` stores it).
    doses_gy : mapping of str to np.ndarray
        Plan label -> dose (Gy) on the case grid, (z, y, x) (e.g. ``{"ATP": ..., "MNL":
        ...}``).
    comparator : str
        The label the new plan is compared with; must be a key of ``doses_gy``.
    meta : mapping, optional
        JSON-serialisable extras (``institution``, ``site``, run information).

    Returns
    -------
    Path
        ``path``. Errors name the file and the field (`atp.cases.CaseError`).
    """
    path = Path(path)
    src = str(path)
    arrays = case_to_arrays(case, source=src)
    if not doses_gy:
        raise CaseError(src, "doses_gy", "no plan dose given")
    if comparator not in doses_gy:
        raise CaseError(src, "comparator", f"{comparator!r} is not a plan label "
                        f"(labels: {list(doses_gy)})")
    labels = list(doses_gy)
    for i, label in enumerate(labels):
        arrays[f"{_DOSE}{i}"] = _check_dose(src, label, doses_gy[label], case.shape)
    header = {"plans_version": PLANS_VERSION, "labels": labels, "comparator": comparator,
              "meta": dict(meta or {})}
    try:
        arrays[_HEADER] = np.array(json.dumps(header))
    except TypeError as exc:
        raise CaseError(src, "meta", f"not JSON-serialisable: {exc}") from None
    with atomic_open(path) as fh:
        np.savez_compressed(fh, **arrays)
    return path


def load_case_plans(path: str | os.PathLike) -> CasePlans:
    """Read and validate a file of `save_case_plans`; `CaseError` names file and field.

    Parameters
    ----------
    path : str or os.PathLike
        The plans file (``.npz``).

    Returns
    -------
    CasePlans
        The case, its plan doses (Gy, (z, y, x)) by label, the comparator label and meta.
    """
    path = Path(path)
    src = str(path)
    data = read_archive(path)
    if _HEADER not in data:
        raise CaseError(src, _HEADER, "missing: not a plans file of atp.evaluation.plan_store")
    try:
        header = json.loads(str(data.pop(_HEADER)))
    except json.JSONDecodeError as exc:
        raise CaseError(src, _HEADER, f"invalid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise CaseError(src, _HEADER, "expected a JSON object")
    version = header.get("plans_version")
    if version != PLANS_VERSION:
        raise CaseError(src, "plans_version", f"is {version!r}, this atp reads {PLANS_VERSION}")
    labels = header.get("labels")
    if not isinstance(labels, list) or not labels or len(set(map(str, labels))) != len(labels):
        raise CaseError(src, "labels", f"expected a list of distinct plan labels, got {labels!r}")
    comparator = header.get("comparator")
    if comparator not in labels:
        raise CaseError(src, "comparator", f"{comparator!r} is not one of the labels {labels}")
    meta = header.get("meta") or {}
    if not isinstance(meta, dict):
        raise CaseError(src, "meta", "expected a JSON object")
    doses = {}
    for i, label in enumerate(labels):
        key = f"{_DOSE}{i}"
        if key not in data:
            raise CaseError(src, f"doses_gy[{label!r}]", f"array {key} missing")
        doses[str(label)] = data.pop(key)
    case = case_from_arrays(data, source=src)
    for label, dose in doses.items():
        doses[label] = _check_dose(src, label, dose, case.shape)
    return CasePlans(case=case, doses_gy=doses, comparator=str(comparator), meta=meta,
                     path=path)
