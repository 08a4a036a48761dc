"""`DosePredictionModule`: the dose-prediction network, its loss and its validation metrics.

Training sees patches; validation and test run sliding-window inference over whole
volumes, apply the study's post-processing (prescribed dose inside the targets, zero
outside the body) and log in Gy: MAE in the body and per ROI, and the OpenKBP dose and
DVH scores (the body stands in for the possible-dose mask).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from atp.data.channels import ChannelLayout
from atp.dosimetry import dose_score, dvh_score, openkbp_dvh_metrics


class DosePredictionModule(pl.LightningModule):
    """Parameters
    ----------
    net : nn.Module
        Maps (B, C, z, y, x) inputs to (B, 1, z, y, x) normalized dose.
    layout : mapping
        The `ChannelLayout` fields of the input (saved in the checkpoint): the network
        works in dose / ``reference_rx_gy``; ``roi_names`` name the ROI masks of a batch.
    loss : nn.Module, optional
        Called as ``loss(pred, target, rois=..., body=...)`` (`atp.losses`); not needed
        for prediction.
    optimizer, scheduler : callables, optional
        ``optimizer(params)`` and ``scheduler(optimizer)`` (Hydra ``_partial_``).
    patch_size : sequence of int
        Sliding-window size for whole-volume inference.
    reference_rx_gy, roi_names :
        Only from checkpoints saved before the layout was (they are turned into one).
    """

    def __init__(self, *, net: nn.Module, layout: Mapping | None = None,
                 loss: nn.Module | None = None, optimizer: Callable | None = None,
                 scheduler: Callable | None = None, patch_size: Sequence[int],
                 sw_overlap: float = 0.25, bf16: bool = False,
                 baseline_dose: float | None = None, reference_rx_gy: float | None = None,
                 roi_names: Sequence[str] | None = None):
        super().__init__()
        if layout is None:
            if roi_names is None or reference_rx_gy is None:
                raise ValueError("DosePredictionModule needs a channel layout (layout=...)")
            in_channels = getattr(net, "in_channels", None) or next(
                m.in_channels for m in net.modules() if hasattr(m, "in_channels"))
            self.layout = ChannelLayout.from_legacy(
                roi_names=roi_names, reference_rx_gy=reference_rx_gy, in_channels=in_channels)
        else:
            self.layout = ChannelLayout.from_dict(layout)
        # plain types, so that checkpoints load with torch's weights-only unpickler
        layout = self.layout.to_dict()
        patch_size = [int(p) for p in patch_size]
        baseline_dose = None if baseline_dose is None else float(baseline_dose)
        self.save_hyperparameters(ignore=["net", "loss", "optimizer", "scheduler",
                                          "reference_rx_gy", "roi_names"])
        self.net = net
        # with a prior channel the network adds a correction, scaled by a gain that starts
        # at 0: training starts from the prior itself (a ReZero-style residual)
        self.prior_gain = nn.Parameter(torch.zeros(1)) if self.layout.prior else None
        self.loss_fn = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.reference_rx_gy = self.layout.reference_rx_gy
        self.roi_names = self.layout.roi_names
        self.patch_size = tuple(int(p) for p in patch_size)
        self.sw_overlap = sw_overlap
        self.bf16 = bf16
        self.baseline_dose = baseline_dose  # mean training dose (normalized), a yardstick
        self.last_example: dict | None = None  # one validation case for figures

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Normalized dose; with a prior channel the network predicts its correction."""
        if self.bf16 and image.device.type == "cpu":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = self.net(image).float()
        else:
            out = self.net(image)
        k = self.layout.prior_channel
        return out if k is None else image[:, k: k + 1] + self.prior_gain * out

    def _loss(self, pred, batch):
        return self.loss_fn(pred, batch["dose"], rois=batch["rois"], body=batch["body"])

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        pred = self(batch["image"])
        loss = self._loss(pred, batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=pred.shape[0])
        return loss

    # ------------------------------------------------------------------ inference
    def predict_volume(self, image: torch.Tensor, body: torch.Tensor) -> torch.Tensor:
        """Whole-volume prediction (normalized dose), post-processed as in the study."""
        from monai.inferers import sliding_window_inference

        pred = sliding_window_inference(image, roi_size=self.patch_size, sw_batch_size=1,
                                        predictor=self, overlap=self.sw_overlap,
                                        mode="gaussian", padding_mode="constant")
        k = self.layout.rx_channel
        rx = image[:, k: k + 1]
        pred = torch.where(rx > 0, rx, pred.clamp_min(0.0))
        return pred * body.to(pred.dtype)

    def _evaluate(self, batch: dict, stage: str) -> None:
        pred = self.predict_volume(batch["image"], batch["body"])
        loss = self._loss(pred, batch)
        self.log(f"{stage}/loss", loss, prog_bar=stage == "val", batch_size=1)
        rx = self.reference_rx_gy
        p = pred[0, 0].detach().float().cpu().numpy() * rx
        d = batch["dose"][0, 0].float().cpu().numpy() * rx
        body = batch["body"][0, 0].cpu().numpy().astype(bool)
        rois = batch["rois"][0].cpu().numpy().astype(bool)
        spacing = tuple(float(s) for s in batch["spacing_mm"][0])
        metrics = {"mae_body_gy": float(np.abs(p - d)[body].mean(dtype=np.float64)),
                   "dose_score_gy": dose_score(d, p, body)}
        if self.baseline_dose is not None:
            metrics["mae_body_gy_baseline_mean_dose"] = float(
                np.abs(self.baseline_dose * rx - d)[body].mean(dtype=np.float64))
        named = {n: rois[i] for i, n in enumerate(self.roi_names) if rois[i].any()}
        kw = {"spacing_mm": spacing, "target_names": {"targets"}}
        metrics["dvh_score_gy"] = dvh_score(openkbp_dvh_metrics(d, named, **kw),
                                            openkbp_dvh_metrics(p, named, **kw))
        for name, m in named.items():
            metrics[f"mae_{name}_gy"] = float(np.abs(p - d)[m].mean(dtype=np.float64))
        for k, v in metrics.items():
            self.log(f"{stage}/{k}", v, batch_size=1, prog_bar=k == "mae_body_gy")
        if stage == "val" and (self.last_example is None or
                               self.last_example["epoch"] != self.current_epoch):
            self.last_example = {"epoch": self.current_epoch, "pred_gy": p, "dose_gy": d,
                                 "body": body, "rois": named,
                                 "patient_id": batch["patient_id"][0]}

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
