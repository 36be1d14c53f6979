"""Registered model components (plugins, convolutions, backbones, losses).

Designs land here one file each; importing this package registers them in the
``mmext`` model registry.
"""
from . import backbones, layers, losses, plugins  # noqa: F401
