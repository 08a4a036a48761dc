"""Study-style figures: relative-difference dot plots and dose-difference slices.

Every function returns a matplotlib figure (Agg backend); save it with
`atp.viz.save_figure`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from atp.viz.core import pyplot

# the study's colours (Fig. 4, 5): blue = ATP better / above the prediction, red = worse /
# below it, black = not significant after Bonferroni's correction
FLAG_COLOURS = {"better": "tab:blue", "worse": "tab:red", "n.s.": "black"}
PREDICTION_FLAG_COLOURS = {"higher": "tab:blue", "lower": "tab:red", "n.s.": "black"}
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
CONTOUR_COLOURS = ("tab:red", "tab:blue", "tab:green", "tab:orange", "tab:purple",
                   "tab:cyan", "tab:olive", "tab:pink", "tab:brown", "gold")


def _num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def study_endpoint_rows(rows: Sequence[Mapping]) -> list[Mapping]:
    """The rows of the study's endpoint family (all rows when none carries ``family``).

    Parameters
    ----------
    rows : sequence of Mapping
        Comparison rows (`compare_plans` or `compare_to_prediction`).

    Returns
    -------
    list of Mapping
        Rows with ``family == "endpoint"``, or all rows.
    """
    rows = list(rows)
    if not any("family" in r for r in rows):
        return rows
    return [r for r in rows if r.get("family") == "endpoint"]


def _series(r: Mapping, group_by: str | None) -> str:
    inst = f"institution {r['institution']}"
    return f"{inst}, {group_by} {r.get(group_by)}" if group_by else inst


def _dot_plot(rows: Sequence[Mapping], *, title: str, xlabel: str, colour_of,
              group_by: str | None = None):
    """Shared layout: one row per metric, one offset and marker per institution (and
    group when ``group_by`` names the grouping column)."""
    plt = pyplot()
    from matplotlib.lines import Line2D

    rows = list(rows)
    multi_site = len({r["site"] for r in rows}) > 1
    labels = list(dict.fromkeys(
        f"{r['site']}: {r['metric']}" if multi_site else str(r["metric"]) for r in rows))
    insts = list(dict.fromkeys(_series(r, group_by) for r in rows))
    step = 0.7 / max(len(insts), 1)
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.45 * max(len(labels), 1)))
    for r in rows:
        label = f"{r['site']}: {r['metric']}" if multi_site else str(r["metric"])
        j = insts.index(_series(r, group_by))
        y = labels.index(label) + (j - (len(insts) - 1) / 2) * step
        x, lo, hi = (_num(r.get(k)) for k in ("mean_rel_diff_pct", "ci_lo_pct", "ci_hi_pct"))
        if math.isnan(x):
            continue
        err = None
        if not (math.isnan(lo) or math.isnan(hi)):
            err = [[x - lo], [hi - x]]
        ax.errorbar([x], [y], xerr=err, fmt=MARKERS[j % len(MARKERS)], color=colour_of(r, j),
                    ms=6, capsize=3, lw=1.2)
    ax.axvline(0.0, color="k", lw=0.8)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_ylim(len(labels) - 0.5, -0.5)
    ax.set(xlabel=xlabel, title=title)
    ax.grid(axis="x", alpha=0.3)
    handles = [Line2D([], [], ls="", marker=MARKERS[j % len(MARKERS)], color="grey",
                      label=i) for j, i in enumerate(insts)]
    return fig, ax, handles


def dot_plot_relative_differences(summary_rows: Sequence[Mapping], *, title: str,
                                  group_by: str | None = None):
    """Mean relative difference (%) per metric with 95 % CI, from `compare_plans` rows.

    Only the study's endpoint family is drawn when the rows carry ``family``. One marker
    shape and vertical offset per institution (and per group of ``group_by``), colour
    by flag (blue = better, red = worse, black = n.s., as in the study's Fig. 4);
    positive = new plan better.

    Parameters
    ----------
    summary_rows : sequence of Mapping
        `compare_plans` summary rows (``site``, ``metric``, ``institution``,
        ``mean_rel_diff_pct``, ``ci_lo_pct``, ``ci_hi_pct`` in %, ``flag``).
    title : str
        Figure title.
    group_by : str, optional
        Column splitting each institution into groups; default none.

    Returns
    -------
    matplotlib.figure.Figure
        The figure (save it with `atp.viz.save_figure`).
    """
    from matplotlib.lines import Line2D

    rows = study_endpoint_rows(summary_rows)
    new = str(rows[0].get("new", "new plan")) if rows else "new plan"
    fig, ax, handles = _dot_plot(
        rows, title=title, xlabel=f"Mean relative difference (%), positive = {new} better",
        colour_of=lambda r, j: FLAG_COLOURS.get(str(r.get("flag")), "black"),
        group_by=group_by)
    handles += [Line2D([], [], ls="", marker="o", color=c, label=f) for f, c in
                FLAG_COLOURS.items()]
    ax.legend(handles=handles, loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def dot_plot_vs_prediction(pred_rows: Sequence[Mapping], *, title: str,
                           group_by: str | None = None):
    """Mean relative difference (%) of plan vs predicted organ doses, from
    `compare_to_prediction` rows (the study's endpoint family when the rows carry
    ``family``); positive = plan dose above the prediction. Colour by flag as in the
    study's Fig. 5: blue = higher, red = lower than the prediction, black = n.s.

    Parameters
    ----------
    pred_rows : sequence of Mapping
        `compare_to_prediction` rows (``site``, ``metric``, ``institution``,
        ``mean_rel_diff_pct``, ``ci_lo_pct``, ``ci_hi_pct`` in %, ``flag``).
    title : str
        Figure title.
    group_by : str, optional
        Column splitting each institution into groups; default none.

    Returns
    -------
    matplotlib.figure.Figure
        The figure (save it with `atp.viz.save_figure`).
    """
    from matplotlib.lines import Line2D

    rows = study_endpoint_rows(pred_rows)
    plan = str(rows[0].get("plan", "plan")) if rows else "plan"
    fig, ax, handles = _dot_plot(
        rows, title=title,
        xlabel=f"Mean relative difference (%), positive = {plan} dose above prediction",
        colour_of=lambda r, j: PREDICTION_FLAG_COLOURS.get(str(r.get("flag")), "black"),
        group_by=group_by)
    handles += [Line2D([], [], ls="", marker="o", color=c, label=f) for f, c in
                PREDICTION_FLAG_COLOURS.items()]
    ax.legend(handles=handles, loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def _target_centroid(masks: Mapping[str, np.ndarray], shape: tuple[int, ...]) -> tuple:
    """Integer (z, y, x) centroid of the union of masks named ``ptv*``; centre if none."""
    union = np.zeros(shape, dtype=bool)
    for name, m in masks.items():
        if name.lower().startswith("ptv"):
            union |= np.asarray(m, dtype=bool)
    if not union.any():
        return tuple(s // 2 for s in shape)
    idx = np.argwhere(union).astype(np.float64)
    return tuple(int(round(c)) for c in idx.mean(axis=0, dtype=np.float64))


def dose_difference_slices(ct_hu: np.ndarray, dose_a_gy: np.ndarray, dose_b_gy: np.ndarray,
                           masks: Mapping[str, np.ndarray], *,
                           spacing_mm: Sequence[float], labels: Sequence[str] = ("ATP", "MNL"),
                           title: str = ""):
    """Axial and coronal slices through the target centroid: dose A, dose B and A - B.

    Arrays are (z, y, x); doses are drawn over the CT in grey (below 5 % of the
    maximum dose transparent), the difference with a diverging colormap centred at
    0, mask outlines as contours. Pixel aspect follows ``spacing_mm`` (z, y, x).

    Parameters
    ----------
    ct_hu : np.ndarray
        CT (HU), (z, y, x).
    dose_a_gy, dose_b_gy : np.ndarray
        The two doses (Gy), shaped like ``ct_hu``.
    masks : Mapping of str to np.ndarray
        Name to boolean mask shaped like ``ct_hu``; ``ptv*`` masks set the slices.
    spacing_mm : sequence of float
        Voxel size (z, y, x) in mm.
    labels : sequence of str, optional
        Names of dose A and dose B; default ("ATP", "MNL").
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        The figure (save it with `atp.viz.save_figure`).
    """
    plt = pyplot()
    from matplotlib.lines import Line2D

    ct = np.asarray(ct_hu, dtype=np.float64)
    da = np.asarray(dose_a_gy, dtype=np.float64)
    db = np.asarray(dose_b_gy, dtype=np.float64)
    if ct.ndim != 3 or da.shape != ct.shape or db.shape != ct.shape:
        raise ValueError(f"ct and doses must share one 3-D shape, got {ct.shape}, "
                         f"{da.shape}, {db.shape}")
    for name, m in masks.items():
        if np.shape(m) != ct.shape:
            raise ValueError(f"mask {name!r} has shape {np.shape(m)}, expected {ct.shape}")
    dz, dy, dx = (float(s) for s in spacing_mm)
    cz, cy, _ = _target_centroid(masks, ct.shape)
    diff = da - db
    dmax = float(max(np.nanmax(da), np.nanmax(db), 1e-6))
    amax = float(max(np.nanmax(np.abs(diff)), 1e-6))
    views = (("axial", lambda v: v[cz], dy / dx, "upper"),
             ("coronal", lambda v: v[:, cy, :], dz / dx, "lower"))
    fig, axes = plt.subplots(2, 3, figsize=(13, 8.5), squeeze=False)
    colours = {n: CONTOUR_COLOURS[i % len(CONTOUR_COLOURS)] for i, n in enumerate(masks)}
    for row, (view, cut, aspect, origin) in enumerate(views):
        panels = ((da, f"{labels[0]} dose", "jet", 0.0, dmax),
                  (db, f"{labels[1]} dose", "jet", 0.0, dmax),
                  (diff, f"{labels[0]} - {labels[1]}", "RdBu_r", -amax, amax))
        for col, (vol, name, cmap, vmin, vmax) in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(cut(ct), cmap="gray", aspect=aspect, origin=origin,
                      vmin=-400.0, vmax=400.0)
            img = cut(vol)
            if col < 2:
                img = np.ma.masked_less(img, 0.05 * dmax)
            im = ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax, alpha=0.6, aspect=aspect,
                           origin=origin)
            for mname, m in masks.items():
                sl = cut(np.asarray(m, dtype=bool))
                if sl.any() and not sl.all():
                    ax.contour(sl.astype(np.float32), levels=[0.5], colors=colours[mname],
                               linewidths=1.0)
            ax.set_title(f"{name} ({view})", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02, label="Gy")
    handles = [Line2D([], [], color=c, label=n) for n, c in colours.items()]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=8)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    return fig
