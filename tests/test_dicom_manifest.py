"""The DICOM import manifest: an import is reused only while its source and settings match;
a stale or interrupted import is refused (naming manifest.json and the field) or redone."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import yaml
from dicom_factory import write_phantom

from atp.cases import CaseError
from atp.io import import_dicom
from atp.io.import_dicom import MANIFEST, ensure_imported

SPACING_MM = 6.0  # coarse: these tests are about the bookkeeping, not the geometry


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("dicom_src")
    for pid in ("P1", "P2"):
        write_phantom(root / pid, patient_id=pid)
    return root


@pytest.fixture(scope="module")
def imported(source, tmp_path_factory):
    """A finished import of ``source`` (copied by the tests that change it)."""
    out = tmp_path_factory.mktemp("imported") / "cases"
    manifest = ensure_imported(source, site="npc", out=out, spacing_mm=SPACING_MM,
                               progress=False)
    return out, manifest


def _copy_import(imported, tmp_path):
    out = tmp_path / "cases"
    shutil.copytree(imported[0], out)
    return out


def _mtimes(folder):
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def test_import_writes_manifest_and_is_reused(source, imported, tmp_path):
    out, manifest = imported
    assert sorted(p.name for p in out.iterdir()) == ["P1.npz", "P2.npz", MANIFEST]
    assert manifest == json.loads((out / MANIFEST).read_text())
    assert manifest["source_root"] == str(source.resolve())
    assert manifest["settings"]["site"] == "npc"
    assert manifest["settings"]["spacing_mm"] == SPACING_MM
    assert manifest["outcome"] == {"P1": "imported", "P2": "imported"}
    assert manifest["cases"] == {"P1": "P1.npz", "P2": "P2.npz"}
    n_files = sum(1 for p in source.rglob("*") if p.is_file())
    assert len(manifest["files"]) == n_files and n_files > 2
    some = next(iter(manifest["files"]))
    assert manifest["files"][some][0] == (source / some).stat().st_size
    before = _mtimes(out)
    again = ensure_imported(source, site="npc", out=out, spacing_mm=SPACING_MM, progress=False)
    assert again == manifest and _mtimes(out) == before  # nothing rewritten


def test_other_root_is_refused(source, imported, tmp_path):
    other = tmp_path / "other_root"
    shutil.copytree(source, other)  # same files, sizes and mtimes: only the root differs
    with pytest.raises(CaseError, match=r"manifest\.json: field 'source_root'"):
        ensure_imported(other, site="npc", out=_copy_import(imported, tmp_path),
                        spacing_mm=SPACING_MM, progress=False)


def test_other_settings_are_refused(source, imported, tmp_path):
    out = _copy_import(imported, tmp_path)
    with pytest.raises(CaseError, match=r"manifest\.json: field 'settings\.spacing_mm'.*6\.0"):
        ensure_imported(source, site="npc", out=out, spacing_mm=4.0, progress=False)
    with pytest.raises(CaseError, match=r"field 'settings\.mask_method'"):
        ensure_imported(source, site="npc", out=out, spacing_mm=SPACING_MM,
                        mask_method="fraction", progress=False)
    cfg = import_dicom.load_site_config("npc")
    cfg["aliases"] = {**(cfg.get("aliases") or {}), "zHelper": "patch_helper"}
    path = tmp_path / "npc.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(CaseError, match=r"field 'settings\.site_config_digest'"):
        ensure_imported(source, site="npc", out=out, spacing_mm=SPACING_MM, site_config=path,
                        progress=False)
    # a site-config key the importer does not read (the goal list) changes nothing
    cfg = import_dicom.load_site_config("npc")
    cfg["goals"] = []
    path.write_text(yaml.safe_dump(cfg))
    ensure_imported(source, site="npc", out=out, spacing_mm=SPACING_MM, site_config=path,
                    progress=False)


def test_changed_new_or_removed_source_files_are_refused(source, imported, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(source, src)
    out = tmp_path / "cases"
    ensure_imported(src, site="npc", out=out, spacing_mm=SPACING_MM, progress=False)
    one = sorted((src / "P1").iterdir())[0]
    st = one.stat()
    os.utime(one, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # re-exported a second later
    with pytest.raises(CaseError, match=rf"field 'files'.*P1/{one.name} changed"):
        ensure_imported(src, site="npc", out=out, spacing_mm=SPACING_MM, progress=False)
    os.utime(one, ns=(st.st_atime_ns, st.st_mtime_ns))
    write_phantom(src / "P3", patient_id="P3")
    with pytest.raises(CaseError, match=r"field 'files'.*P3/.* is new"):
        ensure_imported(src, site="npc", out=out, spacing_mm=SPACING_MM, progress=False)
    shutil.rmtree(src / "P3")
    one.unlink()
    with pytest.raises(CaseError, match=rf"field 'files'.*P1/{one.name} is gone"):
        ensure_imported(src, site="npc", out=out, spacing_mm=SPACING_MM, progress=False)


def test_stale_import_is_redone_with_reimport(source, imported, tmp_path):
    out = _copy_import(imported, tmp_path)
    (out / "STALE.npz").write_bytes((out / "P1.npz").read_bytes())  # not from this import
    with pytest.raises(CaseError, match=r"field 'cases'.*STALE\.npz"):
        ensure_imported(source, site="npc", out=out, spacing_mm=SPACING_MM, progress=False)
    manifest = ensure_imported(source, site="npc", out=out, spacing_mm=4.0, reimport=True,
                               progress=False)
    assert manifest["settings"]["spacing_mm"] == 4.0
    assert sorted(p.name for p in out.iterdir()) == ["P1.npz", "P2.npz", MANIFEST]
    ensure_imported(source, site="npc", out=out, spacing_mm=4.0, progress=False)  # reused


def test_interrupted_import_is_detected(source, imported, tmp_path, monkeypatch):
    out = _copy_import(imported, tmp_path)  # a finished import, then a new one breaks off
    real_save = import_dicom.save_case
    calls = []

    def save_then_stop(case, path):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the user stops the import after the first patient
        return real_save(case, path)

    monkeypatch.setattr(import_dicom, "save_case", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        import_dicom.run(source, site="npc", out=out, spacing_mm=SPACING_MM, progress=False)
    monkeypatch.undo()
    assert not (out / MANIFEST).exists()  # the old manifest no longer vouches for the folder
    with pytest.raises(CaseError, match=r"manifest\.json: field 'file'.*interrupted import"):
        ensure_imported(source, site="npc", out=out, spacing_mm=SPACING_MM, progress=False)
    manifest = ensure_imported(source, site="npc", out=out, spacing_mm=SPACING_MM,
                               reimport=True, progress=False)
    assert manifest["outcome"] == {"P1": "imported", "P2": "imported"}


def test_cases_folder_inside_the_source_is_not_a_source_file(tmp_path):
    root = tmp_path / "dicom"
    write_phantom(root / "P1", patient_id="P1")
    out = root / "atp_cases"  # the data module's default cases_dir
    first = ensure_imported(root, site="npc", out=out, spacing_mm=SPACING_MM, progress=False)
    assert not any(name.startswith("atp_cases/") for name in first["files"])
    assert ensure_imported(root, site="npc", out=out, spacing_mm=SPACING_MM,
                           progress=False) == first
