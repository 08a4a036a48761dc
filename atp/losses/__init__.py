"""Training losses for dose prediction (needs the ``dl`` extra: torch)."""

from atp.losses.dose_losses import (
    DVHLoss,
    MaskedMAELoss,
    MaskedMSELoss,
    WMSELoss,
    roi_stack,
    wmse_weights,
)

__all__ = ["DVHLoss", "MaskedMAELoss", "MaskedMSELoss", "WMSELoss", "roi_stack", "wmse_weights"]
