"""OpenKBP challenge scores on the real sample (acceptance of the foundation issue)."""

from __future__ import annotations

import numpy as np
import pytest

from atp.baselines import DistanceBaseline
from atp.dosimetry import cohort_scores, dose_score, dvh_score, openkbp_dvh_metrics


def _metrics(case, dose):
    rois = {n: r.mask for n, r in case.rois.items() if r.role != "external"}
    return openkbp_dvh_metrics(dose, rois, spacing_mm=case.spacing_mm,
                               target_names=set(case.targets))


def test_reference_against_itself_scores_zero(openkbp_cases):
    for case in openkbp_cases:
        assert dose_score(case.dose_gy, case.dose_gy, case.dose_mask) == 0.0
        ref = _metrics(case, case.dose_gy)
        assert dvh_score(ref, ref) == 0.0


def test_plus_one_gray_inside_the_mask_gives_a_dvh_score_of_one(openkbp_cases):
    for case in openkbp_cases:
        shifted = case.dose_gy.astype(np.float64) + case.dose_mask
        ref, new = _metrics(case, case.dose_gy), _metrics(case, shifted)
        targets = {k: v for k, v in ref.items() if k[0] in case.targets}
        assert targets, case.patient_id
        for roi in case.targets:  # every target voxel lies in the possible-dose mask
            assert case.dose_mask[case.mask(roi)].all()
        assert dvh_score(targets, new) == pytest.approx(1.0, abs=1e-6)
        # dose score of the shift: |1| on every mask voxel
        assert dose_score(case.dose_gy, shifted, case.dose_mask) == pytest.approx(1.0, abs=1e-6)


def _transcribed_scores(cases, preds):
    """The challenge's formulas written out directly with numpy (independent of atp)."""
    dose_scores, diffs = [], []
    for case, pred in zip(cases, preds, strict=True):
        ref, mask = case.dose_gy.astype(np.float64), case.dose_mask.astype(np.float64)
        p = pred.astype(np.float64)
        dose_scores.append(np.sum(np.abs(ref - p * mask)) / np.sum(mask))
        vox = max(1, np.round(100 / np.prod(case.spacing_mm)))
        for name, roi in case.rois.items():
            if roi.role == "external":
                continue
            r, q = ref[roi.mask], p[roi.mask]
            if name in case.targets:
                for pct in (1, 5, 99):
                    diffs.append(abs(np.percentile(r, pct) - np.percentile(q, pct)))
            else:
                pct = 100 - vox / r.size * 100
                diffs.append(abs(np.percentile(r, pct) - np.percentile(q, pct)))
                diffs.append(abs(r.mean() - q.mean()))
    return float(np.mean(dose_scores)), float(np.nanmean(diffs))


def test_scores_match_a_direct_transcription_on_the_sample(openkbp_cases):
    train = [c for c in openkbp_cases if "train-pats" in c.metadata["folder"]]
    valid = [c for c in openkbp_cases if c not in train]
    baseline = DistanceBaseline.fit(train)
    preds = [baseline.predict(c) for c in valid]
    pairs = list(zip(valid, preds, strict=True))
    ours = cohort_scores([dose_score(c.dose_gy, p, c.dose_mask) for c, p in pairs],
                         [_metrics(c, c.dose_gy) for c in valid],
                         [_metrics(c, p) for c, p in pairs])
    dose_ref, dvh_ref = _transcribed_scores(valid, preds)
    assert ours["dose_score"] == pytest.approx(dose_ref, abs=1e-9)
    assert ours["dvh_score"] == pytest.approx(dvh_ref, abs=1e-9)
    # the baseline is a real predictor: far from perfect, far from nothing
    assert 0.5 < ours["dose_score"] < 15.0
