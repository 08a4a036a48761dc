"""`DosimetryLogger`: figures of the validation predictions, to the run folder and W&B.

The module logs the numbers (MAE per ROI, dose and DVH scores); this callback adds what
a person would rather look at: for one validation case, axial/coronal slices of the
reference, the prediction and their difference, and the DVHs of both.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl

from atp.viz import prediction_figure, save_figure


class DosimetryLogger(pl.Callback):
    """Every ``every_n_epochs`` validation epochs, write (and log) a dose figure."""

    def __init__(self, *, every_n_epochs: int = 1, dirname: str = "figures"):
        self.every_n_epochs = max(1, int(every_n_epochs))
        self.dirname = dirname
        self.written: list[Path] = []

    def on_validation_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule):
        ex = getattr(module, "last_example", None)
        if trainer.sanity_checking or ex is None:
            return
        if (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        out = Path(trainer.default_root_dir) / self.dirname
        path = out / f"val_{ex['patient_id']}_epoch{trainer.current_epoch:04d}.png"
        save_figure(prediction_figure(
            dose_gy=ex["dose_gy"], pred_gy=ex["pred_gy"], rois=ex["rois"], body=ex["body"],
            title=f"{ex['patient_id']} epoch {trainer.current_epoch}"), path)
        self.written.append(path)
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image(key="val/dose_figure", images=[str(path)],
                                 step=trainer.global_step)
