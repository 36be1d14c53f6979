"""Convolutions with the ``nn.Conv2d`` call signature (``conv_cfg`` / ``dcn`` slot)."""
from .dynamic_conv import DynamicConv  # noqa: F401
from .odconv import ODConv  # noqa: F401
from .sk_conv import SKConv  # noqa: F401
from .dcdc import DCDC  # noqa: F401
from .tadaconv import TAdaConv  # noqa: F401
