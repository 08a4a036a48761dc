"""Load a case or a dose from whichever format a path holds."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from atp.cases import CaseError, PatientCase, load_case
from atp.io.openkbp import load_openkbp_patient, read_openkbp_dose


def load_any_case(path: str | os.PathLike, *, site: str | None = None) -> PatientCase:
    """A case file (``.npz``) or an OpenKBP patient folder (``pt_N/``).

    Parameters
    ----------
    path : str or os.PathLike
        Case file or OpenKBP patient folder.
    site : str, optional
        Site of an OpenKBP folder; default ``"npc"``. Ignored for case files.

    Returns
    -------
    PatientCase
        The loaded case.
    """
    path = Path(path)
    if path.is_dir():
        if (path / "ct.csv").exists() or (path / "dose.csv").exists():
            return load_openkbp_patient(path, site=site or "npc")
        raise CaseError(str(path), "folder", "not an OpenKBP patient folder (no ct.csv)")
    return load_case(path)


def load_dose(path: str | os.PathLike, *, shape: tuple[int, ...]) -> np.ndarray:
    """A dose (Gy) from ``.npy``, ``.npz`` (key ``dose_gy``) or an OpenKBP ``.csv``.

    Parameters
    ----------
    path : str or os.PathLike
        Dose file.
    shape : tuple of int
        Expected shape, the case grid (z, y, x).

    Returns
    -------
    np.ndarray
        Dose (Gy, float32), finite and >= 0, of shape ``shape``.
    """
    path = Path(path)
    if not path.is_file():
        raise CaseError(str(path), "file", "does not exist")
    try:
        if path.suffix == ".csv":
            dose = read_openkbp_dose(path)
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if "dose_gy" not in z.files:
                    raise CaseError(str(path), "dose_gy", f"missing (keys: {z.files})")
                dose = z["dose_gy"]
        else:
            dose = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CaseError(str(path), "file", f"unreadable dose ({exc})") from None
    dose = np.asarray(dose, dtype=np.float32)
    if dose.shape != tuple(shape):
        raise CaseError(str(path), "dose_gy", f"shape {dose.shape} != case grid {tuple(shape)}")
    if not np.all(np.isfinite(dose)) or dose.min() < 0:
        raise CaseError(str(path), "dose_gy", "must be finite and >= 0")
    return dose


PREDICTION_SUFFIXES = (".npy", ".npz", ".csv")


def find_prediction(folder: str | os.PathLike, patient_id: str) -> Path:
    """The predicted-dose file of ``patient_id`` in ``folder``: ``<id>.npy``, ``<id>.npz``
    (key ``dose_gy``) or ``<id>.csv`` (an OpenKBP submission).

    Parameters
    ----------
    folder : str or os.PathLike
        Folder of predicted doses.
    patient_id : str
        Patient whose file is wanted.

    Returns
    -------
    Path
        The single matching file.

    Raises
    ------
    CaseError
        Naming the folder and the patient when there is none, or more than one.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CaseError(str(folder), "prediction", "not a folder of predictions")
    found = [folder / f"{patient_id}{s}" for s in PREDICTION_SUFFIXES
             if (folder / f"{patient_id}{s}").is_file()]
    if len(found) != 1:
        raise CaseError(str(folder), "prediction", f"{len(found)} files for patient "
                        f"{patient_id} (expected one of {patient_id}"
                        f"{{{','.join(PREDICTION_SUFFIXES)}}})")
    return found[0]
