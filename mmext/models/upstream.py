"""Declarations for a design whose configs build another library's class.

A design that mmext implements declares what the tools need on its own
registered class (:mod:`mmext.models.layers.protocols`,
:mod:`mmext.models.official_layouts`, ``reference_implementations`` read by
:mod:`mmext.analysis.benchmark`). A design that mmext only configures, such as
MMDetection's PVTv2, has no mmext class to carry them: its file in mmext
(``mmext/models/backbones/pvt.py``) holds an :class:`UpstreamDesign` instead,
a module-level object that the tools find by scanning the imported
``mmext`` modules. Nothing is registered and no list names it; the module only
has to be imported with the package (one line in its package's
``__init__.py``, as for a registered class).
"""
import dataclasses
import sys


@dataclasses.dataclass(frozen=True)
class UpstreamDesign:
    """What mmext adds to another library's class.

    Attributes:
        name (str): The design's name, e.g. ``'PVTv2'``.
        upstream (str): The registry type of the class with its scope, as the
            configs write it, e.g. ``'mmdet.PyramidVisionTransformerV2'``.
        official_layouts (tuple[OfficialLayout]): Its official checkpoint
            layouts (:class:`mmext.models.official_layouts.OfficialLayout`).
            Defaults to none.
        reference_implementations (dict): ``{arch key: (spec, ...)}``, the
            reference implementations ``benchmark.py --compare reference``
            times it against (:mod:`mmext.analysis.benchmark`). Defaults to
            none.
        reference_arch_key (callable, optional): Backbone config (dict) to
            the key of ``reference_implementations``. Defaults to None (the
            config's ``arch``).
    """

    name: str
    upstream: str
    official_layouts: tuple = ()
    reference_implementations: dict = dataclasses.field(default_factory=dict)
    reference_arch_key: object = None


def upstream_designs():
    """Every :class:`UpstreamDesign` bound to a name in an imported ``mmext``
    module, once each, in import order (import ``mmext.models`` first to have
    them all)."""
    found = {}
    for name, module in list(sys.modules.items()):
        if module is None or not (name == 'mmext' or name.startswith('mmext.')):
            continue
        for value in list(vars(module).values()):
            if isinstance(value, UpstreamDesign):
                found.setdefault(id(value), value)
    return list(found.values())
