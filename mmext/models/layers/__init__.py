"""Convolutions with the ``nn.Conv2d`` call signature (``conv_cfg`` / ``dcn`` slot)."""
from .cmod import CModStem
from .dcdc import DCDC
from .dendritic import DendriticConv
from .dynamic_conv import DynamicConv
from .harmonic import HarmonicConv
from .mgic import MGBlock
from .min_nets import MinBlock
from .nonlocal_pide import NonlocalConv, NonlocalOperator
from .odconv import ODConv
from .qnn import QuantConv
from .sk_conv import SKConv
from .tadaconv import TAdaConv
from .xnor_net import BinaryConv

__all__ = ['BinaryConv', 'CModStem', 'DCDC', 'DendriticConv', 'DynamicConv', 'HarmonicConv',
           'MGBlock', 'MinBlock', 'NonlocalConv', 'NonlocalOperator', 'ODConv', 'QuantConv',
           'SKConv', 'TAdaConv']
