"""Wall time of an Optuna tolerance search, with and without the evaluation caches.

Usage::

    python -m atp.bench.tuning [--site lung] [--institution C] [--trials 2] [--work DIR]

Builds (once, under ``--work``, not timed) the CPU-preset synthetic cohort of the site at
the institution and a one-epoch CPU-preset model, then runs ``evaluate.py -m
evaluation=tune_tolerances`` with ``--trials`` Optuna trials three times, each from an
empty cache:

- ``before``: ``cache=false comparator=replan``, what atp did before the caches: every
  trial computes the influence matrices and re-plans the comparator;
- ``replan``: ``cache=true comparator=replan``: the first trial fills the cache, later
  trials load the matrices and rebuild the re-plan from its cached fluence;
- ``clinical``: ``cache=true``, the default comparator (the case's own dose: no re-plan).

It prints each search's wall time, the per-trial job times and the ratios to ``before``.
The model's quality does not matter here, only the time. A command, not a test.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from atp.sites import REPO_ROOT


def _run(script: str, args: list[str]) -> float:
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, script, *args], cwd=REPO_ROOT, capture_output=True,
                         text=True)
    if res.returncode != 0:
        raise SystemExit(f"{script} {' '.join(args)} failed:\n{res.stderr[-3000:]}")
    return time.perf_counter() - t0


def _trial_times(sweep: Path) -> list[float]:
    status = sorted(sweep.glob("*/job_status.json"))
    return [float(json.loads(p.read_text())["wall_s"]) for p in status]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", default="lung")
    parser.add_argument("--institution", default="A")
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--work", type=Path, default=REPO_ROOT / "outputs" / "bench_tuning")
    args = parser.parse_args(argv)
    work = args.work.resolve()
    common = [f"site={args.site}", f"paths.data_dir={work / 'data'}",
              f"paths.log_dir={work / 'logs'}"]
    ckpt = work / "train" / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        print("building the cohort and a one-epoch model (not timed) ...", flush=True)
        _run("train.py", [*common, f"institution={args.institution}",
                          "experiment=cpu_quick", "trainer.max_epochs=1",
                          "data.iterations_per_epoch=2", "logger=csv",
                          "callbacks.goal_guided_planning.every_n_epochs=100",
                          "test_after_fit=false", f"hydra.run.dir={work / 'train'}"])
    variants = {"before": ["cache=false", "comparator=replan"],
                "replan": ["cache=true", "comparator=replan"],
                "clinical": ["cache=true"]}
    searches = {}
    for name, extra in variants.items():
        sweep = work / f"search_{name}"
        shutil.rmtree(sweep, ignore_errors=True)
        cache_dir = work / "cache_empty"
        shutil.rmtree(cache_dir, ignore_errors=True)
        wall = _run("evaluate.py", [
            "-m", *common, f"institution={args.institution}", f"ckpt_path={ckpt}",
            "evaluation=[cpu_quick,tune_tolerances]", f"hydra.sweeper.n_trials={args.trials}",
            *extra, f"paths.cache_dir={cache_dir}", f"hydra.sweep.dir={sweep}"])
        trials = _trial_times(sweep)
        searches[name] = wall
        ratio = searches["before"] / wall
        print(f"{name:8s} ({' '.join(extra)}): {args.trials}-trial search {wall:6.1f} s; "
              f"trials {', '.join(f'{t:.1f}' for t in trials)} s; before / this "
              f"{ratio:.2f}x", flush=True)
    print(f"({args.site} at institution {args.institution})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
