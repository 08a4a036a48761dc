"""RTPLAN reading: treatment beams (IMRT fields, VMAT arcs), fractions and target doses.

Beams are returned as dictionaries of `atp.dose.beams.Beam` (``Beam.to_dict()``), with
the isocentre converted from DICOM (x, y, z) to `atp`'s world (z, y, x). A beam whose
gantry moves between control points (or whose first control point names a rotation
direction) is an arc; it is sampled into static directions by
`atp.dose.beams.arc_gantry_angles_deg`. The technique configuration returned alongside is
in the form `atp.dose.beams.beams_from_config` reads, so evaluation can rebuild the same
beam set. Each field also carries its control points (``cp_gantry_deg``,
``cp_meterset_weight``, ``cp_jaws_mm`` = X1, X2, Y1, Y2 and ``cp_leaves_mm`` = bank 1 then
bank 2), the MLC's ``leaf_boundaries_mm`` and its ``meterset_mu`` from the fraction group.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom

from atp.cases.case import CaseError
from atp.dose.beams import DEFAULT_ARC_SPACING_DEG, DEFAULT_SAD_MM, Beam, arc_gantry_angles_deg
from atp.io.dicom.dataset import read_dicom

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TargetDose:
    """A prescription dose of the plan's DoseReferenceSequence."""

    dose_gy: float
    roi_number: int | None = None
    description: str = ""


@dataclass
class PlanInfo:
    path: str
    sop_uid: str
    label: str
    frame_of_reference_uid: str
    referenced_structure_set_uid: str
    n_fractions: int | None
    target_doses: list[TargetDose]
    technique: str  # "imrt", "vmat", "mixed" or "" (no treatment beam)
    fields: list[dict[str, Any]]  # one summary per DICOM treatment beam, with its control
    #                               points (cp_*), leaf boundaries and meterset_mu
    beams: list[dict[str, Any]]  # Beam.to_dict() of every static direction
    beam_config: dict[str, Any] | None  # beams_from_config form; None for mixed plans
    notes: list[str] = field(default_factory=list)


def _float(item: Any, keyword: str, default: float | None, src: str) -> float | None:
    val = item.get(keyword) if item is not None else None
    if val is None or val == "":
        return default
    try:
        return float(val)
    except (TypeError, ValueError):
        raise CaseError(src, keyword, f"not a number: {val!r}") from None


def _beam_fields(beam: pydicom.Dataset, src: str) -> dict[str, Any]:
    number = int(beam.get("BeamNumber", 0) or 0)
    name = str(beam.get("BeamName", "") or f"beam{number}")
    where = f"{src}: beam '{name}'"
    cps = beam.get("ControlPointSequence") or []
    if not cps:
        raise CaseError(where, "ControlPointSequence", "missing or empty")
    cp0 = cps[0]
    gantry = _float(cp0, "GantryAngle", None, where)
    if gantry is None:
        raise CaseError(where, "ControlPointSequence[0].GantryAngle", "missing")
    couch = _float(cp0, "PatientSupportAngle", 0.0, where)
    iso = cp0.get("IsocenterPosition")
    if iso is None or len(iso) != 3:
        raise CaseError(where, "ControlPointSequence[0].IsocenterPosition", "missing")
    angles = [gantry]
    for cp in cps[1:]:
        g = _float(cp, "GantryAngle", None, where)
        angles.append(angles[-1] if g is None else g)
    rotation = str(cp0.get("GantryRotationDirection", "NONE") or "NONE").upper()
    moves = any(abs(((a - gantry + 180.0) % 360.0) - 180.0) > 0.1 for a in angles)
    arc = moves or rotation in ("CW", "CC")
    direction = None
    if arc:
        if rotation == "CC":
            direction = "ccw"
        elif rotation == "CW":
            direction = "cw"
        else:
            first = next(a for a in angles if abs(((a - gantry + 180) % 360) - 180) > 0.1)
            direction = "cw" if (first - gantry) % 360.0 < 180.0 else "ccw"
    return {
        **_control_points(beam, cps, where),
        "name": name, "number": number, "arc": arc, "direction": direction,
        "gantry_start_deg": gantry % 360.0, "gantry_stop_deg": angles[-1] % 360.0,
        "couch_deg": couch, "n_control_points": len(cps),
        "isocenter_mm": [float(iso[2]), float(iso[1]), float(iso[0])],  # (z, y, x)
        "sad_mm": _float(beam, "SourceAxisDistance", DEFAULT_SAD_MM, where),
        "beam_type": str(beam.get("BeamType", "")),
    }


def _control_points(beam: pydicom.Dataset, cps, where: str) -> dict[str, Any]:
    """Per control point: gantry angle, cumulative meterset weight (None when missing:
    plans exported before a dose calculation), jaws and MLCX leaves (a device missing from
    a control point keeps its previous positions)."""
    mlc = next((d for d in beam.get("BeamLimitingDeviceSequence") or []
                if str(d.get("RTBeamLimitingDeviceType", "")).upper() in ("MLCX", "MLCY")),
               None)
    boundaries = [float(v) for v in mlc.LeafPositionBoundaries] \
        if mlc is not None and "LeafPositionBoundaries" in mlc else []
    current: dict[str, list[float]] = {}
    gantry, weights, jaws, leaves = [], [], [], []
    for i, cp in enumerate(cps):
        for dev in cp.get("BeamLimitingDevicePositionSequence") or []:
            kind = str(dev.get("RTBeamLimitingDeviceType", "")).upper()
            values = dev.get("LeafJawPositions")
            if values is not None:
                current[kind] = [float(v) for v in values]
        g = _float(cp, "GantryAngle", None, where)
        gantry.append(gantry[-1] if g is None and gantry else g)
        weights.append(_float(cp, "CumulativeMetersetWeight", None,
                              f"{where}: ControlPointSequence[{i}]"))
        jaws.append(current.get("ASYMX", current.get("X", [])) + current.get(
            "ASYMY", current.get("Y", [])))
        leaves.append(list(current.get("MLCX", current.get("MLCY", []))))
    return {"cp_gantry_deg": gantry, "cp_meterset_weight": weights, "cp_jaws_mm": jaws,
            "cp_leaves_mm": leaves, "leaf_boundaries_mm": boundaries,
            "final_meterset_weight": _float(beam, "FinalCumulativeMetersetWeight", 1.0, where),
            "mlc_type": str(mlc.RTBeamLimitingDeviceType) if mlc is not None else ""}


