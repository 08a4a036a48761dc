"""CAD-UNet: shapes, non-negativity, size checks, checkpointing, a toy optimisation."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("monai")

import torch.nn.functional as F  # noqa: E402

from atp.nets import CADBlock, CADUNet, count_parameters, pointwise_conv  # noqa: E402


@pytest.mark.parametrize(("features", "downsample", "size"), [
    ((8, 16), "maxpool", 16),
    ((8, 16, 32), "conv", 16),
    ((4, 8, 16, 32), "maxpool", 16),
    ((6, 12, 24), "maxpool", 24),
])
def test_output_shape_3d(features, downsample, size):
    torch.manual_seed(0)
    net = CADUNet(3, 3, 2, features=features, downsample=downsample, growth=4)
    x = torch.randn(2, 3, size, size, 8)  # anisotropic on purpose
    y = net(x)
    assert y.shape == (2, 2, *x.shape[2:])
    assert torch.all(y >= 0)


def test_output_shape_2d_and_options():
    torch.manual_seed(0)
    net = CADUNet(2, 4, 1, features=(8, 16, 32), growth=(4, 4, 8), layers_per_block=3,
                  norm=("group", {"num_groups": 4}), act="prelu", se_reduction=None,
                  dropout=0.1)
    y = net(torch.randn(1, 4, 32, 24))
    assert y.shape == (1, 1, 32, 24) and torch.all(y >= 0)
    raw = CADUNet(2, 1, 1, features=(4, 8), out_act=None, norm="instance")
    assert (raw(torch.randn(2, 1, 16, 16)) < 0).any()


def test_cad_block_widths():
    block = CADBlock(3, 5, 7, growth=3, num_layers=4, se_reduction=2)
    assert block.dense_channels == 5 + 4 * 3
    assert block(torch.randn(1, 5, 4, 4, 4)).shape == (1, 7, 4, 4, 4)


def _reference_block(block, x):
    """Textbook CAD block: each dense layer convolves the concatenation of all before it."""
    feats = x
    for k in range(block.num_layers):
        pre = F.conv3d(feats, block.layer_weight(k), block.layer_bias(k), padding=1)
        feats = torch.cat([feats, block.adn[k](pre)], dim=1)
    if block.attention is not None:
        feats = block.attention(feats)  # MONAI ChannelSELayer: x * gate
    return block.transition(feats)


@pytest.mark.parametrize(("norm", "se", "layers"), [
    ("batch", 2, 2), ("instance", None, 3), (None, 3, 3)])
def test_cad_block_equals_concatenating_dense_block(norm, se, layers):
    torch.manual_seed(0)
    block = CADBlock(3, 5, 6, growth=3, num_layers=layers, norm=norm, se_reduction=se,
                     act="prelu")
    assert block.layer_weight(layers - 1).shape == (3, 5 + (layers - 1) * 3, 3, 3, 3)
    x = torch.randn(2, 5, 6, 6, 4)
    block.train()
    torch.testing.assert_close(block(x), _reference_block(block, x), rtol=1e-4, atol=1e-5)
    block.eval()
    xcl = x.contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(block(xcl), _reference_block(block, x), rtol=1e-4, atol=1e-5)


def test_checkpoint_of_the_concatenating_layout_loads():
    torch.manual_seed(0)
    block = CADBlock(3, 5, 6, growth=3, num_layers=3, norm="batch").eval()
    old = {k: v for k, v in block.state_dict().items()
           if not k.startswith(("convs.", "adn."))}
    for k in range(3):  # earlier layout: dense.{k}.conv = MONAI Convolution (conv + adn)
        old[f"dense.{k}.conv.conv.weight"] = block.layer_weight(k).detach()
        for name, value in block.adn[k].state_dict().items():
            old[f"dense.{k}.conv.adn.{name}"] = value
    fresh = CADBlock(3, 5, 6, growth=3, num_layers=3, norm="batch").eval()
    fresh.load_state_dict(old)
    x = torch.randn(1, 5, 4, 4, 4)
    torch.testing.assert_close(fresh(x), block(x))


def test_dense_layers_he_init_uses_full_fan_in():
    torch.manual_seed(0)
    net = CADUNet(3, 10, 1, features=(16, 32), growth=64, layers_per_block=2)
    block = net.encoder[0]
    for k, fan_in in enumerate((10 * 27, (10 + 64) * 27)):
        std = block.layer_weight(k).std().item()
        assert std == pytest.approx((2 / fan_in) ** 0.5, rel=0.1)


def test_pointwise_conv_matches_conv_in_both_formats():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 4, 3, 6)
    w, b = torch.randn(7, 5), torch.randn(7)
    ref = F.conv3d(x, w.view(7, 5, 1, 1, 1), b)
    torch.testing.assert_close(pointwise_conv(x, w, b), ref)
    xcl = x.contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(pointwise_conv(xcl, w, b), ref)
    wb = torch.randn(2, 7, 5)  # one matrix per sample
    per_sample = torch.stack([F.conv3d(x[i:i + 1], wb[i].view(7, 5, 1, 1, 1))[0]
                              for i in range(2)])
    torch.testing.assert_close(pointwise_conv(xcl, wb), per_sample)


def test_channels_last_does_not_change_the_output():
    torch.manual_seed(0)
    net = CADUNet(3, 2, 1, features=(4, 8, 16), growth=4).eval()
    x = torch.randn(1, 2, 16, 16, 8)
    y_cl = net(x)
    net.channels_last = False
    y = net(x)
    assert y_cl.is_contiguous()
    torch.testing.assert_close(y_cl, y, rtol=1e-5, atol=1e-6)


def test_parameter_count_grows_with_width():
    counts = [count_parameters(CADUNet(3, 10, 1, features=(w, 2 * w, 4 * w)))
              for w in (4, 8, 16)]
    assert counts[0] < counts[1] < counts[2]
    default = CADUNet(3, 10, 1)
    assert 0.5e6 < count_parameters(default) < 2e6
    no_se = CADUNet(3, 10, 1, se_reduction=None)
    assert count_parameters(no_se) < count_parameters(default)


def test_bad_input_raises_with_shape():
    net = CADUNet(3, 2, 1, features=(4, 8, 16))
    with pytest.raises(ValueError, match=r"divisible by 2\*\*\(depth-1\) = 4; got input shape "
                                         r"\(1, 2, 10, 16, 16\)"):
        net(torch.randn(1, 2, 10, 16, 16))
    with pytest.raises(ValueError, match="2 input channels"):
        net(torch.randn(1, 3, 16, 16, 16))
    with pytest.raises(ValueError, match="spatial dims"):
        net(torch.randn(1, 2, 16, 16))
    with pytest.raises(ValueError, match="growth has 2 entries"):
        CADUNet(3, 1, 1, features=(4, 8, 16), growth=(2, 2))
    with pytest.raises(ValueError, match="downsample"):
        CADUNet(3, 1, 1, downsample="avg")


@pytest.mark.parametrize("train", [True, False])
def test_checkpointing_matches_plain(train):
    torch.manual_seed(0)
    kwargs = dict(features=(4, 8, 16), growth=4, dropout=0.2)
    plain = CADUNet(3, 2, 1, **kwargs)
    ckpt = CADUNet(3, 2, 1, checkpointing=True, **kwargs)
    ckpt.load_state_dict(plain.state_dict())
    plain.train(train)
    ckpt.train(train)
    x = torch.randn(2, 2, 16, 16, 16)
    outs, grads = [], []
    for net in (plain, ckpt):
        torch.manual_seed(123)  # same dropout masks; checkpoint replays the RNG state
        y = net(x)
        (y * torch.linspace(0, 1, y.numel()).view_as(y)).sum().backward()
        outs.append(y.detach())
        grads.append([p.grad.clone() for p in net.parameters()])
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-6)
    for g0, g1 in zip(grads[0], grads[1], strict=True):
        torch.testing.assert_close(g0, g1, rtol=1e-4, atol=1e-6)


def test_toy_optimisation_reduces_loss():
    torch.manual_seed(0)
    net = CADUNet(3, 2, 1, features=(8, 16), growth=4)
    x = torch.rand(2, 2, 16, 16, 16)
    target = 2.0 * x[:, :1] + x[:, 1:]  # a positive voxel-wise function of the inputs
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(net(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0], losses
