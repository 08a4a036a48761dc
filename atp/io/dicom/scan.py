"""Scan a folder tree of DICOM files and pick, per patient, the files that form one case.

Headers only are read (pixel data and large values are deferred). Files are grouped by
PatientID; CT slices by SeriesInstanceUID; RTSTRUCT, RTPLAN and RTDOSE files are kept
one by one with the references that tie them together:

* RTSTRUCT -> CT: ``ReferencedFrameOfReferenceSequence`` (series UID, else frame UID);
* RTPLAN -> RTSTRUCT: ``ReferencedStructureSetSequence``;
* RTDOSE -> RTPLAN: ``ReferencedRTPlanSequence``; otherwise the Frame of Reference.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from atp.cases.case import CaseError
from atp.io.dicom.rtstruct import referenced_uids

log = logging.getLogger(__name__)

RT_MODALITIES = ("RTSTRUCT", "RTPLAN", "RTDOSE")
DOSE_SUMMATIONS = ("PLAN", "MULTI_PLAN")


@dataclass
class DicomObject:
    """One RT file (RTSTRUCT, RTPLAN or RTDOSE) and the references read from its header."""

    path: Path
    modality: str
    sop_uid: str
    series_uid: str
    study_uid: str
    frame_of_reference_uid: str = ""
    referenced_series_uids: list[str] = field(default_factory=list)
    referenced_frame_uids: list[str] = field(default_factory=list)
    referenced_struct_uid: str = ""
    referenced_plan_uid: str = ""
    summation_type: str = ""
    date: str = ""


@dataclass
class DicomSeries:
    """The slices of one CT series."""

    uid: str
    study_uid: str
    frame_of_reference_uid: str
    description: str = ""
    files: list[Path] = field(default_factory=list)


@dataclass
class DicomPatient:
    """Everything found for one PatientID."""

    patient_id: str
    patient_name: str = ""
    ct_series: dict[str, DicomSeries] = field(default_factory=dict)
    rtstructs: list[DicomObject] = field(default_factory=list)
    rtplans: list[DicomObject] = field(default_factory=list)
    rtdoses: list[DicomObject] = field(default_factory=list)

    @property
    def study_uids(self) -> list[str]:
        """Sorted StudyInstanceUIDs seen in this patient's files."""
        uids = {s.study_uid for s in self.ct_series.values()}
        uids |= {o.study_uid for o in self.rtstructs + self.rtplans + self.rtdoses}
        return sorted(uids)


@dataclass
class DicomSelection:
    """The files of one case: a CT series, the RTSTRUCT on it, optional plan and dose."""

    patient: DicomPatient
    ct: DicomSeries
    rtstruct: DicomObject
    rtplan: DicomObject | None
    rtdoses: list[DicomObject]
    notes: list[str] = field(default_factory=list)


def _uid(ds: pydicom.Dataset, keyword: str) -> str:
    return str(ds.get(keyword, "") or "").strip()


def _ref(ds: pydicom.Dataset, keyword: str) -> str:
    seq = ds.get(keyword)
    return str(seq[0].get("ReferencedSOPInstanceUID", "")) if seq else ""


def scan_dicom_folder(root: str | os.PathLike, *, progress: bool = False) -> list[DicomPatient]:
    """Read the headers of every file under ``root``; return the patients, by PatientID.

    Files that are not DICOM, and modalities other than CT and RT objects, are counted
    and ignored.

    Parameters
    ----------
    root : str or os.PathLike
        Folder tree to scan (any layout).
    progress : bool, optional
        Show a progress bar over the files; default False.

    Returns
    -------
    list of DicomPatient
        One per PatientID (``"UNKNOWN"`` when empty), sorted by PatientID.
    """
    from tqdm.auto import tqdm

    root = Path(root)
    if not root.is_dir():
        raise CaseError(str(root), "folder", "does not exist or is not a folder")
    files = sorted(p for p in root.rglob("*") if p.is_file())
    patients: dict[str, DicomPatient] = {}
    ignored: Counter[str] = Counter()
    for path in tqdm(files, desc="DICOM scan", unit="file", disable=not progress):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, defer_size="2 KB")
        except (InvalidDicomError, OSError, EOFError, ValueError, TypeError):
            ignored["not DICOM"] += 1
            continue
        modality = str(ds.get("Modality", "") or "").upper()
        if modality != "CT" and modality not in RT_MODALITIES:
            ignored[modality or "no modality"] += 1
            continue
        pid = str(ds.get("PatientID", "") or "").strip() or "UNKNOWN"
        patient = patients.setdefault(pid, DicomPatient(patient_id=pid))
        patient.patient_name = patient.patient_name or str(ds.get("PatientName", "") or "")
        series_uid, study_uid = _uid(ds, "SeriesInstanceUID"), _uid(ds, "StudyInstanceUID")
        frame_uid = _uid(ds, "FrameOfReferenceUID")
        if modality == "CT":
            series = patient.ct_series.setdefault(series_uid, DicomSeries(
                uid=series_uid, study_uid=study_uid, frame_of_reference_uid=frame_uid,
                description=str(ds.get("SeriesDescription", "") or "")))
            series.files.append(path)
            continue
        obj = DicomObject(path=path, modality=modality, sop_uid=_uid(ds, "SOPInstanceUID"),
                          series_uid=series_uid, study_uid=study_uid,
                          frame_of_reference_uid=frame_uid,
                          date=f"{ds.get('InstanceCreationDate', '') or ds.get('SeriesDate', '')}"
                               f"{ds.get('InstanceCreationTime', '') or ''}")
        if modality == "RTSTRUCT":
            obj.referenced_frame_uids, obj.referenced_series_uids = referenced_uids(ds)
            patient.rtstructs.append(obj)
        elif modality == "RTPLAN":
            obj.referenced_struct_uid = _ref(ds, "ReferencedStructureSetSequence")
            patient.rtplans.append(obj)
        else:
            obj.referenced_plan_uid = _ref(ds, "ReferencedRTPlanSequence")
            obj.summation_type = str(ds.get("DoseSummationType", "") or "").upper()
            patient.rtdoses.append(obj)
    if ignored:
        log.info("%s: ignored %s", root, ", ".join(f"{n} file(s) {k}" for k, n in
                                                  sorted(ignored.items())))
    return [patients[k] for k in sorted(patients)]


