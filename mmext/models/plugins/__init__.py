"""Attention plugins for the ResNet ``plugins=`` mechanism."""
from .cbam import CBAM
from .eca import ECA, eca_kernel_size, eca_plugins
from .se import SE

__all__ = ['SE', 'ECA', 'CBAM', 'eca_kernel_size', 'eca_plugins']
