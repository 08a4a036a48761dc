"""Time to plan one patient, per step: prediction, influence matrix, optimization.

Usage::

    python -m atp.bench.end_to_end [--openkbp-dir DIR] [--patient pt_1] [--skip-synthetic]

For an OpenKBP sample patient on its native grid (9 coplanar fields) and a synthetic
lung case at 3 mm (VMAT, 2 arcs), it prints the seconds of each step and the total. The
network is CAD-UNet at the study's width with random weights: the prediction time does not
depend on the weights (the plan then uses the prediction as its goal source). The study
reports about 5 minutes per plan on a clinical planning system; our target is <= 60 s end
to end for the OpenKBP case on 2 cores. A command, not a test.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from atp.bench.dose_engine import DEFAULT_OPENKBP_DIR, find_patient


def time_case(name, case, beam_cfg, site, module, organs) -> dict:
    from atp.dose import PencilBeamEngine, beams_from_config, default_isocenter_mm
    from atp.models.predict import predict_case
    from atp.planning import PlanSettings, plan
    from atp.planning.setup import goal_list_for

    t0 = time.perf_counter()
    predicted = predict_case(module, case)
    t1 = time.perf_counter()
    beams = beams_from_config(beam_cfg, isocenter_mm=default_isocenter_mm(case),
                              laterality=case.metadata.get("laterality"))
    influence = PencilBeamEngine().influence(case, beams)
    t2 = time.perf_counter()
    result = plan(case, influence, goal_list_for(site), predicted_dose_gy=predicted,
                  settings=PlanSettings(**site["conformity"]))
    t3 = time.perf_counter()
    row = {"case": name, "grid": case.shape, "beams": len(beams),
           "beamlets": influence.n_beamlets, "prediction_s": t1 - t0,
           "influence_s": t2 - t1, "optimization_s": t3 - t2, "total_s": t3 - t0}
    print(f"{name:34s} grid {case.shape} beams {len(beams):3d} beamlets "
          f"{influence.n_beamlets:6d} | prediction {row['prediction_s']:6.1f} s | influence "
          f"{row['influence_s']:6.1f} s | optimization {row['optimization_s']:6.1f} s | total "
          f"{row['total_s']:6.1f} s | {result.summary()}")
    return row


def build_module(site: dict, *, patch: int = 128):
    import torch

    from atp.data import ChannelLayout
    from atp.losses import WMSELoss
    from atp.models import DosePredictionModule
    from atp.nets import CADUNet

    torch.manual_seed(2020)
    layout = ChannelLayout.for_site(site)
    net = CADUNet(spatial_dims=3, in_channels=layout.n_channels, out_channels=1,
                  features=(32, 64, 128, 256, 512))
    return DosePredictionModule(net=net, loss=WMSELoss(), optimizer=torch.optim.Adam,
                                layout=layout.to_dict(),
                                patch_size=(patch, patch, patch))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--openkbp-dir", type=Path, default=DEFAULT_OPENKBP_DIR)
    parser.add_argument("--patient", default="pt_1")
    parser.add_argument("--skip-synthetic", action="store_true")
    args = parser.parse_args(argv)

    import torch

    from atp.io.openkbp import load_openkbp_patient
    from atp.sites import load_institution_config, load_site_config
    from atp.synth.anatomy import generate_anatomy
    from atp.synth.cohort import effective_site_config

    torch.set_num_threads(2)
    npc = load_site_config("npc")
    case = load_openkbp_patient(find_patient(args.openkbp_dir, args.patient))
    rows = [time_case(f"OpenKBP {case.patient_id} (IMRT 9 fields)", case,
                      {"technique": "imrt", "gantry_deg": list(range(0, 360, 40))}, npc,
                      build_module(npc), npc["organs"])]
    if not args.skip_synthetic:
        lung = load_site_config("lung")
        inst_b = load_institution_config("B")  # VMAT, 2 arcs
        case = generate_anatomy("lung", seed=2020, site_cfg=effective_site_config(lung, inst_b),
                                spacing_mm=3.0, patient_id="synthetic_lung_3mm")
        rows.append(time_case("synthetic lung 3 mm (VMAT 2 arcs)", case,
                              inst_b["beams"]["lung"], lung, build_module(lung),
                              lung["organs"]))
    print("reference: about 300 s per plan on a clinical planning system (the study); "
          + ", ".join(f"{r['case']}: {300.0 / r['total_s']:.1f}x faster" for r in rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
