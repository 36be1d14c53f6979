"""mmext: attention modules, dynamic convolutions and backbones for MMDetection 3.x
and MMSegmentation 1.x."""
from .compat import apply_compat_patches
from .utils.config import register_mmext_configs
from .version import __version__

# Importing mmext is what every entry point does first (tools, custom_imports,
# ``type='mmext.X'`` lookups), so the stack fixes are applied here once.
apply_compat_patches()
# ... and so is the ``mmext::`` config prefix of downstream configs.
register_mmext_configs()

__all__ = ['__version__', 'apply_compat_patches']
