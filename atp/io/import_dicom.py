"""Import a folder of DICOM RT data into `atp` case files.

Usage::

    python -m atp.io.import_dicom <folder> --site npc --out <dir> [--spacing-mm 3]

Every patient found under ``<folder>`` (any layout: files are grouped by PatientID) is
written to ``<dir>/<patient_id>.npz`` (atomically, `atp.cases.save_case`), with one log
line per patient: imported (ROIs, prescription, dose, beams) or skipped and why. The
site configuration ``conf/site/<site>.yaml`` (or ``--site-config``) supplies the
``aliases`` table and the fallback prescriptions. The exit status is 0 when every patient
was imported, 1 when some were skipped, 2 when none was found or imported.

Every import ends by writing ``<dir>/manifest.json`` (atomically, after the last case):
the source folder, the size and modification time of every file under it, the settings
(site, spacing, mask method, a digest of the site-config keys the importer reads), the
manifest format, the case schema and the atp version, and the outcome per patient. An
import that starts removes the old manifest first, so case files without a manifest are
an interrupted import. `ensure_imported` (used by ``data=dicom``) imports once and then
reuses the folder only while the manifest still matches the source and the settings.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

import atp
from atp.cases import SCHEMA_VERSION, CaseError, save_case
from atp.io.atomic import atomic_write_text
from atp.io.dicom import import_patient, scan_dicom_folder
from atp.names import SITES

log = logging.getLogger("atp.io.import_dicom")

SITE_CONF_DIR = Path(__file__).resolve().parents[2] / "conf" / "site"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
#: The site-config keys the importer reads (`atp.io.dicom.importer`: alias table, fallback
#: prescriptions, default spacing); their digest is a setting of an import. Add a key here
#: when the importer starts reading it.
IMPORT_SITE_KEYS = ("aliases", "prescriptions", "reference_rx_gy", "spacing_mm")


def load_site_config(site: str, path: str | Path | None = None) -> dict[str, Any]:
    """The site YAML as a dict: ``path`` if given, else ``conf/site/<site>.yaml`` if present.

    Parameters
    ----------
    site : str
        Site name, used for the default path.
    path : str or Path, optional
        Site YAML to read instead; it must exist.

    Returns
    -------
    dict
        The parsed mapping; empty when there is no default file.
    """
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
    """A file name for a patient id: characters other than letters, digits, ``.-_`` -> ``_``.

    Parameters
    ----------
    patient_id : str
        DICOM PatientID.

    Returns
    -------
    str
        File stem, without leading/trailing ``.`` or ``_``; ``"patient"`` if empty.
    """
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", patient_id).strip("._")
    return stem or "patient"


def run(folder: str | Path, *, site: str, out: str | Path, spacing_mm: float | None = None,
        site_config: str | Path | None = None, mask_method: str = "nearest",
        progress: bool = True) -> dict[str, str]:
    """Import every patient under ``folder`` into ``out``, then write ``out/manifest.json``.

    Parameters
    ----------
    folder : path
        Folder tree of DICOM files.
    site : str
        One of ``atp.names.SITES``.
    out : path
        Folder of the case files (``<patient_id>.npz``) and the manifest.
    spacing_mm : float, optional
        Working grid spacing; default: the site config's ``spacing_mm``, else 3.
    site_config : path, optional
        Site YAML; default ``conf/site/<site>.yaml``.
    mask_method : {"nearest", "fraction"}
        How masks are resampled (`atp.io.dicom.resample_mask`).
    progress : bool
        Show progress bars.

    Returns
    -------
    dict
        Patient id -> ``"imported"`` or the reason it was skipped.
    """
    site_cfg = load_site_config(site, site_config)
    spacing = spacing_mm if spacing_mm is not None else float(site_cfg.get("spacing_mm", 3.0))
    out = Path(out)
    # a manifest vouches for a finished import: none while this one runs
    (out / MANIFEST).unlink(missing_ok=True)
    source = _source_files(folder, exclude=out)
    patients = scan_dicom_folder(folder, progress=progress)
    if not patients:
        log.warning("%s: no CT or RT DICOM file found", folder)
    outcome: dict[str, str] = {}
    files: dict[str, str] = {}
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
        files[p.patient_id] = path.name
    manifest = {**_expected(folder, site=site, spacing_mm=spacing, site_cfg=site_cfg,
                            mask_method=mask_method, files=source),
                "atp_version": atp.__version__, "site_config": str(site_config or ""),
                "outcome": outcome, "cases": files}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
    return outcome


def ensure_imported(folder: str | Path, *, site: str, out: str | Path,
                    spacing_mm: float | None = None, site_config: str | Path | None = None,
                    mask_method: str = "nearest", reimport: bool = False,
                    progress: bool = True) -> dict:
    """Import ``folder`` into ``out`` once; later calls reuse ``out`` while it matches.

    ``out`` is reused when its ``manifest.json`` records the same source folder, the same
    files (relative path, size, modification time), the same settings (site, spacing,
    mask method, site-config digest) and the same manifest format and case schema, and
    its case files are exactly the ones the manifest lists. Otherwise (another
    ``data.root``, changed files, other settings, case files without a manifest: an
    interrupted import) it is refused with an error naming ``manifest.json`` and the
    field, or, with ``reimport=True``, the old case files are removed and the folder is
    imported again.

    Parameters
    ----------
    folder, site, out, spacing_mm, site_config, mask_method, progress
        As for `run`.
    reimport : bool
        Import again instead of refusing a stale or interrupted import.

    Returns
    -------
    dict
        The manifest of the import in ``out``.

    Raises
    ------
    CaseError
        A stale or interrupted import in ``out`` (``reimport=False``), naming the field.
    """
    out = Path(out)
    site_cfg = load_site_config(site, site_config)
    spacing = spacing_mm if spacing_mm is not None else float(site_cfg.get("spacing_mm", 3.0))
    expected = _expected(folder, site=site, spacing_mm=spacing, site_cfg=site_cfg,
                         mask_method=mask_method, files=_source_files(folder, exclude=out))
    cases = sorted(p.name for p in out.glob("*.npz")) if out.is_dir() else []
    manifest_path = out / MANIFEST
    if manifest_path.is_file() or cases:
        try:
            return _check_manifest(manifest_path, expected, cases)
        except CaseError as exc:
            if not reimport:
                raise
            log.warning("%s: importing again", exc)
            manifest_path.unlink(missing_ok=True)
            for name in cases:
                (out / name).unlink()
    run(folder, site=site, out=out, spacing_mm=spacing, site_config=site_config,
        mask_method=mask_method, progress=progress)
    return json.loads(manifest_path.read_text())


def _source_files(folder: str | Path, *, exclude: str | Path) -> dict[str, list[int]]:
    """Relative path -> [size in bytes, modification time in ns] of every file under
    ``folder``, leaving out the import's own folder ``exclude`` when it lies inside."""
    root = Path(folder)
    if not root.is_dir():
        raise CaseError(str(root), "folder", "does not exist or is not a folder")
    skip = Path(exclude).resolve()
    out = {}
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        if p.resolve().is_relative_to(skip):
            continue
        st = p.stat()
        out[p.relative_to(root).as_posix()] = [int(st.st_size), int(st.st_mtime_ns)]
    return out


