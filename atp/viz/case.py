"""Review figure of one case: axial, coronal and sagittal slices with contours and dose.

Slices pass through the target centroid (the body centroid when there is no target).
Axial: patient left on the right of the image, anterior up (radiological view);
coronal: superior up, patient left on the right; sagittal: superior up, anterior left.
"""

from __future__ import annotations

import os

import numpy as np

from atp.cases.case import PatientCase
from atp.viz.core import pyplot, save_figure

#: CT display window (HU).
CT_WINDOW_HU = (-400.0, 500.0)


def _centre_index(case: PatientCase) -> tuple[int, int, int]:
    m = case.target_union()
    if not m.any():
        m = case.body_mask
    if not m.any():
        return tuple(n // 2 for n in case.shape)  # type: ignore[return-value]
    return tuple(int(round(v)) for v in np.argwhere(m).mean(axis=0))  # type: ignore[return-value]


def _roi_order(case: PatientCase) -> list[str]:
    rank = {"external": 0, "organ": 1, "target": 2, "control": 3}
    return sorted(case.rois, key=lambda n: (rank.get(case.rois[n].role, 4), n))


def plot_case(case: PatientCase, *, dose_gy: np.ndarray | None = None,
              path: str | os.PathLike, dpi: int = 100) -> None:
    """Write a PNG of three orthogonal slices: CT in grey, ROI contours, optional dose wash.

    Parameters
    ----------
    case : PatientCase
        The patient; every ROI gets one colour and a legend entry.
    dose_gy : np.ndarray, optional
        Dose (Gy) on the case grid, (z, y, x), drawn as a colour wash with a colour bar;
        None draws CT and contours only.
    path : str or os.PathLike
        The PNG file, written atomically.
    dpi : int, optional
        Resolution (dots per inch).
    """
    if dose_gy is not None and np.shape(dose_gy) != case.shape:
        raise ValueError(f"dose shape {np.shape(dose_gy)} does not match the case {case.shape}")
    plt = pyplot()
    from matplotlib.lines import Line2D

    kz, ky, kx = _centre_index(case)
    lo, hi = case.grid.box_mm()  # outer voxel faces, (z, y, x) mm
    ext_z, ext_y, ext_x = ((float(lo[a]), float(hi[a])) for a in range(3))
    views = [  # title, slicer, horizontal extent, vertical extent, origin, axis labels
        ("axial", np.s_[kz, :, :], ext_x, ext_y, "upper", ("x (mm, patient left →)", "y (mm)")),
        ("coronal", np.s_[:, ky, :], ext_x, ext_z, "lower", ("x (mm, patient left →)", "z (mm)")),
        ("sagittal", np.s_[:, :, kx], ext_y, ext_z, "lower", ("y (mm, posterior →)", "z (mm)")),
    ]
    names = _roi_order(case)
    cmap = plt.get_cmap("tab20")
    colours = {n: cmap(i % 20) for i, n in enumerate(names)}
    widths = [ext_x[1] - ext_x[0], ext_x[1] - ext_x[0], ext_y[1] - ext_y[0]]
    fig, axes = plt.subplots(1, 3, figsize=(17, 6.5), gridspec_kw={"width_ratios": widths})
    vmax = float(np.max(dose_gy)) if dose_gy is not None and np.size(dose_gy) else 0.0
    wash = None
    for ax, (title, sl, eh, ev, origin, labels) in zip(axes, views, strict=True):
        extent = (eh[0], eh[1], ev[1], ev[0]) if origin == "upper" else (eh[0], eh[1], ev[0],
                                                                          ev[1])
        ax.imshow(case.ct_hu[sl], cmap="gray", vmin=CT_WINDOW_HU[0], vmax=CT_WINDOW_HU[1],
                  extent=extent, origin=origin, interpolation="nearest")
        if dose_gy is not None and vmax > 0:
            d = np.ma.masked_less(np.asarray(dose_gy, dtype=np.float32)[sl], 0.05 * vmax)
            wash = ax.imshow(d, cmap="jet", alpha=0.35, vmin=0.0, vmax=vmax, extent=extent,
                             origin=origin, interpolation="bilinear")
        for n in names:
            m = case.rois[n].mask[sl]
            if m.any():
                h = np.linspace(eh[0] + 0.5 * (eh[1] - eh[0]) / m.shape[1],
                                eh[1] - 0.5 * (eh[1] - eh[0]) / m.shape[1], m.shape[1])
                v = np.linspace(ev[0] + 0.5 * (ev[1] - ev[0]) / m.shape[0],
                                ev[1] - 0.5 * (ev[1] - ev[0]) / m.shape[0], m.shape[0])
                ax.contour(h, v, m.astype(np.float32), levels=[0.5], colors=[colours[n]],
                           linewidths=1.8 if case.rois[n].role == "target" else 1.1)
        if origin == "upper":
            ax.set_ylim(ev[1], ev[0])
        ax.set_title(title)
        ax.set_xlabel(labels[0])
        ax.set_ylabel(labels[1])
        ax.set_aspect("equal")
    handles = [Line2D([], [], color=colours[n], lw=2, label=n) for n in names]
    fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False)
    rx = ", ".join(f"{p.target} {p.dose_gy:g} Gy/{p.n_fractions}" for p in case.prescriptions)
    lat = case.metadata.get("laterality")
    fig.suptitle(f"{case.patient_id} ({case.site or '?'}{', ' + lat if lat else ''}): {rx}")
    right = 0.87
    if wash is not None:
        cax = fig.add_axes((0.80, 0.15, 0.008, 0.7))
        fig.colorbar(wash, cax=cax, label="dose (Gy)")
        right = 0.78
    fig.subplots_adjust(left=0.04, right=right, wspace=0.25)
    save_figure(fig, path, dpi=dpi)
