"""Training input pipeline on OpenKBP: seconds per training step and memory per cached case.

Usage::

    python -m atp.bench.data_pipeline [--openkbp-dir DIR] [--patch 64] [--steps 8]
                                      [--threads 2] [--override KEY=VALUE ...]
                                      [--no-legacy] [--stats N]

Composes ``train.py site=npc data=openkbp experiment=cpu_quick patch_size=[P,P,P]`` (plus
the overrides), builds the data module and the model as ``train.py`` does, fills the
training cases' cache, then prints, for this pipeline and for the reference, the pipeline
before issue 18 (`LegacyDataset`: npc's 15 organ channels, the whole case cached as
float32 channels, MONAI ``RandAffined`` on the whole volume, then a random crop):

- the memory of one cached case (MB, the arrays the dataset keeps per case);
- seconds per batch of the training DataLoader alone (cached cases, so augmentation and
  channel building only);
- seconds per training step of a Lightning ``fit`` (data + forward + backward + Adam step;
  median over ``--steps`` steps after two warm-up steps), and the ratio reference / now.

``--stats N`` compares the geometry of N augmented patches of each pipeline, measured on
the output (a case whose image holds its own voxel coordinates; the affine map from output
voxels to input coordinates is fitted by least squares): the total rotation angle, the
rotation about each axis, the scale factors (singular values) and their anisotropy
(largest / smallest), with a two-sample Kolmogorov-Smirnov p value.

Sets ``OMP_WAIT_POLICY=PASSIVE`` (unless set), as `atp.bench.openkbp_training` does: on a
shared machine busy-waiting OpenMP threads slow the network's part of every step, for both
pipelines alike, and hide the data pipeline's share.

A command, not a test: about five minutes on two idle cores.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

DEFAULT_OPENKBP_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / \
    "openkbp-sample"


def deep_nbytes(obj, _seen: set | None = None) -> int:
    """Bytes held by the arrays and tensors in ``obj`` (dicts, lists, dataclasses, ...)."""
    import dataclasses

    import torch

    seen = set() if _seen is None else _seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if torch.is_tensor(obj):
        return int(obj.element_size() * obj.nelement())
    if isinstance(obj, dict):
        return sum(deep_nbytes(v, seen) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(deep_nbytes(v, seen) for v in obj)
    if dataclasses.is_dataclass(obj):
        return sum(deep_nbytes(getattr(obj, f.name), seen) for f in dataclasses.fields(obj))
    return 0


def compose(openkbp_dir: Path, patch: int, overrides: list[str], log_dir: Path):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import open_dict

    from atp.config import CONF_DIR, register_resolvers

    register_resolvers()
    base = ["site=npc", "data=openkbp", "experiment=cpu_quick", "logger=none",
            f"patch_size=[{patch},{patch},{patch}]", f"paths.openkbp_dir={openkbp_dir}",
            f"paths.log_dir={log_dir}"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name="train", overrides=base + overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(log_dir / "run")
    return cfg


class _StepTimer:
    """Wall time between consecutive training-batch ends (data + step)."""

    def __init__(self):
        self.times: list[float] = []
        self._last: float | None = None

    def callback(self):
        import pytorch_lightning as pl

        timer = self

        class Cb(pl.Callback):
            def on_train_batch_start(self, trainer, module, batch, batch_idx):
                if timer._last is None:
                    timer._last = time.perf_counter()

            def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
                now = time.perf_counter()
                timer.times.append(now - timer._last)
                timer._last = now

        return Cb()


class LegacyDataset:
    """The training input before issue 18 (atp 7ee6919), rebuilt as the reference.

    Every channel of the whole case as float32 (organ masks included), cached; each sample
    warps the whole volume with MONAI ``RandAffined`` (independent scale per axis), then
    pads and randomly crops the patch.
    """

    def __init__(self, sources, *, organs, reference_rx_gy: float, patch, seed: int,
                 rotate_deg: float = 10.0, scale: float = 0.1, translate: float = 0.5):
        import math

        from monai.transforms import Compose, RandAffined, RandSpatialCropd, SpatialPadd

        self.sources, self.organs, self.rx = list(sources), list(organs), reference_rx_gy
        keys = ("image", "dose", "rois", "body")
        rad = math.radians(rotate_deg)
        self.t = Compose([
            RandAffined(keys=keys, mode=("bilinear", "bilinear", "nearest", "nearest"),
                        prob=1.0, rotate_range=(rad, rad, rad),
                        scale_range=(scale, scale, scale),
                        translate_range=(0.0, translate * patch[1], translate * patch[2]),
                        padding_mode="zeros", allow_missing_keys=True),
            SpatialPadd(keys=keys, spatial_size=patch, allow_missing_keys=True),
            RandSpatialCropd(keys=keys, roi_size=patch, random_size=False,
                             allow_missing_keys=True)])
        self.t.set_random_state(seed=seed)
        self._cache: dict[int, dict] = {}

    def __len__(self) -> int:
        return len(self.sources)

    def load(self, i: int) -> dict:
        from atp.io.loading import load_any_case

        if i not in self._cache:
            case = load_any_case(self.sources[i], site="npc")
            organs = np.zeros((len(self.organs),) + case.shape, dtype=bool)
            for k, name in enumerate(self.organs):
                if name in case.rois:
                    organs[k] = case.rois[name].mask
            rx = case.prescribed_dose_map_gy() / np.float32(self.rx)
            ct = np.clip(case.ct_hu, -1000.0, 2000.0) / np.float32(1000.0)
            self._cache[i] = {
                "image": np.concatenate([organs.astype(np.float32), rx[None], ct[None]]),
                "rois": np.concatenate([organs, case.target_union()[None]]),
                "body": case.body_mask[None].copy(),
                "dose": (case.dose_gy / np.float32(self.rx))[None].astype(np.float32)}
        return self._cache[i]

    def __getitem__(self, i: int) -> dict:
        import torch

        sample = {k: torch.from_numpy(np.array(v)) for k, v in self.load(i).items()}
        out = self.t(sample)
        out = {k: v.as_tensor() if hasattr(v, "as_tensor") else torch.as_tensor(v)
               for k, v in out.items()}
        for key in ("rois", "body"):
            out[key] = out[key] > 0.5
        return out


def measure(cfg, *, steps: int, legacy: bool = False) -> dict:
    """Memory per cached case, DataLoader seconds per batch and training seconds per step."""
    import pytorch_lightning as pl
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    from torch.utils.data import DataLoader, RandomSampler

    from atp.data.datamodule import collate

    site = OmegaConf.to_container(cfg.site, resolve=True)
    data = instantiate(cfg.data, site=site, _convert_="all")
    data.setup("fit")
    loader = data.train_dataloader()
    model_cfg = cfg.model
    if legacy:
        organs = site["organs"]
        ds = LegacyDataset(data.splits["train"], organs=organs,
                           reference_rx_gy=site["reference_rx_gy"],
                           patch=tuple(cfg.patch_size), seed=cfg.seed)
        loader = DataLoader(ds, batch_size=cfg.data.batch_size, collate_fn=collate,
                            sampler=RandomSampler(ds, replacement=True,
                                                  num_samples=loader.sampler.num_samples,
                                                  generator=torch.Generator().manual_seed(0)))
        model_cfg = OmegaConf.merge(cfg, {"net": {"in_channels": len(organs) + 2}}).model
    ds = loader.dataset
    t0 = time.perf_counter()
    cached = [ds.load(i) for i in range(len(ds))]
    load_s = (time.perf_counter() - t0) / len(ds)
    mb = [deep_nbytes(c) / 2**20 for c in cached]
    it = iter(loader)
    next(it)
    t0 = time.perf_counter()
    for _ in range(steps):
        next(it)
    data_s = (time.perf_counter() - t0) / steps
    model = instantiate(model_cfg, baseline_dose=0.0)
    timer = _StepTimer()
    trainer = pl.Trainer(max_steps=steps + 2, accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         limit_val_batches=0, num_sanity_val_steps=0,
                         callbacks=[timer.callback()], enable_model_summary=False)
    trainer.fit(model, train_dataloaders=loader)
    step_times = timer.times[2:]
    return {"n_cases": len(ds), "case_mb": float(np.mean(mb)), "case_mb_max": float(max(mb)),
            "load_s": load_s, "data_s": data_s, "step_s": statistics.median(step_times),
            "step_min_s": min(step_times)}


def fitted_geometry(sampled: np.ndarray, n: int) -> dict:
    """Rotation and scale of the affine map behind one augmented coordinate patch.

    ``sampled`` (3, *patch) holds, per output voxel, the input coordinate + 1 it was read
    from (values outside [1, n] or off the fitted plane, such as zero padding, are left
    out of the fit).
    """
    from atp.data.augment import rotation_matrix

    patch = sampled.shape[1:]
    u = np.stack(np.meshgrid(*[np.arange(k) for k in patch], indexing="ij")).reshape(3, -1)
    x = sampled.reshape(3, -1).astype(np.float64)
    keep = np.all((x >= 1.0) & (x <= n), axis=0)
    for _ in range(2):  # refit without the voxels mixed with the zero padding
        design = np.vstack([u[:, keep], np.ones(keep.sum())]).T
        coef = np.linalg.lstsq(design, x[:, keep].T, rcond=None)[0]
        resid = np.abs(np.vstack([u, np.ones(u.shape[1])]).T @ coef - x.T).max(axis=1)
        keep = keep & (resid < 0.25)
    a = coef[:3].T
    uu, s, vt = np.linalg.svd(a)
    r = uu @ vt
    total = np.degrees(np.arccos(np.clip((np.trace(r) - 1) / 2, -1.0, 1.0)))
    # angles about axes 0, 1, 2 with r = R0(a) R1(b) R2(c) (atp.data.augment.rotation_matrix)
    b = np.arcsin(np.clip(r[0, 2], -1.0, 1.0))
    a0 = np.arctan2(-r[1, 2], r[2, 2])
    c = np.arctan2(-r[0, 1], r[0, 0])
    assert np.allclose(rotation_matrix((a0, b, c)), r, atol=1e-3)
    return {"total_deg": float(total), "axes_deg": np.degrees([a0, b, c]),
            "scales": s, "anisotropy": float(s.max() / s.min())}


def augmentation_stats(n_samples: int, *, seed: int = 2020, n: int = 64,
                       patch: int = 32) -> None:
    """Print the geometry of ``n_samples`` patches of the legacy and the current sampler."""
    import math

    import torch
    from monai.transforms import RandAffined
    from scipy.stats import ks_2samp

    from atp.data.augment import build_augmentation

    # before: the central patch of a warped volume, well inside it (no zero padding)
    ramps = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) + 1.0] * 3, indexing="ij"))
    legacy = RandAffined(keys=("image",), prob=1.0, rotate_range=(math.radians(10.0),) * 3,
                         scale_range=(0.1, 0.1, 0.1), padding_mode="zeros")
    legacy.set_random_state(seed=seed)
    start = (n - patch) // 2
    cut = (slice(None),) + (slice(start, start + patch),) * 3

    def reader(lo, hi):  # the coordinates continue outside the volume: an exact fit
        grid = np.stack(np.meshgrid(*[np.arange(a, b, dtype=np.float32) + 1.0
                                      for a, b in zip(lo, hi, strict=True)], indexing="ij"))
        ones = np.ones((1, *grid.shape[1:]), bool)
        return {"image": grid, "rois": ones, "body": ones, "dose": np.zeros(ones.shape, np.float32)}

    current = build_augmentation("affine", patch_size=(patch,) * 3, translate_fraction=0.0,
                                 seed=seed)
    old, new = [], []
    for _ in range(n_samples):
        warped = legacy({"image": torch.from_numpy(ramps)})["image"]
        old.append(fitted_geometry(np.asarray(warped)[cut], n))
        new.append(fitted_geometry(current((n, n, n), reader)["image"].numpy(), n))

    def row(name, a, b):
        a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
        p = ks_2samp(a, b).pvalue
        print(f"  {name:<24} before [{a.min():7.3f}, {a.max():7.3f}] {a.mean():7.3f} +- "
              f"{a.std():6.3f} | now [{b.min():7.3f}, {b.max():7.3f}] {b.mean():7.3f} +- "
              f"{b.std():6.3f} | KS p {p:.3f}")

    print(f"augmentation geometry, {n_samples} patches each, fitted on the output "
          f"(before: MONAI RandAffined on the whole volume; now: atp.data.augment affine):")
    row("total rotation (deg)", [g["total_deg"] for g in old], [g["total_deg"] for g in new])
    for k, axis in enumerate("zyx"):
        row(f"rotation about {axis} (deg)", [g["axes_deg"][k] for g in old],
            [g["axes_deg"][k] for g in new])
    # before: three independent factors per patch (pooled); now: one factor per patch
    row("scale factor", [g["scales"] for g in old], [g["scales"].mean() for g in new])
    row("anisotropy (max/min)", [g["anisotropy"] for g in old],
        [g["anisotropy"] for g in new])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--openkbp-dir", type=Path, default=DEFAULT_OPENKBP_DIR)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=8,
                        help="timed training steps (0: the --stats comparison only)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--override", action="append", default=[],
                        help="extra train.py override (repeatable)")
    parser.add_argument("--no-legacy", action="store_true",
                        help="skip the reference (the pipeline before issue 18)")
    parser.add_argument("--stats", type=int, default=0, metavar="N",
                        help="compare the augmentation geometry of N patches per pipeline")
    args = parser.parse_args(argv)

    import tempfile

    import torch

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads; load average before "
          f"{os.getloadavg()[0]:.2f}; OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}; "
          f"OpenKBP {args.openkbp_dir}")
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose(args.openkbp_dir, args.patch, args.override, Path(tmp))
        print(f"train.py site=npc data=openkbp experiment=cpu_quick "
              f"patch_size=[{args.patch}]*3 {' '.join(args.override)}: batch "
              f"{cfg.data.batch_size}, augmentation {cfg.augmentation.kind}")
        if args.steps > 0:
            runs["now"] = measure(cfg, steps=args.steps)
        if args.steps > 0 and not args.no_legacy:
            runs["before"] = measure(cfg, steps=args.steps, legacy=True)
    for name, r in runs.items():
        print(f"{name:>6}: cached case {r['case_mb']:6.1f} MB (max {r['case_mb_max']:.1f}, "
              f"{r['n_cases']} training cases, {r['load_s']:.2f} s to read and cache one) | "
              f"DataLoader {r['data_s']:.3f} s/batch | training step median "
              f"{r['step_s']:.3f} s, fastest {r['step_min_s']:.3f} s ({args.steps} steps)")
    if "before" in runs:
        b, r = runs["before"], runs["now"]
        print(f"before / now: memory per case {b['case_mb'] / r['case_mb']:.1f}x, DataLoader "
              f"{b['data_s'] / r['data_s']:.1f}x, training step {b['step_s'] / r['step_s']:.2f}x "
              f"(fastest steps {b['step_min_s'] / r['step_min_s']:.2f}x)")
    if args.stats:
        augmentation_stats(args.stats)
    print(f"load average after {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
