"""Import a folder of DICOM RT data into `atp` case files.

Usage::

    python -m atp.io.import_dicom <folder> --site npc --out <dir> [--spacing-mm 3]

Every patient found under ``<folder>`` (any layout: files are grouped by PatientID) is
written to ``<dir>/<patient_id>.npz`` (atomically, `atp.cases.save_case`), with one log
line per patient: imported (ROIs, prescription, dose, beams) or skipped and why. The
site configuration ``conf/site/<site>.yaml`` (or ``--site-config``) supplies the
``aliases`` table and the fallback prescriptions. The exit status is 0 when every patient
was imported, 1 when some were skipped, 2 when none was found or imported.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from atp.cases import CaseError, save_case
from atp.io.dicom import import_patient, scan_dicom_folder
from atp.names import SITES

log = logging.getLogger("atp.io.import_dicom")

SITE_CONF_DIR = Path(__file__).resolve().parents[2] / "conf" / "site"


def load_site_config(site: str, path: str | Path | None = None) -> dict[str, Any]:
    """The site YAML as a dict: ``path`` if given, else ``conf/site/<site>.yaml`` if present."""
    p = Path(path) if path else SITE_CONF_DIR / f"{site}.yaml"
    if not p.is_file():
        if path:
            raise CaseError(str(p), "file", "site config does not exist")
        log.info("no site config at %s: no alias table, no fallback prescriptions", p)
        return {}
    try:
        doc = yaml.safe_load(p.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise CaseError(str(p), "file", f"unreadable YAML ({exc})") from None
    if not isinstance(doc, dict):
        raise CaseError(str(p), "file", "expected a mapping at the top level")
    return doc


def safe_file_stem(patient_id: str) -> str:
    """A file name for a patient id: characters other than letters, digits, ``.-_`` -> ``_``."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", patient_id).strip("._")
    return stem or "patient"


def run(folder: str | Path, *, site: str, out: str | Path, spacing_mm: float | None = None,
        site_config: str | Path | None = None, mask_method: str = "nearest",
        progress: bool = True) -> dict[str, str]:
    """Import every patient under ``folder``; return patient id -> "imported" or the reason."""
    site_cfg = load_site_config(site, site_config)
    spacing = spacing_mm if spacing_mm is not None else float(site_cfg.get("spacing_mm", 3.0))
    out = Path(out)
    patients = scan_dicom_folder(folder, progress=progress)
    if not patients:
        log.warning("%s: no CT or RT DICOM file found", folder)
    outcome: dict[str, str] = {}
    used: set[str] = set()
    for p in patients:
        try:
            case = import_patient(p, site=site, spacing_mm=spacing, site_cfg=site_cfg,
                                  mask_method=mask_method)
            stem = safe_file_stem(p.patient_id)
            if stem in used:
                raise CaseError(f"patient {p.patient_id}", "PatientID",
                                f"file name {stem}.npz already used by another patient")
            used.add(stem)
            path = save_case(case, out / f"{stem}.npz")
        except CaseError as exc:
            outcome[p.patient_id] = str(exc)
            log.warning("skipped %s: %s", p.patient_id, exc)
            continue
        except Exception as exc:  # one broken patient must not stop a batch
            outcome[p.patient_id] = f"unexpected error: {exc!r}"
            log.exception("skipped %s: unexpected error", p.patient_id)
            continue
        meta = case.metadata["dicom"]
        rx = ", ".join(f"{x.target} {x.dose_gy:g} Gy/{x.n_fractions} fx"
                       for x in case.prescriptions) or "none"
        beams = case.metadata.get("beam_config") or {}
        extra = []
        if meta["unmapped"]:
            extra.append(f"unmapped {meta['unmapped']}")
        if meta["empty_rois"]:
            extra.append(f"empty {meta['empty_rois']}")
        if meta["notes"]:
            extra.append(f"notes: {'; '.join(meta['notes'])}")
        log.info("imported %s -> %s: %d ROIs, Rx %s, dose %s, beams %s%s", p.patient_id, path,
                 len(case.rois), rx, "yes" if case.dose_gy is not None else "no",
                 beams.get("technique", "none"), (" | " + " | ".join(extra)) if extra else "")
        outcome[p.patient_id] = "imported"
    return outcome


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m atp.io.import_dicom",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="folder tree holding the DICOM files")
    parser.add_argument("--site", required=True, choices=SITES)
    parser.add_argument("--out", required=True, help="output folder for <patient_id>.npz")
    parser.add_argument("--spacing-mm", type=float, default=None,
                        help="working grid spacing (default: the site config's spacing_mm, "
                             "else 3)")
    parser.add_argument("--site-config", default=None,
                        help="site YAML (default: conf/site/<site>.yaml)")
    parser.add_argument("--mask-method", choices=("nearest", "fraction"), default="nearest")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        outcome = run(args.folder, site=args.site, out=args.out, spacing_mm=args.spacing_mm,
                      site_config=args.site_config, mask_method=args.mask_method,
                      progress=not args.no_progress)
    except CaseError as exc:
        log.error("%s", exc)
        return 2
    n_ok = sum(v == "imported" for v in outcome.values())
    log.info("%d of %d patient(s) imported into %s", n_ok, len(outcome), args.out)
    if n_ok == 0:
        return 2
    return 0 if n_ok == len(outcome) else 1


if __name__ == "__main__":
    sys.exit(main())
