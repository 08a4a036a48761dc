"""Lightning data module: the cases of one site, from the synthetic cohort, OpenKBP or a folder.

Cases are read through `CaseDataset` with the module's `ChannelLayout` (the network's
input channels; it also mirrors left-sided breast cases to the right). Training draws
patches with the configured sampler (`atp.data.augment`); every DataLoader worker gets its
own random stream (`seed_worker`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, RandomSampler

from atp.cases import CaseError
from atp.data.augment import build_augmentation
from atp.data.channels import ChannelLayout
from atp.data.dataset import CaseDataset

log = logging.getLogger(__name__)
SOURCES = ("synthetic", "openkbp", "folder", "dicom")


class DoseDataModule(pl.LightningDataModule):
    """Train/val/test cases of one site.

    Parameters
    ----------
    site : mapping
        The site config (``name``, ``organs``, ``reference_rx_gy``, ...).
    layout : mapping, optional
        The `ChannelLayout` fields (``organs``, ``reference_rx_gy``, ``include_ct``,
        ``mirror_to``, ``downsample``); default: the site's organs with the CT.
    source : {"synthetic", "openkbp", "folder", "dicom"}
    root : path
        The cohort folder (with ``manifest.json``), the OpenKBP folder (``train-pats``,
        ``validation-pats``), a folder of case files, or a folder of DICOM files.
    cases_dir : path, optional
        For ``dicom``: where the imported case files go (imported once, by
        `prepare_data`, at ``spacing_mm``); the data module then reads them as a folder.
    cohort : mapping, optional
        ``{n, seed, spacing_mm, engine, planner, machine, sequencer}``: `prepare_data`
        builds a missing synthetic cohort with them (``engine``: a `DoseEngine`,
        ``planner``: the `PlanSettings` of the reference plans, ``machine`` and
        ``sequencer``: where they are sequenced (optional), all from their config groups;
        ``institution`` gives the beams and prescriptions).
    cache_dir : path, optional
        Where the compact cases are kept on disk between runs (`CaseDataset`).
    prior_cases : int
        A layout with ``prior: distance`` has its curve fitted on the first this many
        training cases by `setup` (the model then gets the fitted layout).
    """

    def __init__(self, *, site: Mapping, source: str, root: str,
                 layout: Mapping | None = None,
                 patch_size: Sequence[int] = (64, 64, 64), batch_size: int = 2,
                 iterations_per_epoch: int = 500, num_workers: int = 0,
                 augmentation=None,
                 required_rois: Sequence[str] = (), val_fraction: float = 0.2,
                 cohort: Mapping | None = None, institution: Mapping | None = None,
                 seed: int = 2020, max_cases: int | None = None,
                 cases_dir: str | None = None, spacing_mm: float = 3.0,
                 cache_dir: str | None = None, prior_cases: int = 24):
        super().__init__()
        if source not in SOURCES:
            raise ValueError(f"data.source '{source}' is not one of {SOURCES}")
        self.site = dict(site)
        self.source = source
        self.root = Path(root)
        self.layout = ChannelLayout.from_dict(layout) if layout is not None else \
            ChannelLayout.for_site(site)
        self.patch_size = tuple(int(p) for p in patch_size)
        self.batch_size = batch_size
        self.iterations_per_epoch = iterations_per_epoch
        self.num_workers = num_workers
        self.augmentation = augmentation
        self.required_rois = tuple(required_rois)
        self.val_fraction = val_fraction
        self.cohort = dict(cohort) if cohort else None
        self.institution = dict(institution) if institution else None
        self.seed = seed
        self.max_cases = max_cases
        self.splits: dict[str, list[Path]] = {}
        self.cases_dir = Path(cases_dir) if cases_dir else self.root / "atp_cases"
        self.spacing_mm = float(spacing_mm)
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.prior_cases = int(prior_cases)

    # ------------------------------------------------------------------ splits
    def prepare_data(self) -> None:
        if self.source == "dicom":
            from atp.io.import_dicom import ensure_imported

            manifest = ensure_imported(self.root, site=self.site["name"], out=self.cases_dir,
                                       spacing_mm=self.spacing_mm)
            log.info("DICOM import from %s: %s", self.root, manifest["outcome"])
        if self.source == "synthetic" and not (self.root / "manifest.json").is_file():
            if self.cohort is None:
                raise CaseError(str(self.root), "manifest.json",
                                "no synthetic cohort: run python cohort.py site=... first")
            from atp.synth.cohort import build_cohort

            missing = [k for k in ("n", "seed", "spacing_mm", "engine", "planner")
                       if self.cohort.get(k) is None]
            if missing:
                raise CaseError(str(self.root), "data.cohort", f"cannot build the missing "
                                f"synthetic cohort: no {missing} (set them in conf/data)")
            log.info("no synthetic cohort at %s: building %s patients", self.root,
                     self.cohort["n"])
            build_cohort(self.root, site_cfg=self.site, institution=self.institution,
                         n=int(self.cohort["n"]), seed=int(self.cohort["seed"]),
                         spacing_mm=float(self.cohort["spacing_mm"]),
                         engine=self.cohort["engine"], settings=self.cohort["planner"],
                         machine=self.cohort.get("machine"),  # deliverable reference plans
                         sequencer=self.cohort.get("sequencer"))

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        if self.source == "synthetic":
            from atp.synth.cohort import read_manifest

            manifest = read_manifest(self.root)
            for split in ("train", "val", "test"):
                self.splits[split] = [self.root / p["file"] for p in manifest["patients"]
                                      if p["split"] == split]
        elif self.source == "openkbp":
            from atp.io.openkbp import patient_folders

            folders = complete_folders(patient_folders(self.root))
            self.splits["train"] = [f for f in folders if f.parent.name == "train-pats"]
            self.splits["val"] = [f for f in folders if f.parent.name == "validation-pats"]
            self.splits["test"] = [f for f in folders if f.parent.name == "test-pats"] or \
                self.splits["val"]
        else:
            folder = self.cases_dir if self.source == "dicom" else self.root
            files = sorted(folder.glob("*.npz"))
            # validation (and test): the files first in hash order, at least one of two
            ranked = sorted(files, key=lambda f: _hash01(f.stem))
            n_val = max(1, round(self.val_fraction * len(files))) if len(files) >= 2 else 0
            val = ranked[:n_val]
            self.splits["train"] = [f for f in files if f not in val]
            self.splits["val"] = self.splits["test"] = val
        if self.max_cases:
            self.splits = {k: v[: self.max_cases] for k, v in self.splits.items()}
        if not self.splits["train"] or not self.splits["val"]:
            raise CaseError(str(self.root), "splits", f"need training and validation cases, "
                            f"got {({k: len(v) for k, v in self.splits.items()})}")
        log.info("%s data from %s: %s", self.site["name"], self.root,
                 {k: len(v) for k, v in self.splits.items()})
        if self.layout.prior == "distance":
            self.fit_prior()

    def fit_prior(self) -> None:
        """Fit the layout's distance prior on the first `prior_cases` training cases."""
        import time

        from atp.io.loading import load_any_case

        t0 = time.perf_counter()
        files = self.splits["train"][: self.prior_cases]
        self.layout = self.layout.fit_prior(load_any_case(f, site=self.site["name"])
                                            for f in files)
        log.info("distance prior fitted on %d training cases in %.0f s", len(files),
                 time.perf_counter() - t0)

    def dataset(self, split: str, *, transform=None) -> CaseDataset:
        return CaseDataset(self.splits[split], site=self.site["name"], layout=self.layout,
                           required=self.required_rois, transform=transform,
                           cache_dir=self.cache_dir)

    # ------------------------------------------------------------------ loaders
    def train_dataloader(self) -> DataLoader:
        sampler = self.augmentation or build_augmentation("none", patch_size=self.patch_size,
                                                          seed=self.seed)
        ds = self.dataset("train", transform=sampler)
        n = self.iterations_per_epoch * self.batch_size
        gen = torch.Generator().manual_seed(self.seed)
        return DataLoader(ds, batch_size=self.batch_size, num_workers=self.num_workers,
                          sampler=RandomSampler(ds, replacement=True, num_samples=n,
                                                generator=gen),
                          persistent_workers=self.num_workers > 0, collate_fn=collate,
                          worker_init_fn=seed_worker)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset("val"), batch_size=1, num_workers=self.num_workers,
                          collate_fn=collate, worker_init_fn=seed_worker)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset("test"), batch_size=1, num_workers=self.num_workers,
                          collate_fn=collate, worker_init_fn=seed_worker)

    def mean_training_dose(self) -> float:
        """Mean normalized dose inside the body over the training cases (a baseline)."""
        ds = self.dataset("train")
        total, count = 0.0, 0
        for i in range(len(ds)):
            cc = ds.load(i)
            total += float(cc.dose[cc.body].sum(dtype=np.float64))
            count += int(cc.body.sum())
        return total / max(count, 1)


