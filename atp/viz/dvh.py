"""DVH overlays: several doses (plan, prediction, reference) for the ROIs of one case."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from atp.cases import PatientCase
from atp.dosimetry import cumulative_dvh
from atp.viz.core import pyplot

STYLES = ("-", "--", ":", "-.")


def plot_dvh_overlay(case: PatientCase, doses_gy: Mapping[str, np.ndarray], *,
                     rois: Sequence[str] | None = None, title: str | None = None):
    """Cumulative DVHs: one colour per ROI, one line style per dose. Returns the figure.

    Parameters
    ----------
    case : PatientCase
        The case (its ROI masks and spacing).
    doses_gy : Mapping of str to np.ndarray
        Legend label to dose (Gy) on the case grid, (z, y, x).
    rois : sequence of str, optional
        ROIs drawn; default every target and organ (empty ROIs are skipped).
    title : str, optional
        Figure title; default ``"<patient id>: DVH"``.

    Returns
    -------
    matplotlib.figure.Figure
        The figure (save it with `atp.viz.save_figure`).
    """
    plt = pyplot()
    names = list(rois) if rois is not None else [
        n for n, r in case.rois.items() if r.role in ("target", "organ")]
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for i, name in enumerate(names):
        mask = case.rois[name].mask
        if not mask.any():
            continue
        for j, dose in enumerate(doses_gy.values()):
            h = cumulative_dvh(dose, mask, spacing_mm=case.spacing_mm)
            ax.plot(h.dose_gy, 100.0 * h.volume_fraction, STYLES[j % len(STYLES)],
                    color=f"C{i % 10}", lw=1.4, label=name if j == 0 else None)
    for j, label in enumerate(doses_gy):
        ax.plot([], [], STYLES[j % len(STYLES)], color="k", label=label)
    ax.set(xlabel="Dose (Gy)", ylabel="Volume (%)", xlim=(0, None), ylim=(0, 101),
           title=title or f"{case.patient_id}: DVH")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="upper right")
    fig.tight_layout()
    return fig
