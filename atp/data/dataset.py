"""A torch Dataset over cases (case files or OpenKBP folders), loaded lazily and cached."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from atp.data.channels import case_arrays
from atp.io.loading import load_any_case

#: left/right organ pairs swapped when a case is mirrored to the canonical side
_SIDES = ("_l", "_r")


def mirror_permutation(organs: Sequence[str]) -> list[int]:
    """Channel order after a left-right flip: ``x_l`` and ``x_r`` swap places."""
    index = {n: i for i, n in enumerate(organs)}
    perm = []
    for name in organs:
        twin = None
        for a, b in (_SIDES, _SIDES[::-1]):
            if name.endswith(a):
                twin = name[: -len(a)] + b
        perm.append(index.get(twin, index[name]) if twin else index[name])
    return perm


class CaseDataset(Dataset):
    """Samples ``image``, ``dose``, ``rois``, ``body`` (tensors) plus ``patient_id``,
    ``spacing_mm`` and ``mirrored`` for each case; ``transform`` may crop/augment.

    ``mirror_to`` ("left"/"right"): a case treated on the other side (metadata
    ``laterality``) is flipped along x and its left/right organ channels swapped, so that
    the network always sees one canonical side; `unmirror` undoes it for a prediction.
    """

    def __init__(self, sources: Sequence[str | os.PathLike], *, site: str,
                 organs: Sequence[str], reference_rx_gy: float, include_ct: bool = True,
                 required: Sequence[str] = (), transform: Callable[[dict], dict] | None = None,
                 mirror_to: str | None = None, cache: bool = True):
        self.sources = [Path(s) for s in sources]
        self.site = site
        self.organs = list(organs)
        self.reference_rx_gy = float(reference_rx_gy)
        self.include_ct = include_ct
        self.required = tuple(required)
        self.transform = transform
        self.mirror_to = mirror_to
        self._cache: dict[int, dict] | None = {} if cache else None
        self._perm = mirror_permutation(self.organs)

    def __len__(self) -> int:
        return len(self.sources)

    def load(self, i: int) -> dict:
        """The untransformed arrays of case ``i`` (cached)."""
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        case = load_any_case(self.sources[i], site=self.site)
        arrays = case_arrays(case, organs=self.organs, reference_rx_gy=self.reference_rx_gy,
                             include_ct=self.include_ct, required=self.required)
        mirrored = bool(self.mirror_to and case.metadata.get("laterality") not in
                        (None, self.mirror_to))
        if mirrored:
            arrays = {k: np.flip(v, axis=-1) for k, v in arrays.items()}
            n = len(self.organs)
            for key in ("image", "rois"):
                arrays[key] = np.concatenate([arrays[key][self._perm], arrays[key][n:]])
        sample = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
        sample.update(patient_id=case.patient_id, mirrored=mirrored,
                      spacing_mm=torch.tensor(case.spacing_mm, dtype=torch.float64))
        if self._cache is not None:
            self._cache[i] = sample
        return sample

    def __getitem__(self, i: int) -> dict:
        sample = dict(self.load(i))
        for key in ("image", "dose", "rois", "body"):
            if key in sample:
                sample[key] = torch.from_numpy(np.array(sample[key]))
        if self.transform is not None:
            sample = self.transform(sample)
        return sample


def unmirror(array: np.ndarray, mirrored: bool) -> np.ndarray:
    """Undo the canonical-side flip along x for a prediction."""
    return np.flip(array, axis=-1).copy() if mirrored else array
