"""CT number (HU) -> relative electron density (RED) by a piecewise-linear table.

The default table, ``atp/dose/data/hu_to_red.csv``, is a GENERIC calibration with the
shape of one measured on a CIRS-062M-type electron density phantom; a site should pass
its own measured table (``table=(hu, red)``) for anything clinical.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_HU_TO_RED = DATA_DIR / "hu_to_red.csv"


def read_table_csv(path: str | Path, *, columns: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """Read a two-column numeric CSV with ``#`` comments and a header; return float64 arrays.

    Parameters
    ----------
    path : str or Path
        The CSV file.
    columns : tuple of 2 str
        The expected header names, in order.

    Returns
    -------
    tuple of 2 np.ndarray
        The two columns (float64, 1-D, at least 2 rows); a bad file raises ValueError.
    """
    path = Path(path)
    try:
        lines = [ln.strip() for ln in path.read_text().splitlines()]
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read ({exc.strerror})") from None
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    header = [h.strip() for h in lines[0].split(",")] if lines else []
    if header != list(columns):
        raise ValueError(f"{path}: expected header {','.join(columns)}, got {lines[:1]}")
    try:
        rows = np.array([[float(c) for c in ln.split(",")] for ln in lines[1:]], dtype=np.float64)
    except ValueError:
        raise ValueError(f"{path}: non-numeric entry") from None
    if rows.ndim != 2 or rows.shape[1] != 2 or rows.shape[0] < 2:
        raise ValueError(f"{path}: expected at least 2 rows of 2 numbers")
    return rows[:, 0].copy(), rows[:, 1].copy()


def load_hu_to_red(path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The (hu, red) calibration table; checked to be increasing in HU with RED >= 0.

    Parameters
    ----------
    path : str or Path, optional
        CSV with the header ``hu,red``; ``None`` reads the generic default table.

    Returns
    -------
    tuple of 2 np.ndarray
        ``(hu, red)``: CT numbers (HU, strictly increasing) and relative electron
        densities (>= 0), float64.
    """
    hu, red = read_table_csv(path or DEFAULT_HU_TO_RED, columns=("hu", "red"))
    return check_hu_to_red((hu, red))


def check_hu_to_red(table: tuple[Sequence[float], Sequence[float]]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Validate a (hu, red) table; raise ValueError naming ``hu_to_red``.

    Parameters
    ----------
    table : tuple (hu, red) of sequences of float
        CT numbers (HU) and relative electron densities, equal lengths >= 2.

    Returns
    -------
    tuple of 2 np.ndarray
        ``(hu, red)`` as float64 arrays.
    """
    hu = np.asarray(table[0], dtype=np.float64)
    red = np.asarray(table[1], dtype=np.float64)
    if hu.ndim != 1 or hu.shape != red.shape or hu.size < 2:
        raise ValueError("hu_to_red: expected two 1-D sequences of equal length >= 2")
    if not (np.all(np.isfinite(hu)) and np.all(np.isfinite(red))):
        raise ValueError("hu_to_red: contains NaN or infinite values")
    if not np.all(np.diff(hu) > 0):
        raise ValueError("hu_to_red: HU values must be strictly increasing")
    if np.any(red < 0):
        raise ValueError("hu_to_red: relative electron densities must be >= 0")
    return hu, red


def hu_to_red(ct_hu: np.ndarray, *, table: tuple[Sequence[float], Sequence[float]] | None = None
              ) -> np.ndarray:
    """Relative electron density (float32, same shape) of CT numbers ``ct_hu``.

    Linear between table points, constant beyond the first and last point.

    Parameters
    ----------
    ct_hu : np.ndarray
        CT numbers (HU), any shape.
    table : tuple (hu, red) of sequences of float, optional
        Calibration points: CT numbers (HU) and relative electron densities; ``None``
        uses the default table.

    Returns
    -------
    np.ndarray
        Relative electron density (float32), the shape of ``ct_hu``.
    """
    hu, red = load_hu_to_red() if table is None else check_hu_to_red(table)
    out = np.interp(np.asarray(ct_hu, dtype=np.float32).ravel(), hu, red)
    return out.astype(np.float32).reshape(np.shape(ct_hu))


def red_to_hu(red_value: float, *, table: tuple[Sequence[float], Sequence[float]] | None = None
              ) -> float:
    """Inverse of `hu_to_red` for one value (useful to build phantoms of a given density).

    Parameters
    ----------
    red_value : float
        Relative electron density.
    table : tuple (hu, red) of sequences of float, optional
        Calibration points: CT numbers (HU) and relative electron densities; ``None``
        uses the default table.

    Returns
    -------
    float
        CT number (HU); ValueError if the table's RED is not strictly increasing.
    """
    hu, red = load_hu_to_red() if table is None else check_hu_to_red(table)
    if not np.all(np.diff(red) > 0):
        raise ValueError("hu_to_red: the table is not strictly increasing in RED; no inverse")
    return float(np.interp(float(red_value), red, hu))
