"""The built-in synthetic cohort: procedural anatomy + a reference plan from our own engine.

``build_cohort`` writes one case file per patient (atomically) and a ``manifest.json``
(patient id, file, split, prescription, volumes, generation settings, code version).
Re-running skips finished patients and regenerates a missing or corrupted file; splits
depend only on (site, seed, n), so they are stable across re-runs.

Reference ("clinical") plan: see `atp.synth.reference` (protocol plan with a target
mean-dose band, sparing pass, normalization of the target means to their prescriptions).
Beamlets scale with the grid (`bixel_mm_for_grid`): the study's 5 mm beamlets on its 3 mm
grid, 10 mm on the 6 mm CPU preset.

Where the institution mixes beam techniques or prescriptions (the study's Table 1, with
``cases`` per variant or scheme), patients get them in the table's proportions, drawn from
``assignment_seed`` (`atp.planning.techniques.assign_variants`); each case stores its
technique in its metadata and the manifest records the seed and the assignment.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

import atp
from atp.cases import CaseError, PatientCase, load_case, save_case
from atp.delivery.sequencing import SequencingSettings
from atp.dose.influence import DoseEngine
from atp.io.atomic import atomic_write_text
from atp.planning import PlanSettings
from atp.planning.setup import goal_list_for, prescription_schemes_for
from atp.planning.techniques import (
    METADATA_KEY,
    assign_by_share,
    assign_variants,
    technique_counts,
    technique_variants,
)
from atp.synth.reference import crop_targets_from_hard_constraints, reference_plan

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
GUARD_HINTS = {"machine": " (the reference plans were sequenced on another machine, or "
               "not sequenced)",
               "goal_list": " (the site's goal list changed since the reference plans were "
               "made)"}
SPLITS = (("train", 0.7), ("val", 0.15), ("test", 0.15))
STUDY_SPACING_MM = 3.0
__all__ = ["CohortResult", "assign_splits", "bixel_mm_for_grid", "build_cohort",
           "crop_targets_from_hard_constraints", "engine_for_grid", "read_manifest",
           "reference_plan", "reference_plan_stats"]


def assign_splits(site: str, seed: int, n: int) -> list[str]:
    """Train/val/test per patient index: patients ranked by a hash of (site, seed, index);
    the first 15 % (at least one) go to validation, the next 15 % (at least one) to test,
    the rest to training. Deterministic for a given (site, seed, n).

    Parameters
    ----------
    site : str
        Site name (part of the hash).
    seed : int
        Cohort seed.
    n : int
        Number of patients; below 3 all go to training.

    Returns
    -------
    list of str
        ``"train"``, ``"val"`` or ``"test"`` for each patient index.
    """
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
    """Seed of the patient at ``index`` in a cohort drawn with ``seed``.

    Parameters
    ----------
    seed : int
        Cohort seed.
    index : int
        Patient index in the cohort (0-based).

    Returns
    -------
    int
        ``seed * 100003 + index``, the patient's anatomy seed.
    """
    return int(seed) * 100_003 + int(index)


def effective_site_config(site_cfg: Mapping, institution: Mapping | None) -> dict:
    """The site's facts with the institution's prescriptions and target volumes.

    Parameters
    ----------
    site_cfg : Mapping
        The site's facts (``conf/site/<site>.yaml``).
    institution : Mapping or None
        The institution overlay; None keeps the site's defaults.

    Returns
    -------
    dict
        A copy of ``site_cfg`` with ``prescriptions`` (and ``target_volume_cc`` in cc, when
        the institution gives them) replaced.
    """
    out = dict(site_cfg)
    out["prescriptions"] = prescription_schemes_for(site_cfg, institution)
    volumes = ((institution or {}).get("target_volume_cc") or {}).get(site_cfg["name"])
    if volumes:
        out["target_volume_cc"] = list(volumes)
    return out


def institution_settings(site_cfg: Mapping, institution: Mapping | None) -> dict:
    """The institution's facts for this site (the cohort guard compares them).

    Parameters
    ----------
    site_cfg : Mapping
        The site's facts; only ``name`` is read.
    institution : Mapping or None
        The institution overlay; None gives all-None entries.

    Returns
    -------
    dict
        ``beams``, ``prescriptions``, ``tolerance``, ``goals`` and ``target_volume_cc`` of
        the institution for this site (None where it sets none).
    """
    site = site_cfg["name"]
    inst = institution or {}
    return {key: (inst.get(key) or {}).get(site) for key in (
        "beams", "prescriptions", "tolerance", "goals", "target_volume_cc")}


def assignments(site_cfg: Mapping, institution: Mapping | None, *, n: int,
                seed: int) -> tuple[list[str], list[int] | None]:
    """Technique (variant name) and prescription scheme index of each of ``n`` patients.

    Techniques in the variants' ``cases`` proportions; schemes in theirs when every scheme
    has ``cases`` (else None: each patient's anatomy seed draws one, all equally likely).

    Parameters
    ----------
    site_cfg : Mapping
        The site's facts.
    institution : Mapping or None
        The institution overlay (its beam variants and prescription schemes).
    n : int
        Number of patients.
    seed : int
        Assignment seed.

    Returns
    -------
    names : list of str
        Technique variant name of each patient.
    schemes : list of int or None
        Prescription scheme index of each patient, or None (drawn per patient).
    """
    names = assign_variants(technique_variants(site_cfg, institution), n, seed=[int(seed), 1])
    schemes = prescription_schemes_for(site_cfg, institution)
    if schemes and all("cases" in sc for sc in schemes):
        return names, assign_by_share([float(sc["cases"]) for sc in schemes], n,
                                      seed=[int(seed), 2])
    return names, None


@dataclass
class CohortResult:
    """What `build_cohort` did: manifest path, patient ids by outcome, wall time (s)."""

    manifest_path: Path
    built: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    regenerated: list[str] = field(default_factory=list)
    seconds: float = 0.0


def bixel_mm_for_grid(engine_bixel_mm: float, *, spacing_mm: float,
                      study_spacing_mm: float = STUDY_SPACING_MM) -> float:
    """Beamlet size for a grid: the engine's beamlet on the study's grid, scaled so that
    beamlets keep the same size in voxels on coarser grids (never finer than the engine's).

    At 6 mm, 5 mm beamlets would be finer than the voxels: the influence matrix (and so
    every optimizer iteration) of a pelvic patient would be three to four times larger
    (measured: 31 M against 9 M entries) for detail the grid barely resolves.

    Parameters
    ----------
    engine_bixel_mm : float
        The engine's beamlet size (mm), meant for the study's grid.
    spacing_mm : float
        Grid spacing of the cases (mm).
    study_spacing_mm : float, optional
        Grid spacing the engine's beamlet is meant for (mm); default 3 mm.

    Returns
    -------
    float
        Beamlet size (mm), at least ``engine_bixel_mm``.
    """
    return float(max(engine_bixel_mm, engine_bixel_mm * float(spacing_mm)
                     / float(study_spacing_mm)))


def engine_for_grid(engine: DoseEngine, *, spacing_mm: float,
                    bixel_mm: float | None = None) -> DoseEngine:
    """The pencil-beam ``engine`` with its beamlet size for the grid (`bixel_mm_for_grid`,
    or ``bixel_mm`` when given); other engines are returned as they are. The result is of
    the configured engine's own class (a subclass keeps its behaviour).

    Parameters
    ----------
    engine : DoseEngine
        The configured dose engine.
    spacing_mm : float
        Grid spacing of the cases (mm).
    bixel_mm : float, optional
        Beamlet size (mm); default `bixel_mm_for_grid` of the engine's beamlet.

    Returns
    -------
    DoseEngine
        ``engine`` itself when nothing changes, else a copy with the new beamlet size.
    """
    from dataclasses import replace

    from atp.dose import PencilBeamEngine

    if not isinstance(engine, PencilBeamEngine):
        return engine
    size = bixel_mm_for_grid(engine.settings.bixel_mm, spacing_mm=spacing_mm) \
        if bixel_mm is None else float(bixel_mm)
    if size == engine.settings.bixel_mm:
        return engine
    return type(engine)(replace(engine.settings, bixel_mm=size))


def build_cohort(out_dir: str | Path, *, site_cfg: Mapping, institution: Mapping | None,
                 n: int, seed: int, spacing_mm: float, engine: DoseEngine,
                 settings: PlanSettings, sparing_pct: float = 10.0,
                 target_mean_band_pct: tuple[float, float] = (98.5, 101.5),
                 sparing_max_iter: int | None = None, bixel_mm: float | None = None,
                 assignment_seed: int | None = None, machine=None, sequencer=None,
                 progress: bool = True) -> CohortResult:
    """Generate (or complete) a cohort of ``n`` patients in ``out_dir``.

    Parameters
    ----------
    out_dir : path
        Folder of the case files and ``manifest.json``.
    site_cfg, institution : Mapping
        The site's facts and the institution overlay.
    n, seed : int
        Number of patients and the cohort seed (patient ``i`` uses `patient_seed`).
    spacing_mm : float
        Grid spacing of the cases (mm).
    engine : DoseEngine
        Dose engine of the reference plans (see `engine_for_grid` for its beamlets).
    settings : PlanSettings
        Optimizer settings of the reference plans.
    sparing_pct, target_mean_band_pct, sparing_max_iter
        See `atp.synth.reference.reference_plan` (sparing in %, band in % of Rx).
    bixel_mm : float, optional
        Beamlet size (mm); default: the engine's scaled with the grid (`bixel_mm_for_grid`).
    assignment_seed : int, optional
        Seed of the technique and prescription assignment (`assignments`); default
        ``seed``. Recorded in the manifest.
    machine, sequencer : atp.delivery.Machine and SequencingSettings, optional
        Sequence the reference plans on this machine (deliverable "clinical" plans, as
        cohort.py and the data module do by default); None keeps fluence plans. Both are
        recorded in the manifest and guarded.
    progress : bool
        Show a progress bar.

    Returns
    -------
    CohortResult
        Manifest path, patient ids built, skipped (already there) and regenerated
        (corrupted), and the wall time (s).
    """
    from threadpoolctl import threadpool_limits
    from tqdm.auto import tqdm

    from atp.synth.anatomy import generate_anatomy

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    site = site_cfg["name"]
    eff = effective_site_config(site_cfg, institution)
    result = CohortResult(manifest_path=out / MANIFEST)
    entries: list[dict] = []
    splits = assign_splits(site, seed, n)
    engine = engine_for_grid(engine, spacing_mm=spacing_mm, bixel_mm=bixel_mm)
    inst_name = (institution or {}).get("name")
    a_seed = int(seed if assignment_seed is None else assignment_seed)
    techniques, schemes = assignments(site_cfg, institution, n=n, seed=a_seed)
    guarded = {
        "spacing_mm": spacing_mm, "institution": inst_name,
        "institution_settings": institution_settings(site_cfg, institution),
        "assignment_seed": a_seed,
        "sparing_pct": sparing_pct, "target_mean_band_pct": list(target_mean_band_pct),
        "sparing_max_iter": sparing_max_iter, "engine": engine.cache_token(),
        "planner": asdict(settings),
        "goal_list": [asdict(g) for g in goal_list_for(site_cfg, institution).goals],
        "machine": machine.to_dict() if machine is not None else None,
        "sequencer": (sequencer or SequencingSettings()).to_dict() if machine is not None
        else None}
    _check_same_settings(result.manifest_path, guarded)
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
                                    spacing_mm=spacing_mm, patient_id=pid,
                                    scheme_index=None if schemes is None else schemes[i])
            case.metadata[METADATA_KEY] = {"institution": inst_name, "name": techniques[i]}
            # one BLAS thread: on these small dense ops extra threads only spin (measured
            # 27 s -> 8.5 s wall for 3 NPC patients on 2 shared cores)
            with threadpool_limits(limits=1, user_api="blas"):
                dose, summary = reference_plan(
                    case, site_cfg=site_cfg, institution=institution, engine=engine,
                    settings=settings, sparing_pct=sparing_pct,
                    target_mean_band_pct=target_mean_band_pct,
                    sparing_max_iter=sparing_max_iter, machine=machine,
                    sequencer=sequencer)
            case.dose_gy = dose
            case.metadata["reference_plan"] = summary
            case.metadata["institution"] = inst_name
            save_case(case, path)
            if pid not in result.regenerated:
                result.built.append(pid)
        entries.append(_entry(case, path, splits[i]))
    stored = [(e.get("technique") or {}).get("name") for e in entries]
    manifest = {"site": site, "seed": seed, "n": n, **guarded,
                "techniques": technique_counts(technique_variants(site_cfg, institution),
                                               stored),
                "atp_version": atp.__version__,
                "patients": entries}
    atomic_write_text(result.manifest_path, json.dumps(manifest, indent=1, default=str))
    result.seconds = time.perf_counter() - t0
    return result


def _check_same_settings(manifest_path: Path, settings: Mapping) -> None:
    """Refuse to complete a cohort built with other (or unrecorded) settings: no mixing."""
    if not manifest_path.is_file():
        return
    old = read_manifest(manifest_path.parent)
    for key, value in settings.items():
        before, now = (json.dumps(v, sort_keys=True, default=str)
                       for v in (old.get(key, "not recorded"), value))
        if before != now:
            what = GUARD_HINTS.get(key, "")
            raise CaseError(str(manifest_path), key, f"the cohort was built with {before}, "
                            f"this run asks for {now}{what}: use another paths.data_dir or "
                            "remove the cohort folder (it is then rebuilt)")


def _entry(case: PatientCase, path: Path, split: str) -> dict:
    vol = case.voxel_volume_cc
    return {"patient_id": case.patient_id, "file": path.name, "split": split,
            "prescriptions": [[p.target, p.dose_gy, p.n_fractions] for p in case.prescriptions],
            "laterality": case.metadata.get("laterality"),
            "technique": case.metadata.get(METADATA_KEY),
            "volumes_cc": {n: round(float(r.mask.sum(dtype=np.float64)) * vol, 2)
                           for n, r in case.rois.items()},
            "reference_plan": case.metadata.get("reference_plan", {})}


def reference_plan_stats(manifest: Mapping) -> dict:
    """Per-cohort summary of the reference plans in a manifest.

    Parameters
    ----------
    manifest : Mapping
        A cohort manifest (`read_manifest`).

    Returns
    -------
    dict
        ``n`` (patients), ``p1_all_met`` (plans meeting every priority-1 goal),
        ``p1_rate_pct``, and the range of every target level's mean dose over its
        prescription (``target_mean_over_rx_min`` / ``_max``) and of its D95 over its
        prescription (``target_d95_over_rx_min`` / ``_median``); for sequenced plans
        ``deliverable`` (their number) and ``p1_lost_in_delivery`` (plans where a
        priority-1 goal the fluence plan met was lost in sequencing, before the
        normalization).
    """
    plans = [p.get("reference_plan", {}) for p in manifest["patients"]]
    p1 = [all(r.get("p1_met", [])) for r in plans]
    ratios = [v for r in plans for v in r.get("target_mean_over_rx", {}).values()]
    d95 = [v for r in plans for v in r.get("target_d95_over_rx", {}).values()]
    return {"n": len(plans), "p1_all_met": int(sum(p1)),
            "p1_rate_pct": 100.0 * sum(p1) / max(len(p1), 1),
            "target_mean_over_rx_min": float(min(ratios, default=float("nan"))),
            "target_mean_over_rx_max": float(max(ratios, default=float("nan"))),
            "target_d95_over_rx_min": float(min(d95, default=float("nan"))),
            "target_d95_over_rx_median": float(np.median(d95)) if d95 else float("nan"),
            "deliverable": sum(bool(r.get("deliverable")) for r in plans),
            "p1_lost_in_delivery": sum(bool(r.get("p1_lost_in_delivery")) for r in plans)}


def read_manifest(out_dir: str | Path) -> dict:
    """The cohort manifest; a clear error when it is missing or unreadable.

    Parameters
    ----------
    out_dir : str or Path
        The cohort folder (holding ``manifest.json``).

    Returns
    -------
    dict
        The parsed manifest.

    Raises
    ------
    CaseError
        When the manifest is missing or not valid JSON.
    """
    path = Path(out_dir) / MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CaseError(str(path), "file", "no cohort manifest: build the cohort first "
                        "(python cohort.py site=...)") from None
    except json.JSONDecodeError as exc:
        raise CaseError(str(path), "file", f"invalid JSON ({exc})") from None
