"""Experiment loggers for the entry points: build them from ``conf/logger``, log, close."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

log = logging.getLogger("atp.loggers")


def instantiate_loggers(group) -> list:
    """One logger per entry of the ``logger`` group that has a ``_target_``."""
    from hydra.utils import instantiate

    return [instantiate(c) for c in (group or {}).values() if c and "_target_" in c]


def close_loggers(loggers: Iterable) -> None:
    """Finish each logger's run (one W&B run per job, also in a multirun)."""
    for lg in loggers:
        finalize = getattr(lg, "finalize", None)
        if callable(finalize):
            finalize("success")
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
