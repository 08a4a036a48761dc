"""Dose-prediction losses: WMSE weighting rules, masked MAE/MSE, DVH loss, one signature."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from atp.losses import (  # noqa: E402
    DVHLoss,
    MaskedMAELoss,
    MaskedMSELoss,
    WMSELoss,
    roi_stack,
    wmse_weights,
)


def _vol(values, shape=(1, 1, 1, 2, 4), dtype=torch.float32):
    return torch.tensor(values, dtype=dtype).reshape(shape)


def _tiny_case():
    """8 voxels (1x2x4) in a row: body = voxels 0-5, ROI A = {0, 1}, ROI B = {1, 2, 3}."""
    body = _vol([1, 1, 1, 1, 1, 1, 0, 0], dtype=torch.bool)
    a = _vol([1, 1, 0, 0, 0, 0, 0, 0], dtype=torch.bool)
    b = _vol([0, 1, 1, 1, 0, 0, 0, 0], dtype=torch.bool)
    rois = torch.cat([a, b], dim=1)
    target = _vol([10, 20, 30, 40, 50, 60, 70, 80])
    pred = target + _vol([1, 2, 3, 0, 1, 1, 5, 5])
    return pred, target, rois, body


def test_wmse_value_by_hand():
    pred, target, rois, body = _tiny_case()
    # N = 8 voxels.  ROI A: 2 voxels -> f = 2/8 -> w = 4.  ROI B: 3 voxels -> w = 8/3.
    # Voxel 1 is in A and B -> smallest ROI (A) wins -> w = 4.
    # Body minus ROIs = voxels {4, 5}: f = 2/8 -> w = 4.  Voxels 6, 7 outside the body -> 0.
    # weights = [4, 4, 8/3, 8/3, 4, 4, 0, 0];  diffs = [1, 2, 3, 0, 1, 1, 5, 5]
    # sum w d^2 = 4*1 + 4*4 + 8/3*9 + 8/3*0 + 4*1 + 4*1 = 4 + 16 + 24 + 0 + 4 + 4 = 52
    # L = 52 / N = 52 / 8 = 6.5
    w = wmse_weights(rois, body)
    expected_w = _vol([4, 4, 8 / 3, 8 / 3, 4, 4, 0, 0])
    torch.testing.assert_close(w, expected_w)
    loss = WMSELoss()(pred, target, rois=rois, body=body)
    assert loss.item() == pytest.approx(6.5)
    # the same from precomputed weights
    assert WMSELoss()(pred, target, weights=w).item() == pytest.approx(6.5)


def test_smallest_roi_wins_independent_of_order():
    body = torch.ones(1, 1, 4, 4, 4, dtype=torch.bool)
    big = torch.zeros_like(body)
    big[..., :2, :, :] = True  # 32 voxels
    small = torch.zeros_like(body)
    small[..., 0, 0, :2] = True  # 2 voxels, inside big
    for rois in (torch.cat([big, small], 1), torch.cat([small, big], 1)):
        w = wmse_weights(rois, body)
        assert torch.all(w[small] == 64 / 2)
        assert torch.all(w[big & ~small] == 64 / 32)
        assert torch.all(w[~big] == 64 / 32)  # body minus ROIs: 32 voxels as well


def test_body_minus_rois_region():
    body = torch.zeros(1, 1, 2, 4, 4, dtype=torch.bool)
    body[..., :, 1:3, :] = True  # 16 voxels
    roi = torch.zeros_like(body)
    roi[..., 0, 1, :] = True  # 4 voxels
    w = wmse_weights(roi, body)
    rest = body & ~roi
    assert int(rest.sum()) == 12
    torch.testing.assert_close(w[rest], torch.full((12,), 32 / 12))
    torch.testing.assert_close(w[roi], torch.full((4,), 32 / 4))
    # when the ROIs cover the whole body there is no rest region
    w_full = wmse_weights(body, body)
    assert torch.all(w_full[body] == 32 / 16) and torch.all(w_full[~body] == 0)


def test_outside_body_excluded_or_weighted():
    pred, target, rois, body = _tiny_case()
    loss = WMSELoss()
    base = loss(pred, target, rois=rois, body=body)
    pred2 = pred.clone()
    pred2[~body] += 100.0
    assert loss(pred2, target, rois=rois, body=body).item() == pytest.approx(base.item())
    # ROIs are clipped to the body: a ROI voxel outside it stays excluded
    rois2 = rois.clone()
    rois2[:, 0][~body[:, 0]] = True
    assert loss(pred, target, rois=rois2, body=body).item() == pytest.approx(base.item())
    # a configurable outside weight: 0.5 * (25 + 25) / 8 added
    weighted = WMSELoss(outside_weight=0.5)(pred, target, rois=rois, body=body)
    assert weighted.item() == pytest.approx(6.5 + 0.5 * 50 / 8)


def test_empty_rois_ignored_and_label_map_equivalent():
    pred, target, rois, body = _tiny_case()
    empty = torch.zeros_like(rois[:, :1])
    w = wmse_weights(rois, body)
    torch.testing.assert_close(wmse_weights(torch.cat([rois, empty], 1), body), w)
    # a label map (no overlap possible): A = label 1, B minus A = label 2
    labels = _vol([1, 1, 2, 2, 0, 0, 0, 0], dtype=torch.int64)
    stack = roi_stack(labels)
    assert stack.shape == (1, 2, 1, 2, 4)
    wl = wmse_weights(labels, body)
    torch.testing.assert_close(wl, _vol([4, 4, 4, 4, 4, 4, 0, 0]))
    torch.testing.assert_close(wmse_weights(stack.float(), body.float()), wl)


def test_weights_per_sample_and_region_sum():
    torch.manual_seed(0)
    shape = (1, 1, 4, 4, 4)
    b1 = torch.ones(shape, dtype=torch.bool)
    r1 = torch.zeros(shape, dtype=torch.bool)
    r1[..., 0, :, :] = True  # 16 voxels
    b2 = torch.zeros(shape, dtype=torch.bool)
    b2[..., 1:3, 1:3, 1:3] = True  # 8 voxels
    r2 = torch.zeros(shape, dtype=torch.bool)
    r2[..., 1, 1, 1] = True  # 1 voxel
    pred, target = torch.rand(2, 1, 4, 4, 4), torch.rand(2, 1, 4, 4, 4)
    rois, body = torch.cat([r1, r2]), torch.cat([b1, b2])
    w = wmse_weights(rois, body)
    torch.testing.assert_close(w[:1], wmse_weights(r1, b1))
    torch.testing.assert_close(w[1:], wmse_weights(r2, b2))
    loss = WMSELoss()
    both = loss(pred, target, rois=rois, body=body)
    singles = [loss(pred[i:i + 1], target[i:i + 1], rois=rois[i:i + 1], body=body[i:i + 1])
               for i in range(2)]
    assert both.item() == pytest.approx(sum(s.item() for s in singles) / 2)
    # without overlap the loss is the sum of the per-region MSEs
    sq = (pred[:1] - target[:1]) ** 2
    assert singles[0].item() == pytest.approx(sq[r1].mean().item() + sq[~r1].mean().item())


def test_gradients_flow_inside_body_only():
    pred, target, rois, body = _tiny_case()
    pred = pred.clone().requires_grad_(True)
    WMSELoss()(pred, target, rois=rois, body=body).backward()
    # d/dp w (p - t)^2 / N = 2 w (p - t) / N: [2*4*1, 2*4*2, 2*8/3*3, 0, 2*4, 2*4] / 8
    expected = torch.tensor([1.0, 2.0, 2.0, 0.0, 1.0, 1.0])
    torch.testing.assert_close(pred.grad[body], expected)
    assert torch.all(pred.grad[~body] == 0)
    p2 = pred.detach().clone().requires_grad_(True)
    MaskedMAELoss()(p2, target, body=body).backward()
    assert torch.all(p2.grad[~body] == 0) and torch.count_nonzero(p2.grad) > 0


def _loss_from_config(name: str, **overrides):
    """The loss as train.py builds it: ``conf/loss/<name>.yaml`` through Hydra."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from atp.config import CONF_DIR

    cfg = OmegaConf.merge(OmegaConf.load(CONF_DIR / "loss" / f"{name}.yaml"), overrides)
    return instantiate(cfg)


