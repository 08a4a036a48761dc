"""One compressed ``.npz`` file per case, with a schema version; atomic writes.

Layout of the archive (no pickles): ``header`` holds a JSON document (schema version,
ids, geometry, prescriptions, ROI names and roles, metadata); ``ct_hu``, ``dose_gy``,
``dose_mask`` and ``roi_<i>`` (in the header's ROI order) hold the arrays.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

from atp.cases.case import CaseError, PatientCase, Prescription, Roi
from atp.io.atomic import atomic_open

SCHEMA_VERSION = 1
CASE_SUFFIX = ".npz"


def case_to_arrays(case: PatientCase, *, source: str) -> dict[str, np.ndarray]:
    """Validate ``case`` and return the archive members of its case file.

    The members (``header``, ``ct_hu``, ``dose_gy``, ``dose_mask``, ``roi_<i>``) are what
    `save_case` writes; other stores (e.g. `atp.evaluation.plan_store`) add their own
    members next to them. ``source`` names the file in errors.

    Parameters
    ----------
    case : PatientCase
        Case to store.
    source : str
        File named in errors.

    Returns
    -------
    dict of str to np.ndarray
        Archive members: ``header`` (JSON text), ``ct_hu`` (HU, float32), ``dose_gy``
        (Gy, float32, if any), ``dose_mask`` (if any) and ``roi_<i>`` (bool), (z, y, x).
    """
    case.validate(source=source)
    header = {
        "schema_version": SCHEMA_VERSION,
        "patient_id": case.patient_id,
        "site": case.site,
        "spacing_mm": [float(s) for s in case.spacing_mm],
        "origin_mm": [float(s) for s in case.origin_mm],
        "prescriptions": [
            {"target": p.target, "dose_gy": float(p.dose_gy), "n_fractions": int(p.n_fractions)}
            for p in case.prescriptions
        ],
        "rois": [{"name": n, "role": r.role} for n, r in case.rois.items()],
        "metadata": case.metadata,
    }
    try:
        header_txt = json.dumps(header)
    except TypeError as exc:
        raise CaseError(source, "metadata", f"not JSON-serialisable: {exc}") from None
    arrays: dict[str, np.ndarray] = {
        "header": np.array(header_txt),
        "ct_hu": np.asarray(case.ct_hu, dtype=np.float32),
    }
    if case.dose_gy is not None:
        arrays["dose_gy"] = np.asarray(case.dose_gy, dtype=np.float32)
    if case.dose_mask is not None:
        arrays["dose_mask"] = case.dose_mask
    for i, roi in enumerate(case.rois.values()):
        arrays[f"roi_{i}"] = roi.mask
    return arrays


def save_case(case: PatientCase, path: str | os.PathLike) -> Path:
    """Validate ``case`` and write it to ``path`` atomically; return the path.

    Parameters
    ----------
    case : PatientCase
        Case to write.
    path : str or os.PathLike
        Destination ``.npz`` file.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    arrays = case_to_arrays(case, source=str(path))
    with atomic_open(path) as fh:
        np.savez_compressed(fh, **arrays)
    return path


def read_archive(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every member of an ``.npz`` archive (no pickles); `CaseError` if unreadable.

    Parameters
    ----------
    path : str or os.PathLike
        ``.npz`` file.

    Returns
    -------
    dict of str to np.ndarray
        Member name -> array, loaded into memory.
    """
    path = Path(path)
    src = str(path)
    if not path.is_file():
        raise CaseError(src, "file", "does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise CaseError(src, "file", f"unreadable or truncated case archive ({exc})") from None


def load_case(path: str | os.PathLike) -> PatientCase:
    """Read and validate a case file; raise `CaseError` naming the file and the field.

    Parameters
    ----------
    path : str or os.PathLike
        Case file (``.npz``) written by `save_case`.

    Returns
    -------
    PatientCase
        The validated case.
    """
    return case_from_arrays(read_archive(path), source=str(path))


def case_from_arrays(data: dict[str, np.ndarray], *, source: str) -> PatientCase:
    """The validated case held by archive members ``data`` (see `case_to_arrays`).

    Parameters
    ----------
    data : dict of str to np.ndarray
        Archive members, as `case_to_arrays` makes them.
    source : str
        File named in errors.

    Returns
    -------
    PatientCase
        The validated case.
    """
    src = source
    if "header" not in data:
        raise CaseError(src, "header", "missing: not an atp case file")
    try:
        header = json.loads(str(data["header"]))
    except json.JSONDecodeError as exc:
        raise CaseError(src, "header", f"invalid JSON ({exc})") from None
    version = header.get("schema_version")
    if version != SCHEMA_VERSION:
        raise CaseError(src, "schema_version", f"is {version!r}, this atp reads {SCHEMA_VERSION}")
    for key in ("patient_id", "spacing_mm", "origin_mm", "prescriptions", "rois"):
        if key not in header:
            raise CaseError(src, key, "missing from the header")
    if "ct_hu" not in data:
        raise CaseError(src, "ct_hu", "missing")
    rois: dict[str, Roi] = {}
    for i, entry in enumerate(header["rois"]):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or f"roi_{i}" not in data:
            raise CaseError(src, f"rois[{i}]", "missing name or mask array")
        rois[name] = Roi(mask=data[f"roi_{i}"], role=entry.get("role", ""))
    try:
        prescriptions = tuple(
            Prescription(target=p["target"], dose_gy=float(p["dose_gy"]),
                         n_fractions=int(p["n_fractions"]))
            for p in header["prescriptions"]
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CaseError(src, "prescriptions", f"malformed entry ({exc})") from None
    case = PatientCase(
        patient_id=str(header["patient_id"]),
        ct_hu=data["ct_hu"],
        spacing_mm=tuple(header["spacing_mm"]),
        origin_mm=tuple(header["origin_mm"]),
        rois=rois,
        prescriptions=prescriptions,
        dose_gy=data.get("dose_gy"),
        dose_mask=data.get("dose_mask"),
        site=header.get("site"),
        metadata=header.get("metadata") or {},
    )
    return case.validate(source=src)
