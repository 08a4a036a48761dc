"""`DosimetryLogger`: figures of the validation predictions, to the run folder and W&B.

The module logs the numbers (MAE per ROI, dose and DVH scores); this callback adds what
a person would rather look at: for one validation case, axial/coronal slices of the
reference, the prediction and their difference, and the DVHs of both.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl

from atp.dosimetry import cumulative_dvh


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
        write_dose_figure(ex, path, title=f"epoch {trainer.current_epoch}")
        self.written.append(path)
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image(key="val/dose_figure", images=[str(path)],
                                 step=trainer.global_step)


def write_dose_figure(ex: dict, path: Path, *, title: str = "") -> None:
    """Reference | prediction | difference on axial and coronal slices, and DVHs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from atp.viz import save_figure

    ref, pred = ex["dose_gy"], ex["pred_gy"]
    rois = ex["rois"]
    focus = rois.get("targets", ex["body"])
    zc, yc, _ = (np.argwhere(focus).mean(axis=0).round().astype(int) if focus.any()
                 else np.array(ref.shape) // 2)
    vmax = float(max(ref.max(), pred.max(), 1e-6))
    diff = pred - ref
    dmax = float(max(np.abs(diff).max(), 1e-6))
    fig, axes = plt.subplots(2, 4, figsize=(15, 7))
    for row, (cut, label) in enumerate(((lambda a: a[zc], "axial"),
                                        (lambda a: a[:, yc][::-1], "coronal"))):
        for col, (arr, name, cmap, lim) in enumerate(((ref, "reference", "jet", (0, vmax)),
                                                      (pred, "prediction", "jet", (0, vmax)),
                                                      (diff, "pred - ref", "bwr",
                                                       (-dmax, dmax)))):
            im = axes[row, col].imshow(cut(arr), cmap=cmap, vmin=lim[0], vmax=lim[1])
            axes[row, col].set_title(f"{name} ({label})")
            axes[row, col].axis("off")
            fig.colorbar(im, ax=axes[row, col], fraction=0.046, label="Gy")
    ax = axes[0, 3]
    for i, (name, mask) in enumerate(rois.items()):
        for dose, style in ((ref, "-"), (pred, "--")):
            h = cumulative_dvh(dose, mask, spacing_mm=(1.0, 1.0, 1.0))
            ax.plot(h.dose_gy, 100 * h.volume_fraction, style, color=f"C{i % 10}",
                    label=name if style == "-" else None, lw=1)
    ax.set(xlabel="Gy", ylabel="Volume (%)", title="DVH: reference (solid), prediction (dashed)")
    ax.legend(fontsize=6, ncol=2)
    axes[1, 3].axis("off")
    fig.suptitle(f"{ex['patient_id']} {title}")
    fig.tight_layout()
    save_figure(fig, path)