@pytest.mark.parametrize("name", ["wmse", "mae", "mse", "dvh"])
def test_zero_loss_for_perfect_prediction(name):
    _, target, rois, body = _tiny_case()
    loss = _loss_from_config(name)  # every loss takes the same call
    assert loss(target.clone(), target, rois=rois, body=body).item() == \
        pytest.approx(0.0, abs=1e-12)


def test_masked_mae_mse_values():
    pred, target, _, body = _tiny_case()
    # body diffs [1, 2, 3, 0, 1, 1]: MAE = 8 / 6, MSE = 16 / 6
    assert MaskedMAELoss()(pred, target, body=body).item() == pytest.approx(8 / 6)
    assert MaskedMSELoss()(pred, target, body=body).item() == pytest.approx(16 / 6)
    # no body mask: all 8 voxels
    assert MaskedMSELoss()(pred, target).item() == pytest.approx(66 / 8)


def test_dvh_loss_is_differentiable_and_sensitive():
    torch.manual_seed(0)
    target = torch.rand(2, 1, 8, 8, 8) * 60
    rois = torch.rand(2, 3, 8, 8, 8) > 0.7
    rois[:, 2] = False  # an empty ROI is ignored
    loss = DVHLoss(n_bins=32)
    small = loss(target + 1.0, target, rois=rois)
    large = loss(target + 10.0, target, rois=rois)
    assert 0 < small.item() < large.item()
    pred = (target * 0.9).requires_grad_(True)
    loss(pred, target, rois=rois).backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_shape_errors_are_clear():
    pred, target, rois, body = _tiny_case()
    with pytest.raises(ValueError, match="pred and target shapes differ"):
        WMSELoss()(pred, target[..., :2], rois=rois, body=body)
    with pytest.raises(ValueError, match=r"\(B, 1, D, H, W\)"):
        MaskedMSELoss()(pred.repeat(1, 2, 1, 1, 1), target.repeat(1, 2, 1, 1, 1))
    with pytest.raises(ValueError, match="rois must have shape"):
        WMSELoss()(pred, target, rois=rois[..., :2], body=body)
    with pytest.raises(ValueError, match="body must have shape"):
        MaskedMAELoss()(pred, target, body=body[..., :3])
    with pytest.raises(ValueError, match="needs rois"):
        WMSELoss()(pred, target)
    with pytest.raises(ValueError, match="needs rois"):
        DVHLoss()(pred, target, body=body)
    loss = _loss_from_config("wmse", outside_weight=0.1)
    assert isinstance(loss, WMSELoss) and loss.outside_weight == 0.1
