"""Neural networks for dose prediction (needs the ``dl`` extra: torch + MONAI)."""

from atp.nets.blocks import CADBlock, kaiming_init_, pointwise_conv
from atp.nets.cad_unet import CADUNet, count_parameters

__all__ = ["CADBlock", "CADUNet", "count_parameters", "kaiming_init_", "pointwise_conv"]
