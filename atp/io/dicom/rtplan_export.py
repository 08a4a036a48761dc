"""RTPLAN export of a deliverable plan, and the whole plan set (CT, RTSTRUCT, RTPLAN, RTDOSE).

The RTPLAN holds one beam per `atp.delivery.BeamSequence`: a static-gantry IMRT field
(sliding window: BeamType DYNAMIC; step-and-shoot: STATIC) or a VMAT arc (DYNAMIC, with its
rotation direction and a gantry angle at every control point). Beam-limiting devices are
the X and Y jaws (ASYMX, ASYMY) and the MLC (MLCX, with the machine's
LeafPositionBoundaries); every control point lists the positions of all three, in IEC
61217 beam-limiting-device coordinates at collimator 0 (leaves 1..N of bank 1 on the -X
side, from -Y to +Y, then bank 2). Cumulative meterset weights run from 0 to 1
(FinalCumulativeMetersetWeight 1) and the beam's MU per fraction is its BeamMeterset in
the fraction group. Each target prescription is a DoseReference of type TARGET that names
its ROI in the exported structure set. Patient position: head first supine, the engine's
geometry (`atp.dose.geometry`).

`export_plan_set` refuses (`ExportRefused`, naming every violation, before writing
anything) a plan that breaks a priority-1 goal or a machine limit unless ``force`` is set,
and writes the set into a temporary folder that is renamed into place at the end, so a
failed export leaves no file behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import generate_uid

from atp.cases.case import PatientCase
from atp.io.dicom.export import (
    RTPLAN_STORAGE,
    RTSTRUCT_STORAGE,
    _base_dataset,
    _ref,
    _write,
    case_geometry,
    export_rtdose,
    export_rtstruct,
)

log = logging.getLogger(__name__)


class ExportRefused(ValueError):
    """The plan breaks a priority-1 goal or a machine limit; the message names each."""


def _ds(values, digits: int = 4) -> list[str]:
    return [f"{float(v):.{digits}f}" for v in np.asarray(values, dtype=np.float64).ravel()]


def _device(kind: str, positions) -> Dataset:
    item = Dataset()
    item.RTBeamLimitingDeviceType = kind
    item.LeafJawPositions = _ds(positions, 3)
    return item


def _beam(seq, number: int, machine, dose_ref_numbers: Sequence[int]) -> Dataset:
    b = Dataset()
    b.BeamNumber = number
    b.BeamName = seq.name[:16]
    b.BeamDescription = f"atp {seq.technique}"[:64]
    b.BeamType = "STATIC" if seq.technique == "step_and_shoot" else "DYNAMIC"
    b.RadiationType = "PHOTON"
    b.TreatmentDeliveryType = "TREATMENT"
    b.TreatmentMachineName = machine.name[:16]
    b.Manufacturer = machine.manufacturer[:64]
    b.ManufacturerModelName = machine.model[:64]
    b.PrimaryDosimeterUnit = "MU"
    b.SourceAxisDistance = f"{seq.sad_mm:.1f}"
    devices = []
    for kind, n in (("ASYMX", 1), ("ASYMY", 1), ("MLCX", machine.n_pairs)):
        d = Dataset()
        d.RTBeamLimitingDeviceType = kind
        d.NumberOfLeafJawPairs = n
        if kind == "MLCX":
            d.LeafPositionBoundaries = _ds(machine.leaf_boundaries_mm, 2)
        devices.append(d)
    b.BeamLimitingDeviceSequence = DicomSequence(devices)
    b.NumberOfWedges = 0
    b.NumberOfCompensators = 0
    b.NumberOfBoli = 0
    b.NumberOfBlocks = 0
    b.FinalCumulativeMetersetWeight = "1.0"
    b.NumberOfControlPoints = seq.n_cp
    weights = seq.meterset_weights
    iso_xyz = [seq.isocenter_mm[2], seq.isocenter_mm[1], seq.isocenter_mm[0]]
    x1, x2, y1, y2 = seq.jaws_mm
    rotation = seq.rotation if seq.is_arc else "NONE"
    cps = []
    for i in range(seq.n_cp):
        cp = Dataset()
        cp.ControlPointIndex = i
        cp.CumulativeMetersetWeight = f"{weights[i]:.8f}"
        cp.BeamLimitingDevicePositionSequence = DicomSequence([
            _device("ASYMX", [x1, x2]), _device("ASYMY", [y1, y2]),
            _device("MLCX", np.concatenate([seq.leaves_mm[i, 0], seq.leaves_mm[i, 1]]))])
        if i == 0 or seq.is_arc:  # Type 1C: the first control point, or when it changes
            cp.GantryAngle = f"{seq.gantry_iec_deg[i]:.4f}"
            cp.GantryRotationDirection = rotation if i < seq.n_cp - 1 else "NONE"
        if i == 0:
            cp.NominalBeamEnergy = f"{machine.energy_mv:g}"
            cp.DoseRateSet = f"{machine.max_dose_rate_mu_min:g}"
            cp.BeamLimitingDeviceAngle = "0.0"
            cp.BeamLimitingDeviceRotationDirection = "NONE"
            cp.PatientSupportAngle = f"{seq.couch_deg % 360.0:.4f}"
            cp.PatientSupportRotationDirection = "NONE"
            cp.TableTopEccentricAngle = "0.0"
            cp.TableTopEccentricRotationDirection = "NONE"
            cp.IsocenterPosition = _ds(iso_xyz, 3)
        refs = []
        for n in dose_ref_numbers:
            r = Dataset()
            r.ReferencedDoseReferenceNumber = n
            r.CumulativeDoseReferenceCoefficient = f"{weights[i]:.8f}"
            refs.append(r)
        if refs:
            cp.ReferencedDoseReferenceSequence = DicomSequence(refs)
        cps.append(cp)
    b.ControlPointSequence = DicomSequence(cps)
    b.ReferencedPatientSetupNumber = 1
    return b


def export_rtplan(plan, case: PatientCase, path: str | os.PathLike, *, rtstruct_uid: str = "",
                  roi_numbers: dict[str, int] | None = None, label: str = "atp plan") -> Path:
    """Write ``plan`` (an `atp.delivery.DeliverablePlan`) as an RTPLAN file, atomically.

    Parameters
    ----------
    plan : DeliverablePlan
        The sequenced plan (beams, control points, MU).
    case : PatientCase
        Identity, Frame of Reference and prescriptions.
    path : path
        Destination file.
    rtstruct_uid : str
        SOPInstanceUID of the structure set to reference ("" omits the reference).
    roi_numbers : dict, optional
        ROI name -> ROINumber in that structure set (for the dose references).
    label : str
        RTPlanLabel (cut to 16 characters) and RTPlanName (64).

    Returns
    -------
    Path
        The written file.
    """
    _grid, _align, ident = case_geometry(case)
    ds = _base_dataset(case, ident, sop_class=RTPLAN_STORAGE, modality="RTPLAN",
                       description=label)
    ds.FrameOfReferenceUID = ident["frame_of_reference_uid"]
    ds.PositionReferenceIndicator = ""
    ds.RTPlanLabel = label[:16]
    ds.RTPlanName = label[:64]
    ds.RTPlanDate = ds.InstanceCreationDate
    ds.RTPlanTime = ds.InstanceCreationTime
    ds.RTPlanGeometry = "PATIENT"
    ds.ApprovalStatus = "UNAPPROVED"
    if rtstruct_uid:
        ds.ReferencedStructureSetSequence = DicomSequence([_ref(RTSTRUCT_STORAGE, rtstruct_uid)])
    refs, numbers = [], []
    for k, rx in enumerate(case.prescriptions, start=1):
        r = Dataset()
        r.DoseReferenceNumber = k
        r.DoseReferenceUID = generate_uid(entropy_srcs=[case.patient_id, "dose_ref", rx.target])
        r.DoseReferenceStructureType = "VOLUME" if roi_numbers and rx.target in roi_numbers \
            else "SITE"
        if roi_numbers and rx.target in roi_numbers:
            r.ReferencedROINumber = roi_numbers[rx.target]
        r.DoseReferenceDescription = rx.target[:64]
        r.DoseReferenceType = "TARGET"
        r.TargetPrescriptionDose = f"{rx.dose_gy:.4f}"
        refs.append(r)
        numbers.append(k)
    if refs:
        ds.DoseReferenceSequence = DicomSequence(refs)
    setup = Dataset()
    setup.PatientSetupNumber = 1
    setup.PatientPosition = "HFS"
    setup.SetupTechnique = "ISOCENTRIC"
    ds.PatientSetupSequence = DicomSequence([setup])
    group = Dataset()
    group.FractionGroupNumber = 1
    group.NumberOfFractionsPlanned = int(plan.n_fractions)
    group.NumberOfBeams = len(plan.beams)
    group.NumberOfBrachyApplicationSetups = 0
    beam_refs = []
    for number, seq in enumerate(plan.beams, start=1):
        r = Dataset()
        r.ReferencedBeamNumber = number
        r.BeamMeterset = f"{seq.mu:.4f}"
        beam_refs.append(r)
    group.ReferencedBeamSequence = DicomSequence(beam_refs)
    ds.FractionGroupSequence = DicomSequence([group])
    ds.BeamSequence = DicomSequence([_beam(seq, n, plan.machine, numbers)
                                     for n, seq in enumerate(plan.beams, start=1)])
    out = _write(ds, path)
    log.info("wrote RTPLAN %s (%d beams, %.1f MU per fraction)", out, len(plan.beams),
             plan.mu_per_fraction)
    return out


def plan_violations(plan, report=None) -> list[str]:
    """Why a plan may not be exported: broken priority-1 goals and machine limits.

    Parameters
    ----------
    plan : DeliverablePlan
        The sequenced plan; its ``violations()`` give the machine-limit problems.
    report : list of GoalOutcome, optional
        The plan's goal report; None checks machine limits only.

    Returns
    -------
    list of str
        One message per violation; empty when the plan may be exported.
    """
    out = [f"priority-1 goal not met: {o.label} (achieved {o.achieved:.2f} {o.unit})"
           for o in (report or []) if o.priority == 1 and not o.met]
    return out + plan.violations()


def export_plan_set(out_dir: str | os.PathLike, case: PatientCase, plan, dose_gy: np.ndarray,
                    *, report=None, force: bool = False, label: str = "atp plan",
                    roi_names: Sequence[str] | None = None) -> dict[str, Path]:
    """Write RTPLAN, RTDOSE and RTSTRUCT (and the CT for a case not from DICOM).

    Parameters
    ----------
    out_dir : path
        The folder to create (replaced if it exists) holding the set.
    case : PatientCase
        The case (identity, geometry, ROIs).
    plan : DeliverablePlan
        The sequenced plan.
    dose_gy : ndarray
        The deliverable dose (Gy) on the case grid, (z, y, x).
    report : list of GoalOutcome, optional
        The deliverable plan's goal report: a broken priority-1 goal refuses the export.
    force : bool
        Export despite violations (they are logged).
    label : str
        RTPLAN label; also starts the RTDOSE description.
    roi_names : sequence of str, optional
        ROIs of the structure set (default: all the case's).

    Returns
    -------
    dict of paths: ``rtplan``, ``rtdose``, ``rtstruct`` and, when written, ``ct`` (folder).
    """
    from atp.io.dicom.ct_export import export_ct_series, with_dicom_identity

    problems = plan_violations(plan, report)
    if problems and not force:
        raise ExportRefused(f"patient {case.patient_id}: export refused ({len(problems)} "
                            "violations; force the export to write it anyway): "
                            + "; ".join(problems))
    for p in problems:
        log.warning("exporting despite: %s", p)
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        paths: dict[str, Path] = {}
        target = case
        if not (case.metadata.get("dicom") or {}).get("ct_geometry"):
            ident = export_ct_series(case, tmp / "CT")
            target = with_dicom_identity(case, ident)
            paths["ct"] = out / "CT"
        names = list(case.rois) if roi_names is None else list(roi_names)
        pid = "".join(c if c.isalnum() or c in "-_" else "_" for c in case.patient_id)
        rs = export_rtstruct(target, tmp / f"RS_{pid}.dcm", roi_names=names)
        rs_uid = str(pydicom.dcmread(rs, stop_before_pixels=True).SOPInstanceUID)
        rp = export_rtplan(plan, target, tmp / f"RP_{pid}.dcm", rtstruct_uid=rs_uid,
                           roi_numbers={n: i for i, n in enumerate(names, start=1)},
                           label=label)
        rp_uid = str(pydicom.dcmread(rp, stop_before_pixels=True).SOPInstanceUID)
        export_rtdose(dose_gy, target, tmp / f"RD_{pid}.dcm", rtplan_uid=rp_uid,
                      rtstruct_uid=rs_uid, description=f"{label}: deliverable dose")
        paths.update({"rtstruct": out / rs.name, "rtplan": out / rp.name,
                      "rtdose": out / f"RD_{pid}.dcm"})
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
        raise
    log.info("wrote the DICOM set of %s into %s", case.patient_id, out)
    return paths


def read_plan_sequences(path: str | os.PathLike) -> list[dict]:
    """The control points of an RTPLAN (`atp.io.dicom.read_rtplan`) as arrays per beam:
    ``name``, ``gantry_deg``, ``cum_mu`` (per fraction), ``leaves_mm`` (n_cp, 2, n_pairs),
    ``jaws_mm`` (n_cp, 4), ``leaf_boundaries_mm``, ``mu``.

    Parameters
    ----------
    path : str or os.PathLike
        RTPLAN file.

    Returns
    -------
    list of dict
        One dict per beam: ``name``, ``gantry_deg`` (degrees, per control point),
        ``cum_mu`` (MU per fraction), ``leaves_mm`` and ``jaws_mm`` (mm), ``mu`` (MU per
        fraction), ``arc`` and ``direction``.
    """
    from atp.io.dicom.rtplan import read_rtplan

    out = []
    for f in read_rtplan(path).fields:
        leaves = np.asarray(f["cp_leaves_mm"], dtype=np.float64)
        n = leaves.shape[1] // 2
        mu = float(f["meterset_mu"] or 0.0)
        if any(w is None for w in f["cp_meterset_weight"]):
            raise ValueError(f"{path}: beam '{f['name']}': a control point has no "
                             "CumulativeMetersetWeight")
        weights = np.asarray(f["cp_meterset_weight"], dtype=np.float64)
        out.append({"name": f["name"], "gantry_deg": np.asarray(f["cp_gantry_deg"], float),
                    "cum_mu": weights / float(f["final_meterset_weight"] or 1.0) * mu,
                    "leaves_mm": np.stack([leaves[:, :n], leaves[:, n:]], axis=1),
                    "jaws_mm": np.asarray(f["cp_jaws_mm"], dtype=np.float64),
                    "leaf_boundaries_mm": np.asarray(f["leaf_boundaries_mm"], float),
                    "mu": mu, "arc": f["arc"], "direction": f["direction"]})
    return out
