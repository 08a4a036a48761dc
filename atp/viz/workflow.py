"""The planning-time figure: Fig. 7-style stacked bars of `atp.evaluation.workflow` summaries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from atp.evaluation.workflow import STEPS
from atp.viz.core import pyplot


def plot_workflow(summary: Sequence[Mapping], *, title: str = "Planning time per case"):
    """Fig. 7-style stacked bars: mean time per step per case, one bar per group, with
    the mean number of optimization rounds written next to each bar.

    Parameters
    ----------
    summary : sequence of Mapping
        Rows of `atp.evaluation.workflow.summarize_workflow` (``group``, ``step``,
        ``mean_s`` in s; ``step == "rounds"`` rows with the round counts).
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        The figure (save it with `atp.viz.save_figure`).
    """
    plt = pyplot()
    groups = list(dict.fromkeys(str(r["group"]) for r in summary))
    steps = [s for s in STEPS if any(r["step"] == s for r in summary)]
    mean = {(r["group"], r["step"]): float(r["mean_s"]) for r in summary if "mean_s" in r}
    rounds = {r["group"]: r for r in summary if r["step"] == "rounds"}
    height_in = 1.9 + 0.5 * max(len(groups), 1)
    fig, ax = plt.subplots(figsize=(8.5, height_in))
    left = np.zeros(len(groups), dtype=np.float64)
    y = np.arange(len(groups))
    for i, step in enumerate(steps):
        width = np.array([mean.get((g, step), 0.0) for g in groups], dtype=np.float64)
        ax.barh(y, width, left=left, color=f"C{i}", label=step.replace("_", " "))
        left += width
    for j, g in enumerate(groups):
        r = rounds.get(g)
        if r:
            ax.text(left[j], j, f"  {r['mean_rounds']:.1f} rounds ({r['cold_rounds']} cold, "
                    f"{r['warm_rounds']} warm)", va="center", fontsize=8)
    ax.set_yticks(y, groups)
    ax.invert_yaxis()
    ax.set_xlim(0, max(float(left.max(initial=0.0)) * 1.45, 1.0))
    ax.set(xlabel="mean wall time per case (s)", title=title)
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=len(steps), frameon=False)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout(rect=(0.0, 0.45 / height_in, 1.0, 1.0))  # room for the legend
    return fig
