"""Whole-volume dose prediction with a trained `DosePredictionModule`.

`load_module` rebuilds a module from a checkpoint (the network from the training run's
``config.yaml`` next to it, the channel layout from the checkpoint itself); `predict_case`
predicts one case with the layout the network was trained on.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from atp.cases import PatientCase
from atp.data.channels import postprocess_dose

log = logging.getLogger(__name__)


@torch.no_grad()
def predict_case(module, case: PatientCase, *, postprocess: bool = True) -> np.ndarray:
    """Predicted dose (Gy, float32) on the case grid, post-processed as in the study.

    The module's `ChannelLayout` builds the input (mirrored and downsampled as in
    training); the prediction is brought back to the case grid before post-processing
    (`postprocess_dose`; without it the dose is only clipped at 0 and zeroed outside the
    body).
    """
    layout = module.layout
    cc = layout.compact(case, with_dose=False)
    arrays = layout.region(cc)
    module.eval()
    x = torch.from_numpy(arrays["image"])[None].to(module.device)
    b = torch.from_numpy(arrays["body"])[None].to(module.device)
    pred = module.predict_volume(x, b)[0, 0].float().cpu().numpy()  # dose / reference Rx
    pred_gy = layout.to_case_grid(pred, cc, case=case) * np.float32(layout.reference_rx_gy)
    if postprocess:
        return postprocess_dose(pred_gy, case)
    return np.where(case.body_mask, np.maximum(pred_gy, 0.0), 0.0).astype(np.float32)


def load_module(ckpt_path: str | os.PathLike, *, net_cfg=None, map_location: str = "cpu"):
    """The `DosePredictionModule` of a checkpoint, ready to predict.

    The network is built from ``net_cfg`` (a Hydra node) or else from the training run's
    ``config.yaml`` (``<run>/checkpoints/x.ckpt`` -> ``<run>/config.yaml``). Checkpoints
    saved before the channel layout was stored get one from their ``roi_names``.
    """
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from atp.models.dose_module import DosePredictionModule

    ckpt = Path(ckpt_path)
    if not ckpt.is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt}: no such checkpoint")
    if net_cfg is None:
        run_cfg = ckpt.parent.parent / "config.yaml"
        if not run_cfg.is_file():
            raise FileNotFoundError(f"{run_cfg}: the training run's config (written by "
                                    f"train.py) is needed to rebuild the network of {ckpt}")
        net_cfg = OmegaConf.load(run_cfg).net
    try:
        return DosePredictionModule.load_from_checkpoint(
            ckpt, map_location=map_location, net=instantiate(net_cfg), weights_only=True)
    except (RuntimeError, EOFError, KeyError, OSError) as exc:
        raise ValueError(f"ckpt_path={ckpt}: not a readable checkpoint of this network "
                         f"({type(exc).__name__}: {exc})") from exc
