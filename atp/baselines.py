"""Non-learned dose predictors, the yardsticks a trained model has to beat.

`DistanceBaseline` predicts each voxel's dose from its distance to the targets alone:
inside a target, that target's prescribed dose; outside, the highest prescription times a
fall-off curve g(distance) fitted on training cases (binned mean of dose / Rx, made
non-increasing). It is the "dose decreasing with distance to target" baseline.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from atp.cases import PatientCase


@dataclass(frozen=True)
class DistanceBaseline:
    """Dose = Rx inside targets, Rx_max * g(distance) outside; see the module docstring."""

    bin_edges_mm: np.ndarray
    relative_dose: np.ndarray  # g per bin, non-increasing, in units of the highest Rx

    @classmethod
    def fit(cls, cases: Iterable[PatientCase], *, bin_mm: float = 2.0,
            max_distance_mm: float = 200.0) -> DistanceBaseline:
        """Average the reference dose per distance-to-target bin over ``cases``.

        Parameters
        ----------
        cases : iterable of PatientCase
            Training cases; those without a dose or a prescription are skipped.
        bin_mm : float, optional
            Width of the distance bins (mm); default 2.
        max_distance_mm : float, optional
            Farthest bin edge (mm); farther voxels fall in the last bin. Default 200.

        Returns
        -------
        DistanceBaseline
            The fitted fall-off curve (relative to the highest prescription).
        """
        edges = np.arange(0.0, max_distance_mm + bin_mm, bin_mm)
        sums = np.zeros(edges.size - 1, dtype=np.float64)
        counts = np.zeros(edges.size - 1, dtype=np.float64)
        n_cases = 0
        for case in cases:
            if case.dose_gy is None or not case.prescriptions:
                continue
            dist = case.distance_to_targets_mm()
            sel = case.scoring_mask & ~case.target_union()
            ratio = case.dose_gy[sel].astype(np.float64) / case.max_prescription_gy
            b = np.clip(np.digitize(dist[sel], edges) - 1, 0, edges.size - 2)
            sums += np.bincount(b, weights=ratio, minlength=sums.size)
            counts += np.bincount(b, minlength=counts.size)
            n_cases += 1
        if n_cases == 0:
            raise ValueError("DistanceBaseline.fit: no case with a dose and a prescription")
        ok = counts > 0
        centers = 0.5 * (edges[:-1] + edges[1:])
        # empty bins (e.g. closer than one voxel) are interpolated from their neighbours
        g = np.interp(centers, centers[ok], sums[ok] / counts[ok])
        g = np.minimum.accumulate(g)  # dose does not rise away from the targets
        return cls(bin_edges_mm=edges, relative_dose=g.astype(np.float32))

    def predict(self, case: PatientCase) -> np.ndarray:
        """Predicted dose (Gy, float32) on the case grid; zero outside the scoring mask.

        Parameters
        ----------
        case : PatientCase
            Case with at least one prescription.

        Returns
        -------
        np.ndarray
            Dose (Gy, float32) on the case grid, (z, y, x).
        """
        if not case.prescriptions:
            raise ValueError(f"patient {case.patient_id}: no prescription to scale the baseline")
        dist = case.distance_to_targets_mm()
        b = np.clip(np.digitize(dist, self.bin_edges_mm) - 1, 0, self.relative_dose.size - 1)
        dose = self.relative_dose[b] * np.float32(case.max_prescription_gy)
        dose = np.maximum(dose, case.prescribed_dose_map_gy())
        dose[~case.scoring_mask] = 0.0
        return dose.astype(np.float32)
