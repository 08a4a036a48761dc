"""Building blocks of the CAD-UNet: densely connected convolutions with channel attention.

The dense block is computed without concatenating feature maps. Dense layer ``k`` applies one
``k^n`` convolution to ``cat([x, f_1, ..., f_{k-1}])``; a convolution of a concatenation is
the sum of convolutions of its parts, so the block convolves every *source* (the input ``x``
and each new feature map ``f_j``) once, into the pre-activations of all the later layers it
feeds, and adds them up. The weights and outputs are those of the textbook dense block (see
:meth:`CADBlock.layer_weight`); the repeated ``torch.cat`` copies and the saved concatenated
tensors disappear, and each convolution has a wider output (``num_layers * growth`` for the
input), which oneDNN runs more efficiently than several ``growth``-wide ones.

The squeeze-and-excitation gate scales channels right before the ``1^n`` transition, so it is
folded into the transition weights per sample (``W diag(s_b)``) and applied as a batched
matrix product: the gated feature map is never materialised.
"""

from __future__ import annotations

import math

import torch
from monai.networks.blocks import ADN, ChannelSELayer, Convolution
from monai.networks.layers.factories import Conv
from torch import nn

__all__ = ["CADBlock", "kaiming_init_", "pointwise_conv"]


def pointwise_conv(x: torch.Tensor, weight: torch.Tensor,
                   bias: torch.Tensor | None = None) -> torch.Tensor:
    """A ``1^n`` convolution as a matrix product, in either memory format.

    Parameters
    ----------
    x : torch.Tensor
        Input of shape ``(B, C, *spatial)``, contiguous or channels-last.
    weight : torch.Tensor
        ``(C_out, C)`` (shared) or ``(B, C_out, C)`` (one matrix per sample, e.g. with a
        channel gate folded in).
    bias : torch.Tensor, optional
        ``(C_out,)``.

    Returns
    -------
    torch.Tensor
        ``(B, C_out, *spatial)`` in the memory format of ``x`` (oneDNN's channels-last
        ``1^n`` convolution on CPU is much slower than this matrix product).
    """
    b, c, *spatial = x.shape
    c_out = weight.shape[-2]
    if x.is_contiguous():
        y = torch.matmul(weight, x.reshape(b, c, -1)).view(b, c_out, *spatial)
    else:  # channels-last (or other strides): (B, V, C) @ (.., C, C_out)
        xl = x.movedim(1, -1).reshape(b, -1, c)
        y = torch.matmul(xl, weight.transpose(-1, -2)).view(b, *spatial, c_out).movedim(-1, 1)
    if bias is not None:
        y = y + bias.view(1, -1, *([1] * len(spatial)))
    return y


