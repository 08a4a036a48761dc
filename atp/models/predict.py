"""Whole-volume dose prediction for one case with a trained `DosePredictionModule`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from atp.cases import PatientCase
from atp.data.channels import case_arrays, postprocess_dose
from atp.data.dataset import mirror_permutation


@torch.no_grad()
def predict_case(module, case: PatientCase, *, organs: Sequence[str], include_ct: bool,
                 mirror_to: str | None = None) -> np.ndarray:
    """Predicted dose (Gy, float32) on the case grid, post-processed as in the study."""
    arrays = case_arrays(case, organs=organs, reference_rx_gy=module.reference_rx_gy,
                         include_ct=include_ct)
    image, body = arrays["image"], arrays["body"]
    mirrored = bool(mirror_to and case.metadata.get("laterality") not in (None, mirror_to))
    if mirrored:
        n = len(organs)
        image = np.flip(image, axis=-1)
        image = np.concatenate([image[mirror_permutation(organs)], image[n:]])
        body = np.flip(body, axis=-1)
    module.eval()
    x = torch.from_numpy(np.ascontiguousarray(image))[None].to(module.device)
    b = torch.from_numpy(np.ascontiguousarray(body))[None].to(module.device)
    pred = module.predict_volume(x, b)[0, 0].float().cpu().numpy() * module.reference_rx_gy
    if mirrored:
        pred = np.flip(pred, axis=-1)
    return postprocess_dose(np.ascontiguousarray(pred), case)
