"""Deliverable plans: a machine model, MLC leaf sequencing (IMRT sliding window and
step-and-shoot, VMAT arcs), the fluence and dose the sequence delivers, aperture-weight
re-optimization.

Pure numpy/scipy (the domain layer).
"""

from atp.delivery.machine import DEFAULT_MACHINE, Machine, load_machine
from atp.delivery.sequence import BeamSequence, DeliverablePlan, check_limits

__all__ = ["DEFAULT_MACHINE", "BeamSequence", "DeliverablePlan", "Machine", "check_limits",
           "load_machine"]
