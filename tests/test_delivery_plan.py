"""Deliverable plans end to end on a small phantom with the pencil-beam engine: sequencing,
deliverable dose and goals, DICOM export (round trip, references, refusals) and a
third-party reader (pymedphys)."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pydicom
import pytest
from phantoms import toy_case

from atp.delivery import load_machine
from atp.delivery.deliverable import deliver
from atp.delivery.sequencing import SequencingSettings
from atp.dose import PencilBeamEngine, beams_from_config, default_isocenter_mm
from atp.io.dicom import read_rtplan
from atp.io.dicom.rtplan_export import ExportRefused, export_plan_set, read_plan_sequences
from atp.planning import GoalList, PlanSettings, plan

GOALS = [{"roi": "spinal_cord", "metric": "Dmax", "op": "<=", "value": 30, "priority": 1},
         {"roi": "ptv_6000", "metric": "D95%", "op": ">=", "value_pct_rx": 100, "priority": 2},
         {"roi": "parotid_l", "metric": "Dmean", "op": "<=", "value": 26, "priority": 3}]


@pytest.fixture(scope="module")
def toy():
    case = toy_case(n=32, nz=12, spacing_mm=4.0)
    engine = PencilBeamEngine()
    beams = beams_from_config({"technique": "imrt", "gantry_deg": [0, 72, 144, 216, 288]},
                              isocenter_mm=default_isocenter_mm(case))
    influence = engine.influence(case, beams)
    result = plan(case, influence, GoalList.from_dicts(GOALS, source="test"),
                  settings=PlanSettings(max_iter=60))
    assert result.all_p1_met
    out = {}
    for mode in ("sliding_window", "step_and_shoot"):
        out[mode] = deliver(case, influence, result, machine=load_machine(), engine=engine,
                            settings=SequencingSettings(mode=mode))
    return case, influence, result, out


@pytest.mark.parametrize("mode", ["sliding_window", "step_and_shoot"])
def test_deliverable_keeps_p1_and_coverage(toy, mode):
    case, _, result, dlv = toy
    d = dlv[mode]
    fig = d.figures()
    print(f"{mode}: MU per fraction {fig['mu_per_fraction_estimate']:.0f} estimated, "
          f"{fig['mu_per_fraction_sequenced']:.0f} sequenced, "
          f"{fig['mu_per_fraction_deliverable']:.0f} after re-optimization; "
          f"{fig['control_points']} control points, {fig['delivery_time_s']:.0f} s")
    assert fig["violations"] == [] and d.p1_lost() == [] and d.all_p1_met
    for o, r in zip(result.report, d.report, strict=True):
        if o.metric == "D95%":
            assert abs(r.achieved - o.achieved) <= 0.02 * o.achieved, (o.label, r.achieved)
    rows = d.comparison()
    assert [r["label"] for r in rows] == [o.label for o in result.report]
    assert d.fluence.shape == (d.delivery_influence.n_beamlets,)
    assert d.dose_gy.shape == case.shape and d.plan.n_fractions == 30
    techniques = {b.technique for b in d.plan.beams}
    assert techniques == {mode} and len(d.plan.beams) == 5


def test_export_round_trip_and_references(toy, tmp_path):
    case, _, _, dlv = toy
    d = dlv["sliding_window"]
    paths = export_plan_set(tmp_path / "dicom", case, d.plan, d.dose_gy, report=d.report)
    assert sorted(p.name for p in (tmp_path / "dicom").iterdir()) == [
        "CT", "RD_toy.dcm", "RP_toy.dcm", "RS_toy.dcm"]
    ct = [pydicom.dcmread(p) for p in sorted(paths["ct"].glob("*.dcm"))]
    rs, rp, rd = (pydicom.dcmread(paths[k]) for k in ("rtstruct", "rtplan", "rtdose"))
    assert len(ct) == case.shape[0]
    hu = ct[3].pixel_array * float(ct[3].RescaleSlope) + float(ct[3].RescaleIntercept)
    assert np.allclose(hu, case.ct_hu[3])
    frames = {x.FrameOfReferenceUID for x in (*ct, rp, rd)} | {
        rs.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID}
    studies = {x.StudyInstanceUID for x in (*ct, rs, rp, rd)}
    assert len(frames) == 1 and len(studies) == 1
    series = rs.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0] \
        .RTReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == ct[0].SeriesInstanceUID
    assert rp.ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID == rs.SOPInstanceUID
    assert rd.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID == rp.SOPInstanceUID
    ref = rp.DoseReferenceSequence[0]
    roi = next(r for r in rs.StructureSetROISequence if r.ROINumber == ref.ReferencedROINumber)
    assert roi.ROIName == "ptv_6000" and float(ref.TargetPrescriptionDose) == 60.0
    assert int(rp.FractionGroupSequence[0].NumberOfFractionsPlanned) == 30
    beam = rp.BeamSequence[0]
    kinds = [x.RTBeamLimitingDeviceType for x in beam.BeamLimitingDeviceSequence]
    assert kinds == ["ASYMX", "ASYMY", "MLCX"] and beam.BeamType == "DYNAMIC"
    dose = rd.pixel_array * float(rd.DoseGridScaling)
    assert np.allclose(dose, d.dose_gy, atol=1e-6 * d.dose_gy.max() + 1e-7)
    # atp's own importer reads beams, control points, MU and leaves back
    info = read_rtplan(paths["rtplan"])
    assert info.technique == "imrt" and len(info.fields) == 5 and info.n_fractions == 30
    for back, seq in zip(read_plan_sequences(paths["rtplan"]), d.plan.beams, strict=True):
        assert back["name"] == seq.name and abs(back["mu"] - seq.mu) <= 1e-4
        assert np.abs(back["cum_mu"] - seq.cum_mu).max() <= 1e-6 * seq.mu + 1e-4
        assert np.abs(back["leaves_mm"] - seq.leaves_mm).max() <= 5e-4
        assert np.allclose(back["jaws_mm"], np.array(seq.jaws_mm)[None], atol=5e-4)
        assert np.allclose(back["gantry_deg"], seq.gantry_iec_deg, atol=1e-4)
        assert np.allclose(back["leaf_boundaries_mm"], load_machine().leaf_boundaries_mm)


def test_export_refusals_leave_no_file(toy, tmp_path):
    case, _, _, dlv = toy
    d = dlv["sliding_window"]
    broken = [dataclasses.replace(o, met=False) if o.priority == 1 else o for o in d.report]
    with pytest.raises(ExportRefused, match=r"priority-1 goal not met: Dmax\(spinal_cord\)"):
        export_plan_set(tmp_path / "a" / "dicom", case, d.plan, d.dose_gy, report=broken)
    fast = copy.deepcopy(d.plan)
    fast.beams[2].leaves_mm[7, :, 30] += 25.0  # one pair jumps 25 mm in one interval
    with pytest.raises(ExportRefused, match="beam field3: leaf speed above the maximum"):
        export_plan_set(tmp_path / "a" / "dicom", case, fast, d.dose_gy, report=d.report)
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").rglob("*"))
    forced = export_plan_set(tmp_path / "b" / "dicom", case, fast, d.dose_gy, report=broken,
                             force=True)
    assert forced["rtplan"].is_file()
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["dicom"]  # no temporary left


def test_vmat_arc_sequence_and_export(tmp_path):
    case = toy_case(n=32, nz=12, spacing_mm=4.0)
    engine = PencilBeamEngine()
    beams = beams_from_config({"technique": "vmat", "spacing_deg": 24, "arcs": [
        {"start_deg": 181, "stop_deg": 179, "direction": "cw"}]},
        isocenter_mm=default_isocenter_mm(case))
    influence = engine.influence(case, beams)
    result = plan(case, influence, GoalList.from_dicts(GOALS, source="test"),
                  settings=PlanSettings(max_iter=40))
    d = deliver(case, influence, result, machine=load_machine(), engine=engine,
                settings=SequencingSettings(merge_max_iter=30, reoptimize_max_iter=10))
    assert d.plan.violations() == [] and d.p1_lost() == []
    arc = d.plan.beams[0]
    assert arc.technique == "vmat" and arc.rotation == "CW" and len(d.plan.beams) == 1
    assert arc.n_cp == 15 * 4 + 1 and np.all(np.diff(arc.gantry_deg) > 0)
    paths = export_plan_set(tmp_path / "dicom", case, d.plan, d.dose_gy, report=d.report)
    info = read_rtplan(paths["rtplan"])
    assert info.technique == "vmat" and info.fields[0]["direction"] == "cw"
    back = read_plan_sequences(paths["rtplan"])[0]
    assert np.allclose(back["gantry_deg"], arc.gantry_iec_deg, atol=1e-4)
    assert np.abs(back["leaves_mm"] - arc.leaves_mm).max() <= 5e-4
    assert abs(back["mu"] - arc.mu) <= 1e-4


def _pymedphys_map(ds, k, machine):
    """pymedphys' metersetmap of beam ``k`` of an RTPLAN dataset (1 mm grid).

    pymedphys 0.41 reads only MLCX + ASYMY collimation, so the X jaws are applied to the
    leaves (tips clipped to them: the same aperture) and then removed."""
    pymedphys = pytest.importorskip("pymedphys")
    one = copy.deepcopy(ds)
    one.BeamSequence = [one.BeamSequence[k]]
    group = one.FractionGroupSequence[0]
    group.ReferencedBeamSequence = [group.ReferencedBeamSequence[k]]
    group.NumberOfBeams = 1
    b = one.BeamSequence[0]
    b.BeamLimitingDeviceSequence = [x for x in b.BeamLimitingDeviceSequence
                                    if x.RTBeamLimitingDeviceType != "ASYMX"]
    for cp in b.ControlPointSequence:
        devices = {x.RTBeamLimitingDeviceType: x for x in cp.BeamLimitingDevicePositionSequence}
        x1, x2 = (float(v) for v in devices["ASYMX"].LeafJawPositions)
        mlc = devices["MLCX"]
        mlc.LeafJawPositions = [f"{min(max(float(v), x1), x2):.3f}"
                                for v in mlc.LeafJawPositions]
        cp.BeamLimitingDevicePositionSequence = [
            x for x in cp.BeamLimitingDevicePositionSequence if x.RTBeamLimitingDeviceType
            != "ASYMX"]
    widths = tuple(float(w) for w in machine.leaf_widths)
    delivery = pymedphys.Delivery.from_dicom(one)
    grid = pymedphys.metersetmap.grid(max_leaf_gap=400, grid_resolution=1,
                                      leaf_pair_widths=widths)
    return delivery.metersetmap(max_leaf_gap=400, grid_resolution=1,
                                leaf_pair_widths=widths), grid


def compare_with_pymedphys(mmap, grid, seq, machine) -> tuple[float, float]:
    """Max difference (share of the maximum) and total difference between pymedphys' map
    and atp's open fluence on pymedphys' own 1 mm pixels inside the jaws.

    pymedphys' axes are (jaw, mlc) in its bipolar convention, ours turned by 180 degrees
    (x_pmp = -u, y_pmp = -v); atp's fluence is integrated exactly over each pixel
    (`atp.delivery.fluence.interval_open_mu` with the pixel edges)."""
    from atp.delivery.fluence import interval_open_mu

    x1, x2, y1, y2 = seq.jaws_mm
    cols = np.flatnonzero((-grid["mlc"] - 0.5 >= x1) & (-grid["mlc"] + 0.5 <= x2))
    rows = np.flatnonzero((-grid["jaw"] - 0.5 >= y1) & (-grid["jaw"] + 0.5 <= y2))
    u = -np.asarray(grid["mlc"], dtype=np.float64)[cols]  # decreasing
    edges = np.concatenate([u[::-1] - 0.5, [u[0] + 0.5]])
    pairs = interval_open_mu(seq.leaves_mm, seq.cum_mu, edges, (x1, x2)).sum(axis=0)
    k = np.searchsorted(machine.leaf_boundaries_mm, -np.asarray(grid["jaw"])[rows]) - 1
    ours = pairs[k][:, ::-1]  # (rows, cols) in pymedphys' order
    theirs = np.asarray(mmap)[np.ix_(rows, cols)]
    return (float(np.abs(theirs - ours).max() / ours.max()),
            float(abs(theirs.sum() - ours.sum()) / ours.sum()))


def test_pymedphys_reads_the_plan_and_its_metersetmap_matches(toy, tmp_path):
    pytest.importorskip("pymedphys")
    case, _, _, dlv = toy
    machine = load_machine()
    for mode, beams in (("step_and_shoot", range(5)), ("sliding_window", range(1))):
        d = dlv[mode]
        paths = export_plan_set(tmp_path / mode, case, d.plan, d.dose_gy, report=d.report)
        ds = pydicom.dcmread(paths["rtplan"])
        for k in beams:
            seq = d.plan.beams[k]
            diff, total = compare_with_pymedphys(*_pymedphys_map(ds, k, machine), seq, machine)
            print(f"pymedphys vs atp, {mode} {seq.name}: max difference {100 * diff:.2f} % "
                  f"of the maximum, total {100 * total:.3f} %")
            assert diff <= 0.01 and total <= 0.001


def test_exported_set_imports_back_into_atp(toy, tmp_path):
    """The set opens on its own: atp's DICOM importer finds the CT, the structures, the
    plan (beams, fractions, prescription) and the deliverable dose through the references
    of the exported files."""
    from atp.io.dicom import import_patient, scan_dicom_folder

    case, _, _, dlv = toy
    d = dlv["step_and_shoot"]
    export_plan_set(tmp_path / "dicom", case, d.plan, d.dose_gy, report=d.report)
    (patient,) = scan_dicom_folder(tmp_path / "dicom")
    back = import_patient(patient, site="npc", spacing_mm=None)
    assert back.shape == case.shape and np.allclose(back.origin_mm, case.origin_mm)
    for name in case.rois:
        assert np.array_equal(back.mask(name), case.mask(name)), name
    assert np.allclose(back.ct_hu, case.ct_hu)
    assert np.abs(back.dose_gy - d.dose_gy).max() <= 1e-5 * d.dose_gy.max()
    assert back.prescriptions[0].dose_gy == 60.0 and back.n_fractions == 30
    beams = back.metadata["beams"]
    assert [b["label"] for b in beams] == [f"field{i}" for i in range(1, 6)]
    assert np.allclose([b["gantry_deg"] for b in beams], [0, 72, 144, 216, 288])