def _expected(folder: str | Path, *, site: str, spacing_mm: float, site_cfg: dict[str, Any],
              mask_method: str, files: dict[str, list[int]]) -> dict[str, Any]:
    """The manifest fields an import must match to be reused (see `ensure_imported`)."""
    relevant = {k: site_cfg.get(k) for k in IMPORT_SITE_KEYS}
    digest = hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode())
    return {"format": MANIFEST_FORMAT, "case_schema": SCHEMA_VERSION,
            "source_root": str(Path(folder).resolve()),
            "settings": {"site": site, "spacing_mm": float(spacing_mm),
                         "mask_method": mask_method,
                         "site_config_digest": digest.hexdigest()},
            "files": files}


def _check_manifest(path: Path, expected: dict[str, Any], cases: list[str]) -> dict:
    """The manifest at ``path`` if it matches ``expected`` and the case files; else a
    `CaseError` naming ``manifest.json`` and the field."""
    hint = "remove the folder, import into another one, or import again (reimport)"
    if not path.is_file():
        raise CaseError(str(path), "file", f"missing, but {len(cases)} case file(s) lie next "
                        "to it: an interrupted import (or one from an atp without import "
                        f"manifests); {hint}")
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CaseError(str(path), "file", f"unreadable ({exc}); {hint}") from None
    for key in ("format", "case_schema", "source_root"):
        if old.get(key) != expected[key]:
            raise CaseError(str(path), key, f"the import has {old.get(key, 'not recorded')!r}, "
                            f"this run asks for {expected[key]!r}; {hint}")
    for key, value in expected["settings"].items():
        before = (old.get("settings") or {}).get(key, "not recorded")
        if before != value:
            raise CaseError(str(path), f"settings.{key}", f"the import used {before!r}, "
                            f"this run asks for {value!r}; {hint}")
    then, now = old.get("files") or {}, expected["files"]
    for name in sorted(set(then) | set(now)):
        if then.get(name) != now.get(name):
            what = ("is new" if name not in then else "is gone" if name not in now
                    else "changed (size or modification time)")
            raise CaseError(str(path), "files", f"source file {name} {what} since the "
                            f"import from {expected['source_root']}; {hint}")
    listed = sorted((old.get("cases") or {}).values())
    if listed != cases:
        extra, missing = sorted(set(cases) - set(listed)), sorted(set(listed) - set(cases))
        raise CaseError(str(path), "cases", f"the case files do not match the manifest "
                        f"(not listed: {extra}, missing: {missing}); {hint}")
    return old


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: import a DICOM folder into atp case files; returns the exit code.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments; default ``sys.argv[1:]``.

    Returns
    -------
    int
        0 if every patient was imported, 1 if some were skipped, 2 if none.
    """
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
