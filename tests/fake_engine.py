"""A dose engine for the injection tests: the pencil beam, recording every patient it sees.

Configs select it with ``engine._target_=fake_engine.CountingEngine`` (tests/ is on the
path), so a test can check that every consumer of ``cfg.engine`` used the configured
engine rather than building its own.
"""

from __future__ import annotations

from atp.dose import PencilBeamEngine


class CountingEngine(PencilBeamEngine):
    """`PencilBeamEngine` that appends ``patient_id`` to `CALLS` on every influence call."""

    name = "counting_pencil_beam"
    CALLS: list[str] = []  # shared by all instances: each config builds its own

    def influence(self, case, beams, *, mask=None, target_mask=None):
        type(self).CALLS.append(case.patient_id)
        return super().influence(case, beams, mask=mask, target_mask=target_mask)
