"""Lightning modules (DL layer)."""

from atp.models.dose_module import DosePredictionModule

__all__ = ["DosePredictionModule"]
