"""The one matplotlib entry point of atp: the Agg backend, and PNGs written atomically."""

from __future__ import annotations

import os

from atp.io.atomic import atomic_open


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike, *, dpi: int = 110) -> None:
    """Save a matplotlib figure as PNG atomically and close it.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : path of the PNG (its folder is created; the file appears complete or not at all)
    dpi : resolution
    """
    try:
        with atomic_open(path) as fh:
            fig.savefig(fh, format="png", dpi=dpi)
    finally:
        pyplot().close(fig)
