"""Benchmark of deliverable plans: leaf sequencing, deliverable dose and re-optimization.

Usage::

    python -m atp.bench.deliverable [--openkbp-dir DIR] [--patient pt_1]
                                    [--lung-spacing-mm 6] [--skip-vmat] [--skip-imrt]

Cases: an OpenKBP sample patient with 9 coplanar fields (its reference dose as the
prediction; sliding window and step-and-shoot), and a synthetic lung patient at institution
C (the first 2 partial VMAT arcs of its lung technique, the protocol goal values). For
each it prints the wall time of the sequencing itself (and, apart, of the delivery matrix
on the jaw rectangles, of the VMAT sector-merge re-optimization and of the segment-MU
re-optimization), control points and
segments, MU per fraction (the optimizer's sliding-window estimate of `atp.dose.mu`, as
sequenced, after re-optimization), the delivery time estimate, and every goal's value on
the fluence plan, the sequenced plan and the re-optimized plan, with the priority-1 goals
lost and the target D95 changes. The load average is printed with the times.

Targets on the 2-core machine: sequencing 9 fields <= 5 s and 2 arcs <= 30 s; after
re-optimization no priority-1 goal lost and no target D95 loss above 1 %.
A command, not a test.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from atp.bench.dose_engine import DEFAULT_OPENKBP_DIR, find_patient

SW_TARGET_S = {"imrt": 5.0, "vmat": 30.0}


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min), {os.cpu_count()} cores"


def _d95_changes(d) -> list[tuple[str, float, float, float]]:
    out = []
    for o, s, r in zip(d.optimized_report, d.sequenced_report, d.report, strict=True):
        if o.metric == "D95%" and o.role == "target":
            out.append((o.label, o.achieved, 100 * (s.achieved / o.achieved - 1),
                        100 * (r.achieved / o.achieved - 1)))
    return out


def report(name: str, kind: str, d, *, t_delivery_s: float) -> dict:
    """Print one deliverable plan's figures and return the headline numbers."""
    fig = d.figures()
    re = d.reoptimization
    merge = re.get("sector_merge", {})
    weights = re.get("weights", {})
    seq_s = d.sequencing_s
    print(f"\n== {name}: {fig['delivery_mode']} on {fig['machine']} ({_load()})")
    print(f"sequencing {seq_s:.2f} s (target <= {SW_TARGET_S[kind]:g} s: "
          f"{seq_s / SW_TARGET_S[kind]:.2f} of it) | delivery matrix {t_delivery_s:.1f} s"
          + (f" | sector merge {merge.get('wall_s', 0):.1f} s ({merge.get('iterations')} it)"
             if merge else "")
          + f" | segment-MU re-optimization {weights.get('wall_s', 0):.1f} s "
          f"({weights.get('iterations')} it, {weights.get('variables')} variables, "
          f"{'kept' if weights.get('accepted') else 'rejected'})")
    print(f"beams {fig['n_beams']}, control points {fig['control_points']}, beam-on "
          f"segments/intervals {fig['segments']}; delivery time {fig['delivery_time_s']:.0f} s "
          "per fraction (beam on + leaf travel)")
    est, sq, fin = (fig[k] for k in ("mu_per_fraction_estimate", "mu_per_fraction_sequenced",
                                     "mu_per_fraction_deliverable"))
    print(f"MU per fraction: optimizer estimate {est:.0f}, sequenced {sq:.0f} "
          f"({sq / est:.2f}x), re-optimized {fin:.0f} ({fin / est:.2f}x)")
    print(f"{'goal':42s} {'P':>2s} {'fluence':>9s} {'sequenced':>10s} {'re-opt':>9s}  met")
    for r in d.comparison():
        flags = "".join("y" if r[k] else "n" for k in ("optimized_met", "sequenced_met",
                                                       "deliverable_met"))
        print(f"{r['label']:42s} {r['priority']:2d} {r['optimized']:9.2f} {r['sequenced']:10.2f}"
              f" {r['deliverable']:9.2f}  {flags}")
    lost_seq = [o.label for o, s in zip(d.optimized_report, d.sequenced_report, strict=True)
                if o.priority == 1 and o.met and not s.met]
    d95 = _d95_changes(d)
    worst = min((x[3] for x in d95), default=0.0)
    print(f"P1 goals lost: sequenced {lost_seq or 'none'}, re-optimized "
          f"{d.p1_lost() or 'none'}; target D95 change: "
          + ", ".join(f"{lbl} {seq:+.2f} % -> {fin:+.2f} %" for lbl, _, seq, fin in d95))
    ok = not d.p1_lost() and worst >= -1.0 and not fig["violations"]
    print(f"targets: sequencing {'met' if seq_s <= SW_TARGET_S[kind] else 'NOT met'}; "
          f"after re-optimization {'met' if ok else 'NOT met'} (P1 lost: "
          f"{len(d.p1_lost())}, worst D95 change {worst:+.2f} %, machine-limit violations: "
          f"{len(fig['violations'])})")
    return {"case": name, "sequencing_s": seq_s, "mu": (est, sq, fin), "worst_d95_pct": worst}


