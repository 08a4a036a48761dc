"""Benchmark of CAD-UNet training/inference steps against MONAI's DynUNet on this CPU.

Usage::

    python -m atp.bench.train_step [--sizes 64 128] [--repeats N] [--quick] [--batch 2]
                                   [--in-channels 10] [--threads 2] [--no-bf16]
                                   [--channels-last] [--timeout S]

For CAD-UNet (default width; it runs its feature maps in channels-last format internally)
and a MONAI ``DynUNet`` whose width is chosen to match the CAD-UNet parameter count (4 levels,
batch norm, ReLU), run both as MONAI ships it (NCDHW, ``DynUNet``) and converted to
``torch.channels_last_3d`` (``DynUNet-CL``, the fair reference for CAD-UNet's memory
format), at each cube size, in float32 and under
``torch.autocast("cpu", dtype=torch.bfloat16)``, prints: parameters, seconds per training
step (forward + backward + Adam step; median of N after one warm-up step), seconds per
inference (eval mode, ``inference_mode``; median of N after one warm-up), peak RSS
(``ru_maxrss``) and the CPU utilisation of the timed steps (about the thread count on an
idle machine; lower means other processes competed and the timings are inflated). Each
configuration runs in a fresh subprocess of this module so that the peak RSS is its own.
Last, the ratios CAD-UNet / DynUNet and CAD-UNet / DynUNet-CL of the training-step time. A
command, not a test; with the defaults it takes about 5 minutes on 2 idle cores
(``--sizes 64``: about 1 minute).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

#: Repetitions per size when ``--repeats`` is not given (keeps the default run ~10 min).
AUTO_REPEATS = {32: 5, 64: 3, 96: 2}
RESULT_TAG = "RESULT "
#: (label, model) pairs timed at each size and precision.
MODELS = (("CAD-UNet", "cad"), ("DynUNet", "dynunet"), ("DynUNet-CL", "dynunet_cl"))


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def build_model(name: str, in_channels: int, *, ref_width: int | None = None):
    """``"cad"``: default CAD-UNet; ``"dynunet"``: DynUNet with widths ``w, 2w, 4w, 8w``.

    ``"dynunet_cl"`` is the same DynUNet; :func:`run_config` converts it and its input to
    ``torch.channels_last_3d``.
    """
    if name == "cad":
        from atp.nets import CADUNet

        return CADUNet(3, in_channels, 1)
    if name in ("dynunet", "dynunet_cl"):
        from monai.networks.nets import DynUNet

        w = ref_width or 16
        return DynUNet(3, in_channels, 1, kernel_size=[3, 3, 3, 3], strides=[1, 2, 2, 2],
                       upsample_kernel_size=[2, 2, 2], filters=[w, 2 * w, 4 * w, 8 * w],
                       norm_name="batch", act_name=("relu", {"inplace": True}))
    raise ValueError(f"unknown model {name!r}")


def match_reference_width(in_channels: int) -> tuple[int, int, int]:
    """DynUNet base width whose parameter count is closest to the default CAD-UNet's.

    Returns ``(width, dynunet_params, cad_params)``.
    """
    from atp.nets import count_parameters

    target = count_parameters(build_model("cad", in_channels))
    lo, hi = 2, 64  # parameter count grows monotonically with the width
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if count_parameters(build_model("dynunet", in_channels, ref_width=mid)) < target:
            lo = mid
        else:
            hi = mid
    counts = {w: count_parameters(build_model("dynunet", in_channels, ref_width=w))
              for w in (lo, hi)}
    best = min(counts, key=lambda w: abs(counts[w] - target))
    return best, counts[best], target


def run_config(cfg: dict) -> dict:
    """Time one configuration in this process; returns a dict of results."""
    import torch

    from atp.nets import count_parameters

    torch.set_num_threads(cfg["threads"])
    torch.manual_seed(0)
    model = build_model(cfg["model"], cfg["in_channels"], ref_width=cfg.get("ref_width"))
    s, b = cfg["size"], cfg["batch"]
    x = torch.randn(b, cfg["in_channels"], s, s, s)
    if cfg.get("channels_last") or cfg["model"] == "dynunet_cl":
        model = model.to(memory_format=torch.channels_last_3d)
        x = x.to(memory_format=torch.channels_last_3d)
    target = torch.rand(b, 1, s, s, s)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg["bf16"])

    def train_step() -> float:
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with autocast():
            y = model(x)
        loss = torch.nn.functional.mse_loss(y.float(), target)
        loss.backward()
        opt.step()
        return time.perf_counter() - t0

    def infer() -> float:
        t0 = time.perf_counter()
        with torch.inference_mode(), autocast():
            model(x)
        return time.perf_counter() - t0

    model.train()
    warm_train = train_step()
    cpu0 = _cpu_seconds()
    train = [train_step() for _ in range(cfg["repeats"])]
    cpu_util = (_cpu_seconds() - cpu0) / sum(train)
    model.eval()
    infer()
    inference = [infer() for _ in range(cfg["repeats"])]
    return {**cfg, "params": count_parameters(model), "warmup_s": warm_train,
            "train_s": statistics.median(train), "train_min_s": min(train),
            "infer_s": statistics.median(inference),
            "peak_rss_mb": peak_rss_mb(), "cpu_util": cpu_util}


def spawn(cfg: dict, timeout: float) -> dict:
    """Run :func:`run_config` in a fresh interpreter (own peak RSS)."""
    cmd = [sys.executable, "-m", "atp.bench.train_step", "--worker", json.dumps(cfg)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**cfg, "error": f"timeout after {timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
    return {**cfg, "error": f"exit {proc.returncode}: {tail[0]}"}


def _row(r: dict) -> str:
    prec = "bf16" if r["bf16"] else "fp32"
    head = f"{r['label']:<10} {r['size']:>4}^3 {prec:<5}"
    if "error" in r:
        return f"{head} ERROR {r['error']}"
    return (f"{head} {r['params'] / 1e6:7.3f}M {r['train_s']:9.3f} {r['train_min_s']:9.3f} "
            f"{r['infer_s']:9.3f} "
            f"{r['peak_rss_mb']:9.0f} {r['warmup_s']:9.3f} {r['cpu_util']:5.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed repetitions per measurement (default: by size, "
                             f"{AUTO_REPEATS}, 1 above)")
    parser.add_argument("--quick", action="store_true",
                        help="one timed repetition per measurement (a smoke run)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--in-channels", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-bf16", action="store_true", help="float32 only")
    parser.add_argument("--channels-last", action="store_true",
                        help="run models and inputs in torch.channels_last_3d memory format")
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds allowed per configuration subprocess")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(RESULT_TAG + json.dumps(run_config(json.loads(args.worker))), flush=True)
        return 0

    import torch

    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    ref_width, ref_params, cad_params = match_reference_width(args.in_channels)
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}, "
          f"{args.in_channels} input channels, "
          f"{'channels_last_3d' if args.channels_last else 'NCDHW'}; load average before "
          f"{os.getloadavg()[0]:.2f} (other busy processes distort 2-thread timings)")
    print(f"CAD-UNet default: {cad_params:,} parameters; reference MONAI DynUNet filters "
          f"({ref_width}, {2 * ref_width}, {4 * ref_width}, {8 * ref_width}), batch norm, "
          f"ReLU: {ref_params:,} parameters")
    print("train_s / infer_s: median seconds per training step (fwd+bwd+Adam) / inference; "
          "train_min: fastest timed step; warmup_s: first training step;\n"
          "cpu: CPU seconds per wall second in the timed "
          f"training steps (~{args.threads} when the cores are free, lower when contended)")
    print(f"{'model':<10} {'size':>6} {'prec':<5} {'params':>8} {'train_s':>9} {'train_min':>9} "
          f"{'infer_s':>9} "
          f"{'peakRSS_MB':>9} {'warmup_s':>9} {'cpu':>5}", flush=True)
    results = []
    precisions = [False] if args.no_bf16 else [False, True]
    for size in args.sizes:
        repeats = 1 if args.quick else args.repeats or AUTO_REPEATS.get(size, 1)
        for bf16 in precisions:
            for label, model in MODELS:
                cfg = {"model": model, "label": label, "size": size, "bf16": bf16,
                       "batch": args.batch, "in_channels": args.in_channels,
                       "threads": args.threads, "repeats": repeats, "ref_width": ref_width,
                       "channels_last": args.channels_last}
                results.append(spawn(cfg, args.timeout))
                print(_row(results[-1]), flush=True)
    print("ratio CAD-UNet / DynUNet and CAD-UNet / DynUNet-CL training-step time "
          "(inference time):")
    for size in args.sizes:
        for bf16 in precisions:
            pair = {r["model"]: r for r in results
                    if r["size"] == size and r["bf16"] == bf16 and "error" not in r}
            if "cad" not in pair:
                continue
            c = pair["cad"]
            ratios = [f"{ref}: {c['train_s'] / pair[ref]['train_s']:.2f} "
                      f"({c['infer_s'] / pair[ref]['infer_s']:.2f})"
                      for ref in ("dynunet", "dynunet_cl") if ref in pair]
            print(f"  {size:>4}^3 {'bf16' if bf16 else 'fp32'}: {'; '.join(ratios)}")
    print(f"total {time.perf_counter() - t_start:.0f} s, load average after "
          f"{os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
