"""Building blocks of the CAD-UNet: densely connected convolutions with channel attention."""

from __future__ import annotations

import torch
from monai.networks.blocks import ChannelSELayer, Convolution
from torch import nn

__all__ = ["CADBlock", "DenseLayer", "kaiming_init_"]


class DenseLayer(nn.Module):
    """One densely connected layer: ``k^n`` conv -> norm -> dropout -> act, concatenated.

    The output is ``cat([x, f(x)], dim=1)``, so it has ``in_channels + growth`` channels.

    Parameters
    ----------
    spatial_dims, in_channels : int
        Number of spatial dimensions and input channels.
    growth : int
        Number of new feature maps produced (the growth rate).
    kernel_size : int
        Convolution kernel size (3 gives 3x3x3 convolutions in 3D).
    act, norm : str or tuple
        MONAI activation / normalisation specifications.
    dropout : float
        Dropout probability after the normalisation (0 disables it).
    """

    def __init__(self, spatial_dims: int, in_channels: int, growth: int, *,
                 kernel_size: int = 3, act: str | tuple = ("relu", {"inplace": True}),
                 norm: str | tuple | None = "batch", dropout: float = 0.0) -> None:
        super().__init__()
        self.conv = Convolution(spatial_dims, in_channels, growth, kernel_size=kernel_size,
                                act=act, norm=norm, dropout=dropout or None,
                                adn_ordering="NDA", bias=not norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.conv(x)], dim=1)


class CADBlock(nn.Module):
    """Channel-attention densely connected block.

    ``num_layers`` :class:`DenseLayer` s (each sees the block input and the outputs of all
    previous layers), a squeeze-and-excitation channel gate on the concatenated
    ``in_channels + num_layers * growth`` features, then a ``1^n`` transition convolution
    (conv -> norm -> act) to ``out_channels``.

    Parameters
    ----------
    spatial_dims, in_channels, out_channels : int
        Number of spatial dimensions, input and output channels.
    growth : int
        Growth rate of the dense layers.
    num_layers : int
        Number of dense layers (>= 1).
    act, norm : str or tuple
        MONAI activation / normalisation specifications.
    se_reduction : int or None
        Reduction ratio of the squeeze-and-excitation gate (clamped to the number of
        channels); ``None`` or 0 disables channel attention.
    dropout : float
        Dropout probability inside the dense layers.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, *,
                 growth: int = 16, num_layers: int = 2,
                 act: str | tuple = ("relu", {"inplace": True}),
                 norm: str | tuple | None = "batch", se_reduction: int | None = 4,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if growth < 1 or num_layers < 1:
            raise ValueError(f"growth and num_layers must be >= 1, got {growth}, {num_layers}")
        layers = []
        channels = in_channels
        for _ in range(num_layers):
            layers.append(DenseLayer(spatial_dims, channels, growth, act=act, norm=norm,
                                     dropout=dropout))
            channels += growth
        self.dense = nn.Sequential(*layers)
        self.dense_channels = channels
        if se_reduction:
            self.attention: nn.Module = ChannelSELayer(
                spatial_dims, channels, r=min(int(se_reduction), channels))
        else:
            self.attention = nn.Identity()
        self.transition = Convolution(spatial_dims, channels, out_channels, kernel_size=1,
                                      act=act, norm=norm, adn_ordering="NDA", bias=not norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.transition(self.attention(self.dense(x)))


def kaiming_init_(module: nn.Module) -> nn.Module:
    """He-normal (``fan_in``, ReLU gain) initialisation of all conv and linear layers, in place.

    Biases are zeroed, normalisation layers get weight 1 and bias 0. Returns ``module``.
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
    return module
