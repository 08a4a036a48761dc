"""The plan ATP is judged against: a protocol re-plan on atp's engine, cached per case.

The re-plan (``MNL-replan``) is atp's own optimizer with the protocol goal values and no
prediction, on the same beams as the ATP plan. It does not depend on the ATP tolerances,
so a tolerance sweep or an Optuna search plans it once per case: its fluence is cached
under ``cache_dir``, keyed by the influence matrix (case, beams, engine), the goal list
and the planner settings, and a cached plan is rebuilt from its fluence (dose and goal
report recomputed, no optimization).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from atp.cases import PatientCase
from atp.dose import total_mu
from atp.dose.influence import DoseInfluence
from atp.io.atomic import atomic_open
from atp.planning import GoalList, PlanResult, PlanSettings, goal_report, plan, resolve_goals

log = logging.getLogger(__name__)

REPLAN = "MNL"
CACHE_FORMAT = 1


@dataclass
class ComparatorPlan:
    """The comparator's dose of one case and what is known about it.

    Attributes
    ----------
    label : str
        How reports, tables and figures name it.
    dose_gy : ndarray, float32, (z, y, x)
        Its dose on the case grid.
    engine : str
        Which dose engine made ``dose_gy``.
    mu : float or None
        Total MU over all fractions, when known.
    result : PlanResult or None
        The optimization behind it (None for a dose that came with the case).
    cached : bool
        Rebuilt from the comparator cache instead of optimized.
    """

    label: str
    dose_gy: np.ndarray
    engine: str
    mu: float | None = None
    result: PlanResult | None = None
    cached: bool = False


def replan_cache_key(influence_key: str, goals: GoalList, settings: PlanSettings) -> str:
    """Hex SHA-256 of what a protocol re-plan depends on.

    Parameters
    ----------
    influence_key : the influence matrix's cache key (`atp.dose.influence_cache_key`)
    goals : the goal list (site list plus institution overlay)
    settings : the planner settings

    Returns
    -------
    str
    """
    doc = {"format": CACHE_FORMAT, "influence": influence_key,
           "goals": [dataclasses.asdict(g) for g in goals.goals],
           "settings": dataclasses.asdict(settings)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def protocol_replan(case: PatientCase, influence: DoseInfluence, goals: GoalList, *,
                    settings: PlanSettings, cache_dir: str | Path | None = None,
                    influence_key: str | None = None, label: str = REPLAN
                    ) -> ComparatorPlan:
    """The protocol re-plan of ``case``, from the cache when it holds one.

    Parameters
    ----------
    case, influence : the patient and the beams' influence matrix
    goals : the goal list; its protocol values are used (no prediction)
    settings : planner settings
    cache_dir : where re-plan fluences are cached; None plans every time
    influence_key : the influence matrix's cache key; required with ``cache_dir``
    label : the comparator's name in reports

    Returns
    -------
    ComparatorPlan
    """
    path = None
    if cache_dir is not None:
        if influence_key is None:
            raise ValueError("protocol_replan: influence_key is needed with cache_dir")
        key = replan_cache_key(influence_key, goals, settings)
        path = Path(cache_dir) / f"replan_{case.patient_id}_{key[:24]}.npz"
        result = _load(path, case, influence, goals, key=key)
        if result is not None:
            return ComparatorPlan(label, result.dose_gy, engine=_engine_name(influence),
                                  mu=total_mu(influence, result.fluence), result=result,
                                  cached=True)
    result = plan(case, influence, goals, settings=settings)
    if path is not None:
        with atomic_open(path, mode="wb") as fh:
            np.savez(fh, fluence=result.fluence, meta=np.array(json.dumps({
                "key": key, "n_iterations": result.n_iterations,
                "n_evaluations": result.n_evaluations, "wall_s": result.wall_s})))
    return ComparatorPlan(label, result.dose_gy, engine=_engine_name(influence),
                          mu=total_mu(influence, result.fluence), result=result)


def _engine_name(influence: DoseInfluence) -> str:
    eng = influence.engine or {}
    return f"atp {eng.get('name', 'engine')} {eng.get('version', '')}".strip()


def _load(path: Path, case: PatientCase, influence: DoseInfluence, goals: GoalList, *,
          key: str) -> PlanResult | None:
    """A cached re-plan rebuilt from its fluence, or None (absent, unreadable, stale)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            fluence = z["fluence"]
            meta = json.loads(str(z["meta"]))
    except (OSError, KeyError, ValueError) as exc:
        log.warning("%s: unreadable re-plan cache (%s), planning again", path, exc)
        return None
    if meta.get("key") != key or fluence.shape != (influence.n_beamlets,):
        log.warning("%s: stale re-plan cache, planning again", path)
        return None
    resolved, skipped = resolve_goals(case, goals)
    dose = influence.dose_ct(fluence, case)
    return PlanResult(fluence=fluence, dose_gy=dose, report=goal_report(case, dose, resolved),
                      resolved=resolved, skipped=skipped, objective_history=[],
                      n_iterations=int(meta["n_iterations"]),
                      n_evaluations=int(meta["n_evaluations"]), wall_s=0.0,
                      phases=[{"phase": "cached", "planned_wall_s": meta["wall_s"]}])