def bench_imrt(args) -> None:
    from atp.delivery import load_machine
    from atp.delivery.apertures import delivery_influence
    from atp.delivery.deliverable import make_deliverable
    from atp.delivery.sequencing import SequencingSettings
    from atp.dose import PencilBeamEngine, beams_from_config, default_isocenter_mm
    from atp.io.openkbp import load_openkbp_patient
    from atp.planning import PlanSettings, plan
    from atp.planning.setup import goal_list_for
    from atp.sites import load_site_config

    site = load_site_config("npc")
    case = load_openkbp_patient(find_patient(args.openkbp_dir, args.patient))
    beams = beams_from_config({"technique": "imrt", "gantry_deg": list(range(0, 360, 40))},
                              isocenter_mm=default_isocenter_mm(case))
    engine = PencilBeamEngine()
    influence = engine.influence(case, beams)
    settings = PlanSettings(**site["conformity"])
    result = plan(case, influence, goal_list_for(site), predicted_dose_gy=case.dose_gy,
                  settings=settings)
    print(f"\nOpenKBP {case.patient_id}: 9 fields, {influence.n_beamlets} beamlets; fluence "
          f"plan: {result.summary()}")
    t0 = time.perf_counter()
    delivery = delivery_influence(engine, case, influence)
    t_delivery = time.perf_counter() - t0
    print(f"delivery matrix on the jaw rectangles: {delivery.n_beamlets} beamlets, "
          f"{t_delivery:.1f} s; {load_machine().alignment_note(influence.bixel_mm)}")
    for mode in ("sliding_window", "step_and_shoot"):
        d = make_deliverable(case, influence, result, machine=load_machine(),
                             settings=SequencingSettings(mode=mode), plan_settings=settings,
                             delivery=delivery)
        report(f"OpenKBP {case.patient_id}, 9 fields", "imrt", d, t_delivery_s=t_delivery)


def two_arcs(config: dict) -> dict:
    """The first two arcs of a VMAT technique (institution C's lung techniques have 4 or 6
    partial arcs, Table 1; the issue's target is for a 2-arc plan)."""
    if config.get("technique") != "vmat" or len(config.get("arcs", [])) < 2:
        raise ValueError(f"not a VMAT technique of two or more arcs: {config}")
    return {**config, "name": f"{config.get('name', 'vmat')}_first2", "arcs":
            list(config["arcs"][:2])}


def bench_vmat(args) -> None:
    from atp.delivery import load_machine
    from atp.delivery.apertures import delivery_influence
    from atp.delivery.deliverable import make_deliverable
    from atp.delivery.sequencing import SequencingSettings
    from atp.dose import PencilBeamEngine, beams_from_config, default_isocenter_mm
    from atp.planning import PlanSettings, plan
    from atp.planning.setup import beam_config_for, goal_list_for
    from atp.sites import load_institution_config, load_site_config
    from atp.synth.anatomy import generate_anatomy
    from atp.synth.cohort import effective_site_config, engine_for_grid

    lung, inst = load_site_config("lung"), load_institution_config("C")
    sp = float(args.lung_spacing_mm)
    case = generate_anatomy("lung", seed=2020, site_cfg=effective_site_config(lung, inst),
                            spacing_mm=sp, patient_id=f"synthetic_lung_{sp:g}mm")
    beams = beams_from_config(two_arcs(beam_config_for(lung, inst)),
                              isocenter_mm=default_isocenter_mm(case),
                              laterality=case.metadata.get("laterality"))
    engine = engine_for_grid(PencilBeamEngine(), spacing_mm=sp)
    influence = engine.influence(case, beams)
    settings = PlanSettings(**lung["conformity"])
    result = plan(case, influence, goal_list_for(lung, inst), settings=settings)
    print(f"\nsynthetic lung {sp:g} mm, institution C: 2 arcs, {len(beams)} directions, "
          f"{influence.n_beamlets} beamlets of {influence.bixel_mm:g} mm; fluence plan: "
          f"{result.summary()}")
    t0 = time.perf_counter()
    delivery = delivery_influence(engine, case, influence)
    t_delivery = time.perf_counter() - t0
    print(f"delivery matrix on the arcs' rectangles: {delivery.n_beamlets} beamlets, "
          f"{t_delivery:.1f} s; {load_machine().alignment_note(influence.bixel_mm)}")
    d = make_deliverable(case, influence, result, machine=load_machine(),
                         settings=SequencingSettings(), plan_settings=settings,
                         delivery=delivery)
    report(f"synthetic lung {sp:g} mm, 2 arcs", "vmat", d, t_delivery_s=t_delivery)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--openkbp-dir", type=Path, default=DEFAULT_OPENKBP_DIR)
    parser.add_argument("--patient", default="pt_1")
    parser.add_argument("--lung-spacing-mm", type=float, default=6.0)
    parser.add_argument("--skip-imrt", action="store_true")
    parser.add_argument("--skip-vmat", action="store_true")
    args = parser.parse_args(argv)
    np.set_printoptions(precision=3)
    print(f"atp.bench.deliverable: {_load()}")
    if not args.skip_imrt:
        bench_imrt(args)
    if not args.skip_vmat:
        bench_vmat(args)
    print(f"\nend: {_load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
