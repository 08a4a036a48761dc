"""Deliverable plans: a machine model, MLC leaf sequencing (IMRT sliding window and
step-and-shoot, VMAT arcs), the fluence and dose the sequence delivers, aperture-weight
re-optimization.

Pure numpy/scipy (the domain layer).
"""

from atp.delivery.machine import DEFAULT_MACHINE, Machine, load_machine
from atp.delivery.sequence import BeamSequence, DeliverablePlan, check_limits

__all__ = ["DEFAULT_MACHINE", "BeamSequence", "DeliverablePlan", "Machine", "check_limits",
           "load_machine"]
# also: atp.delivery.sequencing (SequencingSettings, sequence_plan), .deliverable
# (make_deliverable, deliver), .fluence (delivered_fluence, plan_weights), .reoptimize
