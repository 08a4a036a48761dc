"""The built-in synthetic cohort: procedural anatomy + a reference plan from our own engine.

``build_cohort`` writes one case file per patient (atomically) and a ``manifest.json``
(patient id, file, split, prescription, volumes, generation settings, code version).
Re-running skips finished patients and regenerates a missing or corrupted file; splits
depend only on (site, seed, n), so they are stable across re-runs.

Reference ("clinical") plan: targets are first cropped away from the organs with
priority-1 goals (by one voxel, at least 3 mm), as planners crop PTVs from serial-organ
PRVs; then the site's goal list with protocol values (no prediction),
planned with the institution's beams; then a sparing pass re-plans from that fluence
with every organ goal set ``sparing_pct`` below what the first plan achieved (the plan's
own dose as the "prediction"), so organs are pushed down as far as the higher-priority
goals allow. The sparing-pass dose is the case's dose.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import atp
from atp.cases import CaseError, PatientCase, load_case, save_case
from atp.dose import beams_from_config, default_isocenter_mm
from atp.dose.influence import DoseEngine
from atp.io.atomic import atomic_write_text
from atp.planning import PlanSettings, goal_report, plan
from atp.planning.setup import beam_config_for, goal_list_for, prescription_schemes_for

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
SPLITS = (("train", 0.7), ("val", 0.15), ("test", 0.15))


def assign_splits(site: str, seed: int, n: int) -> list[str]:
    """Train/val/test per patient index: patients ranked by a hash of (site, seed, index);
    the first 15 % (at least one) go to validation, the next 15 % (at least one) to test,
    the rest to training. Deterministic for a given (site, seed, n)."""
    if n < 3:
        return ["train"] * n
    order = sorted(range(n), key=lambda i: hashlib.sha256(f"{site}:{seed}:{i}".encode())
                   .hexdigest())
    n_val = max(1, round(SPLITS[1][1] * n))
    n_test = max(1, round(SPLITS[2][1] * n))
    out = ["train"] * n
    for rank, i in enumerate(order[: n_val + n_test]):
        out[i] = "val" if rank < n_val else "test"
    return out


def patient_seed(seed: int, index: int) -> int:
    return int(seed) * 100_003 + int(index)


def effective_site_config(site_cfg: Mapping, institution: Mapping | None) -> dict:
    """The site's facts with the institution's prescriptions and target volumes."""
    out = dict(site_cfg)
    out["prescriptions"] = prescription_schemes_for(site_cfg, institution)
    volumes = ((institution or {}).get("target_volume_cc") or {}).get(site_cfg["name"])
    if volumes:
        out["target_volume_cc"] = list(volumes)
    return out


@dataclass
class CohortResult:
    manifest_path: Path
    built: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    regenerated: list[str] = field(default_factory=list)
    seconds: float = 0.0


def crop_targets_from_hard_constraints(case: PatientCase, goals, *, margin_mm: float
                                       ) -> list[str]:
    """Crop every target away from the organs that carry priority-1 goals, as planners crop
    PTVs from serial-organ PRVs; returns the organs cropped from."""
    from scipy import ndimage

    organs = sorted({g.roi for g in goals.goals if g.priority == 1 and g.roi in case.rois
                     and case.rois[g.roi].role == "organ"})
    if not organs:
        return []
    keep_out = np.zeros(case.shape, dtype=bool)
    for name in organs:
        keep_out |= case.rois[name].mask
    dist = ndimage.distance_transform_edt(~keep_out, sampling=case.spacing_mm)
    near = dist <= margin_mm
    for name in case.targets:
        cropped = case.rois[name].mask & ~near
        if cropped.any():
            case.rois[name].mask = cropped
    return organs


def reference_plan(case: PatientCase, *, site_cfg: Mapping, institution: Mapping | None,
                   engine: DoseEngine, settings: PlanSettings, sparing_pct: float = 10.0
                   ) -> tuple[np.ndarray, dict]:
    """Protocol plan followed by a sparing pass; returns (dose on the case grid, summary)."""
    beams = beams_from_config(beam_config_for(site_cfg, institution),
                              isocenter_mm=default_isocenter_mm(case),
                              laterality=case.metadata.get("laterality"))
    goals = goal_list_for(site_cfg, institution)
    margin = max(3.0, float(max(case.spacing_mm)))
    cropped = crop_targets_from_hard_constraints(case, goals, margin_mm=margin)
    influence = engine.influence(case, beams)
    first = plan(case, influence, goals, settings=settings)
    organs = {g.roi: -abs(sparing_pct) for g in goals.goals}
    second = plan(case, influence, goals, predicted_dose_gy=first.dose_gy,
                  tolerances=organs, settings=settings, warm_start=first.fluence)
    dose = influence.dose_ct(second.fluence, case).astype(np.float32)
    protocol = goal_report(case, dose, first.resolved)  # the protocol's goals, final dose
    rx = {p.target: p.dose_gy for p in case.prescriptions}
    summary = {"beams": len(beams), "beamlets": influence.n_beamlets,
               "targets_cropped_from": cropped, "crop_margin_mm": margin,
               "p1_met": [o.met for o in protocol if o.priority == 1],
               "goals_met": sum(o.met for o in protocol), "goals_total": len(protocol),
               "target_mean_over_rx": {t: float(dose[case.mask(t)].mean() / d)
                                       for t, d in rx.items()}}
    return dose, summary


def build_cohort(out_dir: str | Path, *, site_cfg: Mapping, institution: Mapping | None,
                 n: int, seed: int, spacing_mm: float, engine: DoseEngine,
                 settings: PlanSettings, sparing_pct: float = 10.0,
                 progress: bool = True) -> CohortResult:
    """Generate (or complete) a cohort of ``n`` patients in ``out_dir``."""
    from tqdm.auto import tqdm

    from atp.synth.anatomy import generate_anatomy

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    site = site_cfg["name"]
    eff = effective_site_config(site_cfg, institution)
    result = CohortResult(manifest_path=out / MANIFEST)
    entries: list[dict] = []
    splits = assign_splits(site, seed, n)
    t0 = time.perf_counter()
    for i in tqdm(range(n), desc=f"cohort {site}", disable=not progress):
        pid = f"{site}_{seed}_{i:04d}"
        path = out / f"{pid}.npz"
        case = None
        if path.is_file():
            try:
                case = load_case(path)
                result.skipped.append(pid)
            except CaseError as exc:
                log.warning("%s is corrupted (%s): regenerating", path, exc.problem)
                result.regenerated.append(pid)
        if case is None:
            case = generate_anatomy(site, seed=patient_seed(seed, i), site_cfg=eff,
                                    spacing_mm=spacing_mm, patient_id=pid)
            dose, summary = reference_plan(case, site_cfg=site_cfg, institution=institution,
                                           engine=engine, settings=settings,
                                           sparing_pct=sparing_pct)
            case.dose_gy = dose
            case.metadata["reference_plan"] = summary
            case.metadata["institution"] = (institution or {}).get("name")
            save_case(case, path)
            if pid not in result.regenerated:
                result.built.append(pid)
        entries.append(_entry(case, path, splits[i]))
    manifest = {"site": site, "seed": seed, "n": n, "spacing_mm": spacing_mm,
                "institution": (institution or {}).get("name"), "sparing_pct": sparing_pct,
                "engine": engine.cache_token(), "atp_version": atp.__version__,
                "patients": entries}
    atomic_write_text(result.manifest_path, json.dumps(manifest, indent=1, default=str))
    result.seconds = time.perf_counter() - t0
    return result


def _entry(case: PatientCase, path: Path, split: str) -> dict:
    vol = case.voxel_volume_cc
    return {"patient_id": case.patient_id, "file": path.name, "split": split,
            "prescriptions": [[p.target, p.dose_gy, p.n_fractions] for p in case.prescriptions],
            "laterality": case.metadata.get("laterality"),
            "volumes_cc": {n: round(float(r.mask.sum(dtype=np.float64)) * vol, 2)
                           for n, r in case.rois.items()},
            "reference_plan": case.metadata.get("reference_plan", {})}


def read_manifest(out_dir: str | Path) -> dict:
    """The cohort manifest; a clear error when it is missing or unreadable."""
    path = Path(out_dir) / MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CaseError(str(path), "file", "no cohort manifest: build the cohort first "
                        "(python cohort.py site=...)") from None
    except json.JSONDecodeError as exc:
        raise CaseError(str(path), "file", f"invalid JSON ({exc})") from None
