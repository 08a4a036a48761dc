"""Saving and reloading influence matrices, keyed by case, beams and engine settings.

Files are ``.npz`` archives (no pickle) written atomically: to a temporary file in the
same folder, then ``os.replace`` (`atp.io.atomic.atomic_open`). The key is the SHA-256 of
the case id, its grid, digests of its CT, body and the row/target masks, the beams and the
engine's `cache_token` (name, version, settings, digests of its data tables).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from atp.cases.case import PatientCase
from atp.cases.grid import Grid
from atp.dose.beams import Beam
from atp.dose.influence import DoseEngine, DoseInfluence
from atp.io.atomic import atomic_open

CACHE_FORMAT = 1


def _digest(a: np.ndarray | None) -> str | None:
    if a is None:
        return None
    a = np.ascontiguousarray(a)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.view(np.uint8).ravel() if a.size else b"")
    return h.hexdigest()


def influence_cache_key(case: PatientCase, beams: Sequence[Beam], engine: DoseEngine, *,
                        mask: np.ndarray | None = None,
                        target_mask: np.ndarray | None = None) -> str:
    """Hex SHA-256 identifying the influence matrix of ``engine`` for ``case`` and ``beams``.

    Parameters
    ----------
    case : PatientCase
        The case: its id, grid, CT, body and target masks enter the key.
    beams : sequence of Beam
        The beams, in order.
    engine : DoseEngine
        The engine; its `cache_token` enters the key.
    mask : np.ndarray, optional
        Rows: boolean mask on the CT grid, (z, y, x); ``None`` for the engine's default
        (the body).
    target_mask : np.ndarray, optional
        Boolean mask on the CT grid that sets the beamlets; default the case's targets.

    Returns
    -------
    str
        64 hexadecimal characters.
    """
    ingredients = {
        "format": CACHE_FORMAT,
        "case_id": case.patient_id,
        "grid": case.grid.to_dict(),
        "ct": _digest(np.asarray(case.ct_hu)),
        "body": _digest(case.body_mask),
        "mask": _digest(mask),
        "targets": _digest(case.target_union() if target_mask is None else target_mask),
        "beams": [b.to_dict() for b in beams],
        "engine": engine.cache_token(),
    }
    text = json.dumps(ingredients, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def save_influence(influence: DoseInfluence, path: str | Path, *, key: str = "") -> Path:
    """Write ``influence`` to ``path`` (``.npz``) atomically; return the path.

    Parameters
    ----------
    influence : DoseInfluence
        The matrix and its maps.
    path : str or Path
        Destination file (``.npz`` format; no suffix is added); folders are created.
    key : str
        Cache key stored with the data (see `influence_cache_key`); default empty.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    m = influence.matrix.tocsc()
    meta = {"format": CACHE_FORMAT, "key": key, "grid": influence.grid.to_dict(),
            "beams": [b.to_dict() for b in influence.beams], "bixel_mm": influence.bixel_mm,
            "engine": influence.engine, "case_id": influence.case_id, "shape": list(m.shape)}
    with atomic_open(path, mode="wb") as fh:
        np.savez(fh, data=m.data, indices=m.indices, indptr=m.indptr,
                 voxel_index=influence.voxel_index, beamlet_beam=influence.beamlet_beam,
                 beamlet_uv_mm=influence.beamlet_uv_mm,
                 meta=np.array(json.dumps(meta, default=str)))
    return path


def load_influence(path: str | Path, *, key: str | None = None) -> DoseInfluence:
    """Read a file written by `save_influence`; with ``key``, check that it matches.

    Parameters
    ----------
    path : str or Path
        A file written by `save_influence`.
    key : str, optional
        Expected cache key; ``None`` skips the check.

    Returns
    -------
    DoseInfluence
        The stored matrix. An unreadable file, another cache format or a different key
        raises ValueError naming the file.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            arrays = {k: z[k] for k in ("data", "indices", "indptr", "voxel_index",
                                        "beamlet_beam", "beamlet_uv_mm")}
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable influence cache ({exc})") from None
    if meta.get("format") != CACHE_FORMAT:
        raise ValueError(f"{path}: cache format {meta.get('format')} != {CACHE_FORMAT}")
    if key is not None and meta.get("key") != key:
        raise ValueError(f"{path}: cache key mismatch")
    matrix = sp.csc_matrix((arrays["data"], arrays["indices"], arrays["indptr"]),
                           shape=tuple(meta["shape"]), copy=False)
    return DoseInfluence(
        matrix=matrix, voxel_index=arrays["voxel_index"],
        grid=Grid.from_dict(meta["grid"]),
        beamlet_beam=arrays["beamlet_beam"], beamlet_uv_mm=arrays["beamlet_uv_mm"],
        beams=tuple(Beam.from_dict(b) for b in meta["beams"]), bixel_mm=float(meta["bixel_mm"]),
        engine=meta["engine"], case_id=meta["case_id"])


def cached_influence(engine: DoseEngine, case: PatientCase, beams: Sequence[Beam], *,
                     cache_dir: str | Path, mask: np.ndarray | None = None,
                     target_mask: np.ndarray | None = None) -> DoseInfluence:
    """Load the influence matrix from ``cache_dir`` if present, else compute and save it.

    Parameters
    ----------
    engine : DoseEngine
        The engine that computes the matrix on a cache miss.
    case : PatientCase
        The case.
    beams : sequence of Beam
        The beams, in order.
    cache_dir : str or Path
        Folder of the files ``influence_<patient id>_<key prefix>.npz``.
    mask : np.ndarray, optional
        Rows: boolean mask on the CT grid, (z, y, x); ``None`` for the engine's default
        (the body).
    target_mask : np.ndarray, optional
        Boolean mask on the CT grid that sets the beamlets; default the case's targets.

    Returns
    -------
    DoseInfluence
        The cached matrix, or a computed one (an unreadable or stale file is overwritten).
    """
    key = influence_cache_key(case, beams, engine, mask=mask, target_mask=target_mask)
    path = Path(cache_dir) / f"influence_{case.patient_id}_{key[:24]}.npz"
    if path.is_file():
        try:
            return load_influence(path, key=key)
        except ValueError:
            pass  # unreadable or stale: recompute and overwrite
    infl = engine.influence(case, beams, mask=mask, target_mask=target_mask)
    save_influence(infl, path, key=key)
    return infl
