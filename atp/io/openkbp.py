"""OpenKBP (AAPM 2020 knowledge-based planning challenge) reader and submission writer.

Dataset layout (one folder per patient, 128^3 grid): sparse CSV files with header
``,data`` and rows ``flat_index,value`` (C order), masks with an empty value. CT is
stored as HU + 1024 with unlisted voxels 0 (air). ``voxel_dimensions.csv`` holds the
spacing of array axes 0, 1, 2.

Axes: in the files, axis 0 runs anterior -> posterior, axis 1 patient right -> left and
axis 2 superior -> inferior (checked on the sample: mandible anterior of the cord, left
parotid at larger axis-1 index, brainstem above the cord). `atp` stores (z, y, x) with z
increasing superiorly, so ``zyx = flip(transpose(a, (2, 0, 1)), axis=0)``; the submission
writer applies the inverse.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from atp.cases.case import CaseError, PatientCase, Prescription, Roi
from atp.io.atomic import atomic_open
from atp.names import BODY, OPENKBP_ROIS, ptv_dose_gy

log = logging.getLogger(__name__)

GRID_SHAPE = (128, 128, 128)
N_VOXELS = int(np.prod(GRID_SHAPE))
N_FRACTIONS = 35
CT_OFFSET = 1024.0
#: every patient folder has these; ``dose.csv`` is optional (the challenge's test phase
#: has none): a folder without it loads as a case without a dose
REQUIRED_FILES = ("ct.csv", "possible_dose_mask.csv", "voxel_dimensions.csv")


def to_zyx(a: np.ndarray) -> np.ndarray:
    """OpenKBP array axes -> atp (z, y, x).

    Parameters
    ----------
    a : np.ndarray
        3D array in OpenKBP axis order (anterior->posterior, right->left,
        superior->inferior).

    Returns
    -------
    np.ndarray
        C-contiguous copy in atp (z, y, x) order, z increasing superiorly.
    """
    return np.ascontiguousarray(np.flip(np.transpose(a, (2, 0, 1)), axis=0))


def from_zyx(a: np.ndarray) -> np.ndarray:
    """atp (z, y, x) -> OpenKBP array axes (inverse of `to_zyx`).

    Parameters
    ----------
    a : np.ndarray
        3D array in atp (z, y, x) order.

    Returns
    -------
    np.ndarray
        C-contiguous copy in OpenKBP axis order.
    """
    return np.ascontiguousarray(np.transpose(np.flip(a, axis=0), (1, 2, 0)))


def read_sparse_csv(path: str | os.PathLike, *, with_values: bool) -> tuple[np.ndarray, np.ndarray]:
    """Read one sparse OpenKBP file; return (flat indices int64, values float32).

    Raises `CaseError` naming the file for a missing header, a truncated last line,
    a non-numeric entry, a duplicate or an index outside the 128^3 grid.

    Parameters
    ----------
    path : str or os.PathLike
        Sparse CSV file.
    with_values : bool
        Parse the value column; if False (masks) every value is 1.

    Returns
    -------
    tuple of np.ndarray
        ``(flat_index, values)``: C-order indices into the OpenKBP 128^3 array (int64)
        and their values (float32), as in the file (HU + 1024 for CT, Gy for dose).
    """
    path = Path(path)
    src = str(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise CaseError(src, "file", f"cannot be read ({exc.strerror})") from None
    if not text.startswith(",data"):
        raise CaseError(src, "header", f"expected ',data', got {text[:20]!r}")
    if not text.endswith("\n"):
        raise CaseError(src, "file", "truncated: the last line has no line end")
    lines = text.splitlines()[1:]
    idx = np.empty(len(lines), dtype=np.int64)
    val = np.ones(len(lines), dtype=np.float32)
    for i, line in enumerate(lines):
        parts = line.split(",")
        try:
            if len(parts) != 2:
                raise ValueError("expected 2 columns")
            idx[i] = int(parts[0])
            if with_values:
                val[i] = float(parts[1])
        except ValueError:
            raise CaseError(src, f"line {i + 2}",
                            f"non-numeric or malformed entry {line!r}") from None
    if idx.size:
        if idx.min() < 0 or idx.max() >= N_VOXELS:
            bad = int(idx[(idx < 0) | (idx >= N_VOXELS)][0])
            raise CaseError(src, "flat_index", f"index {bad} outside the 128^3 grid")
        if np.unique(idx).size != idx.size:
            raise CaseError(src, "flat_index", "duplicate indices")
    if with_values and not np.all(np.isfinite(val)):
        raise CaseError(src, "data", "contains NaN or infinite values")
    return idx, val


def _dense(idx: np.ndarray, val: np.ndarray, *, fill: float = 0.0) -> np.ndarray:
    out = np.full(N_VOXELS, fill, dtype=np.float32)
    out[idx] = val
    return to_zyx(out.reshape(GRID_SHAPE))


def _mask(idx: np.ndarray) -> np.ndarray:
    out = np.zeros(N_VOXELS, dtype=bool)
    out[idx] = True
    return to_zyx(out.reshape(GRID_SHAPE))


def read_voxel_dimensions(path: Path) -> tuple[float, float, float]:
    """Spacing of OpenKBP axes (0, 1, 2) in mm, returned in atp (z, y, x) order.

    Parameters
    ----------
    path : Path
        ``voxel_dimensions.csv`` of a patient folder.

    Returns
    -------
    tuple of 3 float
        Voxel spacing (mm), (z, y, x).
    """
    try:
        vals = np.loadtxt(path, dtype=np.float64, ndmin=1)
    except (OSError, ValueError) as exc:
        raise CaseError(str(path), "voxel_dimensions", f"unreadable ({exc})") from None
    if vals.shape != (3,) or not np.all(np.isfinite(vals)) or not np.all(vals > 0):
        raise CaseError(str(path), "voxel_dimensions", f"expected 3 positive numbers, got {vals}")
    return float(vals[2]), float(vals[0]), float(vals[1])


def load_openkbp_patient(folder: str | os.PathLike, *, site: str = "npc") -> PatientCase:
    """Read one OpenKBP patient folder into a validated `PatientCase`.

    Every file is parsed before the case is built, so an incomplete folder raises
    `CaseError` (naming the file) and never yields a half-built case. Without
    ``dose.csv`` the case has no dose (``dose_gy`` is None).

    Parameters
    ----------
    folder : str or os.PathLike
        Patient folder (``pt_N``).
    site : str, optional
        Site recorded on the case; default ``"npc"``.

    Returns
    -------
    PatientCase
        The case on the 128^3 grid, origin (0, 0, 0); PTVs as targets with
        35 fractions.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CaseError(str(folder), "folder", "does not exist")
    for name in REQUIRED_FILES:
        if not (folder / name).is_file():
            raise CaseError(str(folder / name), "file", "missing (incomplete patient folder)")
    spacing_zyx = read_voxel_dimensions(folder / "voxel_dimensions.csv")
    ct_idx, ct_val = read_sparse_csv(folder / "ct.csv", with_values=True)
    dose = None
    if (folder / "dose.csv").is_file():
        dose_idx, dose_val = read_sparse_csv(folder / "dose.csv", with_values=True)
        if dose_val.size and dose_val.min() < 0:
            raise CaseError(str(folder / "dose.csv"), "data", "negative dose")
        dose = _dense(dose_idx, dose_val)
    pdm_idx, _ = read_sparse_csv(folder / "possible_dose_mask.csv", with_values=False)
    rois: dict[str, Roi] = {}
    prescriptions: list[Prescription] = []
    for stem, canonical in OPENKBP_ROIS.items():
        f = folder / f"{stem}.csv"
        if not f.is_file():
            continue
        idx, _ = read_sparse_csv(f, with_values=False)
        rx = ptv_dose_gy(canonical)
        rois[canonical] = Roi(mask=_mask(idx), role="target" if rx else "organ")
        if rx:
            prescriptions.append(Prescription(canonical, rx, N_FRACTIONS))
    ct_hu = _dense(ct_idx, ct_val) - np.float32(CT_OFFSET)
    dose_mask = _mask(pdm_idx)
    # OpenKBP has no external contour: the body is the filled CT outline (> -500 HU)
    # together with the possible-dose mask (which also holds some skin-air voxels).
    body = ndimage.binary_fill_holes(ndimage.binary_opening(ct_hu > -500.0)) | dose_mask
    rois = {BODY: Roi(mask=body, role="external"), **rois}
    prescriptions.sort(key=lambda p: -p.dose_gy)
    if not prescriptions:
        log.warning("%s: no PTV file; the case has no prescription", folder)
    case = PatientCase(
        patient_id=folder.name,
        ct_hu=ct_hu,
        spacing_mm=spacing_zyx,
        origin_mm=(0.0, 0.0, 0.0),
        rois=rois,
        prescriptions=tuple(prescriptions),
        dose_gy=dose,
        dose_mask=dose_mask,
        site=site,
        metadata={"source": "openkbp", "folder": str(folder),
                  "body": "CT > -500 HU filled, or possible-dose mask"},
    )
    return case.validate(source=str(folder))


