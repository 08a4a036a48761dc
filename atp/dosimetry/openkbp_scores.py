"""AAPM OpenKBP (2020) challenge scores, transcribed from the challenge's evaluation code.

Babier et al., "OpenKBP: The open-access knowledge-based planning grand challenge and
dataset", Med Phys 48 (2021) 5549-5561; code: github.com/ababier/open-kbp
(``provided_code/dose_evaluation_class.py``).

- Dose score of a patient: ``sum(|ref - pred * mask|) / sum(mask)`` with the
  possible-dose mask; as in the challenge only the prediction is masked.
- DVH metrics: OARs ``D_0.1_cc`` and ``mean``; targets ``D_99``, ``D_95``, ``D_1``
  (numpy linear percentiles 1, 5 and 99). ROIs with no voxel are skipped, as the
  challenge skips uncontoured structures.
- DVH score: mean absolute difference of the DVH metrics; the cohort score pools all
  (patient, ROI, metric) differences and ignores NaN (``np.nanmean`` in the challenge).

One deviation: for an ROI smaller than the D_0.1_cc voxel count the challenge's
percentile would be negative (numpy raises); here it is clipped to 0 (the ROI minimum).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence

import numpy as np

from atp.dosimetry.dvh import _check_mask, _check_spacing

OAR_METRICS: tuple[str, ...] = ("D_0.1_cc", "mean")
TARGET_METRICS: tuple[str, ...] = ("D_99", "D_95", "D_1")


def dose_score(reference_dose_gy, predicted_dose_gy, possible_dose_mask) -> float:
    """OpenKBP dose score (Gy): ``sum(|ref - pred * mask|) / sum(mask)``.

    ``possible_dose_mask`` is boolean or 0/1 numeric. NaN for an all-zero mask.

    Parameters
    ----------
    reference_dose_gy : np.ndarray
        Reference dose (Gy), (z, y, x).
    predicted_dose_gy : np.ndarray
        Predicted dose (Gy), the same shape.
    possible_dose_mask : np.ndarray
        Voxels that can receive dose, boolean or 0/1, the same shape.

    Returns
    -------
    float
        Dose score (Gy).
    """
    ref = np.asarray(reference_dose_gy, dtype=np.float64)
    pred = np.asarray(predicted_dose_gy, dtype=np.float64)
    if pred.shape != ref.shape:
        raise ValueError(
            f"predicted_dose_gy shape {pred.shape} does not match "
            f"reference_dose_gy shape {ref.shape}"
        )
    raw = np.asarray(possible_dose_mask)
    if raw.shape != ref.shape:
        raise ValueError(
            f"possible_dose_mask shape {raw.shape} does not match "
            f"reference_dose_gy shape {ref.shape}"
        )
    mask = raw.astype(np.float64)
    if not np.all((mask == 0.0) | (mask == 1.0)):
        raise ValueError("possible_dose_mask must be boolean or hold only 0 and 1")
    denom = mask.sum(dtype=np.float64)
    if denom == 0.0:
        return math.nan
    return float(np.sum(np.abs(ref - pred * mask), dtype=np.float64) / denom)


def openkbp_dvh_metrics(
    dose_gy,
    rois: Mapping[str, np.ndarray],
    *,
    spacing_mm,
    target_names: Collection[str],
) -> dict[tuple[str, str], float]:
    """OpenKBP DVH metrics ``{(roi, metric): value_gy}`` of one dose.

    ROIs named in ``target_names`` get ``D_99``, ``D_95``, ``D_1``; the others get
    ``D_0.1_cc`` and ``mean``. Empty ROIs are left out.

    Parameters
    ----------
    dose_gy : np.ndarray
        Dose (Gy), (z, y, x).
    rois : Mapping of str to np.ndarray
        ROI name -> boolean mask, the shape of ``dose_gy``.
    spacing_mm : sequence of 3 floats
        Voxel size (mm), (z, y, x).
    target_names : collection of str
        Names of the target ROIs (not a single string).

    Returns
    -------
    dict
        ``{(roi, metric): dose_gy}`` (Gy).
    """
    if isinstance(target_names, str):
        raise ValueError(
            f"target_names must be a collection of names, not the string {target_names!r}"
        )
    targets = set(target_names)
    sz, sy, sx = _check_spacing(spacing_mm)
    voxel_mm3 = sz * sy * sx
    voxels_in_tenth_of_cc = float(np.maximum(1, np.round(100 / voxel_mm3)))
    dose = np.asarray(dose_gy)
    out: dict[tuple[str, str], float] = {}
    for name, mask in rois.items():
        m = _check_mask(mask, dose.shape, f"rois[{name!r}]")
        roi_dose = dose[m].astype(np.float64)
        n = roi_dose.size
        if n == 0:
            continue
        if name in targets:
            out[(name, "D_99")] = float(np.percentile(roi_dose, 1))
            out[(name, "D_95")] = float(np.percentile(roi_dose, 5))
            out[(name, "D_1")] = float(np.percentile(roi_dose, 99))
        else:
            q = max(100 - voxels_in_tenth_of_cc / n * 100, 0.0)
            out[(name, "D_0.1_cc")] = float(np.percentile(roi_dose, q))
            out[(name, "mean")] = float(roi_dose.mean(dtype=np.float64))
    return out


def _abs_differences(reference_metrics: Mapping, predicted_metrics: Mapping) -> list[float]:
    keys = [k for k in reference_metrics if k in predicted_metrics]
    return [abs(float(reference_metrics[k]) - float(predicted_metrics[k])) for k in keys]


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return math.fsum(finite) / len(finite) if finite else math.nan


def dvh_score(reference_metrics: Mapping, predicted_metrics: Mapping) -> float:
    """OpenKBP DVH score of one patient (Gy): mean |ref - pred| over the shared keys.

    NaN differences are ignored; NaN when no key is shared.

    Parameters
    ----------
    reference_metrics : Mapping
        ``{(roi, metric): Gy}`` of the reference dose (`openkbp_dvh_metrics`).
    predicted_metrics : Mapping
        The same for the predicted dose.

    Returns
    -------
    float
        DVH score (Gy).
    """
    return _nanmean(_abs_differences(reference_metrics, predicted_metrics))


def cohort_scores(
    dose_scores: Sequence[float],
    reference_metrics: Sequence[Mapping],
    predicted_metrics: Sequence[Mapping],
) -> dict[str, float]:
    """Challenge-level scores ``{"dose_score": ..., "dvh_score": ...}`` (Gy).

    The dose score is the NaN-ignoring mean of per-patient dose scores; the DVH score
    pools every (patient, ROI, metric) absolute difference, as the challenge does.

    Parameters
    ----------
    dose_scores : sequence of float
        Per-patient dose scores (Gy).
    reference_metrics : sequence of Mapping
        Per-patient DVH metrics of the reference doses (`openkbp_dvh_metrics`).
    predicted_metrics : sequence of Mapping
        Per-patient DVH metrics of the predicted doses, same order and length.

    Returns
    -------
    dict
        ``dose_score`` and ``dvh_score`` (Gy).
    """
    if len(reference_metrics) != len(predicted_metrics):
        raise ValueError(
            f"reference_metrics ({len(reference_metrics)} patients) and predicted_metrics "
            f"({len(predicted_metrics)} patients) differ in length"
        )
    pooled: list[float] = []
    for ref, pred in zip(reference_metrics, predicted_metrics, strict=True):
        pooled.extend(_abs_differences(ref, pred))
    return {
        "dose_score": _nanmean([float(s) for s in dose_scores]),
        "dvh_score": _nanmean(pooled),
    }



def case_scores(case, predicted_dose_gy) -> dict:
    """The challenge's scores of one predicted dose against the case's own dose.

    Parameters
    ----------
    case : PatientCase
        With a reference dose (``dose_gy``); the possible-dose mask is the case's
        ``scoring_mask``; every organ and target ROI enters the DVH score (targets get the
        target metrics).
    predicted_dose_gy : ndarray
        The predicted dose (Gy) on the case grid.

    Returns
    -------
    dict
        ``patient_id``, ``dose_score``, ``dvh_score`` (Gy) and the DVH metrics of both
        doses (``reference_metrics``, ``predicted_metrics``) for `challenge_scores`.
    """
    if case.dose_gy is None:
        raise ValueError(f"patient {case.patient_id}: no reference dose to score against")
    rois = {n: r.mask for n, r in case.rois.items() if r.role in ("organ", "target")}
    kw = {"spacing_mm": case.spacing_mm, "target_names": set(case.targets)}
    ref = openkbp_dvh_metrics(case.dose_gy, rois, **kw)
    pred = openkbp_dvh_metrics(predicted_dose_gy, rois, **kw)
    return {"patient_id": case.patient_id,
            "dose_score": dose_score(case.dose_gy, predicted_dose_gy, case.scoring_mask),
            "dvh_score": dvh_score(ref, pred), "reference_metrics": ref,
            "predicted_metrics": pred}


def challenge_scores(per_case: Sequence[Mapping]) -> dict[str, float]:
    """Cohort dose and DVH scores (Gy) from `case_scores` results, as `cohort_scores`;
    also ``n_patients``.

    Parameters
    ----------
    per_case : sequence of Mapping
        `case_scores` results, one per patient.

    Returns
    -------
    dict
        ``dose_score``, ``dvh_score`` (Gy) and ``n_patients``.
    """
    out = cohort_scores([c["dose_score"] for c in per_case],
                        [c["reference_metrics"] for c in per_case],
                        [c["predicted_metrics"] for c in per_case])
    return {**out, "n_patients": len(per_case)}
