"""A torch Dataset over cases (case files or OpenKBP folders), loaded lazily and cached."""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from atp.data.channels import ChannelLayout, CompactCase
from atp.io.loading import load_any_case


class CaseDataset(Dataset):
    """Samples ``image``, ``dose``, ``rois``, ``body`` (tensors) plus ``patient_id``,
    ``spacing_mm`` and ``mirrored`` for each case.

    Cases are read once and kept as `CompactCase` (``cache``); without a ``transform`` a
    sample is the whole case, with one (a patch sampler of `atp.data.augment`) only the
    patch's arrays are built. ``layout`` mirrors and downsamples as it says.
    """

    def __init__(self, sources: Sequence[str | os.PathLike], *, site: str,
                 layout: ChannelLayout, required: Sequence[str] = (), transform=None,
                 cache: bool = True):
        self.sources = [Path(s) for s in sources]
        self.site = site
        self.layout = layout
        self.required = tuple(required)
        self.transform = transform
        self._cache: dict[int, CompactCase] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.sources)

    def load(self, i: int) -> CompactCase:
        """The compact case ``i`` (cached)."""
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        case = load_any_case(self.sources[i], site=self.site)
        compact = self.layout.compact(case, required=self.required)
        if self._cache is not None:
            self._cache[i] = compact
        return compact

    def __getitem__(self, i: int) -> dict:
        cc = self.load(i)
        read = partial(self.layout.region, cc)
        if self.transform is None:
            sample = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in read().items()}
        else:
            sample = self.transform(cc.shape, read)
        sample.update(patient_id=cc.patient_id, mirrored=cc.mirrored,
                      spacing_mm=torch.tensor(cc.spacing_mm, dtype=torch.float64))
        return sample
