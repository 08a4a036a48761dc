"""Lightning callbacks (DL layer)."""

from atp.callbacks.dosimetry import DosimetryLogger

__all__ = ["DosimetryLogger"]
