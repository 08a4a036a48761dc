"""The plan ATP is judged against: the clinical plan, or a protocol re-plan.

``clinical`` (the default): the dose that came with the case, the plan the patient was
treated with (an imported RTDOSE, the OpenKBP reference plan, the synthetic cohort's
reference plan). It may come from another dose engine than atp's: `dose_origin` names
it, and `engine_gap` fits atp's own beamlets to it voxel by voxel, so a report can show
how large the engine difference alone is. Its MU is known when an RTPLAN was imported
(its beam metersets) or the synthetic reference plan was sequenced on a machine.

``replan`` (``MNL-replan``), and the fallback for a case without a dose: atp's own
optimizer with the protocol goal values and no prediction, on the same beams as the ATP
plan. It does not depend on the ATP tolerances, so a tolerance sweep or an Optuna search
plans it once per case: its fluence is cached under ``cache_dir``, keyed by the influence
matrix (case, beams, engine), the goal list and the planner settings, and a cached plan is
rebuilt from its fluence (dose and goal report recomputed, no optimization).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from atp.cases import PatientCase
from atp.dose import total_mu
from atp.dose.influence import DoseInfluence
from atp.io.atomic import atomic_open
from atp.planning import GoalList, PlanResult, PlanSettings, goal_report, plan, resolve_goals

log = logging.getLogger(__name__)

CLINICAL, REPLAN = "clinical", "MNL-replan"
MODES = ("clinical", "replan")
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


def replan_cache_key(influence_key: str, goals: GoalList, settings: PlanSettings, *,
                     extra: dict | None = None) -> str:
    """Hex SHA-256 of what a protocol re-plan depends on.

    Parameters
    ----------
    influence_key : str
        The influence matrix's cache key (`atp.dose.influence_cache_key`).
    goals : GoalList
        The goal list (site list plus institution overlay).
    settings : PlanSettings
        The planner settings.
    extra : dict, optional
        More of what a cached result depends on (JSON-able; the machine and sequencer
        of a deliverable re-plan); None adds nothing.

    Returns
    -------
    str
    """
    doc = {"format": CACHE_FORMAT, "influence": influence_key,
           "goals": [dataclasses.asdict(g) for g in goals.goals],
           "settings": dataclasses.asdict(settings), **({"extra": extra} if extra else {})}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def protocol_replan(case: PatientCase, influence: DoseInfluence, goals: GoalList, *,
                    settings: PlanSettings, cache_dir: str | Path | None = None,
                    influence_key: str | None = None, label: str = REPLAN
                    ) -> ComparatorPlan:
    """The protocol re-plan of ``case``, from the cache when it holds one.

    Parameters
    ----------
    case : PatientCase
        The patient.
    influence : DoseInfluence
        The beams' influence matrix.
    goals : GoalList
        The goal list; its protocol values are used (no prediction).
    settings : PlanSettings
        Planner settings.
    cache_dir : str or Path, optional
        Where re-plan fluences are cached; None plans every time.
    influence_key : str, optional
        The influence matrix's cache key; required with ``cache_dir``.
    label : str, optional
        The comparator's name in reports; default ``"MNL-replan"``.

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
            return ComparatorPlan(label, result.dose_gy, engine=engine_label(influence),
                                  mu=total_mu(influence, result.fluence), result=result,
                                  cached=True)
    result = plan(case, influence, goals, settings=settings)
    if path is not None:
        with atomic_open(path, mode="wb") as fh:
            np.savez(fh, fluence=result.fluence, meta=np.array(json.dumps({
                "key": key, "n_iterations": result.n_iterations,
                "n_evaluations": result.n_evaluations, "wall_s": result.wall_s})))
    return ComparatorPlan(label, result.dose_gy, engine=engine_label(influence),
                          mu=total_mu(influence, result.fluence), result=result)


def engine_label(influence: DoseInfluence) -> str:
    """How reports name the engine of an influence matrix (name and version).

    Parameters
    ----------
    influence : DoseInfluence
        The influence matrix; its ``engine`` dict gives name and version.

    Returns
    -------
    str
        ``"atp <name> <version>"``.
    """
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


