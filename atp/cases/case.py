"""`PatientCase`: CT, ROI masks with roles, dose and prescriptions on one voxel grid.

Arrays are indexed (z, y, x), z being the slice (cranio-caudal) axis. ``spacing_mm`` and
``origin_mm`` follow the same (z, y, x) order; ``origin_mm`` is the world position of
voxel (0, 0, 0), in the patient coordinate system of DICOM (x to the patient's left,
y posterior, z superior).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from atp.cases.grid import Grid
from atp.names import BODY, ROI_ROLES, SITES


class CaseError(ValueError):
    """Invalid case data. The message names the source (file or patient) and the field.

    Parameters
    ----------
    source : str
        File or patient the data came from.
    field_name : str
        Offending field (``ct_hu``, ``rois.<name>``, ...).
    problem : str
        What is wrong with it.
    """

    def __init__(self, source: str, field_name: str, problem: str):
        self.source = str(source)
        self.field = field_name
        self.problem = problem
        super().__init__(f"{self.source}: field '{field_name}': {problem}")


@dataclass(frozen=True)
class Prescription:
    """One prescribed dose level: ``dose_gy`` to ROI ``target`` in ``n_fractions``."""

    target: str
    dose_gy: float
    n_fractions: int

    @property
    def dose_per_fraction_gy(self) -> float:
        """Dose per fraction (Gy)."""
        return self.dose_gy / self.n_fractions


@dataclass
class Roi:
    """A region of interest: a boolean mask on the case grid and its role."""

    mask: np.ndarray
    role: str


@dataclass
class PatientCase:
    """One patient on one voxel grid.

    Parameters
    ----------
    patient_id : str
        Identifier, unique within a data source.
    ct_hu : ndarray, float32, (z, y, x)
        CT numbers in Hounsfield units.
    spacing_mm, origin_mm : tuple of 3 floats, (z, y, x)
        Voxel size and world position of voxel (0, 0, 0).
    rois : dict name -> Roi
        Canonical names (see ``atp.names``); roles from ``ROI_ROLES``.
    prescriptions : tuple of Prescription
        One entry per target dose level.
    dose_gy : ndarray, float32, optional
        The plan (reference) dose, when known.
    dose_mask : ndarray, bool, optional
        Voxels where dose is defined and scored (OpenKBP's possible-dose mask);
        ``None`` means the body.
    site : str, optional
        One of ``atp.names.SITES``.
    metadata : dict
        Free JSON-serialisable information (source, laterality, generator settings).
    """

    patient_id: str
    ct_hu: np.ndarray
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rois: dict[str, Roi] = field(default_factory=dict)
    prescriptions: tuple[Prescription, ...] = ()
    dose_gy: np.ndarray | None = None
    dose_mask: np.ndarray | None = None
    site: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ geometry
    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid shape (z, y, x) in voxels."""
        return tuple(int(n) for n in self.ct_hu.shape)  # type: ignore[return-value]

    @property
    def grid(self) -> Grid:
        """The case's voxel grid (shape of ``ct_hu``, ``spacing_mm``, ``origin_mm``)."""
        return Grid(shape=self.shape, spacing_mm=self.spacing_mm, origin_mm=self.origin_mm)

    @property
    def voxel_volume_cc(self) -> float:
        """Volume of one voxel (cm³)."""
        return self.grid.voxel_volume_cc

    # ------------------------------------------------------------------ ROIs
    def mask(self, name: str) -> np.ndarray:
        """Boolean mask of ROI ``name``; a KeyError lists the ROIs the case has.

        Parameters
        ----------
        name : str
            ROI name.

        Returns
        -------
        np.ndarray
            Boolean mask on the case grid, (z, y, x).
        """
        try:
            return self.rois[name].mask
        except KeyError:
            raise KeyError(
                f"patient {self.patient_id}: no ROI '{name}' (has: {sorted(self.rois)})"
            ) from None

    def names_with_role(self, role: str) -> list[str]:
        """Names of the ROIs whose role is ``role`` ('target', 'organ', ...).

        Parameters
        ----------
        role : str
            One of ``atp.names.ROI_ROLES``.

        Returns
        -------
        list of str
            ROI names, in the order of ``rois``.
        """
        return [n for n, r in self.rois.items() if r.role == role]

    @property
    def targets(self) -> list[str]:
        """Names of the target ROIs."""
        return self.names_with_role("target")

    @property
    def organs(self) -> list[str]:
        """Names of the organ-at-risk ROIs."""
        return self.names_with_role("organ")

    @property
    def body_mask(self) -> np.ndarray:
        """The external contour if present, else every voxel with CT above -500 HU."""
        if BODY in self.rois:
            return self.rois[BODY].mask
        return self.ct_hu > -500.0

    @property
    def scoring_mask(self) -> np.ndarray:
        """Voxels where dose is scored: ``dose_mask`` if given, else the body."""
        return self.dose_mask if self.dose_mask is not None else self.body_mask

    def target_union(self) -> np.ndarray:
        """Boolean mask of all targets together.

        Returns
        -------
        np.ndarray
            Boolean mask on the case grid, (z, y, x); all False without targets.
        """
        out = np.zeros(self.shape, dtype=bool)
        for name in self.targets:
            out |= self.rois[name].mask
        return out

    def distance_to_targets_mm(self) -> np.ndarray:
        """Euclidean distance (mm, float32) of every voxel to the nearest target voxel.

        Returns
        -------
        np.ndarray
            Distance (mm, float32) on the case grid, (z, y, x); 0 inside targets.
        """
        from scipy import ndimage

        targets = self.target_union()
        if not targets.any():
            raise CaseError(f"patient {self.patient_id}", "rois", "no target voxel")
        return ndimage.distance_transform_edt(~targets, sampling=self.spacing_mm).astype(
            np.float32)

    # ------------------------------------------------------------------ prescription
    @property
    def n_fractions(self) -> int | None:
        """Number of fractions of the longest prescription (None without one)."""
        return max((p.n_fractions for p in self.prescriptions), default=None)

    @property
    def max_prescription_gy(self) -> float | None:
        """Highest prescribed dose (Gy; None without a prescription)."""
        return max((p.dose_gy for p in self.prescriptions), default=None)

    def prescribed_dose_map_gy(self) -> np.ndarray:
        """Per voxel, the highest prescribed dose of the targets covering it (0 elsewhere).

        Returns
        -------
        np.ndarray
            Prescribed dose (Gy, float32) on the case grid, (z, y, x).
        """
        out = np.zeros(self.shape, dtype=np.float32)
        for p in self.prescriptions:
            m = self.mask(p.target)
            out[m] = np.maximum(out[m], np.float32(p.dose_gy))
        return out

    # ------------------------------------------------------------------ validation
    def validate(self, *, source: str | None = None) -> PatientCase:
        """Check shapes, dtypes and values; raise `CaseError` naming the field.

        Parameters
        ----------
        source : str, optional
            Source named in errors; default ``patient <patient_id>``.

        Returns
        -------
        PatientCase
            The case itself, unchanged.
        """
        src = source or f"patient {self.patient_id}"
        ct = self.ct_hu
        if not isinstance(ct, np.ndarray) or ct.ndim != 3 or min(ct.shape) < 1:
            raise CaseError(src, "ct_hu", f"expected a non-empty 3D array, got {_desc(ct)}")
        if not np.issubdtype(ct.dtype, np.floating) and not np.issubdtype(ct.dtype, np.integer):
            raise CaseError(src, "ct_hu", f"expected a numeric dtype, got {ct.dtype}")
        if not np.all(np.isfinite(ct)):
            raise CaseError(src, "ct_hu", "contains NaN or infinite values")
        _check_vec3(src, "spacing_mm", self.spacing_mm, positive=True)
        _check_vec3(src, "origin_mm", self.origin_mm, positive=False)
        if self.site is not None and self.site not in SITES:
            raise CaseError(src, "site", f"unknown site '{self.site}' (known: {list(SITES)})")
        for name, roi in self.rois.items():
            fname = f"rois.{name}"
            if not isinstance(roi, Roi):
                raise CaseError(src, fname, f"expected an Roi, got {type(roi).__name__}")
            if roi.role not in ROI_ROLES:
                raise CaseError(src, fname, f"unknown role '{roi.role}' (known: {ROI_ROLES})")
            _check_mask(src, fname, roi.mask, ct.shape)
        if self.dose_mask is not None:
            _check_mask(src, "dose_mask", self.dose_mask, ct.shape)
        if self.dose_gy is not None:
            d = self.dose_gy
            if not isinstance(d, np.ndarray) or d.shape != ct.shape:
                raise CaseError(src, "dose_gy", f"expected shape {ct.shape}, got {_desc(d)}")
            if not np.issubdtype(d.dtype, np.floating):
                raise CaseError(src, "dose_gy", f"expected a float dtype, got {d.dtype}")
            if not np.all(np.isfinite(d)):
                raise CaseError(src, "dose_gy", "contains NaN or infinite values")
            if d.size and float(d.min()) < 0.0:
                raise CaseError(src, "dose_gy", f"negative dose ({float(d.min()):.4g} Gy)")
        for i, p in enumerate(self.prescriptions):
            fname = f"prescriptions[{i}]"
            if p.target not in self.rois:
                raise CaseError(src, fname, f"target '{p.target}' is not an ROI of the case")
            if self.rois[p.target].role != "target":
                raise CaseError(src, fname, f"ROI '{p.target}' has role "
                                f"'{self.rois[p.target].role}', not 'target'")
            if not (math.isfinite(p.dose_gy) and p.dose_gy > 0):
                raise CaseError(src, fname, f"dose_gy must be > 0, got {p.dose_gy}")
            if int(p.n_fractions) != p.n_fractions or p.n_fractions < 1:
                raise CaseError(src, fname, f"n_fractions must be an integer >= 1, "
                                f"got {p.n_fractions}")
        if not isinstance(self.metadata, Mapping):
            raise CaseError(src, "metadata", "expected a mapping")
        return self


def _desc(a: Any) -> str:
    if isinstance(a, np.ndarray):
        return f"array of shape {a.shape} and dtype {a.dtype}"
    return type(a).__name__


def _check_vec3(src: str, name: str, v: Any, *, positive: bool) -> None:
    try:
        arr = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        raise CaseError(src, name, f"expected 3 numbers, got {v!r}") from None
    if arr.shape != (3,) or not np.all(np.isfinite(arr)):
        raise CaseError(src, name, f"expected 3 finite numbers, got {v!r}")
    if positive and not np.all(arr > 0):
        raise CaseError(src, name, f"every spacing must be > 0 mm, got {tuple(arr)}")


def _check_mask(src: str, name: str, m: Any, shape: tuple[int, ...]) -> None:
    if not isinstance(m, np.ndarray) or m.dtype != np.bool_:
        raise CaseError(src, name, f"expected a boolean mask, got {_desc(m)}")
    if m.shape != tuple(shape):
        raise CaseError(src, name, f"mask shape {m.shape} does not match the grid {tuple(shape)}")
