"""Attention plugins (and DropBlock) for the ResNet ``plugins=`` mechanism."""
from .cbam import CBAM
from .dropblock import DropBlock
from .eca import ECA, eca_kernel_size, eca_plugins
from .se import SE

__all__ = ['SE', 'ECA', 'CBAM', 'DropBlock', 'eca_kernel_size', 'eca_plugins']
