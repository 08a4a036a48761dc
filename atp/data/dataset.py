"""A torch Dataset over cases (case files or OpenKBP folders), loaded lazily and cached."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from atp.data.channels import ChannelLayout, json_key
from atp.data.compact import CompactCase
from atp.io.loading import load_any_case

log = logging.getLogger(__name__)


class CaseDataset(Dataset):
    """Samples ``image``, ``dose``, ``rois``, ``body`` (tensors) plus ``patient_id``,
    ``spacing_mm`` and ``mirrored`` for each case.

    Cases are read once and kept as `CompactCase` (``cache``); without a ``transform`` a
    sample is the whole case, with one (a patch sampler of `atp.data.augment`) only the
    patch's arrays are built. ``layout`` mirrors and downsamples as it says. With a
    ``cache_dir`` the compact cases are also kept on disk, keyed by the layout and the
    source files' sizes and modification times, so a later run skips reading them.
    """

    def __init__(self, sources: Sequence[str | os.PathLike], *, site: str,
                 layout: ChannelLayout, required: Sequence[str] = (), transform=None,
                 cache: bool = True, cache_dir: str | os.PathLike | None = None):
        self.sources = [Path(s) for s in sources]
        self.site = site
        self.layout = layout
        self.required = tuple(required)
        self.transform = transform
        self._cache: dict[int, CompactCase] | None = {} if cache else None
        self.cache_dir = Path(cache_dir) if cache_dir else None

    def __len__(self) -> int:
        return len(self.sources)

    def load(self, i: int) -> CompactCase:
        """The compact case ``i`` (cached)."""
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        disk = self._disk_path(i)
        if disk is not None and disk.is_file():
            compact = CompactCase.load(disk)
        else:
            case = load_any_case(self.sources[i], site=self.site)
            compact = self.layout.compact(case, required=self.required)
            if disk is not None:
                compact.save(disk)
        if self._cache is not None:
            self._cache[i] = compact
        return compact

    def _disk_path(self, i: int) -> Path | None:
        if self.cache_dir is None:
            return None
        src = self.sources[i].resolve()
        files = sorted(src.iterdir()) if src.is_dir() else [src]
        stamp = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]
        key = json_key({"layout": self.layout.to_dict(), "source": str(src), "files": stamp,
                        "required": list(self.required)})
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        return self.cache_dir / f"{src.stem if src.is_file() else src.name}_{digest}.npz"

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
