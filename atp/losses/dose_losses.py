"""Loss functions for dose prediction.

All losses share one signature, ``loss(pred, target, *, rois=None, body=None)``: ``pred``
and ``target`` shaped ``(B, 1, *spatial)`` (``spatial`` = D, H, W, or H, W), ``rois`` the
``(B, R, *spatial)`` ROI masks (organs, then the target union) and ``body`` the
``(B, 1, *spatial)`` body mask; each loss uses the masks it needs and returns a scalar
averaged over the batch. Configs pick a loss (``conf/loss/*.yaml``).

Weighted MSE (:class:`WMSELoss`, :func:`wmse_weights`)
    ``L_b = (1 / N) * sum_v w_v * (pred_v - target_v) ** 2`` with ``N`` the number of voxels
    of the whole volume (inside and outside the body, so values are comparable across cases
    of the same grid and across batches), and ``L = mean_b L_b``. Weights, per sample:

    * ROIs are first clipped to the body; a ROI's fraction is ``f_r = |ROI_r & body| / N``.
    * A voxel in one or more ROIs gets ``1 / f_r`` of the *smallest* ROI containing it.
    * A body voxel in no ROI belongs to the region "body minus ROIs" with fraction
      ``f_0 = |body & ~ROIs| / N`` and gets ``1 / f_0``.
    * Voxels outside the body get ``outside_weight`` (0 by default: excluded).
    * Empty ROIs (after clipping) are ignored.

    Without overlaps each region therefore contributes its own mean squared error, and the
    loss is the sum over regions of the per-region MSE (plus the outside term).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["DVHLoss", "MaskedMAELoss", "MaskedMSELoss", "WMSELoss", "roi_stack",
           "wmse_weights"]


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs "
                         f"{tuple(target.shape)}")
    if pred.ndim not in (4, 5) or pred.shape[1] != 1:
        raise ValueError(f"expected pred/target of shape (B, 1, D, H, W) or (B, 1, H, W), got "
                         f"{tuple(pred.shape)}")


def _check_mask(mask: torch.Tensor, ref: torch.Tensor, name: str, *,
                multi: bool = False) -> None:
    ok = mask.ndim == ref.ndim and mask.shape[0] == ref.shape[0] and \
        mask.shape[2:] == ref.shape[2:] and (multi or mask.shape[1] == 1)
    if not ok:
        want = "(B, R, *spatial)" if multi else "(B, 1, *spatial)"
        raise ValueError(f"{name} must have shape {want} matching {tuple(ref.shape)}, got "
                         f"{tuple(mask.shape)}")


def _body(body_mask: torch.Tensor | None, ref: torch.Tensor) -> torch.Tensor:
    """Boolean body mask ``(B, 1, *spatial)``; ``None`` means every voxel."""
    if body_mask is None:
        return torch.ones((ref.shape[0], 1, *ref.shape[2:]), dtype=torch.bool, device=ref.device)
    _check_mask(body_mask, ref, "body")
    return body_mask > 0.5 if body_mask.is_floating_point() else body_mask.bool()


def roi_stack(rois: torch.Tensor) -> torch.Tensor:
    """Boolean ROI stack ``(B, R, *spatial)`` from a stack or an integer label map.

    Bool or float input is a stack of (possibly overlapping) masks, thresholded at 0.5.
    Integer input of shape ``(B, 1, *spatial)`` is a label map: 0 is background, label ``k``
    becomes ROI ``k - 1`` (``R`` = the largest label in the batch).
    """
    if rois.dtype == torch.bool:
        return rois
    if rois.is_floating_point():
        return rois > 0.5
    if rois.ndim < 3 or rois.shape[1] != 1:
        raise ValueError(f"an integer label map must have shape (B, 1, *spatial), got "
                         f"{tuple(rois.shape)}")
    n = int(rois.max().item()) if rois.numel() else 0
    labels = torch.arange(1, n + 1, device=rois.device).view(1, n, *([1] * (rois.ndim - 2)))
    return rois == labels


@torch.no_grad()
def wmse_weights(roi_masks: torch.Tensor, body_mask: torch.Tensor | None = None, *,
                 outside_weight: float = 0.0) -> torch.Tensor:
    """Per-voxel WMSE weights ``(B, 1, *spatial)`` (float32, no gradient).

    Parameters
    ----------
    roi_masks : Tensor
        ``(B, R, *spatial)`` bool/float masks (may overlap) or a ``(B, 1, *spatial)``
        integer label map, see :func:`roi_stack`.
    body_mask : Tensor or None
        ``(B, 1, *spatial)`` body mask; ``None`` treats every voxel as body.
    outside_weight : float
        Weight of the voxels outside the body.

    Returns
    -------
    Tensor
        ``1 / f`` of the smallest ROI containing each body voxel, ``1 / f_0`` for body
        voxels in no ROI, ``outside_weight`` outside the body; ``f`` are volume fractions of
        all ``N`` voxels (see the module docstring).
    """
    rois = roi_stack(roi_masks)
    if rois.ndim not in (4, 5):
        raise ValueError(f"roi_masks must be (B, R, D, H, W) or (B, R, H, W), got "
                         f"{tuple(rois.shape)}")
    body = _body(body_mask, rois)
    rois = rois & body
    n_vox = body[0, 0].numel()
    weights = torch.full(body.shape, float(outside_weight), dtype=torch.float32,
                         device=rois.device)
    for b in range(rois.shape[0]):
        w = weights[b, 0]
        rest = body[b, 0] & ~rois[b].any(dim=0)
        n_rest = int(rest.sum())
        if n_rest:
            w[rest] = n_vox / n_rest
        counts = rois[b].flatten(1).sum(dim=1)
        # largest first, so that smaller ROIs overwrite: the smallest ROI wins
        for r in torch.argsort(counts, descending=True, stable=True).tolist():
            if counts[r] > 0:
                w[rois[b, r]] = n_vox / float(counts[r])
    return weights


class WMSELoss(nn.Module):
    """Volume-weighted MSE: each voxel weighted by the reciprocal of its ROI's volume fraction.

    Parameters
    ----------
    outside_weight : float
        Weight of voxels outside the body (0 excludes them).

    Call as ``loss(pred, target, rois=..., body=None)`` or, with weights precomputed by
    :func:`wmse_weights` (e.g. in the data loader), ``loss(pred, target, weights=w)``.
    See the module docstring for the rules and the normalisation.
    """

    def __init__(self, *, outside_weight: float = 0.0) -> None:
        super().__init__()
        self.outside_weight = float(outside_weight)

    def forward(self, pred: torch.Tensor, target: torch.Tensor, *,
                rois: torch.Tensor | None = None, body: torch.Tensor | None = None,
                weights: torch.Tensor | None = None) -> torch.Tensor:
        _check_pair(pred, target)
        if weights is None:
            if rois is None:
                raise ValueError("WMSELoss needs rois (or precomputed weights=)")
            _check_mask(rois, pred, "rois", multi=True)
            weights = wmse_weights(rois, body, outside_weight=self.outside_weight)
        else:
            _check_mask(weights, pred, "weights")
        sq = weights.to(pred.dtype) * (pred - target) ** 2
        return sq.flatten(1).mean(dim=1).mean()


class _MaskedLoss(nn.Module):
    def _err(self, diff: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, pred: torch.Tensor, target: torch.Tensor, *,
                rois: torch.Tensor | None = None,
                body: torch.Tensor | None = None) -> torch.Tensor:
        _check_pair(pred, target)
        mask = _body(body, pred).to(pred.dtype)
        err = (self._err(pred - target) * mask).flatten(1).sum(dim=1)
        return (err / mask.flatten(1).sum(dim=1).clamp_min(1.0)).mean()


class MaskedMAELoss(_MaskedLoss):
    """Mean absolute error over the body voxels of each sample, averaged over the batch.

    Call as ``loss(pred, target, body=None)`` (``rois`` is ignored); ``None`` uses every
    voxel. A sample with an empty body contributes 0.
    """

    def _err(self, diff: torch.Tensor) -> torch.Tensor:
        return diff.abs()


class MaskedMSELoss(_MaskedLoss):
    """Mean squared error over the body voxels of each sample, averaged over the batch.

    Call as ``loss(pred, target, body=None)`` (``rois`` is ignored); ``None`` uses every
    voxel.
    """

    def _err(self, diff: torch.Tensor) -> torch.Tensor:
        return diff.square()


class DVHLoss(nn.Module):
    """Differentiable DVH loss with sigmoid-smoothed cumulative histograms, per ROI.

    For each sample, ROI and dose level ``d_k`` (``n_bins`` levels evenly spaced in
    ``[0, max_dose]``) the soft volume is ``V(d_k) = mean_{v in ROI} sigmoid((D_v - d_k) / t)``
    with ``t = softness * bin width``. The loss is the mean over samples, non-empty ROIs and
    levels of ``(V_pred - V_target) ** 2`` (volume fractions, so in ``[0, 1]``).

    Parameters
    ----------
    n_bins : int
        Number of dose levels.
    max_dose : float or None
        Highest level; ``None`` uses 1.05 x the target maximum of each sample.
    softness : float
        Sigmoid temperature in bin widths (smaller is sharper).

    Call as ``loss(pred, target, rois=...)`` with masks or a label map as in
    :func:`wmse_weights` (``body`` is ignored).
    """

    def __init__(self, *, n_bins: int = 64, max_dose: float | None = None,
                 softness: float = 1.0) -> None:
        super().__init__()
        if n_bins < 2 or softness <= 0:
            raise ValueError(f"need n_bins >= 2 and softness > 0, got {n_bins}, {softness}")
        self.n_bins, self.max_dose, self.softness = int(n_bins), max_dose, float(softness)

    def forward(self, pred: torch.Tensor, target: torch.Tensor, *,
                rois: torch.Tensor | None = None,
                body: torch.Tensor | None = None) -> torch.Tensor:
        _check_pair(pred, target)
        if rois is None:
            raise ValueError("DVHLoss needs rois")
        _check_mask(rois, pred, "rois", multi=True)
        rois = roi_stack(rois)
        terms = []
        for b in range(pred.shape[0]):
            top = self.max_dose or float(target[b].detach().max()) * 1.05
            if top <= 0:
                continue
            levels = torch.linspace(0.0, top, self.n_bins, device=pred.device, dtype=pred.dtype)
            tau = self.softness * top / (self.n_bins - 1)
            for r in range(rois.shape[1]):
                m = rois[b, r]
                if not bool(m.any()):
                    continue
                vp = torch.sigmoid((pred[b, 0][m][:, None] - levels) / tau).mean(dim=0)
                vt = torch.sigmoid((target[b, 0][m][:, None] - levels) / tau).mean(dim=0)
                terms.append((vp - vt).square().mean())
        if not terms:
            return pred.sum() * 0.0
        return torch.stack(terms).mean()
