"""Benchmark of the pencil-beam influence matrix on one OpenKBP sample patient.

Usage::

    python -m atp.bench.dose_engine [--openkbp-dir DIR] [--patient pt_1] [--dose-grid-mm S]

Prints, for 9 coplanar 6 MV fields (gantry 0, 40, ..., 320) and a 72-direction VMAT arc
(one full arc at 5 degrees): number of beamlets, nnz, matrix MB, wall time, peak RSS (and
its increase during the run) and ms per beamlet. Targets on a 2-core machine: 9 fields
<= 15 s and <= 2 GB peak RSS; 72 directions <= 120 s and <= 8 GB. A command, not a test.
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OPENKBP_DIR = (REPO_ROOT / ".." / "shared" / "data" / "openkbp-sample").resolve()


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def find_patient(root: Path, patient: str) -> Path:
    for cand in (root / patient, *root.glob(f"*-pats/{patient}")):
        if cand.is_dir():
            return cand
    raise SystemExit(f"OpenKBP patient '{patient}' not found under {root}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--openkbp-dir", type=Path, default=DEFAULT_OPENKBP_DIR)
    parser.add_argument("--patient", default="pt_1")
    parser.add_argument("--dose-grid-mm", type=float, default=None,
                        help="compute on a coarser dose grid of this spacing (mm)")
    parser.add_argument("--skip-vmat", action="store_true")
    args = parser.parse_args(argv)

    from atp.dose import PencilBeamEngine, beams_from_config, default_isocenter_mm
    from atp.io.openkbp import load_openkbp_patient

    folder = find_patient(args.openkbp_dir, args.patient)
    t0 = time.perf_counter()
    case = load_openkbp_patient(folder)
    print(f"patient {case.patient_id}: CT {case.shape} spacing {case.spacing_mm} mm, "
          f"{int(case.body_mask.sum())} body voxels, targets {case.targets} "
          f"(loaded in {time.perf_counter() - t0:.1f} s)")
    iso = default_isocenter_mm(case)
    engine = PencilBeamEngine(dose_grid_spacing_mm=args.dose_grid_mm)
    s = engine.settings
    print(f"engine {engine.name} v{engine.version}: bixel {s.bixel_mm} mm, margin "
          f"{s.target_margin_mm} mm, cutoff {s.lateral_cutoff_mm} mm, threshold "
          f"{s.kernel_threshold:g}, dose grid {s.dose_grid_spacing_mm or 'CT'}")
    geometries = [("IMRT 9 fields", {"technique": "imrt", "gantry_deg": list(range(0, 360, 40))},
                   15.0, 2048.0)]
    if not args.skip_vmat:
        geometries.append(("VMAT 72 dirs", {"technique": "vmat", "spacing_deg": 5,
                                            "arcs": [{"start_deg": 180, "stop_deg": 180,
                                                      "direction": "cw"}]}, 120.0, 8192.0))
    header = (f"{'geometry':<14} {'beams':>5} {'beamlets':>8} {'rows':>7} {'nnz':>11} "
              f"{'MB':>8} {'wall s':>7} {'peak RSS MB':>11} {'+RSS MB':>8} {'ms/beamlet':>10} "
              f"{'target':>16}")
    rows = []
    for label, cfg, t_max, rss_max in geometries:
        beams = beams_from_config(cfg, isocenter_mm=iso)
        gc.collect()
        rss0 = peak_rss_mb()
        t0 = time.perf_counter()
        infl = engine.influence(case, beams)
        wall = time.perf_counter() - t0
        rss = peak_rss_mb()
        ok = "ok" if (wall <= t_max and rss <= rss_max) else "MISSED"
        rows.append(f"{label:<14} {len(beams):>5} {infl.n_beamlets:>8} {infl.n_rows:>7} "
                    f"{infl.nnz:>11} {infl.matrix_mb:>8.1f} {wall:>7.2f} {rss:>11.0f} "
                    f"{rss - rss0:>8.0f} {1000 * wall / infl.n_beamlets:>10.3f} "
                    f"{f'<={t_max:g}s,<={rss_max / 1024:g}GB {ok}':>16}")
        del infl
    print(header)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