def dose_origin(case: PatientCase) -> str:
    """Which engine (or system) made the dose that came with ``case``.

    Parameters
    ----------
    case : PatientCase
        The patient; read from ``case.metadata`` (``source``, ``reference_plan``).

    Returns
    -------
    str
        A readable origin; ``"unknown (the case's own dose)"`` when not recorded.
    """
    source = case.metadata.get("source")
    if source == "openkbp":
        return "CERR influence matrices (OpenKBP reference plan)"
    if source == "dicom":
        return "the treatment planning system (imported RTDOSE)"
    if "reference_plan" in case.metadata:
        return "atp pencil-beam engine (synthetic reference plan)"
    return "unknown (the case's own dose)"


def clinical_mu(case: PatientCase) -> float | None:
    """Total MU of the case's own plan over all fractions, when known: an imported
    RTPLAN's beam metersets (`atp.io.dicom.importer`), or a synthetic reference plan that
    was sequenced on a machine (`atp.synth.reference`).

    Parameters
    ----------
    case : PatientCase
        The patient; read from ``case.metadata`` (``dicom.plan`` or ``reference_plan``).

    Returns
    -------
    float or None
        MU per fraction times the number of fractions (MU); None when unknown.
    """
    plan_info = (case.metadata.get("dicom") or {}).get("plan") or {}
    mu = plan_info.get("mu_per_fraction")
    if mu is None:
        plan_info = case.metadata.get("reference_plan") or {}
        mu = plan_info.get("mu_per_fraction")
    if mu is None:
        return None
    return float(mu) * float(plan_info.get("n_fractions") or case.n_fractions or 1)


def clinical_plan(case: PatientCase, *, label: str = CLINICAL) -> ComparatorPlan:
    """The case's own dose as the comparator (``case.dose_gy`` must exist).

    Parameters
    ----------
    case : PatientCase
        The patient with its own dose (Gy); ValueError without one.
    label : str, optional
        The comparator's name in reports; default ``"clinical"``.

    Returns
    -------
    ComparatorPlan
        The case's dose (float32, (z, y, x)), its origin as engine and its MU if known.
    """
    if case.dose_gy is None:
        raise ValueError(f"patient {case.patient_id}: no dose to compare with")
    return ComparatorPlan(label, np.asarray(case.dose_gy, dtype=np.float32),
                          engine=dose_origin(case), mu=clinical_mu(case))


def engine_gap(case: PatientCase, influence: DoseInfluence, dose_gy: np.ndarray, *,
               max_iter: int = 300) -> np.ndarray:
    """atp's closest forward dose to ``dose_gy``: non-negative beamlet weights fitted by
    least squares over the influence matrix's voxels (the body).

    The fitted plan mimics the given dose voxel by voxel with atp's beams and engine, so
    the remaining difference is what atp's engine cannot reproduce of it (physics and
    beam geometry), not a planning choice.

    Parameters
    ----------
    case : PatientCase
        The patient (its grid is the influence matrix's).
    influence : DoseInfluence
        atp's influence matrix of the beams.
    dose_gy : np.ndarray
        The dose to mimic (Gy) on the case grid, (z, y, x).
    max_iter : int, optional
        L-BFGS-B iterations; default 300.

    Returns
    -------
    ndarray, float32, (z, y, x)
        The fitted plan's dose on the case grid.
    """
    target = np.asarray(dose_gy, dtype=np.float64).ravel()[influence.voxel_index]
    matrix = influence.matrix
    matrix_t = matrix.T
    scale = float(np.dot(target, target)) or 1.0

    ones = np.ones(influence.n_beamlets, dtype=np.float32)
    d1 = (matrix @ ones).astype(np.float64)
    # the best flat fluence; the solve runs on x = w / unit so that variables are O(1)
    unit = max(float(np.dot(d1, target) / max(np.dot(d1, d1), 1e-12)), 1e-12)

    def fun(x):
        r = (matrix @ (x * unit).astype(np.float32)).astype(np.float64) - target
        g = (matrix_t @ r.astype(np.float32)).astype(np.float64)
        return float(np.dot(r, r)) / scale, 2.0 * unit * g / scale

    res = minimize(fun, np.ones(influence.n_beamlets), jac=True, method="L-BFGS-B",
                   bounds=[(0.0, None)] * influence.n_beamlets,
                   options={"maxiter": max_iter, "maxcor": 20})
    return influence.dose_ct(np.maximum(res.x * unit, 0.0).astype(np.float32), case)
