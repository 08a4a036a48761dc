"""A case as network arrays: input channels, the dose target and the loss masks.

Channel order (``input_channels``): one binary channel per organ of the site, in the
site config's order (an organ the case lacks is an empty channel); one channel holding
each target voxel's prescribed dose (the highest where targets overlap) divided by the
site's reference prescription; and optionally the CT, clipped to [-1000, 2000] HU and
divided by 1000. The dose target is also divided by the reference prescription.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from atp.cases import CaseError, PatientCase

CT_RANGE_HU = (-1000.0, 2000.0)


def input_channels(organs: Sequence[str], *, include_ct: bool) -> list[str]:
    """Names of the input channels, in order."""
    return list(organs) + ["targets_rx"] + (["ct"] if include_ct else [])


def case_arrays(case: PatientCase, *, organs: Sequence[str], reference_rx_gy: float,
                include_ct: bool = True, required: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """``image`` (C, z, y, x), ``dose`` (1, ...), ``rois`` (R, ...) and ``body`` (1, ...).

    ``rois`` stacks the organ channels and the target union (for the WMSE weights).
    Raises `CaseError` naming the patient when a required ROI or every target is missing.
    """
    src = f"patient {case.patient_id}"
    missing = [r for r in required if r not in case.rois]
    if missing:
        raise CaseError(src, "rois", f"missing required ROI(s) {missing}")
    if not case.prescriptions:
        raise CaseError(src, "prescriptions", "no target with a prescription")
    shape = case.shape
    organ_masks = np.zeros((len(organs),) + shape, dtype=bool)
    for i, name in enumerate(organs):
        if name in case.rois:
            organ_masks[i] = case.rois[name].mask
    targets = case.target_union()
    rx = case.prescribed_dose_map_gy() / np.float32(reference_rx_gy)
    chans = [organ_masks.astype(np.float32), rx[None]]
    if include_ct:
        ct = np.clip(case.ct_hu, *CT_RANGE_HU) / np.float32(1000.0)
        chans.append(ct[None].astype(np.float32))
    out = {"image": np.concatenate(chans, axis=0).astype(np.float32),
           "rois": np.concatenate([organ_masks, targets[None]], axis=0),
           "body": case.body_mask[None].copy()}
    if case.dose_gy is not None:
        out["dose"] = (case.dose_gy / np.float32(reference_rx_gy))[None].astype(np.float32)
    return out


def postprocess_dose(pred_gy: np.ndarray, case: PatientCase) -> np.ndarray:
    """The study's post-processing: inside targets the dose is the prescribed dose; zero
    outside the body; never negative."""
    out = np.maximum(np.asarray(pred_gy, dtype=np.float32), 0.0)
    targets = case.target_union()
    out[targets] = case.prescribed_dose_map_gy()[targets]
    out[~case.body_mask] = 0.0
    return out
