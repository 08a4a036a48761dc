"""Grouped bar charts (sweep summaries: criteria met, metrics per job)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from atp.viz.core import pyplot


def bar_chart(labels: Sequence[str], series: Mapping[str, Sequence[float]], *, title: str,
               ylabel: str):
    """Grouped bars: one group per label, one bar per series. Returns the figure.

    Parameters
    ----------
    labels : sequence of str
        Group labels along x.
    series : Mapping of str to sequence of float
        Series name (legend entry) to one value per label.
    title : str
        Figure title.
    ylabel : str
        Label of the y axis (with its unit).

    Returns
    -------
    matplotlib.figure.Figure
        The figure (save it with `atp.viz.save_figure`).
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(labels) + 2.5), 4.0))
    x = np.arange(len(labels), dtype=np.float64)
    width = 0.8 / max(len(series), 1)
    for i, (name, values) in enumerate(series.items()):
        ax.bar(x + (i - (len(series) - 1) / 2) * width, np.asarray(values, dtype=np.float64),
               width, label=name)
    ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
