"""Training input pipeline on OpenKBP: seconds per training step and memory per cached case.

Usage::

    python -m atp.bench.data_pipeline [--openkbp-dir DIR] [--patch 64] [--steps 8]
                                      [--threads 2] [--override KEY=VALUE ...]

Composes ``train.py site=npc data=openkbp experiment=cpu_quick patch_size=[P,P,P]`` (plus
the overrides), builds the data module and the model as ``train.py`` does, fills the
training cases' cache, then prints:

- the memory of one cached case (MB, the arrays the dataset keeps per case);
- seconds per batch of the training DataLoader alone (cached cases, so augmentation and
  channel building only);
- seconds per training step of a Lightning ``fit`` (data + forward + backward + Adam step;
  median over ``--steps`` steps after two warm-up steps).

A command, not a test: about two minutes on two idle cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

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


def measure(cfg, *, steps: int) -> dict:
    """Memory per cached case, DataLoader seconds per batch and training seconds per step."""
    import pytorch_lightning as pl
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    site = OmegaConf.to_container(cfg.site, resolve=True)
    data = instantiate(cfg.data, site=site, _convert_="all")
    data.setup("fit")
    loader = data.train_dataloader()
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
    model = instantiate(cfg.model, baseline_dose=0.0)
    timer = _StepTimer()
    trainer = pl.Trainer(max_steps=steps + 2, accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         limit_val_batches=0, num_sanity_val_steps=0,
                         callbacks=[timer.callback()], enable_model_summary=False)
    trainer.fit(model, train_dataloaders=loader)
    step_times = timer.times[2:]
    return {"n_cases": len(ds), "case_mb": float(np.mean(mb)), "case_mb_max": float(max(mb)),
            "load_s": load_s, "data_s": data_s, "step_s": statistics.median(step_times),
            "step_min_s": min(step_times), "batch_shape": None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--openkbp-dir", type=Path, default=DEFAULT_OPENKBP_DIR)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--override", action="append", default=[],
                        help="extra train.py override (repeatable)")
    args = parser.parse_args(argv)

    import tempfile

    import torch

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads; load average before "
          f"{os.getloadavg()[0]:.2f}; OpenKBP {args.openkbp_dir}")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose(args.openkbp_dir, args.patch, args.override, Path(tmp))
        print(f"train.py site=npc data=openkbp experiment=cpu_quick "
              f"patch_size=[{args.patch}]*3 {' '.join(args.override)}: batch "
              f"{cfg.data.batch_size}, augmentation {cfg.augmentation.kind}")
        r = measure(cfg, steps=args.steps)
    print(f"cached case: {r['case_mb']:.1f} MB (max {r['case_mb_max']:.1f}) over "
          f"{r['n_cases']} training cases; {r['load_s']:.2f} s to read and cache one")
    print(f"DataLoader alone: {r['data_s']:.3f} s per batch")
    print(f"training step (data + fwd + bwd + Adam): median {r['step_s']:.3f} s, fastest "
          f"{r['step_min_s']:.3f} s over {args.steps} steps")
    print(f"load average after {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
