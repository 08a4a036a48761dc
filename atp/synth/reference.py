"""The reference ("clinical") plan of a synthetic patient, and its normalization.

1. Targets are cropped away from the organs with priority-1 goals (by one voxel, at least
   3 mm), as planners crop PTVs from serial-organ PRVs.
2. Protocol plan: the site's goal list with protocol values (no prediction), planned with
   the institution's beams (the patient's technique where the institution mixes them),
   plus one mean-dose goal pair per target level (priority 2,
   ``target_mean_band_pct`` of the level's own prescription). Without them nothing but
   the falloff limit (set from the highest prescription) holds a lower dose level down,
   and a lower level next to a boost ends several per cent hot.
3. Sparing pass: re-planned from that fluence with every organ goal set ``sparing_pct``
   below what the protocol plan achieved (its own dose as the "prediction"), so organs are
   pushed down as far as the higher-priority goals allow.
4. Delivery (with a machine, the cohort's default): the sparing plan is sequenced on the
   machine as atp's own plans are (`atp.delivery.deliverable.make_deliverable`: leaf
   sequences, the dose of the apertures on the jaw-rectangle matrix, segment-MU
   re-optimization), so that both sides of an ATP-vs-clinical comparison are deliverable
   plans; the reference MU is then known (``mu_per_fraction`` in the summary). Where
   sequencing breaks a priority-1 upper limit the fluence plan met, that limit is lowered
   by its rise and the plan made again once (`deliver_keeping_p1`).
5. Normalization (`normalization_factor`): the whole plan is scaled by one factor that
   brings the lowest level's D95 towards its prescription (the usual clinical
   normalization) as far as every level's mean dose stays within 1.8 % of its own
   prescription, and never so far that a priority-1 goal met before the scaling fails
   after it.

The sparing-pass (deliverable) dose times the factor is the case's dose; its MU scale with
the factor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from atp.cases import PatientCase
from atp.dose import beams_from_config, default_isocenter_mm
from atp.dose.influence import DoseEngine
from atp.dosimetry import dose_at_volume_percent
from atp.planning import GoalList, PlanSettings, goal_report, plan, resolve_goals
from atp.planning.setup import beam_config_for, goal_list_for

#: Source name of the added target-mean goals (goal reports and errors show it).
TARGET_MEAN_SOURCE = "atp.synth.reference: target mean band"


def crop_targets_from_hard_constraints(case: PatientCase, goals: GoalList, *,
                                       margin_mm: float) -> list[str]:
    """Crop every target away from the organs that carry priority-1 goals.

    Parameters
    ----------
    case : PatientCase
        Modified in place (target masks).
    goals : GoalList
        The goal list whose priority-1 organ goals define the organs to crop from.
    margin_mm : float
        Voxels within this distance of such an organ leave the targets (a target that
        would vanish is kept whole).

    Returns
    -------
    list of str
        The organs cropped from.
    """
    from scipy import ndimage

    organs = sorted({g.roi for g in goals.goals if g.priority == 1 and g.roi in case.rois
                     and case.rois[g.roi].role == "organ"})
    if not organs:
        return []
    keep_out = np.zeros(case.shape, dtype=bool)
    for name in organs:
        keep_out |= case.rois[name].mask
    dist = ndimage.distance_transform_edt(~keep_out, sampling=case.spacing_mm)
    near = dist <= margin_mm
    for name in case.targets:
        cropped = case.rois[name].mask & ~near
        if cropped.any():
            case.rois[name].mask = cropped
    return organs


def target_mean_goals(band_pct: Sequence[float], *, priority: int = 2) -> GoalList:
    """Goals ``band_pct[0] % Rx <= Dmean <= band_pct[1] % Rx`` on every target level.

    Parameters
    ----------
    band_pct : sequence of float
        (low, high) mean dose band (% of Rx); must bracket 100.
    priority : int, optional
        Priority of both goals; default 2.

    Returns
    -------
    GoalList
        Two goals on ``ptv_*`` (lower and upper bound of the mean dose).
    """
    low, high = (float(v) for v in band_pct)
    if not 0.0 < low <= 100.0 <= high:
        raise ValueError(f"target_mean_band_pct must bracket 100, got {list(band_pct)}")
    return GoalList.from_dicts(
        [{"roi": "ptv_*", "metric": "Dmean", "op": ">=", "value_pct_rx": low,
          "priority": priority},
         {"roi": "ptv_*", "metric": "Dmean", "op": "<=", "value_pct_rx": high,
          "priority": priority}], source=TARGET_MEAN_SOURCE)


def target_mean_over_rx(case: PatientCase, dose_gy: np.ndarray) -> dict[str, float]:
    """Mean dose over prescription of every prescribed target (float64 sums).

    Parameters
    ----------
    case : PatientCase
        The case (its prescriptions and target masks).
    dose_gy : np.ndarray
        Dose (Gy) on the case grid, (z, y, x).

    Returns
    -------
    dict of str to float
        Target name to Dmean / Rx (1.0 = on prescription); empty targets are left out.
    """
    return {p.target: float(dose_gy[case.mask(p.target)].mean(dtype=np.float64) / p.dose_gy)
            for p in case.prescriptions if case.mask(p.target).any()}


def target_d95_over_rx(case: PatientCase, dose_gy: np.ndarray) -> dict[str, float]:
    """D95 over prescription of every prescribed target.

    Parameters
    ----------
    case : PatientCase
        The case (its prescriptions and target masks).
    dose_gy : np.ndarray
        Dose (Gy) on the case grid, (z, y, x).

    Returns
    -------
    dict of str to float
        Target name to D95 / Rx (1.0 = on prescription); empty targets are left out.
    """
    return {p.target: dose_at_volume_percent(dose_gy, case.mask(p.target), percent=95.0)
            / p.dose_gy for p in case.prescriptions if case.mask(p.target).any()}


def normalization_factor(case: PatientCase, dose_gy: np.ndarray, p1_goals, *,
                         mean_limit_pct: float = 1.8,
                         n_bisections: int = 12) -> tuple[float, float]:
    """The factor that brings coverage to D95 = Rx while every target mean stays in band.

    The usual clinical normalization puts the lowest level's D95 on its prescription;
    here it is limited so that every level's mean dose stays within ``mean_limit_pct``
    of its own prescription (when the levels' means are too far apart for one factor to
    hold them all in that band, the factor that centres them is used instead).

    Parameters
    ----------
    case : PatientCase
        The case (its prescriptions and target masks).
    dose_gy : np.ndarray
        The plan's dose (Gy) on the case grid, (z, y, x).
    p1_goals : list of ResolvedGoal
        Priority-1 goals that must not fail because of the scaling.
    mean_limit_pct : float
        Largest deviation (%) of a level's mean from its prescription after scaling.
    n_bisections : int
        Steps of the bisection (between 1 and the wanted factor) when the full factor
        would break a priority-1 goal that the unscaled dose meets.

    Returns
    -------
    (factor, wanted) : tuple of float
        The factor applied and the one wanted; they differ only where a priority-1 goal
        limits it.
    """
    means = list(target_mean_over_rx(case, dose_gy).values())
    if not means:
        return 1.0, 1.0
    m = mean_limit_pct / 100.0
    low, high = max((1.0 - m) / r for r in means), min((1.0 + m) / r for r in means)
    if low > high:
        wanted = 2.0 / (min(means) + max(means))
    else:
        coverage = 1.0 / min(target_d95_over_rx(case, dose_gy).values())
        wanted = float(np.clip(coverage, low, high))
    before = [o.met for o in goal_report(case, dose_gy, p1_goals)]

    def keeps_p1(s: float) -> bool:
        after = goal_report(case, dose_gy * np.float32(s), p1_goals)
        return all(a.met or not b for a, b in zip(after, before, strict=True))

    if not p1_goals or keeps_p1(wanted):
        return wanted, wanted
    lo, hi = 1.0, wanted  # lo keeps every priority-1 goal; hi does not
    for _ in range(n_bisections):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if keeps_p1(mid) else (lo, mid)
    return lo, wanted


def deliver_keeping_p1(case: PatientCase, influence, result, goals: GoalList, resolved, *,
                       engine: DoseEngine, machine, sequencer, settings: PlanSettings,
                       predicted_dose_gy: np.ndarray, tolerances: Mapping[str, float],
                       rounds: int = 2):
    """Sequence ``result`` on ``machine``; where that breaks a priority-1 upper limit the
    fluence plan met (a serial organ's maximum, raised by transmission and the sweep),
    lower that limit by its rise and plan again from the same fluence, then sequence
    again (at most ``rounds`` sequencings), as a planner would.

    Parameters
    ----------
    case : PatientCase
        The patient.
    influence : atp.dose.DoseInfluence
        The plan's influence matrix.
    result : PlanResult
        The fluence plan to sequence.
    goals : GoalList
        The goal list ``result`` was planned with.
    resolved : list of ResolvedGoal
        The protocol goals every round is judged on.
    engine : DoseEngine
        The dose engine (its matrix on the jaw rectangles).
    machine : atp.delivery.Machine
        The treatment machine.
    sequencer : atp.delivery.sequencing.SequencingSettings
        The leaf sequencing settings.
    settings : PlanSettings
        The planner settings of the re-plans.
    predicted_dose_gy : np.ndarray
        Predicted dose (Gy), (z, y, x), as ``result`` was planned.
    tolerances : Mapping of str to float
        Goal tolerances, as ``result`` was planned.
    rounds : int, optional
        Sequencings at most; default 2.

    Returns
    -------
    deliverable : DeliverableResult
        The last deliverable plan.
    lost : list of str
        Labels of the priority-1 goals it still loses against the first fluence plan.
    rounds : int
        The sequencings used.
    """
    from dataclasses import replace

    from atp.delivery.apertures import delivery_influence
    from atp.delivery.deliverable import make_deliverable

    dlv = delivery_influence(engine, case, influence)
    planned = goal_report(case, influence.dose_ct(result.fluence, case), resolved)
    current = result
    for n in range(1, int(rounds) + 1):
        d = make_deliverable(case, influence, current, machine=machine, settings=sequencer,
                             plan_settings=settings, delivery=dlv)
        after = goal_report(case, d.dose_gy, resolved)
        lost = [(r, a, b) for r, a, b in zip(resolved, planned, after, strict=True)
                if a.priority == 1 and a.met and not b.met]
        if not lost or n == rounds:
            break
        lower = {r.goal: b.achieved - a.achieved for r, a, b in lost
                 if r.goal.op == "<=" and r.goal.value is not None}
        if not lower:
            break
        goals = GoalList(tuple(replace(g, value=g.value - lower[g] - 0.01 * g.value)
                               if g in lower else g for g in goals.goals), goals.source)
        current = plan(case, influence, goals, predicted_dose_gy=predicted_dose_gy,
                       tolerances=tolerances, settings=settings, warm_start=current.fluence)
    return d, [a.label for _, a, _ in lost], n


def reference_plan(case: PatientCase, *, site_cfg: Mapping, institution: Mapping | None,
                   engine: DoseEngine, settings: PlanSettings, sparing_pct: float = 10.0,
                   target_mean_band_pct: Sequence[float] = (98.5, 101.5),
                   sparing_max_iter: int | None = None, machine=None,
                   sequencer=None) -> tuple[np.ndarray, dict]:
    """Protocol plan, sparing pass and normalization (see the module docstring).

    Parameters
    ----------
    case : PatientCase
        The patient (its targets are cropped in place).
    site_cfg, institution : Mapping
        The site's facts and the institution overlay (beams, goals).
    engine : DoseEngine
        Dose engine of the plan (its influence matrix).
    settings : PlanSettings
        Optimizer settings of both passes.
    sparing_pct : float
        How much lower (%) than the protocol plan every organ goal is set in the sparing
        pass.
    target_mean_band_pct : (low, high)
        Mean-dose band of every target level, in % of its own prescription, added to the
        goals the reference plan optimizes (not to the protocol list it is judged on).
    sparing_max_iter : int, optional
        Iteration limit of the (warm-started) sparing pass; default ``settings.max_iter``.
    machine : atp.delivery.Machine, optional
        Sequence the plan on it (step 4); None keeps the fluence plan's dose.
    sequencer : atp.delivery.sequencing.SequencingSettings, optional
        The leaf sequencing (default settings when omitted).

    Returns
    -------
    (dose_gy, summary) : tuple
        Dose (Gy, float32, case grid (z, y, x)) and a JSON-able summary for the manifest.
    """
    from dataclasses import replace

    beams = beams_from_config(beam_config_for(site_cfg, institution, case=case),
                              isocenter_mm=default_isocenter_mm(case),
                              laterality=case.metadata.get("laterality"))
    protocol_goals = goal_list_for(site_cfg, institution)
    margin = max(3.0, float(max(case.spacing_mm)))
    cropped = crop_targets_from_hard_constraints(case, protocol_goals, margin_mm=margin)
    goals = protocol_goals.extended(target_mean_goals(target_mean_band_pct))
    influence = engine.influence(case, beams)
    first = plan(case, influence, goals, settings=settings)
    organs = {g.roi: -abs(sparing_pct) for g in protocol_goals.goals}
    spare = settings if sparing_max_iter is None else replace(settings,
                                                              max_iter=int(sparing_max_iter))
    second = plan(case, influence, goals, predicted_dose_gy=first.dose_gy,
                  tolerances=organs, settings=spare, warm_start=first.fluence)
    resolved, _ = resolve_goals(case, protocol_goals)  # protocol values, cropped targets
    delivered = {}
    if machine is not None:
        d, lost, rounds = deliver_keeping_p1(
            case, influence, second, goals, resolved, engine=engine, machine=machine,
            sequencer=sequencer, settings=spare, predicted_dose_gy=first.dose_gy,
            tolerances=organs)
        dose = d.dose_gy.astype(np.float32)
        delivered = {"machine": machine.name, "delivery_mode": d.plan.mode,
                     "control_points": d.plan.n_control_points, "delivery_rounds": rounds,
                     "p1_lost_in_delivery": lost}
        mu_fx = d.plan.mu_per_fraction
    else:
        dose = influence.dose_ct(second.fluence, case).astype(np.float32)
    factor, wanted = normalization_factor(
        case, dose, [r for r in resolved if r.goal.priority == 1])
    dose = (dose * np.float32(factor)).astype(np.float32)
    if delivered:
        delivered["mu_per_fraction"] = round(float(mu_fx * factor), 3)
    protocol = goal_report(case, dose, resolved)
    summary = {**delivered, "deliverable": bool(delivered), "beams": len(beams),
               "beamlets": influence.n_beamlets,
               "targets_cropped_from": cropped, "crop_margin_mm": margin,
               "target_mean_band_pct": [float(v) for v in target_mean_band_pct],
               "normalization": round(float(factor), 5),
               "normalization_wanted": round(float(wanted), 5),
               "iterations": [first.n_iterations, second.n_iterations],
               "p1_met": [bool(o.met) for o in protocol if o.priority == 1],
               "goals_met": int(sum(o.met for o in protocol)), "goals_total": len(protocol),
               "target_mean_over_rx": target_mean_over_rx(case, dose),
               "target_d95_over_rx": target_d95_over_rx(case, dose)}
    return dose, summary
