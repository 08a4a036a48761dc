"""Reading one DICOM file of an expected modality (shared by the RT readers)."""

from __future__ import annotations

import os

import pydicom

from atp.cases.case import CaseError


def read_dicom(path: str | os.PathLike, *, modality: str) -> pydicom.Dataset:
    """The dataset of ``path``; `CaseError` naming the file if unreadable or not ``modality``.

    Parameters
    ----------
    path : str or os.PathLike
        DICOM file.
    modality : str
        Expected Modality tag value (``CT``, ``RTSTRUCT``, ``RTDOSE``, ``RTPLAN``).

    Returns
    -------
    pydicom.Dataset
        The full dataset.
    """
    src = str(path)
    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:
        raise CaseError(src, "file", f"unreadable DICOM ({exc})") from None
    if ds.get("Modality") != modality:
        raise CaseError(src, "Modality", f"expected {modality}, got {ds.get('Modality')!r}")
    return ds