def datamodule_for_site(*, site: Mapping, **kwargs) -> DoseDataModule:
    """The data module of a site (one class: the site's differences are in its layout)."""
    return DoseDataModule(site=site, **kwargs)


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: the patch sampler of each worker draws from its own
    stream, seeded with the worker's seed (torch's generator, which TorchIO uses, is
    already seeded per worker by the DataLoader)."""
    info = torch.utils.data.get_worker_info()
    seed = int(info.seed) if info is not None else int(torch.initial_seed())
    transform = getattr(getattr(info, "dataset", None), "transform", None)
    if hasattr(transform, "reseed"):
        transform.reseed(seed)


def complete_folders(folders: Sequence[Path]) -> list[Path]:
    """OpenKBP patient folders with every file training needs; the others are skipped with
    a warning naming what is missing."""
    from atp.io.openkbp import REQUIRED_FILES

    keep = []
    for folder in folders:
        missing = [n for n in (*REQUIRED_FILES, "dose.csv") if not (folder / n).is_file()]
        if missing:
            log.warning("skipping OpenKBP patient %s: missing %s", folder, ", ".join(missing))
        else:
            keep.append(folder)
    return keep


def collate(samples: list[dict]) -> dict:
    """Stack tensors; keep strings and flags as lists."""
    out = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        out[key] = torch.stack(values) if torch.is_tensor(values[0]) else values
    return out


def _hash01(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 2**32
