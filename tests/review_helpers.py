"""Small evaluation folders with stored plans (``plans/*.npz``) for the review tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from atp.evaluation.plan_store import save_case_plans
from atp.sites import load_site_config
from atp.synth import generate_anatomy


def synthetic_doses(case, *, falloff_mm: float, scale: float) -> np.ndarray:
    """A plausible dose: the prescription inside the targets, falling off outside."""
    d = case.distance_to_targets_mm()
    rx = case.max_prescription_gy
    dose = scale * rx * np.exp(-d / falloff_mm)
    return np.where(case.body_mask, dose, 0.0).astype(np.float32)


def write_run(run_dir: Path, *, site: str = "lung", institution: str = "A", n: int = 3,
              comparator: str = "MNL", seed0: int = 0, spacing_mm: float = 12.0,
              meta_institution: bool = True) -> Path:
    """An evaluation run folder with ``n`` cases of ``site`` in ``plans/``."""
    cfg = load_site_config(site)
    for i in range(n):
        case = generate_anatomy(site, seed=seed0 + i, site_cfg=cfg, spacing_mm=spacing_mm,
                                patient_id=f"{site}_{institution}_pat{seed0 + i:03d}")
        doses = {"ATP": synthetic_doses(case, falloff_mm=12.0, scale=1.0),
                 comparator: synthetic_doses(case, falloff_mm=18.0, scale=1.02),
                 "prediction": synthetic_doses(case, falloff_mm=14.0, scale=1.0)}
        meta = {"institution": institution, "site": site} if meta_institution else {}
        save_case_plans(run_dir / "plans" / f"{case.patient_id}.npz", case=case,
                        doses_gy=doses, comparator=comparator, meta=meta)
    return run_dir


def write_multirun(sweep_dir: Path, *, jobs: list[tuple[str, str, int]],
                   comparator: str = "MNL") -> Path:
    """A multirun folder: one job folder (with ``.hydra/`` and a COMPLETED status) per
    (site, institution, n)."""
    for num, (site, inst, n) in enumerate(jobs):
        job = sweep_dir / f"{num}_{site}_{inst}"
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "config.yaml").write_text(
            f"site:\n  name: {site}\ninstitution:\n  name: {inst}\n")
        (job / "job_status.json").write_text(json.dumps({"status": "COMPLETED"}))
        write_run(job, site=site, institution=inst, n=n, comparator=comparator,
                  seed0=10 * num, meta_institution=False)
    return sweep_dir
