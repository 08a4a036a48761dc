"""Lightning callbacks (DL layer)."""

from atp.callbacks.dosimetry import DosimetryLogger
from atp.callbacks.planning import GoalGuidedPlanning

__all__ = ["DosimetryLogger", "GoalGuidedPlanning"]
