"""Benchmark of the goal-guided fluence optimizer on one OpenKBP sample patient.

Usage::

    python -m atp.bench.optimizer [--openkbp-dir DIR] [--patient pt_1] [--vmat | --vmat-only]
                                  [--reference-iters N] [--parotid-tolerance PCT ...]

The reference dose stands in for the prediction; the goal list is ``conf/site/npc.yaml``.
For 9 coplanar fields (and, with ``--vmat``, a 72-direction arc) it prints: iterations,
evaluations and wall time of the default solve; time per objective+gradient evaluation
and its ratio to the floor of two sparse products (matrix bytes / memory bandwidth, the
bandwidth measured here by copying a large array); how many evaluations the default
needs to come within 1 % of a reference optimum (the same problem solved with a long
run, whose own decrease over its last quarter is printed: a reference still moving by
about 1 % there is not converged enough to judge the 1 % target); the warm-start saving
after parotid edits of -5, -10 and -20 %; and a full `plan()` wall time. Convergence is
measured for each ``--parotid-tolerance`` (default 0 and -80 %). With the goals as
predicted every goal and control can be met on this case: the optimum is exactly 0 and
"within 1 %" means reaching it. -80 % is a trade-off that cannot meet every goal, with a
positive optimum (at -60 % the optimum is near 0 and a 1,500-iteration run is still far
from it). Each also prints when the objective falls below 1e-6 of its start and
how many goals are met.
Targets: within 1 % in <= 150 evaluations; <= 2x the floor; a 9-field plan <= 30 s.
A command, not a test.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from atp.bench.dose_engine import DEFAULT_OPENKBP_DIR, find_patient
from atp.sites import load_site_config


def bandwidth_gb_s() -> float:
    """Memory bandwidth (GB/s) from copying a 256 MB array (read + write counted)."""
    x = np.ones(64 * 2**20, dtype=np.float32)
    x.copy()
    t0 = time.perf_counter()
    for _ in range(5):
        x.copy()
    return 2 * x.nbytes * 5 / (time.perf_counter() - t0) / 1e9


def evals_to_reach(history: list[float], level: float) -> int | None:
    return next((i + 1 for i, f in enumerate(history) if f <= level), None)


def convergence(problem, terms, w0, settings, case, influence, resolved, *,
                reference_iters: int) -> dict:
    """Default solve, a long reference run from its end, and how they compare."""
    from atp.planning import goal_report

    f0 = problem.evaluate(w0, terms)[0]
    default = problem.solve(terms, w0, max_iter=settings.max_iter)
    reference = problem.solve(terms, default.fluence, max_iter=reference_iters, rtol=0.0)
    f_ref = min(min(default.history), min(reference.history))
    best_ref = np.minimum.accumulate(reference.history)
    quarter = best_ref[-(len(best_ref) // 4 + 1)]
    # an optimum of exactly 0 (every goal and control met) leaves no relative scale
    moving = (quarter - best_ref[-1]) / best_ref[-1] if best_ref[-1] > 0 else 0.0
    best = reference.fluence if reference.objective <= default.objective else default.fluence
    reports = []
    for w in (default.fluence, best):
        full = np.zeros(influence.grid.size, dtype=np.float32)
        full[influence.voxel_index] = problem.dose(w)
        reports.append(goal_report(case, full.reshape(case.shape), resolved))
    gap = max(abs(a.achieved - b.achieved) for a, b in zip(*reports, strict=True)
              if a.unit == "Gy")
    return {"default": default, "reference": reference, "f0": f0, "f_ref": f_ref,
            "moving": moving, "need": evals_to_reach(default.history, 1.01 * f_ref),
            "need_1e6": evals_to_reach(default.history, 1e-6 * f0), "gap": gap,
            "met": [sum(o.met for o in r) for r in reports], "n_goals": len(reports[0])}


def print_convergence(label: str, c: dict) -> None:
    d, f_ref = c["default"], c["f_ref"]
    at150 = d.history[149] / f_ref if len(d.history) >= 150 and f_ref > 0 else np.nan
    print(f"-- {label}")
    print(f"default solve       : {d.n_iterations} iterations, {d.n_evaluations} evaluations, "
          f"{d.wall_s:.1f} s; objective {d.objective:.4g} = {d.objective / c['f0']:.3g} of "
          "its start")
    print(f"reference optimum   : {f_ref:.4g} = {f_ref / c['f0']:.3g} of the start, after "
          f"{d.n_evaluations} + {c['reference'].n_evaluations} evaluations (long run); it "
          f"still fell {100 * c['moving']:.2f} % over its last quarter"
          + ("; the optimum is exactly 0 (every goal and control met), so 'within 1 %' "
             "asks for an exact 0" if f_ref == 0 else ""))
    print(f"within 1 % of it    : {c['need'] or 'not reached in'} evaluations of the default "
          f"(target <= 150); default/optimum {d.objective / f_ref if f_ref > 0 else np.nan:.3g}"
          f" at the end, {at150:.3g} after 150 evaluations")
    print(f"objective <= 1e-6 of its start after {c['need_1e6'] or 'never in'} evaluations; "
          f"goals met: default {c['met'][0]}, reference {c['met'][1]} of {c['n_goals']}; "
          f"largest goal-metric gap {c['gap']:.2f} Gy")


def bench_geometry(name, case, beams, site, *, reference_iters: int, bw: float,
                   tolerances_pct: list[float], falloff_offset_mm: float | None) -> None:
    from atp.dose import PencilBeamEngine, total_mu
    from atp.planning import PlanSettings, plan, resolve_goals
    from atp.planning.optimizer import FluenceProblem
    from atp.planning.planner import build_terms
    from atp.planning.setup import goal_list_for

    t0 = time.perf_counter()
    influence = PencilBeamEngine().influence(case, beams)
    t_infl = time.perf_counter() - t0
    goals = goal_list_for(site)
    conformity = dict(site["conformity"])
    if falloff_offset_mm is not None:
        conformity["falloff_offset_mm"] = falloff_offset_mm
    settings = PlanSettings(**conformity)
    problem = FluenceProblem(influence.matrix)
    in_target = np.flatnonzero(case.target_union().ravel()[influence.voxel_index])
    w0 = problem.uniform_fluence(in_target, case.max_prescription_gy)
    resolved, _ = resolve_goals(case, goals, predicted_dose_gy=case.dose_gy)
    terms = build_terms(case, influence, resolved, settings)

    times = []
    for _ in range(6):
        t = time.perf_counter()
        problem.evaluate(w0, terms)
        times.append(time.perf_counter() - t)
    per_eval = float(np.median(times[1:]))
    m = influence.matrix
    floor = 2 * (m.data.nbytes + m.indices.nbytes + m.indptr.nbytes) / (bw * 1e9)
    print(f"\n== {name}: F_CI from {settings.falloff_offset_mm:g} mm outside the targets; "
          f"{len(beams)} beams, {influence.n_beamlets} beamlets, "
          f"{influence.nnz:,} nnz, {influence.matrix_mb:.0f} MB (influence {t_infl:.1f} s)")
    print(f"per evaluation      : {per_eval * 1e3:.1f} ms; floor of 2 products "
          f"{floor * 1e3:.1f} ms (bandwidth {bw:.1f} GB/s); ratio {per_eval / floor:.2f} "
          "(target <= 2)")
    for tol in tolerances_pct:
        edit = {"parotid_l": tol, "parotid_r": tol} if tol else None
        resolved, _ = resolve_goals(case, goals, predicted_dose_gy=case.dose_gy,
                                    tolerances=edit)
        terms = build_terms(case, influence, resolved, settings)
        print_convergence(f"parotid tolerance {tol:+g} %", convergence(
            problem, terms, w0, settings, case, influence, resolved,
            reference_iters=reference_iters))

    t = time.perf_counter()
    first = plan(case, influence, goals, predicted_dose_gy=case.dose_gy, settings=settings)
    t_plan = time.perf_counter() - t
    print("--")
    print(f"plan() end to end   : {t_plan:.1f} s, {first.n_evaluations} evaluations "
          f"({first.summary()}; {total_mu(influence, first.fluence):,.0f} MU) (target <= 30 s "
          "for 9 fields)")
    for tol in (-5, -10, -20):
        edit = {"parotid_l": tol, "parotid_r": tol}
        cold = plan(case, influence, goals, predicted_dose_gy=case.dose_gy, settings=settings,
                    tolerances=edit)
        warm = plan(case, influence, goals, predicted_dose_gy=case.dose_gy, settings=settings,
                    tolerances=edit, warm_start=first.fluence)
        target = 1.01 * cold.phases[-1]["objective"]
        tiny = 1e-9 * cold.objective_history[0]
        print(f"warm start, {tol:+d} % : to the cold objective +1 % ({target:.3g}) cold "
              f"{evals_to_reach(cold.objective_history, target)}, warm "
              f"{evals_to_reach(warm.objective_history, target)} evaluations; to 1e-9 of the "
              f"cold start's objective cold {evals_to_reach(cold.objective_history, tiny)}, "
              f"warm {evals_to_reach(warm.objective_history, tiny)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--openkbp-dir", type=Path, default=DEFAULT_OPENKBP_DIR)
    parser.add_argument("--patient", default="pt_1")
    parser.add_argument("--vmat", action="store_true", help="also a 72-direction arc")
    parser.add_argument("--vmat-only", action="store_true", help="only the 72-direction arc")
    parser.add_argument("--reference-iters", type=int, default=800)
    parser.add_argument("--parotid-tolerance", type=float, action="append", default=None,
                        help="problems to converge (%%, repeatable; default 0 and -80: "
                             "the goals as predicted, and a trade-off that cannot meet all)")
    parser.add_argument("--falloff-offset-mm", type=float, default=None,
                        help="F_CI distance from the target border (default: the site's)")
    args = parser.parse_args(argv)

    from atp.dose import beams_from_config, default_isocenter_mm
    from atp.io.openkbp import load_openkbp_patient

    case = load_openkbp_patient(find_patient(args.openkbp_dir, args.patient))
    site = load_site_config("npc")
    iso = default_isocenter_mm(case)
    bw = bandwidth_gb_s()
    print(f"patient {case.patient_id}, goal list conf/site/npc.yaml, reference dose as the "
          "prediction")
    geometries = [] if args.vmat_only else [
        ("IMRT 9 fields", {"technique": "imrt", "gantry_deg": list(range(0, 360, 40))})]
    if args.vmat or args.vmat_only:
        geometries.append(("VMAT 72 dirs", {"technique": "vmat", "spacing_deg": 5,
                                            "arcs": [{"start_deg": 180, "stop_deg": 180}]}))
    for name, tech in geometries:
        bench_geometry(name, case, beams_from_config(tech, isocenter_mm=iso), site,
                       reference_iters=args.reference_iters, bw=bw,
                       tolerances_pct=args.parotid_tolerance or [0.0, -80.0],
                       falloff_offset_mm=args.falloff_offset_mm)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
