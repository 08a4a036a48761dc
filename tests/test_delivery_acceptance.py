"""Acceptance of deliverable plans on a real and a synthetic patient (slow).

OpenKBP sample pt_1 with 9 coplanar fields (its reference dose as the prediction), and a
synthetic lung patient at institution C with 2 VMAT arcs (6 mm grid, protocol goals): the
deliverable plan keeps every priority-1 goal the fluence plan met and each PTV's D95 within
2 % of the fluence plan's; MU before and after sequencing are printed. The exported
9-field RTPLAN is read by pymedphys, whose metersetmap matches atp's delivered fluence.
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from test_delivery_plan import _pymedphys_map, compare_with_pymedphys

from atp.delivery import load_machine
from atp.delivery.deliverable import deliver
from atp.delivery.sequencing import SequencingSettings
from atp.dose import PencilBeamEngine, beams_from_config, default_isocenter_mm
from atp.io.dicom.rtplan_export import export_plan_set
from atp.planning import PlanSettings, plan
from atp.planning.setup import beam_config_for, goal_list_for
from atp.sites import load_institution_config, load_site_config

pytestmark = pytest.mark.slow


def _check(result, d, label):
    fig = d.figures()
    print(f"\n{label}: MU per fraction {fig['mu_per_fraction_estimate']:.0f} (optimizer "
          f"estimate) -> {fig['mu_per_fraction_sequenced']:.0f} sequenced -> "
          f"{fig['mu_per_fraction_deliverable']:.0f} re-optimized; "
          f"{fig['control_points']} control points, about {fig['delivery_time_s']:.0f} s")
    for r in d.comparison():
        print(f"  {r['label']:40s} {r['optimized']:8.2f} -> {r['deliverable']:8.2f}")
    assert fig["violations"] == []
    assert d.p1_lost() == [], d.p1_lost()
    for o, r in zip(result.report, d.report, strict=True):
        if o.metric == "D95%" and o.role == "target":
            assert abs(r.achieved / o.achieved - 1) <= 0.02, (label, o.label, r.achieved)


@pytest.fixture(scope="module")
def pt1(openkbp_cases):
    case = next(c for c in openkbp_cases if c.patient_id == "pt_1")
    site = load_site_config("npc")
    beams = beams_from_config({"technique": "imrt", "gantry_deg": list(range(0, 360, 40))},
                              isocenter_mm=default_isocenter_mm(case))
    engine = PencilBeamEngine()
    influence = engine.influence(case, beams)
    settings = PlanSettings(**site["conformity"])
    result = plan(case, influence, goal_list_for(site), predicted_dose_gy=case.dose_gy,
                  settings=settings)
    dlv = {mode: deliver(case, influence, result, machine=load_machine(), engine=engine,
                         settings=SequencingSettings(mode=mode), plan_settings=settings)
           for mode in ("sliding_window", "step_and_shoot")}
    return case, result, dlv


@pytest.mark.parametrize("mode", ["sliding_window", "step_and_shoot"])
def test_openkbp_pt1_nine_fields(pt1, mode):
    _, result, dlv = pt1
    _check(result, dlv[mode], f"OpenKBP pt_1, 9 fields, {mode}")


def test_pymedphys_metersetmap_of_pt1(pt1, tmp_path):
    pytest.importorskip("pymedphys")
    case, _, dlv = pt1
    d = dlv["sliding_window"]
    paths = export_plan_set(tmp_path / "dicom", case, d.plan, d.dose_gy, report=d.report)
    ds = pydicom.dcmread(paths["rtplan"])
    machine = load_machine()
    worst = 0.0
    for k, seq in enumerate(d.plan.beams):
        diff, total = compare_with_pymedphys(*_pymedphys_map(ds, k, machine), seq, machine)
        print(f"pymedphys vs atp, {seq.name}: max difference {100 * diff:.2f} % of the "
              f"maximum, total {100 * total:.3f} %")
        worst = max(worst, diff)
        assert total <= 0.001
    assert worst <= 0.01


def test_synthetic_lung_vmat_institution_c():
    from atp.synth.anatomy import generate_anatomy
    from atp.synth.cohort import effective_site_config, engine_for_grid

    lung, inst = load_site_config("lung"), load_institution_config("C")
    case = generate_anatomy("lung", seed=2020, site_cfg=effective_site_config(lung, inst),
                            spacing_mm=6.0, patient_id="lung_c")
    from atp.bench.deliverable import two_arcs  # C's lung arcs are 4 or 6 (Table 1)

    beams = beams_from_config(two_arcs(beam_config_for(lung, inst)),
                              isocenter_mm=default_isocenter_mm(case),
                              laterality=case.metadata.get("laterality"))
    engine = engine_for_grid(PencilBeamEngine(), spacing_mm=6.0)
    influence = engine.influence(case, beams)
    settings = PlanSettings(**lung["conformity"])
    result = plan(case, influence, goal_list_for(lung, inst), settings=settings)
    d = deliver(case, influence, result, machine=load_machine(), engine=engine,
                settings=SequencingSettings(), plan_settings=settings)
    assert {b.technique for b in d.plan.beams} == {"vmat"} and len(d.plan.beams) == 2
    assert np.all([b.is_arc for b in d.plan.beams])
    _check(result, d, "synthetic lung, institution C, 2 arcs")
