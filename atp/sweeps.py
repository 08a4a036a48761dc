"""Hydra sweeps: jobs that fail alone, and one summary of every job of a multirun.

Every entry point runs its job through `run_job`: in a multirun a failing job logs its
traceback, marks itself ``FAILED`` in ``job_status.json`` and lets the other jobs go on;
a job's status file is written last (atomically), so a job folder without a
``COMPLETED`` status holds no result the summary would read. After the last job,
`SweepSummary` (a Hydra callback, set in ``conf/train.yaml``, ``evaluate.yaml`` and
``plan.yaml``) gathers the per-job tables of the sweep folder into ``summary/`` and
then fails the multirun (exit status 1) if any job failed, naming them.

    python -m atp.sweep_summary <sweep_dir>      # (re)build a summary by hand
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from atp.io.atomic import atomic_write_text

log = logging.getLogger("atp.sweeps")

STATUS_FILE = "job_status.json"
COMPLETED, FAILED = "COMPLETED", "FAILED"


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool | int | str) or value is None:
        return value
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f if math.isfinite(f) else None


def write_status(out_dir: str | Path, *, status: str, overrides: list[str], wall_s: float,
                 result: Any = None, error: str | None = None) -> Path:
    """Write ``job_status.json`` atomically (the mark of a finished job)."""
    path = Path(out_dir) / STATUS_FILE
    atomic_write_text(path, json.dumps(
        {"status": status, "overrides": list(overrides), "wall_s": round(wall_s, 3),
         "result": _jsonable(result), "error": error}, indent=2) + "\n")
    return path


def run_job(task: Callable[[DictConfig], Any], cfg: DictConfig, *,
            failed_value: Any = None) -> Any:
    """Run ``task(cfg)``; in a multirun a failure is recorded, not raised.

    In a single run the exception propagates (non-zero exit status). In a multirun the
    job returns ``failed_value`` (NaN for an Optuna trial, so the trial counts as
    failed) and `SweepSummary` reports it once every job has ended.
    """
    hc = HydraConfig.get() if HydraConfig.initialized() else None
    out = Path(cfg.paths.output_dir)
    overrides = list(hc.overrides.task) if hc else []
    t0 = time.perf_counter()
    try:
        result = task(cfg)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        write_status(out, status=FAILED, overrides=overrides, error=error,
                     wall_s=time.perf_counter() - t0)
        if hc is None or hc.mode != RunMode.MULTIRUN:
            raise
        log.error("job %s FAILED (%s); the other jobs go on\n%s", out, error,
                  traceback.format_exc())
        return failed_value
    write_status(out, status=COMPLETED, overrides=overrides, result=result,
                 wall_s=time.perf_counter() - t0)
    return result


class SweepSummary(Callback):
    """Hydra callback: summarise the jobs of a multirun once they have all ended.

    Parameters
    ----------
    fail_on_error
        Exit with status 1 after writing the summary when a job failed (every other
        job has completed by then).
    """

    def __init__(self, *, fail_on_error: bool = True) -> None:
        self.fail_on_error = fail_on_error

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        from atp.sweep_summary import summarize_sweep

        summary = summarize_sweep(sweep_dir)
        failed = [j for j in summary["jobs"] if j["status"] != COMPLETED]
        log.info("sweep summary: %d jobs, %d failed -> %s", len(summary["jobs"]),
                 len(failed), summary["dir"])
        if failed:
            names = "; ".join(f"{j['job']} ({j['error'] or j['status']})" for j in failed)
            log.error("%d of %d jobs failed: %s. The others completed; see %s", len(failed),
                      len(summary["jobs"]), names, summary["dir"])
            if self.fail_on_error:  # Hydra turns callback exceptions into warnings
                sys.exit(1)
