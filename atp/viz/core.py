"""The one matplotlib entry point of atp: the Agg backend, and PNGs written atomically."""

from __future__ import annotations

import os

from atp.io.atomic import atomic_open


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (no display needed).

    Returns
    -------
    module
        ``matplotlib.pyplot``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike, *, dpi: int = 110) -> None:
    """Save a matplotlib figure as PNG atomically and close it.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure; closed afterwards, even on error.
    path : str or os.PathLike
        The PNG file (its folder is created; the file appears complete or not at all).
    dpi : int, optional
        Resolution (dots per inch).
    """
    try:
        with atomic_open(path) as fh:
            fig.savefig(fh, format="png", dpi=dpi)
    finally:
        pyplot().close(fig)
