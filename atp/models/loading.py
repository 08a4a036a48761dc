"""Where the predicted dose of an evaluation comes from: a checkpoint, the reference, files.

`predictor` returns ``case -> dose (Gy)`` for ``evaluate.py``'s ``prediction`` option: a
trained network (its channel layout from the checkpoint, `atp.models.predict`), the case's
own dose (a perfect prediction) or a folder of prediction files.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from atp.cases import PatientCase

log = logging.getLogger(__name__)


def predictor(prediction: str, *, ckpt_path: str | None = None,
              patient_ids: Sequence[str] = (), fallback_net_cfg=None,
              ) -> Callable[[PatientCase], np.ndarray]:
    """``case -> predicted dose (Gy)``.

    Parameters
    ----------
    prediction : str
        ``"model"`` (the network of ``ckpt_path``), ``"reference"`` (the case's own dose)
        or a folder of ``<patient id>.csv|.npy`` files.
    ckpt_path : str, optional
        The checkpoint, for ``prediction="model"``; the network comes from the training
        run's ``config.yaml`` next to it.
    patient_ids : sequence of str
        The cases to be predicted: with a folder, each one's file must be there before any
        planning starts.
    fallback_net_cfg : Hydra node, optional
        The network config to use when the checkpoint has no training run's
        ``config.yaml`` next to it (a warning says so).

    Returns
    -------
    callable
        ``PatientCase -> ndarray`` on the case grid.
    """
    from atp.io.loading import find_prediction, load_dose

    if prediction == "model":
        if ckpt_path is None:
            raise ValueError("prediction=model needs ckpt_path=<checkpoint> (or prediction="
                             "reference | <folder of predictions>)")
        from atp.models.predict import load_module, predict_case

        run_cfg = Path(ckpt_path).parent.parent / "config.yaml"  # written by train.py
        net_cfg = None
        if not run_cfg.is_file() and fallback_net_cfg is not None:
            log.warning("%s not found: the network comes from this run's config", run_cfg)
            net_cfg = fallback_net_cfg
        module = load_module(ckpt_path, net_cfg=net_cfg)
        log.info("network of %s (channel layout from the checkpoint)", ckpt_path)
        return lambda case: predict_case(module, case)
    if prediction == "reference":
        return lambda case: case.dose_gy
    for pid in patient_ids:  # every file is there before any planning starts
        find_prediction(prediction, pid)
    return lambda case: load_dose(find_prediction(prediction, case.patient_id),
                                  shape=case.shape)


def ids_of(files: Sequence[str | Path]) -> list[str]:
    """Patient ids of case files or patient folders (their stem)."""
    return [Path(f).stem for f in files]
