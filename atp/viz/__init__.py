"""Figures (matplotlib, Agg backend, PNG written atomically)."""

from atp.viz.dvh import plot_dvh_overlay, save_figure

__all__ = ["plot_dvh_overlay", "save_figure"]
