"""Predict the dose of a folder of cases with a trained network; score where possible.

    python predict.py ckpt_path=<run>/checkpoints/last.ckpt
    python predict.py ckpt_path=... input=/data/open-kbp/test-pats format=openkbp
    python predict.py ckpt_path=... input=/path/to/dicom format=dicom site=npc

Writes one prediction per case into ``<run folder>/predictions`` (``.npy`` on the case grid,
an OpenKBP submission ``.csv`` or an RTDOSE) and, when the cases carry a reference dose,
the OpenKBP challenge's dose and DVH scores (``scores.json``, ``scores.csv``).
"""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from atp.config import CONF_DIR, register_resolvers

log = logging.getLogger("atp.predict")
register_resolvers()
FORMATS = ("npy", "openkbp", "dicom")


@hydra.main(config_path=str(CONF_DIR), config_name="predict", version_base="1.3")
def main(cfg: DictConfig) -> dict | None:
    from atp.sweeps import run_job

    return run_job(predict, cfg)


def case_sources(folder: Path, *, cfg: DictConfig, out: Path) -> list[Path]:
    """OpenKBP patient folders, else case files, else DICOM exports (imported first)."""
    from atp.io.openkbp import REQUIRED_FILES, patient_folders

    if not folder.is_dir():
        raise FileNotFoundError(f"input={folder}: no such folder")
    if (folder / "ct.csv").is_file():
        return [folder]
    found = []
    for f in patient_folders(folder):
        missing = [n for n in REQUIRED_FILES if not (f / n).is_file()]
        if missing:
            log.warning("skipping %s: missing %s", f, ", ".join(missing))
        else:
            found.append(f)
    if found or any(folder.glob("pt_*")):
        return found
    if files := sorted(folder.glob("*.npz")):
        return files
    from atp.io.import_dicom import run as import_dicom

    outcome = import_dicom(folder, site=cfg.site.name, out=out / "cases",
                           spacing_mm=cfg.spacing_mm)
    log.info("DICOM import of %s: %s", folder, outcome)
    return sorted((out / "cases").glob("*.npz"))


def write_prediction(dose_gy, case, fmt: str, folder: Path) -> Path:
    import numpy as np

    from atp.io.atomic import atomic_open
    from atp.io.dicom import export_rtdose
    from atp.io.openkbp import write_openkbp_dose

    if fmt == "openkbp":
        return write_openkbp_dose(dose_gy, folder / f"{case.patient_id}.csv")
    if fmt == "dicom":
        return export_rtdose(dose_gy, case, folder / case.patient_id / "RD.dcm",
                             description="atp predicted dose")
    path = folder / f"{case.patient_id}.npy"
    with atomic_open(path) as fh:
        np.save(fh, dose_gy.astype(np.float32))
    return path


def predict(cfg: DictConfig) -> dict:
    """Predict every case of ``cfg.input``; returns the scores (empty without references)."""
    from tqdm.auto import tqdm

    from atp.dosimetry import case_scores, challenge_scores
    from atp.io.atomic import atomic_write_text
    from atp.io.loading import load_any_case
    from atp.models.predict import load_module, predict_case

    if cfg.format not in FORMATS:
        raise ValueError(f"format={cfg.format}: choose one of {FORMATS}")
    out = Path(cfg.paths.output_dir)
    module = load_module(cfg.ckpt_path)
    sources = case_sources(Path(cfg.input), cfg=cfg, out=out)[: cfg.max_cases or None]
    if not sources:
        raise FileNotFoundError(f"input={cfg.input}: no case to predict")
    log.info("%d case(s) from %s; channels %s", len(sources), cfg.input, module.layout.names)
    per_case = []
    for src in tqdm(sources, desc="predict"):
        case = load_any_case(src, site=cfg.site.name)
        dose = predict_case(module, case)
        path = write_prediction(dose, case, cfg.format, out / "predictions")
        log.info("%s -> %s", case.patient_id, path)
        if cfg.score and case.dose_gy is not None:
            per_case.append(case_scores(case, dose))
    if not per_case:
        log.info("no reference dose in %s: nothing to score", cfg.input)
        return {}
    scores = challenge_scores(per_case)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["patient_id", "dose_score", "dvh_score"])
    writer.writerows([c["patient_id"], c["dose_score"], c["dvh_score"]] for c in per_case)
    atomic_write_text(out / "scores.csv", buf.getvalue())
    atomic_write_text(out / "scores.json", json.dumps(scores, indent=2) + "\n")
    print(f"OpenKBP scores over {scores['n_patients']} patient(s): dose score "
          f"{scores['dose_score']:.4f} Gy, DVH score {scores['dvh_score']:.4f} Gy")
    return scores


if __name__ == "__main__":
    main()
