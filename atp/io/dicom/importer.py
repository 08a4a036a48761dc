"""Build a `PatientCase` from the DICOM files of one patient (CT, RTSTRUCT, RTPLAN, RTDOSE).

Everything is first read on the CT's own grid (structures rasterised on the CT slices,
dose interpolated from the RTDOSE grid), then resampled to the working grid: trilinear
for CT and dose (the dose is interpolated once, straight from the RTDOSE grid), nearest
neighbour (or box overlap, ``mask_method="fraction"``) for masks. The original CT
geometry and UIDs go to ``metadata["dicom"]`` so that exports land back on it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from atp.cases.case import CaseError, PatientCase, Prescription, Roi
from atp.cases.grid import Grid
from atp.io.dicom.aliases import (
    aliases_from_config,
    looks_like_target,
    resolve_roi_name,
    role_of,
)
from atp.io.dicom.ct import read_ct_series
from atp.io.dicom.resample import resample_linear, resample_mask, working_grid
from atp.io.dicom.rtdose import dose_on_grid, read_rtdose
from atp.io.dicom.rtplan import PlanInfo, read_rtplan
from atp.io.dicom.rtstruct import RoiContours, rasterize_roi, read_rtstruct
from atp.io.dicom.scan import DicomPatient, DicomSelection, select_patient_files
from atp.names import BODY, SITES, ptv_dose_gy, ptv_name

log = logging.getLogger(__name__)

DEFAULT_SPACING_MM = 3.0
AIR_HU = -1024.0
_TYPE_ROLES = {"ORGAN": "organ", "AVOIDANCE": "organ", "PTV": "target"}


def import_patient(patient: DicomPatient | DicomSelection, *, site: str,
                   spacing_mm: float | Sequence[float] | None = DEFAULT_SPACING_MM,
                   site_cfg: Mapping[str, Any] | None = None, mask_method: str = "nearest",
                   progress: bool = False) -> PatientCase:
    """Read one patient's CT, structures, plan and dose into a validated `PatientCase`.

    Parameters
    ----------
    patient : DicomPatient or DicomSelection
        From `scan_dicom_folder` (the files are chosen by `select_patient_files`).
    site : str
        One of ``atp.names.SITES``; used for the case and the alias table.
    spacing_mm : float, 3 floats (z, y, x) or None
        Working grid spacing; None keeps the CT grid.
    site_cfg : mapping, optional
        The site configuration: ``aliases`` (explicit ROI names), ``prescriptions`` and
        ``reference_rx_gy`` (fallbacks when there is no RTPLAN).
    mask_method : {"nearest", "fraction"}
        Mask resampling (see `resample_mask`).
    progress : bool, optional
        Show a progress bar over the ROIs; default False.

    Returns
    -------
    PatientCase
        The validated case on the working grid: CT (HU), ROIs, prescriptions, the RTDOSE
        dose (Gy) if any, and the original geometry and UIDs in ``metadata["dicom"]``.
    """
    from tqdm.auto import tqdm

    if site not in SITES:
        raise ValueError(f"unknown site {site!r} (known: {list(SITES)})")
    sel = patient if isinstance(patient, DicomSelection) else select_patient_files(patient)
    pid = sel.patient.patient_id
    src = f"patient {pid}"
    notes = list(sel.notes)
    ct = read_ct_series(sel.ct.files, source=f"{src}: CT series {sel.ct.uid}")
    grid = ct.grid if spacing_mm is None else working_grid(ct.grid, spacing_mm)
    ss = read_rtstruct(sel.rtstruct.path)
    if ss.frame_of_reference_uids and ct.frame_of_reference_uid not in ss.frame_of_reference_uids:
        notes.append(f"RTSTRUCT {sel.rtstruct.path.name} names Frame of Reference "
                     f"{ss.frame_of_reference_uids}, the CT has {ct.frame_of_reference_uid}")
    plan = None
    if sel.rtplan is not None:
        try:
            plan = read_rtplan(sel.rtplan.path)
            notes += [f"RTPLAN: {n}" for n in plan.notes]
            if plan.beams and ct.patient_position not in ("", "HFS"):
                notes.append(f"patient position {ct.patient_position}: the beams' angles are "
                             "kept, but atp's beam geometry assumes head-first supine")
        except CaseError as exc:
            notes.append(f"RTPLAN skipped: {exc}")
    ct_hu = ct.ct_hu if grid == ct.grid else resample_linear(ct.ct_hu, ct.grid, grid, fill=AIR_HU)

    aliases = aliases_from_config(site_cfg)
    masks: list[tuple[RoiContours, np.ndarray]] = []  # on the working grid
    empty: list[str] = []
    for roi in tqdm(ss.rois, desc=f"{pid} ROIs", disable=not progress):
        mask, counts = rasterize_roi(roi, ct.grid, source=ss.path)
        if not mask.any():
            why = "no contour" if not roi.contours else f"{counts['off_grid']} contour(s) " \
                  "outside the CT slices"
            log.warning("%s: ROI '%s' has no voxel on the CT grid (%s): left out", src,
                        roi.name, why)
            empty.append(roi.name)
            continue
        if grid != ct.grid:  # one CT-grid mask at a time: they are large
            mask = resample_mask(mask, ct.grid, grid, method=mask_method)
            if not mask.any():
                log.warning("%s: ROI '%s' vanishes on the %s mm grid: left out", src,
                            roi.name, grid.spacing_mm)
                empty.append(roi.name)
                continue
        masks.append((roi, mask))
    report: dict[str, Any] = {}
    names = _name_rois([r for r, _ in masks], site=site, aliases=aliases, plan=plan,
                       site_cfg=site_cfg, notes=notes, report=report)
    rois = {stored: Roi(mask=mask, role=role)
            for (_roi, mask), (stored, role) in zip(masks, names, strict=True)}
    if report["unmapped"]:
        log.info("%s: ROI names kept as they are (no alias): %s", src,
                 ", ".join(report["unmapped"]))

    dose, dose_info = _read_dose(sel, ct.frame_of_reference_uid, grid, rois, ct_hu, notes, src)
    prescriptions, rx_source = _prescriptions(rois, plan, site_cfg, notes)
    unknown_targets = [n for n, r in rois.items() if r.role == "target" and ptv_dose_gy(n) is None]
    meta_dicom = {
        "patient_name": ct.info["patient_name"],
        "patient_birth_date": ct.info["patient_birth_date"],
        "patient_sex": ct.info["patient_sex"], "study_uid": ct.study_uid,
        "frame_of_reference_uid": ct.frame_of_reference_uid, "ct_series_uid": ct.series_uid,
        "ct_slice_uids": ct.slice_uids, "ct_geometry": ct.geometry_dict(),
        "rtstruct_uid": ss.sop_uid, "rtstruct_file": ss.path,
        "rtplan_uid": plan.sop_uid if plan else None, "rtdose_uids": dose_info.pop("uids"),
        "roi_names": report["names"], "unmapped": report["unmapped"],
        "duplicates": report["duplicates"], "empty_rois": empty,
        "unknown_targets": unknown_targets, "prescription_source": rx_source,
        "dose": dose_info, "notes": notes,
    }
    if plan is not None:
        metersets = [f.get("meterset_mu") for f in plan.fields]
        meta_dicom["plan"] = {"label": plan.label, "technique": plan.technique,
                              "n_fractions": plan.n_fractions, "fields": plan.fields,
                              # the clinical MU (atp.evaluation.comparator.clinical_mu):
                              # the beams' BeamMeterset, when every beam has one
                              "mu_per_fraction": float(sum(metersets)) if metersets and
                              None not in metersets else None}
    metadata: dict[str, Any] = {"source": "dicom", "folder": str(sel.ct.files[0].parent),
                                "working_grid": grid.to_dict(), "dicom": meta_dicom}
    if plan is not None and plan.beams:
        metadata["beams"] = plan.beams
        metadata["beam_config"] = plan.beam_config
    for n in notes:
        log.info("%s: %s", src, n)
    case = PatientCase(patient_id=pid, ct_hu=ct_hu.astype(np.float32, copy=False),
                       spacing_mm=grid.spacing_mm, origin_mm=grid.origin_mm, rois=rois,
                       prescriptions=prescriptions, dose_gy=dose, site=site, metadata=metadata)
    return case.validate(source=src)


def _name_rois(rois: list[RoiContours], *, site: str, aliases: Mapping[str, str],
               plan: PlanInfo | None, site_cfg: Mapping[str, Any] | None,
               notes: list[str], report: dict[str, Any]) -> list[tuple[str, str]]:
    """(stored name, role) per ROI: canonical when resolved, else the original name.

    Fills ``report`` with ``names`` (original -> stored), ``unmapped`` and ``duplicates``.
    """
    plan_doses = {t.roi_number: t.dose_gy for t in (plan.target_doses if plan else [])
                  if t.roi_number is not None}
    out: list[tuple[str | None, str]] = []
    pending: list[int] = []
    for i, roi in enumerate(rois):
        canonical = resolve_roi_name(roi.name, site=site, extra_aliases=aliases)
        target_like = looks_like_target(roi.name) or roi.interpreted_type == "PTV"
        if roi.number in plan_doses and (target_like or (canonical or "").startswith("ptv_")):
            from_plan = ptv_name(plan_doses[roi.number])
            if canonical and canonical != from_plan:
                notes.append(f"ROI '{roi.name}': the RTPLAN prescribes "
                             f"{plan_doses[roi.number]} Gy to it; named {from_plan}")
            canonical = from_plan
        if canonical is None and roi.interpreted_type == "EXTERNAL":
            canonical = BODY
        if canonical is None and target_like:
            pending.append(i)
        out.append((canonical, role_of(canonical) if canonical else
                    _TYPE_ROLES.get(roi.interpreted_type, "control")))
    if len(pending) == 1:
        claimed = {ptv_dose_gy(c) for c, _ in out if c and c.startswith("ptv_")}
        free = sorted({t.dose_gy for t in (plan.target_doses if plan else [])} - claimed)
        ref = (site_cfg or {}).get("reference_rx_gy")
        i = pending[0]
        if len(free) == 1:
            out[i] = (ptv_name(free[0]), "target")
            notes.append(f"ROI '{rois[i].name}' -> {out[i][0]} from the RTPLAN dose reference")
        elif not claimed - {None} and not free and ref:
            out[i] = (ptv_name(float(ref)), "target")
            notes.append(f"ROI '{rois[i].name}' -> {out[i][0]} from the site's reference "
                         "prescription (no dose in the name or the plan)")
    for i in pending:
        if out[i][0] is None:
            out[i] = (None, "target")
            notes.append(f"ROI '{rois[i].name}' looks like a target but no dose was found: "
                         "kept as an unknown target (add an alias or an RTPLAN)")
    final: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    report.update(names={}, unmapped=[], duplicates=[])
    for roi, (canonical, role) in zip(rois, out, strict=True):
        stored = canonical or roi.name
        key = roi.name if roi.name not in report["names"] else f"{roi.name}#{roi.number}"
        if stored in seen:
            stored = f"{roi.name}#{roi.number}"
            log.warning("ROI '%s' (number %d) duplicates '%s' (both '%s'): kept as '%s' with "
                        "role control", roi.name, roi.number, seen[canonical or roi.name],
                        canonical or roi.name, stored)
            notes.append(f"duplicate ROI '{roi.name}' (number {roi.number}) kept as "
                         f"'{stored}' (role control)")
            report["duplicates"].append(stored)
            role = "control"
        elif canonical is None:
            report["unmapped"].append(roi.name)
        seen[stored] = roi.name
        report["names"][key] = stored
        final.append((stored, role))
    return final


def _read_dose(sel: DicomSelection, frame_uid: str, grid: Grid, rois: dict[str, Roi],
               ct_hu: np.ndarray, notes: list[str], src: str
               ) -> tuple[np.ndarray | None, dict[str, Any]]:
    volumes = []
    for d in sel.rtdoses:
        try:
            v = read_rtdose(d.path)
        except CaseError as exc:
            notes.append(f"RTDOSE skipped: {exc}")
            continue
        if v.frame_of_reference_uid and v.frame_of_reference_uid != frame_uid:
            notes.append(f"RTDOSE {d.path.name} skipped: Frame of Reference "
                         f"{v.frame_of_reference_uid} is not the CT's")
            continue
        volumes.append(v)
    if not volumes:
        return None, {"uids": []}
    dose, covered = dose_on_grid(volumes, grid.axes_mm())
    body = rois[BODY].mask if BODY in rois else ct_hu > -500.0
    n_body = int(body.sum(dtype=np.int64))
    outside = int((body & ~covered).sum(dtype=np.int64))
    frac = outside / n_body if n_body else 0.0
    info = {"uids": [v.sop_uid for v in volumes], "summation": volumes[0].summation_type,
            "n_files": len(volumes), "max_gy": float(dose.max()),
            "body_outside_dose_grid_fraction": frac, "zero_padded": bool((~covered).any())}
    if outside:
        notes.append(f"dose grid smaller than the CT: {100 * frac:.1f}% of the body lies "
                     "outside it and is set to 0 Gy")
        log.warning("%s: %s", src, notes[-1])
    return dose, info


def _prescriptions(rois: dict[str, Roi], plan: PlanInfo | None,
                   site_cfg: Mapping[str, Any] | None, notes: list[str]
                   ) -> tuple[tuple[Prescription, ...], str]:
    levels = sorted({d for n in rois if (d := ptv_dose_gy(n)) is not None}, reverse=True)
    if not levels:
        return (), "none"
    if plan is not None and plan.n_fractions:
        n_fx, source = plan.n_fractions, "fractions from the RTPLAN"
    else:
        n_fx, source = None, "fractions from the site config"
        schemes = list((site_cfg or {}).get("prescriptions") or [])
        top = levels[0]
        for rule in (lambda lv: abs(max(lv) - top) < 0.01, lambda lv: any(
                abs(x - top) < 0.01 for x in lv)):
            for s in schemes:
                lv = [float(x) for x in s.get("levels_gy", [])]
                if lv and rule(lv):
                    n_fx = int(s["n_fractions"])
                    break
            if n_fx:
                break
        if n_fx is None:
            n_fx, source = max(1, round(top / 2.0)), "fractions assumed (2 Gy per fraction)"
            notes.append(f"number of fractions unknown (no RTPLAN, no matching site scheme): "
                         f"assumed {n_fx} (2 Gy per fraction)")
    return tuple(Prescription(ptv_name(d), d, n_fx) for d in levels), source
