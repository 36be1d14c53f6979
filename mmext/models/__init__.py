"""Registered model components (plugins, convolutions, backbones).

Designs land here one file each; importing this package registers them in the
``mmext`` model registry.
"""
from . import backbones, layers, plugins  # noqa: F401
