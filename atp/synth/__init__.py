"""Synthetic cohort: procedural anatomy (CT, contours, prescriptions) and review figures.

Pure numpy/scipy (domain layer); the dose comes later from the planner.
"""

from atp.synth.anatomy import GENERATOR_VERSION, generate_anatomy

__all__ = ["GENERATOR_VERSION", "generate_anatomy"]
