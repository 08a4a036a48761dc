"""CAD-UNet: a channel-attention densely connected U-Net for 3D (or 2D) dose prediction.

Contracting path: one :class:`~atp.nets.blocks.CADBlock` per level (dense ``3^n`` convolutions
with a growth rate, a squeeze-and-excitation channel gate, a ``1^n`` transition to the level's
width), the width doubling from level to level by default, with max-pool or strided-conv
downsampling between levels. Expanding path: nearest-neighbour upsampling, concatenation with
the skip features of the same level, a CAD block down to that level's width. Head: a ``1^n``
convolution to ``out_channels`` followed by ReLU, so the predicted dose is non-negative.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Conv, Pool
from monai.networks.layers.utils import get_act_layer
from torch import nn
from torch.utils.checkpoint import checkpoint

from atp.nets.blocks import CADBlock, kaiming_init_, pointwise_conv

__all__ = ["CADUNet", "count_parameters"]


def count_parameters(model: nn.Module, *, trainable_only: bool = True) -> int:
    """Number of (trainable, by default) parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


class CADUNet(nn.Module):
    """Channel-attention densely connected U-Net.

    Parameters
    ----------
    spatial_dims : int
        2 or 3.
    in_channels : int
        Number of input channels (e.g. CT + structure masks + PTV dose map).
    out_channels : int
        Number of output channels (1 for a dose map).
    features : sequence of int
        Output width of each level, from the full-resolution level to the bottleneck;
        ``depth = len(features)`` (>= 2). The input spatial size must be divisible by
        ``2 ** (depth - 1)``.
    growth : int, sequence of int or None
        Growth rate of the dense layers, one for all levels or one per level (decoder levels
        reuse the encoder value); ``None`` uses half the level's width.
    layers_per_block : int
        Number of densely connected ``3^n`` convolutions in each CAD block.
    act, norm : str or tuple
        MONAI activation / normalisation specification, e.g. ``("relu", {"inplace": True})``,
        ``"batch"``, ``"instance"`` or ``("group", {"num_groups": 8})``.
    se_reduction : int or None
        Squeeze-and-excitation reduction ratio; ``None`` or 0 disables channel attention.
    dropout : float
        Dropout probability inside the dense layers.
    downsample : {"maxpool", "conv"}
        Max-pooling (kernel 2, stride 2) or a strided ``3^n`` conv -> norm -> act.
    out_act : str, tuple or None
        Activation of the head; ReLU (default) keeps the dose non-negative, ``None`` gives
        the raw output.
    checkpointing : bool
        Recompute the CAD blocks in the backward pass (``torch.utils.checkpoint``) while
        training, trading compute for memory. Outputs and gradients are unchanged; batch-norm
        running statistics receive one extra momentum update per block per step.
    channels_last : bool
        Run the feature maps in channels-last memory format (``torch.channels_last_3d`` in
        3D). On CPU oneDNN's ``3^n`` convolutions are about twice as fast in it; the output
        is returned contiguous either way. Parameters are unaffected.
    """

    def __init__(self, spatial_dims: int = 3, in_channels: int = 1, out_channels: int = 1, *,
                 features: Sequence[int] = (16, 32, 64, 128),
                 growth: int | Sequence[int] | None = None, layers_per_block: int = 2,
                 act: str | tuple = ("relu", {"inplace": True}),
                 norm: str | tuple | None = "batch", se_reduction: int | None = 4,
                 dropout: float = 0.0, downsample: str = "maxpool",
                 out_act: str | tuple | None = "relu", checkpointing: bool = False,
                 channels_last: bool = True) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        features = tuple(int(f) for f in features)
        if len(features) < 2 or min(features) < 1:
            raise ValueError(f"features needs >= 2 positive widths, got {features}")
        depth = len(features)
        if growth is None:
            growths = tuple(max(1, f // 2) for f in features)
        elif isinstance(growth, int):
            growths = (growth,) * depth
        else:
            growths = tuple(int(g) for g in growth)
            if len(growths) != depth:
                raise ValueError(f"growth has {len(growths)} entries, features has {depth}")
        if downsample not in ("maxpool", "conv"):
            raise ValueError(f"downsample must be 'maxpool' or 'conv', got {downsample!r}")

        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.features = features
        self.depth = depth
        self.checkpointing = checkpointing
        self.channels_last = channels_last

        def block(cin: int, cout: int, level: int) -> CADBlock:
            return CADBlock(spatial_dims, cin, cout, growth=growths[level],
                            num_layers=layers_per_block, act=act, norm=norm,
                            se_reduction=se_reduction, dropout=dropout)

        self.encoder = nn.ModuleList()
        self.down = nn.ModuleList()
        cin = in_channels
        for level, f in enumerate(features):
            self.encoder.append(block(cin, f, level))
            if level < depth - 1:
                if downsample == "maxpool":
                    self.down.append(Pool[Pool.MAX, spatial_dims](kernel_size=2, stride=2))
                else:
                    self.down.append(Convolution(spatial_dims, f, f, strides=2, kernel_size=3,
                                                 act=act, norm=norm, bias=not norm))
            cin = f
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        # decoder[i] merges level i + 1 (upsampled) with the skip of level i
        self.decoder = nn.ModuleList(
            block(features[i + 1] + features[i], features[i], i) for i in range(depth - 1))
        self.head = Conv[Conv.CONV, spatial_dims](features[0], out_channels, kernel_size=1)
        self.out_act = get_act_layer(out_act) if out_act else nn.Identity()
        kaiming_init_(self)

    @property
    def size_divisor(self) -> int:
        """Every input spatial size must be a multiple of this number."""
        return 2 ** (self.depth - 1)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` if ``x`` has the wrong rank, channel count or spatial size."""
        shape = tuple(x.shape)
        if x.ndim != self.spatial_dims + 2:
            raise ValueError(f"CADUNet expects a (B, C, {self.spatial_dims} spatial dims) "
                             f"input, got shape {shape}")
        if shape[1] != self.in_channels:
            raise ValueError(f"CADUNet expects {self.in_channels} input channels, got input "
                             f"shape {shape}")
        k = self.size_divisor
        if any(s % k for s in shape[2:]):
            raise ValueError(f"CADUNet with depth {self.depth} needs spatial sizes divisible "
                             f"by 2**(depth-1) = {k}; got input shape {shape} (pad or crop)")

    def _run(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(module, x, use_reentrant=False)
        return module(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d if self.spatial_dims == 3
                             else torch.channels_last)
        skips = []
        for level, enc in enumerate(self.encoder):
            x = self._run(enc, x)
            if level < self.depth - 1:
                skips.append(x)
                x = self.down[level](x)
        for i in range(self.depth - 2, -1, -1):
            x = torch.cat([self.up(x), skips[i]], dim=1)
            x = self._run(self.decoder[i], x)
        y = pointwise_conv(x, self.head.weight.flatten(1), self.head.bias)
        return self.out_act(y).contiguous()