@dataclass
class LoadReport:
    """Outcome of a batch load: the cases read and, per skipped folder, why."""

    cases: list[PatientCase] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def patient_folders(root: str | os.PathLike) -> list[Path]:
    """Patient folders (``pt_N``) under ``root`` or its ``*-pats`` split folders, by number.

    Parameters
    ----------
    root : str or os.PathLike
        OpenKBP dataset folder.

    Returns
    -------
    list of Path
        Patient folders, sorted by split folder, then patient number.
    """
    root = Path(root)
    if not root.is_dir():
        raise CaseError(str(root), "folder", "OpenKBP folder does not exist")
    found = [p for p in root.glob("pt_*") if p.is_dir()]
    found += [p for p in root.glob("*-pats/pt_*") if p.is_dir()]

    def key(p: Path) -> tuple[str, int]:
        num = p.name[3:]
        return (p.parent.name, int(num) if num.isdigit() else -1)

    return sorted(found, key=key)


def load_openkbp_dataset(
    root: str | os.PathLike, *, site: str = "npc", progress: bool = True
) -> LoadReport:
    """Read every patient under ``root``; skip broken ones with one warning each.

    Parameters
    ----------
    root : str or os.PathLike
        OpenKBP dataset folder (see `patient_folders`).
    site : str, optional
        Site recorded on the cases; default ``"npc"``.
    progress : bool, optional
        Show a progress bar; default True.

    Returns
    -------
    LoadReport
        The cases read and, per skipped folder, the error.
    """
    from tqdm.auto import tqdm

    report = LoadReport()
    for folder in tqdm(patient_folders(root), desc="OpenKBP", disable=not progress):
        try:
            report.cases.append(load_openkbp_patient(folder, site=site))
        except CaseError as exc:
            log.warning("skipping %s: %s", folder.name, exc)
            report.skipped[str(folder)] = str(exc)
    return report


