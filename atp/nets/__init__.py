"""Neural networks for dose prediction (needs the ``dl`` extra: torch + MONAI)."""

from atp.nets.blocks import CADBlock, DenseLayer, kaiming_init_
from atp.nets.cad_unet import CADUNet, count_parameters

__all__ = ["CADBlock", "CADUNet", "DenseLayer", "count_parameters", "kaiming_init_"]