def read_rtplan(path: str | os.PathLike, *,
                arc_spacing_deg: float = DEFAULT_ARC_SPACING_DEG) -> PlanInfo:
    """Read beams, fractions and target doses of a photon RTPLAN file.

    Parameters
    ----------
    path : str or os.PathLike
        RTPLAN file.
    arc_spacing_deg : float, optional
        Gantry step (degrees) at which arcs are sampled into static directions.

    Returns
    -------
    PlanInfo
        Fractions, target doses (Gy), beams (isocentre in (z, y, x) mm), fields with their
        control points, technique and notes.
    """
    path = Path(path)
    src = str(path)
    ds = read_dicom(path, modality="RTPLAN")
    notes: list[str] = []
    groups = ds.get("FractionGroupSequence") or []
    n_fractions = None
    in_group: set[int] | None = None
    metersets: dict[int, float | None] = {}
    if groups:
        n = groups[0].get("NumberOfFractionsPlanned")
        n_fractions = int(n) if n not in (None, "") and int(n) > 0 else None
        refs = groups[0].get("ReferencedBeamSequence") or []
        in_group = {int(r.ReferencedBeamNumber) for r in refs if "ReferencedBeamNumber" in r}
        metersets = {int(r.ReferencedBeamNumber): _float(r, "BeamMeterset", None, src)
                     for r in refs if "ReferencedBeamNumber" in r}
        if len(groups) > 1:
            notes.append(f"{len(groups)} fraction groups: the first one is used")
    targets = []
    for item in ds.get("DoseReferenceSequence") or []:
        dose = _float(item, "TargetPrescriptionDose", None, src)
        kind = str(item.get("DoseReferenceType", "")).upper()
        if dose is None or dose <= 0 or kind not in ("TARGET", ""):
            continue
        number = item.get("ReferencedROINumber")
        targets.append(TargetDose(dose_gy=dose, roi_number=None if number in (None, "")
                                  else int(number),
                                  description=str(item.get("DoseReferenceDescription", ""))))
    if "IonBeamSequence" in ds:
        notes.append("ion plan: beams not read (atp models photon beams)")
    fields = []
    for beam in ds.get("BeamSequence") or []:
        number = int(beam.get("BeamNumber", 0) or 0)
        kind = str(beam.get("TreatmentDeliveryType", "TREATMENT") or "TREATMENT").upper()
        radiation = str(beam.get("RadiationType", "PHOTON") or "PHOTON").upper()
        if kind != "TREATMENT" or (in_group and number not in in_group):
            continue
        if radiation != "PHOTON":
            notes.append(f"beam {number}: {radiation} beam skipped")
            continue
        fields.append({**_beam_fields(beam, src), "meterset_mu": metersets.get(number)})
    beams: list[dict[str, Any]] = []
    for f in fields:
        iso = tuple(f["isocenter_mm"])
        if f["arc"]:
            angles = arc_gantry_angles_deg(f["gantry_start_deg"], f["gantry_stop_deg"],
                                           direction=f["direction"], spacing_deg=arc_spacing_deg)
        else:
            angles = [f["gantry_start_deg"]]
        beams += [Beam(gantry_deg=g, couch_deg=f["couch_deg"], isocenter_mm=iso,
                       sad_mm=f["sad_mm"], label=f["name"]).to_dict() for g in angles]
    technique, config = _technique(fields, arc_spacing_deg)
    if technique == "mixed":
        notes.append("plan mixes static fields and arcs: no single technique configuration")
    struct_uid = ""
    ref = ds.get("ReferencedStructureSetSequence")
    if ref:
        struct_uid = str(ref[0].get("ReferencedSOPInstanceUID", ""))
    return PlanInfo(path=src, sop_uid=str(ds.get("SOPInstanceUID", "")),
                    label=str(ds.get("RTPlanLabel", "")),
                    frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "")),
                    referenced_structure_set_uid=struct_uid, n_fractions=n_fractions,
                    target_doses=targets, technique=technique, fields=fields, beams=beams,
                    beam_config=config, notes=notes)


def _technique(fields: list[dict[str, Any]], spacing_deg: float
               ) -> tuple[str, dict[str, Any] | None]:
    if not fields:
        return "", None
    arcs = [f for f in fields if f["arc"]]
    if not arcs:
        return "imrt", {"technique": "imrt",
                        "gantry_deg": [f["gantry_start_deg"] for f in fields],
                        "couch_deg": [f["couch_deg"] for f in fields]}
    if len(arcs) == len(fields):
        return "vmat", {"technique": "vmat", "spacing_deg": spacing_deg,
                        "arcs": [{"start_deg": f["gantry_start_deg"],
                                  "stop_deg": f["gantry_stop_deg"],
                                  "direction": f["direction"], "couch_deg": f["couch_deg"]}
                                 for f in arcs]}
    return "mixed", None
