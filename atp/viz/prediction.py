"""The validation figure of a dose prediction: slices of reference, prediction, difference."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from atp.dosimetry import cumulative_dvh
from atp.viz.core import pyplot


def prediction_figure(*, dose_gy: np.ndarray, pred_gy: np.ndarray,
                      rois: Mapping[str, np.ndarray], body: np.ndarray, title: str = ""):
    """Reference | prediction | difference on axial and coronal slices, and DVHs.

    Parameters
    ----------
    dose_gy, pred_gy : np.ndarray
        Reference and predicted dose (Gy), (z, y, x).
    rois : Mapping of str to np.ndarray
        Name to boolean mask, one DVH pair each; slices pass through the centroid of
        ``targets`` if present, else of ``body``.
    body : np.ndarray
        Boolean body mask, (z, y, x).
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        The figure (save it with `atp.viz.save_figure`).
    """
    plt = pyplot()
    ref, pred = dose_gy, pred_gy
    focus = rois.get("targets", body)
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
    fig.suptitle(title)
    fig.tight_layout()
    return fig
