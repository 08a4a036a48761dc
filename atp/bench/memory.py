"""Peak memory of one training step of the default CAD-UNet at the study's patch size.

Usage::

    python -m atp.bench.memory [--size 128] [--batch 2]

Reads the network's default width from ``conf/net/cad_unet.yaml`` and runs one fp32
training step (forward, MSE, backward, Adam) at ``size^3`` with ``batch`` patches, once
without and once with gradient checkpointing, each in a fresh process so its peak RSS is
its own. The target: <= 12 GB, so the study's 24 GB GPU has room. A command, not a test.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time

import yaml

from atp.sites import CONF_DIR


def _step(size: int, batch: int, checkpointing: bool) -> None:
    import torch

    from atp.nets import CADUNet

    spec = yaml.safe_load((CONF_DIR / "net" / "cad_unet.yaml").read_text())
    torch.manual_seed(2020)
    torch.set_num_threads(2)
    net = CADUNet(spatial_dims=3, in_channels=10, out_channels=1,
                  features=tuple(spec["features"]), layers_per_block=spec["layers_per_block"],
                  act=spec["act"], norm=spec["norm"], se_reduction=spec["se_reduction"],
                  checkpointing=checkpointing, channels_last=spec.get("channels_last", False))
    n_params = sum(p.numel() for p in net.parameters())
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    x = torch.rand(batch, 10, size, size, size)
    y = torch.rand(batch, 1, size, size, size)
    t0 = time.perf_counter()
    loss = ((net(x) - y) ** 2).mean()
    loss.backward()
    opt.step()
    seconds = time.perf_counter() - t0
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB on Linux
    print(f"CAD-UNet {list(spec['features'])} ({n_params / 1e6:.2f} M params), {size}^3 "
          f"batch {batch} fp32, checkpointing={checkpointing}: step {seconds:.1f} s, "
          f"peak RSS {peak_gb:.2f} GB ({'within' if peak_gb <= 12 else 'OVER'} 12 GB)",
          flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--worker", choices=["plain", "checkpointing"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _step(args.size, args.batch, args.worker == "checkpointing")
        return 0
    for mode in ("plain", "checkpointing"):
        subprocess.run([sys.executable, "-m", "atp.bench.memory", "--size", str(args.size),
                        "--batch", str(args.batch), "--worker", mode], check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
