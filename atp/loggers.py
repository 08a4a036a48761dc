"""Experiment loggers (and other config groups) for the entry points: build, log, close."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

log = logging.getLogger("atp.loggers")


def instantiate_group(group) -> list:
    """One object per entry of a config group with a ``_target_`` (loggers, callbacks)."""
    from hydra.utils import instantiate

    return [instantiate(c) for c in (group or {}).values() if c and "_target_" in c]


def close_loggers(loggers: Iterable, *, status: str = "success") -> None:
    """Finalize each logger and finish its run (one W&B run per job, also in a multirun)."""
    for lg in loggers:
        finalize = getattr(lg, "finalize", None)
        if callable(finalize):
            finalize(status)
        finish = getattr(getattr(lg, "experiment", None), "finish", None)
        if callable(finish):
            finish()


def log_evaluation(loggers: Iterable, summary: Mapping, figures: Iterable[Path], *,
                   prefix: str = "eval") -> None:
    """Numbers of ``summary`` as metrics; PNG ``figures`` as images where supported."""
    metrics = {f"{prefix}/{k}": float(v) for k, v in summary.items()
               if isinstance(v, int | float) and not isinstance(v, bool)
               and math.isfinite(float(v))}
    for lg in loggers:
        lg.log_metrics(metrics)
        if hasattr(lg, "log_image"):
            for path in figures:
                lg.log_image(key=f"{prefix}/{Path(path).stem}", images=[str(path)])
        log.info("logged %d metrics to %s", len(metrics), type(lg).__name__)
