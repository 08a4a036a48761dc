"""Cohort evaluation: ATP vs manual plan statistics, study-style figures, HTML report.

Pure numpy/scipy/matplotlib; reports which goals and criteria plans meet, never
clinical acceptability.
"""

from atp.evaluation.compare import (
    compare_plans,
    compare_to_prediction,
    goal_pass_rates,
    preference_proxy,
    write_table,
)
from atp.evaluation.families import attach_groups, bonferroni_families
from atp.evaluation.html import write_html_report
from atp.evaluation.workflow import WorkflowLog, read_workflow

__all__ = [
    "WorkflowLog",
    "attach_groups",
    "bonferroni_families",
    "compare_plans",
    "compare_to_prediction",
    "goal_pass_rates",
    "preference_proxy",
    "read_workflow",
    "write_html_report",
    "write_table",
]