def write_openkbp_dose(dose_gy: np.ndarray, path: str | os.PathLike) -> Path:
    """Write a (z, y, x) dose in the challenge's submission format (``pt_N.csv``), atomically.

    Parameters
    ----------
    dose_gy : np.ndarray
        Dose (Gy), finite and >= 0, on the OpenKBP grid, (z, y, x), 128^3.
    path : str or os.PathLike
        Destination CSV file.

    Returns
    -------
    Path
        ``path``.
    """
    dose_gy = np.asarray(dose_gy)
    if dose_gy.shape != GRID_SHAPE:
        raise ValueError(f"{path}: dose shape {dose_gy.shape} is not the OpenKBP grid {GRID_SHAPE}")
    if not np.all(np.isfinite(dose_gy)) or dose_gy.min() < 0:
        raise ValueError(f"{path}: dose must be finite and >= 0")
    flat = from_zyx(dose_gy).ravel()
    nz = np.flatnonzero(flat)
    body = "".join(f"{i},{v!r}\n" for i, v in zip(nz.tolist(), flat[nz].tolist(), strict=True))
    path = Path(path)
    with atomic_open(path, mode="w") as fh:
        fh.write(",data\n" + body)
    return path


def read_openkbp_dose(path: str | os.PathLike) -> np.ndarray:
    """Read a sparse dose file (reference or submission) as a (z, y, x) float32 array.

    Parameters
    ----------
    path : str or os.PathLike
        Sparse dose CSV file.

    Returns
    -------
    np.ndarray
        Dose (Gy, float32), (z, y, x), 128^3; 0 at unlisted voxels.
    """
    idx, val = read_sparse_csv(path, with_values=True)
    return _dense(idx, val)
