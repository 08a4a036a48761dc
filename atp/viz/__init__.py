"""Figures (matplotlib, Agg backend, PNG written atomically): the one home of plot code.

- `core`: the pyplot entry point and `save_figure`;
- `dvh`: DVH overlays; `case`: orthogonal slices of a case with contours and dose;
- `evaluation`: the study's dot plots and dose-difference slices; `bars`: grouped bars;
- `prediction`: a predicted dose against its reference (training figures);
- `review`: the blinded review's plan pairs and Fig. 3-style statistics (`atp.review`);
- `workflow`: planning time per step (the study's Fig. 7 style).
"""

from atp.viz.bars import bar_chart
from atp.viz.case import plot_case
from atp.viz.core import pyplot, save_figure
from atp.viz.dvh import plot_dvh_overlay
from atp.viz.evaluation import (
    dose_difference_slices,
    dot_plot_relative_differences,
    dot_plot_vs_prediction,
    study_endpoint_rows,
)
from atp.viz.prediction import prediction_figure
from atp.viz.workflow import plot_workflow

__all__ = ["bar_chart", "dose_difference_slices", "dot_plot_relative_differences",
           "dot_plot_vs_prediction", "plot_case", "plot_dvh_overlay", "plot_workflow",
           "prediction_figure", "pyplot", "save_figure", "study_endpoint_rows"]
