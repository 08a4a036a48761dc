"""`CompactCase`: a case as the training pipeline keeps it, in memory and on disk."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from atp.io.atomic import atomic_open

_ARRAYS = ("organs", "rx_index", "rx_levels", "body", "ct_hu", "dose", "prior")


@dataclass(frozen=True, eq=False)
class CompactCase:
    """One case on a `ChannelLayout`'s grid (about 30 MB for an OpenKBP case at 128^3).

    ``organs`` (O, z, y, x) bool in the layout's order; ``rx_index`` (z, y, x) uint8: 0
    outside the targets, k where the highest prescription is ``rx_levels[k - 1]``
    (ascending, divided by the reference prescription); ``body`` bool; ``ct_hu`` int16
    clipped to the layout's CT range (None without a CT channel); ``dose`` float32 divided
    by the reference prescription (None without a dose); ``prior`` float32, the layout's
    distance prior divided by the reference prescription (None without one). Arrays are
    already mirrored and downsampled; ``case_shape`` is the original grid.
    """

    patient_id: str
    spacing_mm: tuple[float, float, float]
    organs: np.ndarray
    rx_index: np.ndarray
    rx_levels: np.ndarray
    body: np.ndarray
    ct_hu: np.ndarray | None
    dose: np.ndarray | None
    case_shape: tuple[int, int, int]
    mirrored: bool = False
    prior: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.body.shape)  # type: ignore[return-value]

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (getattr(self, k) for k in _ARRAYS) if a is not None)

    def save(self, path: str | os.PathLike) -> Path:
        """Write to an ``.npz`` file, atomically."""
        path = Path(path)
        meta = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in _ARRAYS}
        arrays = {k: getattr(self, k) for k in _ARRAYS if getattr(self, k) is not None}
        with atomic_open(path) as fh:
            np.savez(fh, meta=np.array(json.dumps(meta)), **arrays)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> CompactCase:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            arrays = {k: (z[k] if k in z.files else None) for k in _ARRAYS}
        meta["spacing_mm"] = tuple(meta["spacing_mm"])
        meta["case_shape"] = tuple(meta["case_shape"])
        return cls(**meta, **arrays)
