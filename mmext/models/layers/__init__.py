"""Convolutions with the ``nn.Conv2d`` call signature (``conv_cfg`` / ``dcn`` slot)."""
from .dcdc import DCDC
from .dynamic_conv import DynamicConv
from .mgic import MGBlock
from .odconv import ODConv
from .sk_conv import SKConv
from .tadaconv import TAdaConv

__all__ = ['DCDC', 'DynamicConv', 'MGBlock', 'ODConv', 'SKConv', 'TAdaConv']
