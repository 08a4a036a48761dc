"""Figures of the blinded review (`atp.review`): the pair a reviewer sees, labelled
"Plan 1" / "Plan 2" only, and the analysis's Fig. 3-style agreement bars, the dot plot
split by preference and the comment keywords. Each function returns a figure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from atp.cases import PatientCase
from atp.viz.core import pyplot
from atp.viz.dvh import plot_dvh_overlay
from atp.viz.evaluation import CONTOUR_COLOURS, dot_plot_relative_differences

PLAN_NAMES = ("Plan 1", "Plan 2")
WASH_FLOOR = 0.05  # doses below this share of the shared maximum are not drawn
ALL = "all"  # the pooled group of atp.review.scoring
PANELS = (("acceptable", "a  ATP plan acceptable", "Greens"),
          ("preferred", "b  ATP plan preferred", "Blues"))


def pair_dvh(case: PatientCase, doses_gy: Sequence[np.ndarray], *, title: str):
    """DVHs of both plans on one set of axes: Plan 1 solid, Plan 2 dashed.

    Parameters
    ----------
    case : PatientCase
        The case (ROIs, spacing).
    doses_gy : sequence of np.ndarray
        The two doses (Gy) on the case grid, (z, y, x), in display order.
    title : str
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        The figure (save it with `atp.viz.save_figure`).
    """
    return plot_dvh_overlay(case, dict(zip(PLAN_NAMES, doses_gy, strict=True)), title=title)


def _centre(case: PatientCase) -> tuple[int, int, int]:
    union = case.target_union()
    if not union.any():
        return tuple(s // 2 for s in case.shape)
    idx = np.argwhere(union).astype(np.float64)
    return tuple(int(round(c)) for c in idx.mean(axis=0, dtype=np.float64))


def pair_dose_wash(case: PatientCase, doses_gy: Sequence[np.ndarray], *, title: str):
    """Axial, coronal and sagittal dose washes through the target centre.

    Rows: Plan 1, Plan 2 (one colour scale, 0 to the higher maximum of the two within
    the scoring mask), and Plan 1 - Plan 2 (a diverging scale centred at 0). Dose is
    drawn only inside ``case.scoring_mask`` and above 5 % of the shared maximum, the CT
    in grey below, target and organ contours in the same colours in every panel.

    Parameters
    ----------
    case : PatientCase
        The case (CT, ROIs, scoring mask, spacing).
    doses_gy : sequence of np.ndarray
        The two doses (Gy) on the case grid, (z, y, x), in display order.
    title : str
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        The figure (save it with `atp.viz.save_figure`).
    """
    plt = pyplot()
    from matplotlib.lines import Line2D

    inside = case.scoring_mask
    d1, d2 = (np.where(inside, np.asarray(d, dtype=np.float64), 0.0) for d in doses_gy)
    vmax = float(max(d1.max(), d2.max(), 1e-6))
    diff = d1 - d2
    amax = float(max(np.abs(diff).max(), 1e-6))
    cz, cy, cx = _centre(case)
    dz, dy, dx = (float(s) for s in case.spacing_mm)
    views = (("axial", lambda v: v[cz], dy / dx, "upper"),
             ("coronal", lambda v: v[:, cy, :], dz / dx, "lower"),
             ("sagittal", lambda v: v[:, :, cx], dz / dy, "lower"))
    rows = ((d1, PLAN_NAMES[0], "jet", 0.0, vmax, True),
            (d2, PLAN_NAMES[1], "jet", 0.0, vmax, True),
            (diff, f"{PLAN_NAMES[0]} - {PLAN_NAMES[1]}", "RdBu_r", -amax, amax, False))
    names = [n for n, r in case.rois.items() if r.role in ("target", "organ")]
    colours = {n: CONTOUR_COLOURS[i % len(CONTOUR_COLOURS)] for i, n in enumerate(names)}
    ct = np.asarray(case.ct_hu, dtype=np.float64)
    fig, axes = plt.subplots(3, 3, figsize=(12, 11), squeeze=False)
    for i, (vol, label, cmap, vmin, vtop, floor) in enumerate(rows):
        for j, (view, cut, aspect, origin) in enumerate(views):
            ax = axes[i, j]
            ax.imshow(cut(ct), cmap="gray", vmin=-400.0, vmax=400.0, aspect=aspect,
                      origin=origin)
            img = cut(vol)
            img = np.ma.masked_less(img, WASH_FLOOR * vmax) if floor else np.ma.masked_where(
                ~cut(inside), img)
            im = ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vtop, alpha=0.55, aspect=aspect,
                           origin=origin)
            for name in names:
                sl = cut(case.rois[name].mask)
                if sl.any() and not sl.all():
                    ax.contour(sl.astype(np.float32), levels=[0.5], colors=colours[name],
                               linewidths=1.0)
            ax.set_title(f"{label} ({view})", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02, label="Gy")
    handles = [Line2D([], [], color=c, label=n) for n, c in colours.items()]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8), fontsize=8)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    return fig


def _bar_groups(rates: Sequence[Mapping], question: str) -> list[Mapping]:
    """Rows of one question in display order: each site's institutions, the site pooled
    (when it has more than one institution), then every case pooled."""
    rows = [r for r in rates if r["question"] == question]
    per_site = [r for r in rows if r["level"] == "site_institution"]
    out: list[Mapping] = []
    for site in sorted({r["site"] for r in per_site}):
        mine = sorted((r for r in per_site if r["site"] == site), key=lambda r: r["institution"])
        out += mine
        if len(mine) > 1:
            out += [r for r in rows if r["level"] == "site" and r["site"] == site]
    if len({r["site"] for r in per_site}) > 1 or len(per_site) > 1:
        out += [r for r in rows if r["level"] == "overall"]
    return out


def _label(r: Mapping) -> str:
    if r["level"] == "overall":
        return "all cases"
    return f"{r['site']}\n{'all' if r['institution'] == ALL else r['institution']}"


def agreement_figure(rates: Sequence[Mapping], *, n_reviewers: int, suffix: str = ""):
    """Fig. 3 of the study: a, b stacked bars of the cases by how many reviewers found
    the ATP plan acceptable / preferred it (k = R at the bottom); c the mean rate at
    which reviewers named the ATP plan as AI-generated.

    Parameters
    ----------
    rates : sequence of Mapping
        `atp.review.scoring.agreement_rates` rows (questions ``acceptable``,
        ``preferred``, ``recognized``; shares as fractions).
    n_reviewers : int
        Number of reviewers R.
    suffix : str, optional
        Note such as ``" (simulated reviewers)"``, shown as a red banner when given.

    Returns
    -------
    matplotlib.figure.Figure
        The figure (save it with `atp.viz.save_figure`).
    """
    plt = pyplot()
    groups = _bar_groups(rates, "acceptable")
    width = max(7.0, 1.0 + 0.75 * len(groups))
    fig, axes = plt.subplots(1, 3, figsize=(3 * width / 1.6, 5.2))
    x = np.arange(len(groups))
    for ax, (question, title, cmap_name) in zip(axes[:2], PANELS, strict=True):
        rows = _bar_groups(rates, question)
        cmap = plt.get_cmap(cmap_name)
        bottom = np.zeros(len(rows))
        for k in range(n_reviewers, -1, -1):
            share = np.array([100.0 * r[f"share_k{k}"] for r in rows])
            colour = cmap(0.25 + 0.7 * k / max(n_reviewers, 1)) if k else "0.85"
            ax.bar(x, share, bottom=bottom, color=colour, edgecolor="white",
                   label=f"{k} of {n_reviewers}")
            bottom += share
        for xi, r in zip(x, rows, strict=True):
            if r["unanimous"] > 0:
                ax.text(xi, 100.0 * r["unanimous"] / 2.0, f"{100.0 * r['unanimous']:.0f}",
                        ha="center", va="center", fontsize=8, color="white")
        ax.set_title(title, loc="left", fontsize=10)
        ax.legend(title="reviewers agreeing", fontsize=7, title_fontsize=7,
                  loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=n_reviewers + 1)
    rows = _bar_groups(rates, "recognized")
    rate = np.array([100.0 * r["mean_rate"] for r in rows])
    axes[2].bar(x, rate, color="tab:purple")
    for xi, v in zip(x, rate, strict=True):
        axes[2].text(xi, v + 1.5, f"{v:.0f}", ha="center", fontsize=8)
    axes[2].set_title("c  ATP plan recognized as AI-generated", loc="left", fontsize=10)
    for ax in axes:
        ax.set_xticks(x, [_label(r) for r in groups], fontsize=8)
        ax.set_ylim(0, 105)
        ax.set_ylabel("cases (%)" if ax is not axes[2] else "answers (%)")
        ax.grid(axis="y", alpha=0.3)
    if suffix:
        fig.suptitle(suffix.strip(" ()").upper(), color="tab:red", fontweight="bold")
    fig.tight_layout()
    return fig


def dot_plot_by_preference(rows: Sequence[Mapping], *, title: str):
    """`atp.viz.evaluation.dot_plot_relative_differences` with the preference groups
    in place of institutions (legend entries named after the groups).

    Parameters
    ----------
    rows : sequence of Mapping
        Comparison rows split by preference, the group in the ``institution`` column.
    title : str
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        The figure (save it with `atp.viz.save_figure`).
    """
    fig = dot_plot_relative_differences(rows, title=title)
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is None:
            continue
        for text in legend.get_texts():
            if text.get_text().startswith("institution "):
                text.set_text(text.get_text()[len("institution "):])
    return fig


def keyword_figure(table: Sequence[Mapping], *, top: int = 20, title: str = ""):
    """Horizontal bars of the most mentioned comment keywords.

    Parameters
    ----------
    table : sequence of Mapping
        `atp.review.keywords.keyword_table` rows (``keyword``, ``mentions``), most
        mentioned first.
    top : int, optional
        Most keywords drawn; default 20.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        The figure (save it with `atp.viz.save_figure`).
    """
    plt = pyplot()
    rows = list(table)[:top]
    fig, ax = plt.subplots(figsize=(6.5, 1.0 + 0.3 * max(len(rows), 1)))
    y = np.arange(len(rows))
    ax.barh(y, [r["mentions"] for r in rows], color="tab:grey")
    ax.set_yticks(y, [r["keyword"] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel="mentions in comments", title=title)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig
