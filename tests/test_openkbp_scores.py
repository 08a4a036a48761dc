"""Tests of atp.dosimetry.openkbp_scores against the OpenKBP challenge definitions.

The challenge's formulas (github.com/ababier/open-kbp,
provided_code/dose_evaluation_class.py; Babier et al., Med Phys 48 (2021) 5549) are
transcribed directly below, independently of the module, and compared on random data.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from atp.dosimetry import cohort_scores, dose_score, dvh_score, openkbp_dvh_metrics

TARGETS = {"ptv_7000", "ptv_6300", "ptv_5600"}
OPENKBP_VOXEL = (2.5, 3.906, 3.906)  # typical OpenKBP voxel: 38.14 mm^3


# --- literal transcription of the challenge's evaluation code -------------------------
def _challenge_dose_score(reference_dose, new_dose, possible_dose_mask):
    return np.sum(np.abs(reference_dose - new_dose * possible_dose_mask)) / np.sum(
        possible_dose_mask
    )


def _challenge_dvh_metrics(dose, rois, voxel_dimensions, target_names):
    voxel_size = np.prod(voxel_dimensions)
    metrics = {}
    for roi, roi_mask in rois.items():
        if roi_mask.any():
            roi_dose = dose[roi_mask]
            roi_size = np.sum(roi_mask)
            if roi in target_names:
                metrics[(roi, "D_99")] = np.percentile(roi_dose, 1)
                metrics[(roi, "D_95")] = np.percentile(roi_dose, 5)
                metrics[(roi, "D_1")] = np.percentile(roi_dose, 99)
            else:
                voxels_in_tenth_of_cc = np.maximum(1, np.round(100 / voxel_size))
                fractional_volume_to_evaluate = 100 - voxels_in_tenth_of_cc / roi_size * 100
                metrics[(roi, "D_0.1_cc")] = np.percentile(roi_dose, fractional_volume_to_evaluate)
                metrics[(roi, "mean")] = roi_dose.mean()
    return metrics


# ---------------------------------------------------------------------------------------
def _synthetic_case(seed: int = 0):
    """Random 24^3 dose, a central possible-dose mask and random ROIs inside it."""
    rng = np.random.default_rng(seed)
    shape = (24, 24, 24)
    pdm = np.zeros(shape, dtype=bool)
    pdm[2:22, 3:21, 2:22] = True
    dose = np.where(pdm, rng.uniform(0.0, 75.0, shape), 0.0)
    inside = rng.random(shape)
    rois = {
        "ptv_7000": pdm & (inside < 0.05),
        "ptv_5600": pdm & (inside >= 0.05) & (inside < 0.15),
        "brainstem": pdm & (inside >= 0.15) & (inside < 0.18),
        "parotid_l": pdm & (inside >= 0.18) & (inside < 0.30),
        "larynx": np.zeros(shape, dtype=bool),  # uncontoured
    }
    return dose, pdm, rois


def test_dose_score_self_is_zero():
    dose, pdm, _ = _synthetic_case()
    assert dose_score(dose, dose, pdm) == 0.0


def test_dose_score_masks_prediction_only():
    # ref = 0 outside the mask: pred = ref + 1 inside -> sum(1 over n_pdm) / n_pdm = 1.
    dose, pdm, _ = _synthetic_case()
    assert dose_score(dose, dose + pdm, pdm) == pytest.approx(1.0, abs=1e-12)
    # Reference dose outside the mask counts in full, since only pred is masked:
    # score = (n_pdm + sum(ref outside)) / n_pdm.
    ref = dose + np.where(pdm, 0.0, 2.0)
    expected = (pdm.sum() + 2.0 * (~pdm).sum()) / pdm.sum()
    assert dose_score(ref, ref + pdm, pdm) == pytest.approx(expected, rel=1e-12)
    # A 0/1 float mask gives the same score as the boolean one.
    assert dose_score(ref, ref + pdm, pdm.astype(np.float32)) == pytest.approx(expected)


def test_matches_literal_transcription_on_random_data():
    for seed in range(3):
        ref, pdm, rois = _synthetic_case(seed)
        rng = np.random.default_rng(100 + seed)
        pred = ref + rng.normal(0.0, 3.0, ref.shape)
        assert dose_score(ref, pred, pdm) == pytest.approx(
            _challenge_dose_score(ref, pred, pdm.astype(np.float64)), abs=1e-9
        )
        for dose in (ref, pred):
            ours = openkbp_dvh_metrics(dose, rois, spacing_mm=OPENKBP_VOXEL, target_names=TARGETS)
            theirs = _challenge_dvh_metrics(dose, rois, OPENKBP_VOXEL, TARGETS)
            assert ours.keys() == theirs.keys()
            for key, value in theirs.items():
                assert ours[key] == pytest.approx(value, abs=1e-9), key


def test_metric_keys_and_skipped_empty_roi():
    dose, _, rois = _synthetic_case()
    m = openkbp_dvh_metrics(dose, rois, spacing_mm=OPENKBP_VOXEL, target_names=TARGETS)
    assert set(m) == {
        ("ptv_7000", "D_99"), ("ptv_7000", "D_95"), ("ptv_7000", "D_1"),
        ("ptv_5600", "D_99"), ("ptv_5600", "D_95"), ("ptv_5600", "D_1"),
        ("brainstem", "D_0.1_cc"), ("brainstem", "mean"),
        ("parotid_l", "D_0.1_cc"), ("parotid_l", "mean"),
    }  # fmt: skip


def test_d01cc_voxel_rounding_by_hand():
    # ROI of 100 voxels with doses 0..99 Gy; linear percentile q sits at index q/100 * 99.
    dose = np.arange(100, dtype=np.float64).reshape(4, 5, 5)
    rois = {"cord": np.ones(dose.shape, dtype=bool)}
    cases = [
        # 2 x 2 x 2.5 = 10 mm^3 -> round(100/10) = 10 voxels -> P90 = 89.1 Gy
        ((2.0, 2.0, 2.5), 89.1),
        # 38.14 mm^3 -> round(2.62) = 3 voxels -> P97 = 96.03 Gy
        (OPENKBP_VOXEL, 96.03),
        # 1000 mm^3 -> round(0.1) = 0 -> max(1, 0) = 1 voxel -> P99 = 98.01 Gy
        ((10.0, 10.0, 10.0), 98.01),
    ]
    for spacing, expected in cases:
        m = openkbp_dvh_metrics(dose, rois, spacing_mm=spacing, target_names=set())
        assert m[("cord", "D_0.1_cc")] == pytest.approx(expected, abs=1e-9), spacing
        assert m[("cord", "mean")] == pytest.approx(49.5)
    # Targets: D_99 = P1 = 0.99, D_95 = P5 = 4.95, D_1 = P99 = 98.01.
    m = openkbp_dvh_metrics(dose, rois, spacing_mm=OPENKBP_VOXEL, target_names={"cord"})
    expected_targets = {("cord", "D_99"): 0.99, ("cord", "D_95"): 4.95, ("cord", "D_1"): 98.01}
    assert m == pytest.approx(expected_targets, abs=1e-9)


def test_dvh_score_of_one_gray_shift_is_one():
    # Linear percentiles and means shift by exactly 1 Gy when every ROI voxel gains 1 Gy,
    # and all ROIs lie inside the possible-dose mask -> every |difference| = 1.
    ref, pdm, rois = _synthetic_case()
    pred = ref + 1.0 * pdm
    ref_m = openkbp_dvh_metrics(ref, rois, spacing_mm=OPENKBP_VOXEL, target_names=TARGETS)
    pred_m = openkbp_dvh_metrics(pred, rois, spacing_mm=OPENKBP_VOXEL, target_names=TARGETS)
    assert dvh_score(ref_m, pred_m) == pytest.approx(1.0, abs=1e-6)
    for key in ref_m:
        assert abs(pred_m[key] - ref_m[key]) == pytest.approx(1.0, abs=1e-6), key


def test_dvh_score_shared_keys_and_cohort_pooling():
    # Shared keys a, b: (|1 - 2| + |2 - 5|) / 2 = 2; key c is ignored.
    assert dvh_score({"a": 1.0, "b": 2.0}, {"a": 2.0, "b": 5.0, "c": 9.0}) == 2.0
    assert math.isnan(dvh_score({"a": 1.0}, {"b": 1.0}))
    # Cohort: patient 1 one difference of 1, patient 2 three of 4. The challenge pools:
    # (1 + 4 + 4 + 4) / 4 = 3.25 (a mean of patient means would give 2.5).
    # Dose score: nanmean(1, 3, NaN) = 2.
    refs = [{"x": 0.0}, {"x": 0.0, "y": 0.0, "z": 0.0}]
    preds = [{"x": 1.0}, {"x": 4.0, "y": -4.0, "z": 4.0}]
    out = cohort_scores([1.0, 3.0, math.nan], refs, preds)
    assert out == {"dose_score": 2.0, "dvh_score": 3.25}


def test_bad_input_raises():
    dose, pdm, rois = _synthetic_case()
    with pytest.raises(ValueError, match="predicted_dose_gy"):
        dose_score(dose, dose[:-1], pdm)
    with pytest.raises(ValueError, match="possible_dose_mask"):
        dose_score(dose, dose, pdm[:-1])
    with pytest.raises(ValueError, match="target_names"):
        openkbp_dvh_metrics(dose, rois, spacing_mm=OPENKBP_VOXEL, target_names="ptv_7000")
    with pytest.raises(ValueError, match="brainstem"):
        openkbp_dvh_metrics(
            dose, {"brainstem": rois["brainstem"][:-1]}, spacing_mm=OPENKBP_VOXEL, target_names=()
        )
