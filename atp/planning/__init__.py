"""Clinical-goal-guided inverse planning (pure numpy/scipy)."""

from atp.planning.goals import Goal, GoalError, GoalList
from atp.planning.metrics import Metric, evaluate_metric, parse_metric
from atp.planning.planner import PlanResult, PlanSettings, build_terms, plan
from atp.planning.report import GoalOutcome, goal_report, write_report_csv, write_report_json
from atp.planning.resolve import ResolvedGoal, resolve_goals

__all__ = [
    "Goal", "GoalError", "GoalList", "GoalOutcome", "Metric", "PlanResult", "PlanSettings",
    "ResolvedGoal", "build_terms", "evaluate_metric", "goal_report", "parse_metric", "plan",
    "resolve_goals", "write_report_csv", "write_report_json",
]