class CADBlock(nn.Module):
    """Channel-attention densely connected block.

    ``num_layers`` densely connected ``k^n`` conv -> norm -> dropout -> act layers (layer
    ``k`` sees the block input and the outputs of all previous layers, concatenated), a
    squeeze-and-excitation channel gate on the ``in_channels + num_layers * growth`` dense
    features, then a ``1^n`` transition convolution (conv -> norm -> act) to ``out_channels``.

    Parameters
    ----------
    spatial_dims, in_channels, out_channels : int
        Number of spatial dimensions, input and output channels.
    growth : int
        Growth rate of the dense layers.
    num_layers : int
        Number of dense layers (>= 1).
    kernel_size : int
        Kernel size of the dense convolutions (3 gives ``3x3x3`` in 3D).
    act, norm : str or tuple
        MONAI activation / normalisation specifications.
    se_reduction : int or None
        Reduction ratio of the squeeze-and-excitation gate (clamped to the number of
        channels); ``None`` or 0 disables channel attention.
    dropout : float
        Dropout probability inside the dense layers (after the normalisation).

    Notes
    -----
    ``self.convs[j]`` convolves source ``j`` (``j = 0``: the block input; ``j >= 1``: the
    output of dense layer ``j``) into the pre-activations of layers ``j + 1 ... num_layers``
    (``growth`` channels each, in that order). :meth:`layer_weight` reassembles the weight of
    one dense layer over its concatenated input.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, *,
                 growth: int = 16, num_layers: int = 2, kernel_size: int = 3,
                 act: str | tuple = ("relu", {"inplace": True}),
                 norm: str | tuple | None = "batch", se_reduction: int | None = 4,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if growth < 1 or num_layers < 1:
            raise ValueError(f"growth and num_layers must be >= 1, got {growth}, {num_layers}")
        self.in_channels = in_channels
        self.growth = growth
        self.num_layers = num_layers
        self.kernel_size = kernel_size
        conv = Conv[Conv.CONV, spatial_dims]
        self.convs = nn.ModuleList(
            conv(in_channels if j == 0 else growth, (num_layers - j) * growth,
                 kernel_size=kernel_size, padding=kernel_size // 2,
                 bias=not norm and j == 0)  # one bias per layer, carried by the input conv
            for j in range(num_layers))
        self.adn = nn.ModuleList(
            ADN(ordering="NDA", in_channels=growth, act=act, norm=norm, norm_dim=spatial_dims,
                dropout=dropout or None, dropout_dim=1)
            for _ in range(num_layers))
        channels = in_channels + num_layers * growth
        self.dense_channels = channels
        if se_reduction:
            self.attention: nn.Module | None = ChannelSELayer(
                spatial_dims, channels, r=min(int(se_reduction), channels))
        else:
            self.attention = None
        self.transition = Convolution(spatial_dims, channels, out_channels, kernel_size=1,
                                      act=act, norm=norm, adn_ordering="NDA", bias=not norm)

    def layer_weight(self, k: int) -> torch.Tensor:
        """Weight of dense layer ``k`` (0-based) over ``cat([x, f_1, ..., f_k])``.

        Shape ``(growth, in_channels + k * growth, *kernel)``.
        """
        g = self.growth
        parts = [self.convs[j].weight[(k - j) * g:(k - j + 1) * g] for j in range(k + 1)]
        return torch.cat(parts, dim=1)

    def layer_bias(self, k: int) -> torch.Tensor | None:
        """Bias of dense layer ``k`` (``None`` with a normalisation layer)."""
        bias = self.convs[0].bias
        return None if bias is None else bias[k * self.growth:(k + 1) * self.growth]

    def init_dense_weights_(self) -> None:
        """He-normal initialisation of each dense layer over its full concatenated input."""
        volume = self.kernel_size ** (self.convs[0].weight.ndim - 2)
        g = self.growth
        with torch.no_grad():
            for j, conv in enumerate(self.convs):
                for i in range(self.num_layers - j):
                    fan_in = (self.in_channels + (j + i) * g) * volume
                    conv.weight[i * g:(i + 1) * g].normal_(0.0, math.sqrt(2.0 / fan_in))
                if conv.bias is not None:
                    conv.bias.zero_()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints of the earlier layout (one conv per dense layer over the concatenated
        # input: ``dense.{k}.conv.conv.*``, ``dense.{k}.conv.adn.*``) load unchanged
        if prefix + "dense.0.conv.conv.weight" in state_dict:
            g = self.growth
            weights = [state_dict.pop(f"{prefix}dense.{k}.conv.conv.weight")
                       for k in range(self.num_layers)]
            biases = [state_dict.pop(f"{prefix}dense.{k}.conv.conv.bias", None)
                      for k in range(self.num_layers)]
            for j in range(self.num_layers):
                lo = 0 if j == 0 else self.in_channels + (j - 1) * g
                hi = self.in_channels + j * g
                state_dict[f"{prefix}convs.{j}.weight"] = torch.cat(
                    [weights[k][:, lo:hi] for k in range(j, self.num_layers)], dim=0)
            if biases[0] is not None:
                state_dict[f"{prefix}convs.0.bias"] = torch.cat(biases, dim=0)
            old = f"{prefix}dense."
            for key in [k for k in state_dict if k.startswith(old)]:
                layer, rest = key[len(old):].split(".", 1)
                if rest.startswith("conv.adn."):
                    state_dict[f"{prefix}adn.{layer}.{rest[len('conv.adn.'):]}"] = \
                        state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def dense_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[x, f_1, ..., f_L]``: the block input and the outputs of the dense layers."""
        g = self.growth
        first = self.convs[0](x)
        # plain slices, not torch.split: an in-place activation may follow directly (no norm)
        pre = [first[:, k * g:(k + 1) * g] for k in range(self.num_layers)]
        feats = [x]
        for k in range(self.num_layers):
            f = self.adn[k](pre[k])
            feats.append(f)
            if k + 1 < self.num_layers:
                later = self.convs[k + 1](f)
                for i in range(self.num_layers - k - 1):
                    pre[k + 1 + i] = pre[k + 1 + i] + later[:, i * g:(i + 1) * g]
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.dense_features(x)
        weight = self.transition.conv.weight
        weight = weight.reshape(weight.shape[0], -1)
        if self.attention is not None:
            means = torch.cat([f.mean(dim=tuple(range(2, f.ndim))) for f in feats], dim=1)
            gate = self.attention.fc(means)  # (B, C), the squeeze-and-excitation gate
            weight = weight.unsqueeze(0) * gate.unsqueeze(1)  # (B, out, C) = W diag(s_b)
        out = None
        start = 0
        for f in feats:
            w = weight[..., start:start + f.shape[1]]
            start += f.shape[1]
            y = pointwise_conv(f, w)
            out = y if out is None else out + y
        bias = self.transition.conv.bias
        if bias is not None:
            out = out + bias.view(1, -1, *([1] * (out.ndim - 2)))
        return self.transition.adn(out)


def kaiming_init_(module: nn.Module) -> nn.Module:
    """He-normal (``fan_in``, ReLU gain) initialisation of all conv and linear layers, in place.

    Biases are zeroed, normalisation layers get weight 1 and bias 0; the dense layers of a
    :class:`CADBlock` use the fan-in of their whole concatenated input. Returns ``module``.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.ConvTranspose2d
                      | nn.ConvTranspose3d | nn.Linear):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm | nn.GroupNorm
                        | nn.modules.instancenorm._InstanceNorm | nn.LayerNorm):
            if getattr(m, "weight", None) is not None:
                nn.init.ones_(m.weight)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
    for m in module.modules():
        if isinstance(m, CADBlock):
            m.init_dense_weights_()
    return module