def select_patient_files(patient: DicomPatient) -> DicomSelection:
    """Pick the CT series, the RTSTRUCT that references it and the matching plan and dose.

    RTSTRUCTs whose CT is not in the folder are skipped with a note. With several
    candidates, the one that a plan (and a dose) refer to wins, then the newest.
    Raises `CaseError` when no RTSTRUCT references a CT series of the patient.

    Parameters
    ----------
    patient : DicomPatient
        A patient from `scan_dicom_folder`.

    Returns
    -------
    DicomSelection
        The chosen CT series, RTSTRUCT, RTPLAN (or None), RTDOSE files and notes.
    """
    src = f"patient {patient.patient_id}"
    notes: list[str] = []
    if not patient.ct_series:
        raise CaseError(src, "CT", "no CT series found")
    pairs: list[tuple[DicomObject, DicomSeries]] = []
    for s in patient.rtstructs:
        cts = [patient.ct_series[u] for u in s.referenced_series_uids if u in patient.ct_series]
        if not cts and s.referenced_series_uids:
            notes.append(f"RTSTRUCT {s.path.name} skipped: it references CT series "
                         f"{', '.join(s.referenced_series_uids)}, which is not in the folder")
            continue
        if not cts:
            cts = sorted((c for c in patient.ct_series.values()
                          if c.frame_of_reference_uid in s.referenced_frame_uids),
                         key=lambda c: -len(c.files))
            if not cts:
                notes.append(f"RTSTRUCT {s.path.name} skipped: no CT series in its Frame of "
                             f"Reference {', '.join(s.referenced_frame_uids) or '(none)'}")
                continue
        pairs.append((s, cts[0]))
    if not pairs:
        why = "; ".join(notes) if notes else "no RTSTRUCT file found"
        raise CaseError(src, "RTSTRUCT", f"no structure set on a CT series of the folder ({why})")

    def plans_for(s: DicomObject, ct: DicomSeries) -> list[DicomObject]:
        direct = [p for p in patient.rtplans if p.referenced_struct_uid == s.sop_uid]
        return direct or [p for p in patient.rtplans
                          if p.frame_of_reference_uid == ct.frame_of_reference_uid
                          and not p.referenced_struct_uid]

    def score(pair: tuple[DicomObject, DicomSeries]) -> tuple:
        s, ct = pair
        direct = any(p.referenced_struct_uid == s.sop_uid for p in patient.rtplans)
        dose = any(d.frame_of_reference_uid == ct.frame_of_reference_uid for d in patient.rtdoses)
        return (direct, dose, s.date)

    pairs.sort(key=score, reverse=True)
    rtstruct, ct = pairs[0]
    for s, _ in pairs[1:]:
        notes.append(f"RTSTRUCT {s.path.name} not used (another structure set was chosen)")
    plans = sorted(plans_for(rtstruct, ct), key=lambda p: p.date, reverse=True)
    plan = plans[0] if plans else None
    if len(plans) > 1:
        notes.append(f"{len(plans)} RTPLANs fit; using {plan.path.name}")  # type: ignore[union-attr]
    doses = [d for d in patient.rtdoses
             if plan is not None and d.referenced_plan_uid == plan.sop_uid]
    if not doses:
        doses = [d for d in patient.rtdoses
                 if d.frame_of_reference_uid == ct.frame_of_reference_uid]
    chosen = _pick_doses(doses, notes)
    return DicomSelection(patient=patient, ct=ct, rtstruct=rtstruct, rtplan=plan,
                          rtdoses=chosen, notes=notes)


def _pick_doses(doses: list[DicomObject], notes: list[str]) -> list[DicomObject]:
    """One plan dose if there is one, else all per-beam doses (summed by the importer)."""
    plan_doses = sorted((d for d in doses if d.summation_type in DOSE_SUMMATIONS),
                        key=lambda d: d.date, reverse=True)
    if plan_doses:
        if len(plan_doses) > 1:
            notes.append(f"{len(plan_doses)} plan doses fit; using {plan_doses[0].path.name}")
        return plan_doses[:1]
    beam_doses = [d for d in doses if d.summation_type == "BEAM"]
    if beam_doses:
        notes.append(f"no plan dose: summing {len(beam_doses)} per-beam RTDOSE files")
        return beam_doses
    for d in doses:
        notes.append(f"RTDOSE {d.path.name} skipped: DoseSummationType "
                     f"{d.summation_type or '(missing)'} is not PLAN or BEAM")
    return []
